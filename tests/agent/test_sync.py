"""Exchange-data sync, the pure parts and the worker with a fake transfer: the ``sync``
config object, the backoff schedule, who initiates and why now, the alarm's life."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mxone_agent import sync_policy as sp
from mxone_agent import xdata, xdata_sync
from mxone_agent.actions import AlarmCode
from mxone_agent.alarms import AlarmBook, iso_now
from mxone_agent.config import ConfigError, Sync, load_node_config
from mxone_agent.sync_worker import SyncFunction, SyncWorker, failed_result

from tests.agent.builders import config_dict
from tests.xdata.test_xdata_sync import VALID_STATUS, answering, file_entry, manifest_json, \
    status_with

FULL = {"interval": 86400, "retry_min": 10, "retry_max": 600, "clock_bound": 2.0,
        "timeout": 3600, "key": "/etc/mxone/agent/sync.key",
        "known_hosts": "/etc/mxone/agent/known_hosts", "user": "root",
        "xdata_root": "/var/opt/mxone/xdata"}


def with_sync(node: str = "lim2", **sync: Any) -> dict:
    doc = config_dict(node)
    doc["sync"] = {**FULL, **sync}
    return doc


def problems(doc: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_node_config(doc)
    return [str(p) for p in info.value.problems]


# ---- config -------------------------------------------------------------------------------

def test_a_config_without_sync_loads_with_the_defaults_and_writes_none_back() -> None:
    cfg = load_node_config(config_dict("lim2"))
    assert cfg.sync is None and cfg.sync_settings == Sync()
    assert Sync().to_dict() == FULL
    assert "sync" not in cfg.to_dict()


def test_a_sync_object_round_trips() -> None:
    doc = with_sync(interval=3600, key="/k")
    cfg = load_node_config(doc)
    assert cfg.sync_settings.interval == 3600.0 and cfg.sync_settings.key == "/k"
    assert cfg.to_dict() == doc
    assert load_node_config(cfg.to_dict()) == cfg


@pytest.mark.parametrize("change, expected", [
    ({"retry_min": 0}, "$.sync.retry_min: 0 must be greater than 0"),
    ({"interval": "daily"}, "$.sync.interval: must be a number of seconds, not string 'daily'"),
    ({"key": "sync.key"}, "$.sync.key: 'sync.key' is not an absolute path"),
    ({"user": "-x"}, "$.sync.user: '-x' is not a valid name"),
    ({"retry_max": 5}, "$.sync.retry_max: 5 is below retry_min 10"),
    ({"colour": "red"}, "$.sync.colour: unknown key"),
])
def test_every_broken_sync_field_is_named_with_its_rule(change: dict, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(with_sync(**change))), \
        problems(with_sync(**change))


def test_a_sync_object_missing_keys_names_each() -> None:
    doc = config_dict("lim2")
    doc["sync"] = {"interval": 60}
    found = problems(doc)
    for key in ("retry_min", "retry_max", "clock_bound", "timeout", "key", "known_hosts",
                "user", "xdata_root"):
        assert f"$.sync.{key}: missing" in found


# ---- backoff and triggers -------------------------------------------------------------------

@pytest.mark.parametrize("failures, delay", [
    (0, 10), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 320), (7, 600), (8, 600),
    (500, 600),
])
def test_backoff_doubles_from_retry_min_up_to_retry_max(failures: int, delay: float) -> None:
    assert sp.backoff_delay(failures, 10, 600) == delay


@pytest.mark.parametrize("state, newest, trigger", [
    (sp.LimSync(2, next_at=None, seen_version="v1"), "v1", None),
    (sp.LimSync(2, next_at=None, seen_version="v1"), "v2", sp.TRIGGER_NEW_VERSION),
    (sp.LimSync(2, next_at=None, seen_version=None), "v1", sp.TRIGGER_NEW_VERSION),
    (sp.LimSync(2, next_at=None, seen_version=None), None, None),
    (sp.LimSync(2, next_at=150.0, seen_version="v1"), "v1", None),
    (sp.LimSync(2, next_at=100.0, seen_version="v1"), "v1", sp.TRIGGER_PERIODIC),
    (sp.LimSync(2, next_at=100.0, failures=2, seen_version="v1"), "v1", sp.TRIGGER_RETRY),
    (sp.LimSync(2, next_at=100.0, failures=2, seen_version="v1"), "v2", sp.TRIGGER_NEW_VERSION),
])
def test_the_trigger_choice(state: sp.LimSync, newest: str | None, trigger: str | None) -> None:
    assert sp.due_trigger(state, 120.0, newest) == trigger


def test_a_failure_schedules_the_retry_and_a_success_the_next_periodic_sync() -> None:
    settings = Sync(interval=1000, retry_min=10, retry_max=30)
    s = sp.first_state(2, now=0.0, periodic=True, seen_version=None)
    assert s.next_at == sp.STARTUP_DELAY_S
    delays = []
    for now in (10.0, 30.0, 60.0, 90.0):
        s = sp.after_failure(s, settings, now, now, "refused", "v1")
        delays.append(s.next_at - now)
        assert s.alarm and s.last_error == "refused"
    assert delays == [10, 20, 30, 30]
    s = sp.after_success(s, settings, 100.0, 5000.0, "to-standby", "v1", "v1", periodic=True)
    assert (s.failures, s.alarm, s.last_error, s.next_at) == (0, False, None, 1100.0)
    assert (s.last_ok_wall, s.last_version, s.last_direction) == (5000.0, "v1", "to-standby")
    assert sp.seconds_until([s], 100.0, cap=5.0) == 5.0
    assert sp.seconds_until([s], 1099.0, cap=5.0) == 1.0


def test_who_initiates_and_with_whom() -> None:
    regular = load_node_config(config_dict("lim2"))
    standby = load_node_config(config_dict("sb"))
    assert sp.initiated_lims(regular) == (2,) and sp.initiated_lims(standby) == ()
    assert sp.peer_of(regular, 2).name == "sb" and sp.peer_of(standby, 3).name == "lim3"
    assert sp.may_initiate(regular, 2, peer_alive=False) is None
    assert "LIM 3 belongs to lim3" in sp.may_initiate(regular, 3, peer_alive=True)
    assert sp.may_initiate(standby, 3, peer_alive=True) is None
    refusal = sp.may_initiate(standby, 3, peer_alive=False)
    assert "lim3, the regular server of LIM 3, is not alive" in refusal
    assert "LIM 9 is not in cluster" in sp.may_initiate(standby, 9, peer_alive=True)


# ---- the worker, with a fake transfer -------------------------------------------------------

class FakeSync:
    """Stands in for xdata_sync.sync_lim: fails with the queued errors, then succeeds."""

    def __init__(self, errors: list[Exception] | None = None, direction: str = "to-standby"
                 ) -> None:
        self.errors = list(errors or [])
        self.direction = direction
        self.calls: list[dict[str, Any]] = []

    def __call__(self, lim: int, root: Path, local: str, peer: xdata_sync.Peer,
                 **kw: Any) -> xdata_sync.SyncResult:
        self.calls.append({"lim": lim, "local": local, "peer": peer.name, **kw})
        if self.errors:
            raise self.errors.pop(0)
        return xdata_sync.SyncResult(lim, self.direction, f"lim{lim}-20261128T120000.000000Z",
                                     fetched_files=2, fetched_bytes=100)


class Clock:
    """A fake monotonic and wall clock that stand still until moved; counts how often the
    worker reads the monotonic one (each look for due syncs reads it)."""

    def __init__(self, now: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self.now = now
        self.wall_now = wall
        self.reads = 0

    def mono(self) -> float:
        self.reads += 1
        return self.now

    def wall(self) -> float:
        return self.wall_now


def worker(tmp_path: Path, node: str, fake: SyncFunction, alive: bool | Callable[[str], bool]
           = True, key: bool = True, clock: Clock | None = None, alarms: AlarmBook | None = None
           ) -> tuple[SyncWorker, AlarmBook, list[tuple[int, str]]]:
    doc = config_dict(node)
    doc["sync"] = {**FULL, "key": str(tmp_path / "sync.key"), "retry_min": 10,
                   "xdata_root": str(tmp_path / "xdata")}
    if key:
        (tmp_path / "sync.key").write_text("k")
    cfg = load_node_config(doc)
    alarms = alarms or AlarmBook(None, None, use_syslog=False)
    pulled: list[tuple[int, str]] = []
    peer_alive = alive if callable(alive) else lambda name: alive
    clocks: dict[str, Any] = {} if clock is None else {"mono": clock.mono, "wall": clock.wall}
    w = SyncWorker(lambda: cfg, alarms, peer_alive, set,
                   lambda lim, v: pulled.append((lim, v)), sync=fake, **clocks)
    return w, alarms, pulled


def run_order(w: SyncWorker, lims: list[int]) -> list[dict[str, Any]]:
    done = threading.Event()
    rows: list[dict[str, Any]] = []
    w.order(lims, sp.TRIGGER_ORDER, lambda r: (rows.extend(r), done.set()))
    assert done.wait(10)
    return rows


def test_a_failure_raises_the_alarm_with_its_reason_and_a_success_clears_it(
        tmp_path: Path) -> None:
    fake = FakeSync([xdata_sync.SyncRefused("clocks differ by 45.0 s (bound 2.0 s)")])
    w, alarms, _ = worker(tmp_path, "lim2", fake)
    w.start()
    try:
        [row] = run_order(w, [2])
        assert row == {"lim": 2, "ok": False, "direction": None, "version": None,
                       "fetched_files": 0, "fetched_bytes": 0, "reused_files": 0,
                       "seconds": row["seconds"],
                       "error": "clocks differ by 45.0 s (bound 2.0 s)"}
        [alarm] = alarms.status()[0]
        assert alarm["code"] == AlarmCode.STANDBY_SYNC_FAILED and alarm["lim"] == 2
        assert alarm["text"] == ("Standby cluster has failed to synchronize data: sync of LIM 2 "
                                 "between lim2 and sb failed: clocks differ by 45.0 s "
                                 "(bound 2.0 s)")
        st = w.status()["lims"][0]
        assert st["alarm"] and st["failures"] == 1 and st["next_attempt"]
        [ok] = run_order(w, [2])
        assert ok["ok"] and set(ok) == {"lim", "ok", "direction", "version", "fetched_files",
                                        "fetched_bytes", "reused_files", "seconds", "notes"}
        assert alarms.status()[0] == []
        st = w.status()["lims"][0]
        assert not st["alarm"] and st["last_error"] is None and st["last_success"]
        assert fake.calls[-1]["peer_is_standby"] is True and fake.calls[-1]["keep_here"] == 3
    finally:
        w.stop()


def test_without_the_key_sync_is_off_and_says_so(tmp_path: Path) -> None:
    fake = FakeSync()
    w, alarms, _ = worker(tmp_path, "lim2", fake, key=False)
    w.start()
    try:
        status = w.status()
        assert status["enabled"] is False and status["reason"].startswith("no sync key")
        [row] = run_order(w, [2])
        assert not row["ok"] and "sync is off on lim2: no sync key" in row["error"]
        assert fake.calls == [] and alarms.status()[0] == []
        assert w.backup_happened(2, "v").startswith("sync is off")
    finally:
        w.stop()


def test_the_standby_pushes_its_backup_only_to_a_live_regular_server(tmp_path: Path) -> None:
    fake = FakeSync(direction="to-regular")
    w, _, pulled = worker(tmp_path, "sb", fake, alive=False)
    assert w.backup_happened(3, "v").startswith("sync waits: lim3, the regular server")
    assert w.status()["lims"][0]["pending_push"] is True
    assert fake.calls == []
    w2, _, _ = worker(tmp_path, "sb", fake, alive=True)
    w2.start()
    try:
        [row] = run_order(w2, [3])
        assert row["ok"] and row["direction"] == "to-regular"
        call = fake.calls[-1]
        assert call["peer"] == "lim3" and call["peer_is_standby"] is False
        assert call["keep_here"] == xdata.KEEP_ON_STANDBY and pulled == []
    finally:
        w2.stop()


def test_a_pull_before_start_reports_in_one_sentence(tmp_path: Path) -> None:
    fake = FakeSync(direction="to-regular")
    w, _, pulled = worker(tmp_path, "lim2", fake)
    w.start()
    try:
        said = w.pull_before_start(2, bound_s=10)
        assert said == ("LIM 2's newer data lim2-20261128T120000.000000Z was pulled from sb "
                        "first.")
        assert fake.calls[-1]["pull_only"] is True
        assert pulled == [(2, "lim2-20261128T120000.000000Z")]
        fake.errors.append(xdata.XdataError("sb did not answer `status` within 30 s"))
        said = w.pull_before_start(2, bound_s=10)
        assert said == ("LIM 2's data could not be pulled from sb first (sb did not answer "
                        "`status` within 30 s); LIM 2 starts with the data it has here.")
    finally:
        w.stop()


# ---- no hot loops, and nothing escapes the worker -------------------------------------------

def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(0.01)
    raise AssertionError("condition not met")


def looks_in(clock: Clock, seconds: float) -> tuple[int, float]:
    """How often the worker looked for due syncs in ``seconds``, and the CPU time this
    process used meanwhile (the test's own thread only sleeps)."""
    reads, cpu = clock.reads, time.process_time()
    time.sleep(seconds)
    return clock.reads - reads, time.process_time() - cpu


def test_with_sync_off_the_thread_sleeps_and_looks_for_the_key_now_and_then(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sp, "STARTUP_DELAY_S", 0.0)  # the first sync is due at once
    monkeypatch.setattr(sp, "SCAN_INTERVAL_S", 0.2)
    clock, fake = Clock(), FakeSync()
    w, alarms, _ = worker(tmp_path, "lim2", fake, key=False, clock=clock)
    w.start()
    try:
        time.sleep(0.1)
        looks, cpu = looks_in(clock, 1.0)
        assert looks <= 1.0 / sp.SCAN_INTERVAL_S + 2 and cpu < 0.2, (looks, cpu)
        assert fake.calls == [] and alarms.status()[0] == []
        assert w.status()["lims"][0]["next_attempt"] is None
        (tmp_path / "sync.key").write_text("k")  # the key appears: the due sync runs
        wait_for(lambda: fake.calls)
        assert w.status()["lims"][0]["last_success"]
    finally:
        w.stop()


def test_a_due_push_to_a_dead_regular_server_waits_without_spinning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standby's push failed, then lim3 died: the retry is due but may not start. The
    thread looks again after SCAN_INTERVAL_S, and pushes once lim3 is back."""
    clock, alive = Clock(), {"lim3": True}
    fake = FakeSync([xdata.XdataError("lim3 refused `receive`: disk full")],
                    direction="to-regular")
    w, alarms, _ = worker(tmp_path, "sb", fake, alive=lambda name: alive[name], clock=clock)
    w.start()
    try:
        [row] = run_order(w, [3])
        assert not row["ok"] and w.status()["lims"][0]["pending_push"]
        alive["lim3"] = False
        clock.now += 100.0  # the retry is due
        run_order(w, [])  # wakes the thread
        looks, cpu = looks_in(clock, 1.0)
        assert looks <= 2 and cpu < 0.2, (looks, cpu)
        assert len(fake.calls) == 1
        monkeypatch.setattr(sp, "SCAN_INTERVAL_S", 0.05)
        alive["lim3"] = True
        run_order(w, [])  # the thread sleeps a whole (old) SCAN_INTERVAL_S: wake it
        wait_for(lambda: len(fake.calls) == 2)
        wait_for(lambda: not w.status()["lims"][0]["pending_push"])
        assert alarms.status()[0] == []
    finally:
        w.stop()


class ThroughPeer:
    """A sync function running the real sync_lim against a fake peer's answers."""

    def __init__(self, **answers: str) -> None:
        self.peer = answering(**answers)
        self.calls = 0

    def __call__(self, lim: int, root: Path, local: str, peer: xdata_sync.Peer,
                 **kw: Any) -> xdata_sync.SyncResult:
        self.calls += 1
        return xdata_sync.sync_lim(lim, root, local, self.peer, **kw)


WRONG_ANSWERS = {
    "a list for the status": (
        {"status": "[1, 2]"}, "peer status: [1, 2] is not a JSON object"),
    "a string for a size": (
        {"status": status_with(free='"x"')},
        "peer status: free is 'x', not a whole number of bytes"),
    "a huge number for the time": (
        {"status": status_with(time="1e300")},
        "peer status: time is 1e+300, not a time in seconds since 1970 (UTC)"),
    "a huge number for a size": (
        {"status": status_with(xdata=str(2**80))},
        "peer status: xdata is 1208925819614629174706176, not a whole number of bytes from 0 "
        "to 9223372036854775808"),
    "missing keys": (
        {"status": '{"time": NOW}'}, "peer status: free, xdata, manifest missing"),
    "a manifest entry that is no file": (
        {"status": status_with(manifest=manifest_json(files='["a"]'))},
        "peer status: manifest: files[0] is 'a', not a file entry (a JSON object)"),
    "a manifest entry with a size as text": (
        {"status": status_with(manifest=manifest_json(files=file_entry(size='"1"')))},
        "peer status: manifest: files[0]: size is '1', not a whole number of bytes"),
    "garbage for the receive answer": (
        {"status": VALID_STATUS, "receive": "[]"},
        "peer receive answer: [] is not a JSON object"),
}


@pytest.mark.parametrize("answers, error", WRONG_ANSWERS.values(), ids=WRONG_ANSWERS)
def test_a_wrong_answer_of_the_peer_is_a_failed_sync_retried_with_backoff(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: dict[str, str],
        error: str) -> None:
    monkeypatch.setattr(sp, "SCAN_INTERVAL_S", 0.02)  # the thread looks often: no early retry
    xdata.write_version(tmp_path / "xdata", 2, {"ext": b"2001\n"})
    clock, sync = Clock(), ThroughPeer(**answers)
    w, alarms, _ = worker(tmp_path, "lim2", sync, clock=clock)
    w.start()
    try:
        [row] = run_order(w, [2])
        assert (row["ok"], row["error"]) == (False, error)
        [alarm] = alarms.status()[0]
        assert alarm["text"] == ("Standby cluster has failed to synchronize data: sync of LIM 2 "
                                 f"between lim2 and sb failed: {error}")
        st = w.status()["lims"][0]
        assert (st["failures"], st["next_attempt"]) == (1, iso_now(clock.wall_now + 10))
        failed_at = clock.now
        clock.now = failed_at + 9.9
        time.sleep(0.3)
        assert sync.calls == 1  # not before retry_min
        clock.now = failed_at + 10
        wait_for(lambda: w.status()["lims"][0]["failures"] == 2)
        st = w.status()["lims"][0]
        assert sync.calls == 2 and st["next_attempt"] == iso_now(clock.wall_now + 20)
        assert len(alarms.status()[1]) == 1  # one alarm, raised once
    finally:
        w.stop()


@pytest.mark.parametrize("exc", [
    TypeError("'NoneType' object is not subscriptable"),
    AttributeError("'list' object has no attribute 'get'"),
    RecursionError("maximum recursion depth exceeded"),
    ZeroDivisionError("division by zero"),
], ids=lambda e: type(e).__name__)
def test_an_unexpected_exception_of_the_sync_is_a_failed_sync_and_the_order_is_answered(
        tmp_path: Path, exc: Exception, caplog: pytest.LogCaptureFixture) -> None:
    clock, fake = Clock(), FakeSync([exc])
    w, alarms, _ = worker(tmp_path, "lim2", fake, clock=clock)
    w.start()
    try:
        with caplog.at_level(logging.ERROR, logger="mxone_agent"):
            [row] = run_order(w, [2])
        assert (row["ok"], row["error"]) == (False, (
            f"internal error of the sync worker while syncing LIM 2 with sb: "
            f"{type(exc).__name__}: {exc}"))
        assert any(r.exc_info and r.exc_info[1] is exc for r in caplog.records)
        [alarm] = alarms.status()[0]
        assert alarm["text"].endswith(row["error"])
        st = w.status()["lims"][0]
        assert (st["failures"], st["next_attempt"]) == (1, iso_now(clock.wall_now + 10))
        [ok] = run_order(w, [2])  # the worker lives on; the next success clears the alarm
        assert ok["ok"] and alarms.status()[0] == []
    finally:
        w.stop()


def test_a_bug_of_the_worker_still_answers_every_order_once(tmp_path: Path) -> None:
    """peer_alive raising stands for any bug of the worker's own: each LIM of the order
    gets a failed row naming the internal error, ``done`` is called exactly once, and an
    exception of ``done`` itself does not end the thread."""
    def broken(name: str) -> bool:
        raise AttributeError("'NoneType' object has no attribute 'alive'")

    fake = FakeSync()
    w, _, _ = worker(tmp_path, "lim2", fake, alive=broken)
    w.start()
    try:
        answers: list[list[dict[str, Any]]] = []
        done = threading.Event()

        def reply(rows: list[dict[str, Any]]) -> None:
            answers.append(rows)
            done.set()
            raise BrokenPipeError("the ctl client went away")

        w.order([2], sp.TRIGGER_ORDER, reply)
        assert done.wait(10)
        time.sleep(0.2)
        [[row]] = answers
        assert row["ok"] is False and row["lim"] == 2
        assert row["error"] == ("internal error of the sync worker while syncing LIM 2: "
                                "AttributeError: 'NoneType' object has no attribute 'alive'")
        assert fake.calls == []
        [again] = run_order(w, [2])  # the thread still answers
        assert again["error"] == row["error"] and len(answers) == 1
    finally:
        w.stop()


def test_orders_after_the_worker_stopped_are_answered(tmp_path: Path) -> None:
    release, started = threading.Event(), threading.Event()

    def slow(lim: int, root: Path, local: str, peer: xdata_sync.Peer,
             **kw: Any) -> xdata_sync.SyncResult:
        started.set()
        release.wait(10)
        return xdata_sync.SyncResult(lim, "none", None)

    w, _, _ = worker(tmp_path, "lim2", slow)
    w.start()
    answers: dict[str, list[dict[str, Any]]] = {}
    events = {name: threading.Event() for name in ("busy", "behind", "late")}

    def answer(name: str) -> Callable[[list[dict[str, Any]]], None]:
        return lambda rows: (answers.setdefault(name, rows), events[name].set())

    w.order([2], sp.TRIGGER_ORDER, answer("busy"))
    assert started.wait(10)
    w.stop(timeout=0.1)  # the thread is still busy with the first sync
    w.order([2], sp.TRIGGER_ORDER, answer("behind"))  # queued behind the stop
    release.set()
    assert events["busy"].wait(10) and events["behind"].wait(10)
    assert answers["busy"][0]["ok"] is True
    assert answers["behind"] == [failed_result(2, "the sync worker has stopped")]
    w.order([2, 3], sp.TRIGGER_ORDER, answer("late"))
    assert events["late"].is_set()  # at once, on this thread
    assert [r["error"] for r in answers["late"]] == ["the sync worker has stopped"] * 2


def test_a_wall_clock_jump_changes_neither_the_schedule_nor_the_pace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sp, "SCAN_INTERVAL_S", 0.02)
    clock = Clock()
    fake = FakeSync([xdata.XdataError("sb did not answer `status` within 30 s")])
    w, alarms, _ = worker(tmp_path, "lim2", fake, clock=clock)
    w.start()
    try:
        run_order(w, [2])
        for jump in (-365 * 86400.0, 2 * 365 * 86400.0):
            clock.wall_now += jump
            time.sleep(0.2)
            assert len(fake.calls) == 1
            assert w.status()["lims"][0]["next_attempt"] == iso_now(clock.wall_now + 10)
        clock.now += 10
        wait_for(lambda: len(fake.calls) == 2)
        wait_for(lambda: alarms.status()[0] == [])
        assert len(fake.calls) == 2
    finally:
        w.stop()


def test_a_sync_alarm_from_before_a_restart_shows_and_the_next_success_clears_it(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = AlarmBook(state, None, use_syslog=False)
    raised = before.raise_(AlarmCode.STANDBY_SYNC_FAILED, 2, "Standby cluster has failed to "
                           "synchronize data: sync of LIM 2 between lim2 and sb failed: x")
    alarms = AlarmBook(state, None, use_syslog=False)  # the agent restarted
    fake = FakeSync()
    w, _, _ = worker(tmp_path, "lim2", fake, alarms=alarms)
    w.start()
    try:
        assert w.status()["lims"][0]["alarm"] is True
        [row] = run_order(w, [2])
        assert row["ok"] and alarms.status()[0] == [] and not w.status()["lims"][0]["alarm"]
        assert [(a["handle"], a["severity"]) for a in alarms.status()[1]] == [
            (raised.handle, 2), (raised.handle, 0)]
    finally:
        w.stop()
