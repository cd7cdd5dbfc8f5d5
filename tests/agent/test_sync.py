"""Exchange-data sync, the pure parts and the worker with a fake transfer: the ``sync``
config object, the backoff schedule, who initiates and why now, the alarm's life."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from mxone_agent import sync_policy as sp
from mxone_agent import xdata, xdata_sync
from mxone_agent.actions import AlarmCode
from mxone_agent.alarms import AlarmBook
from mxone_agent.config import ConfigError, Sync, load_node_config
from mxone_agent.sync_worker import SyncWorker

from tests.agent.builders import config_dict

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


def worker(tmp_path: Path, node: str, fake: FakeSync, alive: bool = True,
           key: bool = True) -> tuple[SyncWorker, AlarmBook, list[tuple[int, str]]]:
    doc = config_dict(node)
    doc["sync"] = {**FULL, "key": str(tmp_path / "sync.key"), "retry_min": 10,
                   "xdata_root": str(tmp_path / "xdata")}
    if key:
        (tmp_path / "sync.key").write_text("k")
    cfg = load_node_config(doc)
    alarms = AlarmBook(None, None, use_syslog=False)
    pulled: list[tuple[int, str]] = []
    w = SyncWorker(lambda: cfg, alarms, lambda name: alive, set,
                   lambda lim, v: pulled.append((lim, v)), sync=fake)
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
