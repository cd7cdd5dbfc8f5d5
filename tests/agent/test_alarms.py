"""The alarm book across agent restarts: a restart is a new AlarmBook on the same state dir.
Active alarms keep their handles and are not logged again; a damaged or missing file means
no active alarms and one warning; the file is private and replaced atomically."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from mxone_agent import alarms as alarms_mod
from mxone_agent.actions import AlarmCode
from mxone_agent.alarms import STATE_FILE, AlarmBook

SB_DEAD = (AlarmCode.STANDBY_OUT_OF_ORDER, None)
ON_SB = (AlarmCode.LIM_ON_STANDBY, 2)
SYNC = (AlarmCode.STANDBY_SYNC_FAILED, 3)


def book(tmp_path: Path) -> AlarmBook:
    return AlarmBook(tmp_path / "state", tmp_path / "alarms.log", use_syslog=False)


def alarm_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "alarms.log"
    return path.read_text().splitlines() if path.exists() else []


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_active_alarms_survive_a_restart_with_their_handles(tmp_path: Path) -> None:
    first = book(tmp_path)
    on_sb = first.raise_(*ON_SB, "LIM is running on standby server: LIM 2 runs on sb")
    sb_dead = first.raise_(*SB_DEAD, "Standby server is out of order: sb is not heard")
    sync = first.raise_(*SYNC, "Standby cluster has failed to synchronize data: x")
    first.clear(*SB_DEAD)
    lines = alarm_lines(tmp_path)
    assert len(lines) == 4

    again = book(tmp_path)  # the agent restarted
    assert again.active_keys() == {ON_SB, SYNC}
    assert again.active[("lim-running-on-standby", 2)] == on_sb
    assert again.active[("standby-sync-failed", 3)] == sync
    assert again.status() == first.status()  # the log too, cleared entries included
    assert alarm_lines(tmp_path) == lines  # restoring logs nothing

    assert again.raise_(*ON_SB, "raised again by the first decision") == on_sb
    assert alarm_lines(tmp_path) == lines  # same handle, no new line
    cleared = again.clear(*SYNC)
    assert cleared is not None and cleared.handle == sync.handle and cleared.severity == 0
    assert again.clear(*SYNC) is None
    [line] = alarm_lines(tmp_path)[4:]  # logged once
    assert line.endswith(f" alarm cleared handle={sync.handle} severity=0 "
                         "code=standby-sync-failed lim=3 name=\"Standby cluster has failed to "
                         "synchronize data\" text=\"Standby cluster has failed to synchronize "
                         "data: x\"")
    new = again.raise_(*SB_DEAD, "Standby server is out of order: sb is not heard")
    assert new.handle == sb_dead.handle + 2 == 4  # handles never repeat

    third = book(tmp_path)
    assert third.active_keys() == {ON_SB, SB_DEAD}
    assert [a["handle"] for a in third.status()[1]][-2:] == [sync.handle, new.handle]


def test_active_keys_are_alarm_codes_and_can_be_filtered(tmp_path: Path) -> None:
    b = book(tmp_path)
    b.raise_(*ON_SB, "x")
    b.raise_(*SYNC, "y")
    keys = book(tmp_path).active_keys()
    assert keys == frozenset({ON_SB, SYNC})
    assert all(type(code) is AlarmCode for code, _ in keys)
    decided = [AlarmCode.LIM_ON_STANDBY, AlarmCode.STANDBY_OUT_OF_ORDER]
    assert book(tmp_path).active_keys(decided) == {ON_SB}
    assert AlarmBook(None, None, use_syslog=False).active_keys() == frozenset()


def test_the_saved_alarms_are_private_and_replaced_whole(tmp_path: Path) -> None:
    b = book(tmp_path)
    b.raise_(*ON_SB, "x")
    path = tmp_path / "state" / STATE_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    doc = json.loads(path.read_text())
    assert [a["handle"] for a in doc["active"]] == [1]
    b.clear(*ON_SB)
    assert json.loads(path.read_text())["active"] == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["alarm-handle", STATE_FILE]


def test_a_failed_save_keeps_the_previous_file_and_fails_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    b = book(tmp_path)
    b.raise_(*ON_SB, "x")
    path = tmp_path / "state" / STATE_FILE
    before = path.read_text()
    caplog.clear()

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(alarms_mod.os, "fsync", no_space)
    with caplog.at_level(logging.WARNING, logger="mxone_agent"):
        b.raise_(*SYNC, "y")
        b.clear(*SYNC)
    monkeypatch.undo()
    assert b.active_keys() == {ON_SB} and len(alarm_lines(tmp_path)) == 3
    assert path.read_text() == before  # the old content or the new, never half
    said = warnings(caplog)
    assert len(said) == 2 and all("No space left on device" in w for w in said)  # once a file
    assert sorted(p.name for p in path.parent.iterdir()) == ["alarm-handle", STATE_FILE]
    assert book(tmp_path).active_keys() == {ON_SB}


@pytest.mark.parametrize("content", [
    "{not json",
    "",
    "[]",
    '{"format": 1, "active": {}, "log": []}',
    '{"format": 1, "active": [{"code": "no-such-alarm", "handle": 1, "lim": null, '
    '"raised_at": "t", "text": "x"}], "log": []}',
    '{"format": 1, "active": [{"code": "standby-out-of-order", "handle": "1", "lim": null, '
    '"raised_at": "t", "text": "x"}], "log": []}',
    '{"format": 2, "active": [], "log": []}',
    "[" * 100_000,
], ids=["garbled", "empty", "a list", "active not a list", "unknown code", "handle as text",
        "a later format", "nested too deep"])
def test_a_damaged_file_means_no_active_alarms_and_one_warning(
        tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    b = book(tmp_path)
    b.raise_(*ON_SB, "x")
    b.raise_(*SB_DEAD, "y")
    (tmp_path / "state" / STATE_FILE).write_text(content)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mxone_agent"):
        again = book(tmp_path)
    assert again.active_keys() == frozenset() and again.status() == ([], [])
    [said] = warnings(caplog)
    assert f"{STATE_FILE} are unreadable" in said and "no active alarms" in said
    assert again.raise_(*ON_SB, "x").handle == 3  # the handle counter is kept apart


def test_a_missing_file_means_no_active_alarms_and_one_warning_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mxone_agent"):
        first = book(tmp_path)
        assert first.active_keys() == frozenset()
        assert len(warnings(caplog)) == 1 and "no saved alarms" in warnings(caplog)[0]
        book(tmp_path)  # the next start finds the file written then
    assert len(warnings(caplog)) == 1


def test_a_lost_handle_file_does_not_make_handles_repeat(tmp_path: Path) -> None:
    b = book(tmp_path)
    for _ in range(3):
        b.raise_(*ON_SB, "x")
        b.clear(*ON_SB)
    (tmp_path / "state" / "alarm-handle").unlink()
    assert book(tmp_path).raise_(*ON_SB, "x").handle == 4


def test_the_book_stays_whole_when_two_threads_raise_and_clear_at_once(tmp_path: Path) -> None:
    """The action worker and the sync worker share the book: what is saved is what is held."""
    b = book(tmp_path)
    codes = {"actions": (AlarmCode.LIM_ON_STANDBY, 2), "sync": (AlarmCode.STANDBY_SYNC_FAILED, 2)}

    def churn(key: tuple[AlarmCode, int]) -> None:
        for i in range(60):
            b.raise_(*key, f"round {i}")
            if i < 59:
                b.clear(*key)

    threads = [threading.Thread(target=churn, args=(k,)) for k in codes.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = book(tmp_path)
    assert again.active_keys() == set(codes.values())
    assert again.status() == b.status()
    handles = [a.handle for a in b.active.values()]
    assert sorted(handles)[-1] == 2 * 60 and len(alarm_lines(tmp_path)) == 2 * (60 + 59)
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]
    assert os.stat(tmp_path / "state" / STATE_FILE).st_mode & 0o777 == 0o600
