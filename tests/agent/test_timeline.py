"""The transitions kept on disk: bounded, bad lines skipped, read back after a restart."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import pytest

from mxone_agent import paths, timeline
from mxone_agent.outcomes import Transition
from mxone_agent.timeline import Timeline

from tests.agent.test_daemon import agent_thread, ask, loopback_doc, start_agent, wait_for


def transition(n: int, ok: bool = True) -> Transition:
    return Transition(lim=2, kind="failover", reason=f"lim2 missed 3 heartbeats (#{n})",
                      detected=f"2026-12-02T10:00:{n % 60:02d}.000Z",
                      decided=f"2026-12-02T10:00:{n % 60:02d}.010Z",
                      alias_up="2026-12-02T10:00:00.020Z", first_garp=None, ok=ok,
                      error=None if ok else "no such device")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_the_file_is_where_paths_says() -> None:
    assert f"{paths.STATE_DIR}/{timeline.FILE}" == paths.TIMELINE


def test_a_line_carries_every_field_and_when_it_was_written() -> None:
    t = transition(1)
    line = timeline.to_line(t, "2026-12-02T10:00:02.000Z")
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {"format": 1, "recorded": "2026-12-02T10:00:02.000Z",
                                **dataclasses.asdict(t)}
    assert timeline.from_line(line) == t


@pytest.mark.parametrize(("line", "why"), [
    ('{"format": 1, "lim": 2, "kind": "failover", "reason": "x", "detec', "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"format": 7, "lim": 2}', "format 7"),
    ('{"format": 1, "lim": 2, "kind": "failover"}', "no reason, detected, decided"),
    ('{"format": 1, "lim": "2", "kind": "f", "reason": "", "detected": "", "decided": ""}',
     "lim is str, not int"),
    ('{"format": 1, "lim": true, "kind": "f", "reason": "", "detected": "", "decided": ""}',
     "lim is bool, not int"),
    ('{"format": 1, "lim": 2, "kind": "f", "reason": "", "detected": "", "decided": "", '
     '"ok": null}', "ok is NoneType, not bool"),
    ('{"format": 1, "lim": 2, "kind": "f", "reason": {}, "detected": "", "decided": ""}',
     "reason is dict, not str"),
    ("[" * 100000, "not JSON"),
])
def test_a_line_that_is_no_transition_is_named(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        timeline.from_line(line)


def test_unknown_keys_of_a_newer_agent_are_ignored() -> None:
    doc = {**json.loads(timeline.to_line(transition(1), "x")), "hook": "ran"}
    assert timeline.from_line(json.dumps(doc)) == transition(1)


def test_transitions_are_appended_and_read_back(tmp_path: Path) -> None:
    tl = Timeline(tmp_path, shown=3)
    tl.load()  # no file yet: nothing, no warning
    tl.extend([transition(1), transition(2)])
    tl.append(transition(3, ok=False))
    tl.append(transition(4))
    assert list(tl) == [transition(2), transition(3, ok=False), transition(4)]  # shown: 3
    path = tmp_path / timeline.FILE
    assert [x["reason"][-3:] for x in lines(path)] == ["#1)", "#2)", "#3)", "#4)"]
    assert all(x["recorded"].endswith("Z") for x in lines(path))
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    again = Timeline(tmp_path, shown=3)
    again.load()
    assert list(again) == list(tl)


def test_the_file_is_cut_back_once_it_holds_twice_the_lines_it_keeps(tmp_path: Path) -> None:
    tl = Timeline(tmp_path, shown=5, on_disk=10)
    path = tmp_path / timeline.FILE
    for n in range(1, 21):
        tl.append(transition(n))
    assert len(lines(path)) == 20
    inode = path.stat().st_ino
    tl.append(transition(21))  # past 2 x 10: rewritten (a new file) with the last 10
    assert [x["reason"] for x in lines(path)] == [transition(n).reason for n in range(12, 22)]
    assert path.stat().st_ino != inode
    for n in range(22, 40):
        tl.append(transition(n))
    assert len(lines(path)) <= 20
    restarted = Timeline(tmp_path, shown=5, on_disk=10)
    restarted.load()
    restarted.append(transition(40))
    assert 10 <= len(lines(path)) <= 20
    assert [t.reason for t in restarted] == [transition(n).reason for n in range(36, 41)]


def test_bad_lines_are_skipped_with_a_warning_and_dropped_at_the_next_write(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / timeline.FILE
    good = [timeline.to_line(transition(n), "x") for n in (1, 2, 3)]
    path.write_bytes((good[0] + "not json\n" + good[1] + "\xff\xfe\n" + '{"format": 1}\n'
                      + good[2]).encode("utf-8", "surrogateescape") + b"\xff\n")
    tl = Timeline(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mxone_agent"):
        tl.load()
    assert list(tl) == [transition(1), transition(2), transition(3)]
    assert tl.skipped == 4
    [warning] = [r.getMessage() for r in caplog.records]
    assert "4 line(s) that are no transition skipped" in warning and "line 2: not JSON" in warning
    tl.append(transition(4))
    assert [x["reason"][-3:] for x in lines(path)] == ["#1)", "#2)", "#3)", "#4)"]


def test_a_line_torn_by_a_crash_costs_only_itself(tmp_path: Path) -> None:
    path = tmp_path / timeline.FILE
    whole = timeline.to_line(transition(1), "x")
    torn = timeline.to_line(transition(2), "x")[:40]  # no newline: the crash cut it
    path.write_text(whole + torn)
    tl = Timeline(tmp_path)
    tl.load()
    assert list(tl) == [transition(1)]
    tl.append(transition(3))  # starts on a line of its own, not glued to the torn one
    tl2 = Timeline(tmp_path)
    tl2.load()
    assert list(tl2) == [transition(1), transition(3)]


def test_a_huge_file_is_read_from_its_end_only(tmp_path: Path) -> None:
    path = tmp_path / timeline.FILE
    with open(path, "w") as f:
        f.write("x" * (3 * timeline.READ_AT_MOST))  # one endless hostile line
        f.write("\n" + timeline.to_line(transition(1), "x"))
    tl = Timeline(tmp_path)
    started = time.monotonic()
    tl.load()
    assert time.monotonic() - started < 1.0
    assert list(tl) == [transition(1)]
    tl.append(transition(2))  # the huge file is cut back, not appended to
    assert path.stat().st_size < 10_000


def test_a_file_that_cannot_be_written_is_said_once(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "gone"  # the state dir does not exist: every write fails
    tl = Timeline(state)
    with caplog.at_level(logging.WARNING, logger="mxone_agent"):
        for n in range(3):
            tl.append(transition(n))
    assert len(list(tl)) == 3  # status still shows them
    assert len([r for r in caplog.records if "cannot write the transitions" in r.getMessage()]) \
        == 1


def test_status_shows_the_transitions_of_before_a_restart(tmp_path: Path) -> None:
    doc = loopback_doc("lim2", port=19000 + os.getpid() % 900)
    doc["timers"] = {"interval": 0.5, "misses": 3}
    with agent_thread(tmp_path, doc) as agent:
        deadline = time.monotonic() + 10
        while not ask(agent, cmd="status")["transitions"] and time.monotonic() < deadline:
            time.sleep(0.05)
        before = ask(agent, cmd="status")["transitions"]
    assert before and before[0]["lim"] == 2
    with agent_thread(tmp_path, doc) as agent:
        after = ask(agent, cmd="status")["transitions"]
    assert after[:len(before)] == before


def test_a_failover_is_logged_with_its_lim_and_written_to_the_standbys_timeline(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = 20000 + os.getpid() % 900
    with caplog.at_level(logging.INFO, logger="mxone_agent"):
        sb, sb_thread = start_agent(tmp_path, "sb", port)
        lim2, lim2_thread = start_agent(tmp_path, "lim2", port)
        try:
            wait_for(lambda: ask(sb, cmd="status")["lims"][0]["owner"] == "regular")
            lim2.stop_flag = True  # the regular's agent goes silent
            lim2_thread.join(timeout=5)
            wait_for(lambda: ask(sb, cmd="status")["transitions"],
                     timeout=sb.config.detection + 5)
        finally:
            for agent, thread in ((sb, sb_thread), (lim2, lim2_thread)):
                agent.stop_flag = True
                thread.join(timeout=5)
                agent.close()
    takeover = [r for r in caplog.records if "sb takes over LIM 2" in r.getMessage()]
    assert takeover and getattr(takeover[0], "mxone_lim", None) == (2,)
    dead = [r for r in caplog.records if "sb declares lim2 dead" in r.getMessage()]
    assert dead and getattr(dead[0], "mxone_lim", None) == 2
    [line] = lines(tmp_path / "sb" / "state" / timeline.FILE)
    assert (line["lim"], line["kind"]) == (2, "failover") and line["first_garp"]
