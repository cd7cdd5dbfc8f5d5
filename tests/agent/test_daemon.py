"""The daemon in-process, on loopback addresses, with the recording network backend:
the control protocol, reload (and its refusal), the secret's rules, sd_notify, alarms."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxone_agent import daemon, node_files, sdnotify, service_node, service_watch, status_report
from mxone_agent.actions import AlarmCode
from mxone_agent.alarms import AlarmBook
from mxone_agent.heartbeat import Heartbeat, encode
from mxone_agent.control_client import ctl_request
from mxone_agent.model import Readiness, Role
from mxone_agent.network import RecordingNetwork
from mxone_agent.version import VERSION

from tests.agent.builders import config_dict

KEY = "ab" * 32


def loopback_doc(node: str, generation: int = 1, port: int = 17011) -> dict:
    doc = config_dict(node, generation=generation)
    for s in doc["servers"]:
        s["base_ip"] = s["base_ip"].replace("10.77.0.", "127.0.0.")
    for lim in doc["lims"]:
        lim["alias_ip"] = lim["alias_ip"].replace("10.77.0.", "127.0.0.")
    doc["heartbeat_port"] = port
    doc["timers"] = {"interval": 0.05, "misses": 3}
    return doc


STALL_PROOF = {"interval": 0.5, "misses": 3}
"""Timers for tests whose assertions read a peer's liveness or a lease that must not lapse.
The agent runs in this (large) pytest process, and a loaded 2-core machine stops its loop
for 0.2-0.5 s now and then. A loop that did not run for 2 intervals judges its peers afresh
(a dead peer is unknown for a detection period: "not heard yet" instead of "has not been
heard since this agent started"; an alive one is no longer "heard lately"), and one that
did not run for the lease (2.5 intervals) fences its LIMs. With 0.5 s intervals those take
stalls of 1 s and 1.25 s."""


def write_files(tmp_path: Path, doc: dict, key: str = KEY, mode: int = 0o600) -> tuple[str, str]:
    cfg, sec = tmp_path / "node.json", tmp_path / "cluster.key"
    cfg.write_text(json.dumps(doc))
    sec.write_text(key + "\n")
    sec.chmod(mode)
    return str(cfg), str(sec)


def start_agent_thread(tmp_path: Path, doc: dict) -> tuple[daemon.Agent, threading.Thread]:
    """An agent for ``doc`` (files under ``tmp_path``) running in a thread of this process."""
    cfg, sec = write_files(tmp_path, doc)
    agent = daemon.Agent(cfg, sec, str(tmp_path / "state"), str(tmp_path / "agent.sock"),
                         RecordingNetwork, run_dir=str(tmp_path / "run"),
                         alarm_file=str(tmp_path / "alarms.log"))
    agent.start()
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    return agent, t


def stop_agent_thread(agent: daemon.Agent, t: threading.Thread) -> None:
    """Stop the agent, and every reference Service Node it started (by their pidfiles):
    the agent leaves services running on purpose, a test must not."""
    agent.stop_flag = True
    t.join(timeout=5)
    agent.close()
    for lim in agent.config.lims:
        service_node.stop(lim.lim, agent._run_dir)


@contextlib.contextmanager
def agent_thread(tmp_path: Path, doc: dict) -> Iterator[daemon.Agent]:
    agent, t = start_agent_thread(tmp_path, doc)
    try:
        yield agent
    finally:
        stop_agent_thread(agent, t)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[daemon.Agent]:
    doc = loopback_doc("lim2", port=17000 + os.getpid() % 900)
    doc["timers"] = dict(STALL_PROOF)
    with agent_thread(tmp_path, doc) as agent:
        yield agent


def ask(agent: daemon.Agent, **req) -> dict:
    return ctl_request(agent.control_path, req)


def test_secret_must_be_0600(tmp_path: Path) -> None:
    _, sec = write_files(tmp_path, loopback_doc("lim2"), mode=0o644)
    with pytest.raises(node_files.StartupError, match="mode 0644; it must be 0600"):
        node_files.read_secret(sec)


@pytest.mark.parametrize("key, message", [("ab" * 16, "has 16 bytes; at least 32"),
                                          ("not hex at all", "must be hex text")])
def test_secret_must_be_long_hex(tmp_path: Path, key: str, message: str) -> None:
    _, sec = write_files(tmp_path, loopback_doc("lim2"), key=key)
    with pytest.raises(node_files.StartupError, match=message):
        node_files.read_secret(sec)


def test_control_socket_is_root_only(running: daemon.Agent) -> None:
    mode = os.stat(running.control_path).st_mode & 0o777
    assert mode == 0o600


def test_status_has_the_contract_keys(running: daemon.Agent) -> None:
    st = ask(running, cmd="status")
    assert st["ok"] is True
    for key in ("node", "cluster", "role", "generation", "incarnation", "readiness",
                "detection_s", "lims", "peers", "alarms", "alarm_log", "drops", "transitions",
                "last_decision"):
        assert key in st, key
    assert st["node"] == "lim2" and st["role"] == "regular" and st["readiness"] == "ready"
    assert set(st["lims"][0]) >= {"lim", "server", "alias_ip", "owner", "why", "here", "lock",
                                  "priority", "hold_down_s", "lease_renewed_s_ago"}
    assert set(st["peers"][0]) >= {"name", "role", "liveness", "incarnation",
                                   "last_heard_s_ago", "generation", "readiness", "runs"}
    assert st["drops"] == {"forged": 0, "replayed": 0, "stale": 0, "malformed": 0}
    assert st["lease_s"] == 1.25 and st["lease_lapses"] == 0  # 0.5 s x 3 - 0.25 s
    assert st["incarnation"] == running.incarnation > 0
    assert st["version"] == VERSION
    assert st["network"]["interface"] == "eth0" and st["network"]["bond"] is None


def test_lock_and_unlock_take_effect_at_once(running: daemon.Agent) -> None:
    assert ask(running, cmd="lock", lim=3, to="standby") == {"ok": True, "lim": 3,
                                                              "lock": "standby"}
    assert [x["lock"] for x in ask(running, cmd="status")["lims"]][1] == "standby"
    assert ask(running, cmd="unlock", lim=3)["lock"] == "none"
    assert ask(running, cmd="lock", lim=9, to="standby")["ok"] is False
    assert "not regular or standby" in ask(running, cmd="lock", lim=3, to="x")["error"]


def test_fallback_is_refused_on_a_regular(running: daemon.Agent) -> None:
    reply = ask(running, cmd="fallback", lim=2)
    assert reply["ok"] is False and "order a fallback on the standby" in reply["error"]


def test_reload_takes_a_new_generation(running: daemon.Agent, tmp_path: Path) -> None:
    doc = loopback_doc("lim2", generation=5, port=running.config.heartbeat_port)
    Path(running.config_path).write_text(json.dumps(doc))
    reply = ask(running, cmd="reload")
    assert reply == {"ok": True, "generation": 5, "previous_generation": 1}
    assert ask(running, cmd="status")["generation"] == 5


def test_reload_of_a_broken_config_is_refused_and_the_old_kept(running: daemon.Agent) -> None:
    doc = loopback_doc("lim2", generation=6, port=running.config.heartbeat_port)
    doc["timers"]["misses"] = 1
    Path(running.config_path).write_text(json.dumps(doc))
    reply = ask(running, cmd="reload")
    assert reply["ok"] is False
    assert "generation 1 kept" in reply["error"] and "$.timers.misses" in reply["error"]
    assert ask(running, cmd="status")["generation"] == 1


def test_reload_for_another_node_is_refused(running: daemon.Agent) -> None:
    doc = loopback_doc("lim3", generation=7, port=running.config.heartbeat_port)
    Path(running.config_path).write_text(json.dumps(doc))
    reply = ask(running, cmd="reload")
    assert reply["ok"] is False and "this agent runs lim2" in reply["error"]


def test_heartbeats_are_checked_for_source_receiver_freshness(running: daemon.Agent) -> None:
    cfg = running.config
    key = bytes.fromhex(KEY)

    def hb(receiver: str = "lim2", echo: int | None = None, seq: int = 1) -> bytes:
        return encode(Heartbeat(cluster=cfg.cluster, sender="lim3", receiver=receiver,
                                incarnation=9, seq=seq, generation=1, role=Role.REGULAR,
                                readiness=Readiness.READY,
                                echo=running.incarnation if echo is None else echo), key)

    target = (str(cfg.local.base_ip), cfg.heartbeat_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))  # not lim3's base IP (127.0.0.33): refused unread
        s.sendto(hb(), target)
        s.sendto(b"MXHB\x02garbage", target)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.33", 0))
        s.sendto(b"MXHB\x02garbage", target)  # from lim3's address, but no heartbeat
        s.sendto(hb("lim4"), target)  # meant for another server
        s.sendto(hb(echo=running.incarnation - 1), target)  # for an earlier incarnation
        s.sendto(hb(seq=2), target)
        s.sendto(hb(seq=2), target)  # the same again
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        drops = ask(running, cmd="status")["drops"]
        if drops["replayed"] >= 2:
            break
        time.sleep(0.05)
    assert drops == {"forged": 2, "replayed": 2, "stale": 1, "malformed": 1}
    lim3 = next(p for p in ask(running, cmd="status")["peers"] if p["name"] == "lim3")
    assert lim3["generation"] == 1 and lim3["incarnation"] == 9  # the genuine one counted


# ---- sd_notify ---------------------------------------------------------------------------

def test_sd_notify_over_a_real_datagram_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(2)
        assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": path})
        assert s.recv(100) == b"READY=1"


def test_sd_notify_abstract_socket() -> None:
    name = f"mxone-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(2)
        assert sdnotify.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert s.recv(100) == b"WATCHDOG=1"


def test_sd_notify_without_systemd_does_nothing() -> None:
    assert sdnotify.notify("READY=1", {}) is False
    assert sdnotify.watchdog_period({}) is None
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "10000000"}) == 2.5
    assert sdnotify.watchdog_period({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) \
        in (None, 2.5)


@contextlib.contextmanager
def under_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watchdog_usec: int,
                 timers: dict | None = None) -> Iterator[socket.socket]:
    """An agent (lim3, on loopback) run as systemd would: NOTIFY_SOCKET and WATCHDOG_USEC
    set; yields the socket that receives its notifications. Its LIM's service commands start
    nothing (LIM 3 starts once the standby counts as dead)."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(3)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_usec))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    doc = loopback_doc("lim3", port=17950 + os.getpid() % 40)
    if timers is not None:
        doc["timers"] = timers
    for lim in doc["lims"]:
        lim["service"] = {"start": ["true"], "stop": ["true"], "status": ["true"]}
    try:
        with agent_thread(tmp_path, doc):
            yield sock
    finally:
        sock.close()


def test_agent_pings_systemd_ready_and_watchdog(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with under_notify(tmp_path, monkeypatch, 100000) as sock:
        got = [sock.recv(100) for _ in range(3)]
        assert got[0] == b"READY=1" and got[1:] == [b"WATCHDOG=1", b"WATCHDOG=1"]


@pytest.mark.parametrize("interval,misses", [(5.0, 12), (5.0, 6), (1.0, 3), (0.1, 3),
                                            (60.0, 2)],
                         ids=["mxone-regular", "mxone-preloaded", "fast", "fastest",
                              "largest-interval"])
def test_watchdog_pings_on_its_own_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         interval: float, misses: int) -> None:
    """Pings come every quarter of WatchdogSec whatever the heartbeat interval (the rules
    accept up to 60 s): no gap reaches WatchdogSec, which is when systemd kills the agent.
    WatchdogSec is scaled down to 1.6 s (a ping every 0.4 s) so that several pings fit in
    the test and a busy machine's scheduling delays (tenths of a second) cannot reach it."""
    timers = {"interval": interval, "misses": misses}
    # The agent runs in this (large) pytest process: a full garbage collection of its heap
    # can stop every thread for longer than the scaled WatchdogSec, which a real agent's
    # small heap never does. Collect now and not while measuring.
    gc.collect()
    gc.disable()
    try:
        with under_notify(tmp_path, monkeypatch, 1600000, timers) as sock:
            assert sock.recv(100) == b"READY=1"
            stamps = []
            while len(stamps) < 7:
                assert sock.recv(100) == b"WATCHDOG=1"
                stamps.append(time.monotonic())
    finally:
        gc.enable()
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        assert max(gaps) < 1.6, gaps
        assert sum(gaps) / len(gaps) < 0.8, gaps  # about every 0.4 s, not once a tick


# ---- alarms ------------------------------------------------------------------------------

def test_alarm_handles_rise_and_persist(tmp_path: Path) -> None:
    book = AlarmBook(tmp_path, tmp_path / "log" / "alarms.log", use_syslog=False)
    a = book.raise_(AlarmCode.LIM_ON_STANDBY, 2, "LIM 2 runs on sb")
    assert (a.handle, a.severity, a.name) == (1, 3, "LIM is running on standby server")
    assert book.raise_(AlarmCode.LIM_ON_STANDBY, 2, "again") is a  # no duplicate
    b = book.raise_(AlarmCode.STANDBY_OUT_OF_ORDER, None, "sb is not heard")
    assert b.handle == 2 and b.severity == 2
    cleared = book.clear(AlarmCode.LIM_ON_STANDBY, 2)
    assert cleared.severity == 0 and cleared.cleared_at and cleared.handle == 1
    assert book.clear(AlarmCode.LIM_ON_STANDBY, 2) is None
    active, log = book.status()
    assert [x["handle"] for x in active] == [2]
    assert [(x["handle"], x["severity"]) for x in log] == [(1, 3), (2, 2), (1, 0)]
    lines = (tmp_path / "log" / "alarms.log").read_text().splitlines()
    assert len(lines) == 3 and "alarm cleared handle=1 severity=0" in lines[2]
    again = AlarmBook(tmp_path, None, use_syslog=False)  # a restarted agent
    assert again.raise_(AlarmCode.STANDBY_SYNC_FAILED, None, "x").handle == 3
    assert again.active[("standby-sync-failed", None)].name == (
        "Standby cluster has failed to synchronize data")


def test_alarm_log_keeps_the_last_100(tmp_path: Path) -> None:
    book = AlarmBook(None, None, use_syslog=False)
    for _ in range(60):
        book.raise_(AlarmCode.LIM_ON_STANDBY, 2, "x")
        book.clear(AlarmCode.LIM_ON_STANDBY, 2)
    assert len(book.status()[1]) == 100


def test_alarm_file_that_cannot_be_written_is_no_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    book = AlarmBook(None, tmp_path / "file" / "alarms.log", use_syslog=True)
    book.raise_(AlarmCode.LIM_ON_STANDBY, 2, "x")  # no exception


# ---- two agents in-process: the loop, the decision, the executor, end to end -----------------

def start_agent(tmp_path: Path, node: str, port: int) -> tuple[daemon.Agent, threading.Thread]:
    d = tmp_path / node
    d.mkdir()
    doc = loopback_doc(node, port=port)
    doc["timers"] = dict(STALL_PROOF)
    doc["lims"] = [x for x in doc["lims"] if x["lim"] == 2]
    doc["servers"] = [s for s in doc["servers"] if s["name"] in ("lim2", "sb")]
    flag = str(d / "service-running")
    doc["lims"][0]["service"] = {"start": ["touch", flag], "stop": ["rm", "-f", flag],
                                 "status": ["test", "-e", flag]}
    cfg, sec = write_files(d, doc)
    agent = daemon.Agent(cfg, sec, str(d / "state"), str(d / "a.sock"), RecordingNetwork,
                         run_dir=str(d / "run"), alarm_file=None)
    agent.start()
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    return agent, t


def wait_for(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("condition not met")


def test_two_agents_boot_then_failover_when_the_regular_goes_silent(tmp_path: Path) -> None:
    port = 18000 + os.getpid() % 900
    sb, sb_thread = start_agent(tmp_path, "sb", port)
    lim2, lim2_thread = start_agent(tmp_path, "lim2", port)
    try:
        wait_for(lambda: lim2.local.run(2) is not None)
        assert ("add_alias", "eth0", "127.0.0.12", 24) in lim2.executor.network.calls
        wait_for(lambda: ask(sb, cmd="status")["lims"][0]["owner"] == "regular")
        assert sb.local.runs == ()
        lim2.stop_flag = True  # the regular's agent goes silent (its service stays)
        lim2_thread.join(timeout=5)
        wait_for(lambda: sb.local.run(2) is not None, timeout=sb.config.detection + 3)
        st = ask(sb, cmd="status")
        assert st["lims"][0]["here"] in ("active", "loading")
        assert [a["name"] for a in st["alarms"]] == ["LIM is running on standby server"]
        [t] = st["transitions"]
        assert t["kind"] == "failover" and t["alias_up"] and t["first_garp"]
        assert "lim2 missed 3 heartbeats" in t["reason"]
        names = [c[0] for c in sb.executor.network.calls]
        assert names[:2] == ["remove_alias", "unblock"]  # start-up: no stale alias kept
        # The foreign-owner probe went out before lim2 was declared dead (an early probe,
        # mxone_agent.early_probe); the takeover read it instead of probing anew.
        taken = [n for n in names[2:] if n != "probe_wait"]
        assert taken[:5] == ["open_probe", "probe_read", "unblock", "add_alias", "garp"]
        assert "probe" not in names
        assert t["decided"] <= t["probed"] <= t["alias_up"] <= t["first_garp"]
    finally:
        for agent, thread in ((sb, sb_thread), (lim2, lim2_thread)):
            agent.stop_flag = True
            thread.join(timeout=5)
            agent.close()


def test_the_status_file_mirrors_ctl_status_and_goes_with_the_agent(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    with agent_thread(tmp_path, loopback_doc("lim2", port=17000 + os.getpid() % 900 + 1)) as agent:
        wait_for(path.exists)
        head, body = path.read_text().split("\n", 1)
        pid, written = head.split()
        assert int(pid) == os.getpid() and abs(float(written) - time.time()) < 5
        st = json.loads(body)
        assert st["ok"] is True and st["node"] == "lim2" and st["generation"] == 1
        assert path.stat().st_mode & 0o777 == 0o600
        # a lock shows in the file at the next write
        ask(agent, cmd="lock", lim=2, to="regular")
        wait_for(lambda: json.loads(path.read_text().split("\n", 1)[1])["lims"][0]["lock"]
                 == "regular")
    assert not path.exists()


def test_the_status_file_shows_an_order_at_once_and_stays_fresh(tmp_path: Path) -> None:
    """Timers of 30 s: the loop ticks rarely, yet the file follows an order at once and is
    rewritten at least every STATUS_FILE_AT_LEAST seconds."""
    doc = loopback_doc("lim2", port=17000 + os.getpid() % 900 + 2)
    doc["timers"] = {"interval": 30.0, "misses": 3}
    path = tmp_path / "status.json"

    def lock() -> str:
        return json.loads(path.read_text().split("\n", 1)[1])["lims"][0]["lock"]

    with agent_thread(tmp_path, doc) as agent:
        wait_for(path.exists)
        ask(agent, cmd="lock", lim=2, to="regular")
        assert lock() == "regular"  # no wait: written before the answer went out
        first = float(path.read_text().split()[1])
        wait_for(lambda: float(path.read_text().split()[1]) > first,
                 timeout=status_report.STATUS_FILE_AT_LEAST + 2)


# ---- LIMs that leave the cluster, and fallback orders ----------------------------------------

def standby_doc(tmp_path: Path, port: int, fallback: str = "automatic") -> dict:
    """The standby alone on loopback, on STALL_PROOF timers (its regular servers stay silent,
    so they count as dead after 1.5 s): it takes over LIM 2 (priority 1). Each LIM's service
    is a flag file."""
    doc = loopback_doc("sb", port=port)
    doc["timers"] = dict(STALL_PROOF)
    doc["fallback"] = fallback
    for lim in doc["lims"]:
        flag = str(tmp_path / f"lim{lim['lim']}-running")
        lim["service"] = {"start": ["touch", flag], "stop": ["rm", "-f", flag],
                          "status": ["test", "-e", flag]}
    return doc


def without_lim(doc: dict, lim: int, generation: int) -> dict:
    out = json.loads(json.dumps(doc))
    out["generation"] = generation
    out["lims"] = [x for x in out["lims"] if x["lim"] != lim]
    out["servers"] = [s for s in out["servers"] if s["name"] != f"lim{lim}"]
    return out


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelname == "ERROR"]


def test_a_reload_without_the_lim_the_standby_runs_stops_it_and_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The issue's lab finding: LIM 2 ran on the standby when a config without it arrived.
    The standby stops it (service, alias, lease and guard), logs why, polls its other LIMs
    as before (no KeyError), and takes over the next failed LIM."""
    import logging

    caplog.set_level(logging.INFO, logger="mxone_agent")
    doc = standby_doc(tmp_path, 20000 + os.getpid() % 300)
    with agent_thread(tmp_path, doc) as sb:
        wait_for(lambda: sb.local.run(2) is not None)
        wait_for((tmp_path / "lim2-running").exists)
        Path(sb.config_path).write_text(json.dumps(without_lim(doc, 2, 2)))
        assert ask(sb, cmd="reload")["ok"] is True
        wait_for(lambda: sb.local.run(2) is None and not (tmp_path / "lim2-running").exists())
        wait_for(lambda: sb.local.run(3) is not None)  # it goes on: LIM 3's server is down
        net = sb.executor.network
        assert ("remove_alias", "eth0", "127.0.0.12", 24) in net.calls
        assert "127.0.0.12" not in net.leases.guarded and "127.0.0.13" in net.leases.guarded
        st = ask(sb, cmd="status")
        assert [(t["lim"], t["kind"], t["ok"]) for t in st["transitions"]][-2:] == [
            (2, "retire", True), (3, "failover", True)]
        assert st["retiring"] == [] and [x["lim"] for x in st["lims"]] == [3, 4]
        wait_for(lambda: not any(a["lim"] == 2 for a in ask(sb, cmd="status")["alarms"]))
        held = json.loads((tmp_path / "state" / node_files.HELD_LIMS).read_text())
        assert [e["lims"] for e in held["held"]] == [[3, 4]]
        # crash detection of the other LIMs still works
        (tmp_path / "lim3-running").unlink()
        wait_for(lambda: any("service of LIM 3 is no longer running" in r.getMessage()
                             for r in caplog.records), timeout=service_watch.HEALTH_POLL + 3)
    said = [r.getMessage() for r in caplog.records]
    assert any("no longer gives LIM 2 to this node, which runs it" in m for m in said)
    assert any("LIM 2 runs on sb but the config of cluster cluster1 (generation 2) does not "
               "name it; sb stops it for good" in m for m in said)
    assert no_tracebacks(caplog) == []


def test_a_restarted_agent_stops_a_lim_its_new_config_no_longer_names(tmp_path: Path) -> None:
    """The agent restarted with a config without LIM 2 while LIM 2 ran here (a release
    upgrade in the same change): held-lims.json tells it what ran, and it stops it."""
    doc = standby_doc(tmp_path, 20300 + os.getpid() % 300)
    net = RecordingNetwork()
    cfg, sec = write_files(tmp_path, doc)

    def agent() -> daemon.Agent:
        return daemon.Agent(cfg, sec, str(tmp_path / "state"), str(tmp_path / "agent.sock"),
                            lambda: net, run_dir=str(tmp_path / "run"), alarm_file=None)

    first = agent()
    first.start()
    t = threading.Thread(target=first.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: first.local.run(2) is not None and (tmp_path / "lim2-running").exists())
    finally:
        first.stop_flag = True
        t.join(timeout=5)
        first.close()
    assert (tmp_path / "lim2-running").exists()  # the service outlives its agent
    Path(cfg).write_text(json.dumps(without_lim(doc, 2, 2)))
    second = agent()
    second.start()
    assert [r.lim for r in second.local.runs] == [2] and 2 in second.retired
    t = threading.Thread(target=second.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: not (tmp_path / "lim2-running").exists())
        wait_for(lambda: second.retired == {} and second.local.run(2) is None)
        assert ("eth0", "127.0.0.12") not in net.aliases
        assert "127.0.0.12" not in net.leases.guarded
    finally:
        second.stop_flag = True
        t.join(timeout=5)
        second.close()


def test_ctl_retire_stops_the_lim_for_good_and_can_be_cancelled(tmp_path: Path) -> None:
    doc = standby_doc(tmp_path, 20600 + os.getpid() % 200)
    with agent_thread(tmp_path, doc) as sb:
        wait_for(lambda: sb.local.run(2) is not None)
        reply = ask(sb, cmd="retire", lim=2)
        assert reply["ok"] is True and reply["runs_here"] is True
        assert reply["text"] == ("LIM 2 is leaving cluster cluster1: sb stops it for good and "
                                 "removes its alias, and takes it over no more")
        wait_for(lambda: sb.local.run(3) is not None)  # LIM 2's server is down, but it left
        assert sb.local.run(2) is None and not (tmp_path / "lim2-running").exists()
        st = ask(sb, cmd="status")
        assert st["retiring"] == [{"lim": 2, "alias_ip": "127.0.0.12", "here": None,
                                   "why": "leaving the cluster"}]
        assert [(x["lim"], x["why"]) for x in st["lims"] if x["owner"] == "none"][0] == (
            2, "LIM 2 is leaving cluster cluster1: sb does not run it")
        assert ask(sb, cmd="fallback", lim=2)["ok"] is False
        assert "not a LIM number" in ask(sb, cmd="retire", lim="x")["error"]
        assert ask(sb, cmd="retire", lim=2, cancel="yes")["error"] == "cancel must be true or false"
        reply = ask(sb, cmd="retire", lim=2, cancel=True)
        assert reply == {"ok": True, "lim": 2, "text": "LIM 2 stays in cluster cluster1; sb may "
                         "take it over again"}
        assert ask(sb, cmd="status")["retiring"] == []


def test_ctl_retire_is_refused_for_a_regular_servers_own_lim(running: daemon.Agent) -> None:
    reply = ask(running, cmd="retire", lim=2)
    assert reply["ok"] is False
    assert reply["error"] == ("lim2 is LIM 2's regular server: it keeps running LIM 2 when the "
                              "LIM leaves the cluster")


def test_fallback_orders_are_refused_pending_cancelled_or_expire(tmp_path: Path) -> None:
    doc = standby_doc(tmp_path, 20800 + os.getpid() % 100, fallback="manual")
    with agent_thread(tmp_path, doc) as sb:
        wait_for(lambda: 2 in sb.local.active_lims())
        wait_for(lambda: sb.peers["lim2"].dead)
        reply = ask(sb, cmd="fallback", lim=2)
        assert reply["ok"] is False and reply["error"].startswith(
            "fallback of LIM 2 refused: lim2 has not been heard since this agent started; "
            "LIM 2 stays on sb. Order it again once lim2 is back, or order it with a wait")
        assert ask(sb, cmd="status")["fallback_orders"] == []
        wait_for(lambda: sb.peers["lim2"].dead)
        reply = ask(sb, cmd="fallback", lim=2, wait=30)
        assert reply["ok"] is True and reply["pending"] is True
        assert reply["result"] == "fallback pending" and reply["expires_in_s"] == 30
        assert reply["text"].startswith("fallback of LIM 2 waits for lim2 to be ready: lim2 has "
                                        "not been heard since this agent started")
        [order] = ask(sb, cmd="status")["fallback_orders"]
        assert order["state"] == "pending" and order["regular"] == "lim2"
        assert order["text"].startswith("fallback of LIM 2 waits for lim2 to be ready: ")
        assert ask(sb, cmd="status")["fallback_requests"] == [2]
        reply = ask(sb, cmd="fallback", lim=2, cancel=True)
        assert reply["text"] == "fallback of LIM 2 cancelled; LIM 2 stays on sb"
        again = ask(sb, cmd="fallback", lim=2, cancel=True)
        assert again["ok"] is False and "no fallback of LIM 2 is pending on sb" in again["error"]
        for wait in (0, True, "10", 1e9, -5):
            bad = ask(sb, cmd="fallback", lim=2, wait=wait)
            assert bad["ok"] is False and bad["error"].startswith(f"wait = {wait}: give the "
                                                                  "seconds"), bad
        wait_for(lambda: sb.peers["lim2"].dead)
        assert ask(sb, cmd="fallback", lim=2, wait=1)["pending"] is True
        wait_for(lambda: ask(sb, cmd="status")["fallback_orders_ended"][-1:] != [] and ask(
            sb, cmd="status")["fallback_orders_ended"][-1]["outcome"].startswith(
            "expired after 1 s: lim2 has not been heard"), timeout=5)
        st = ask(sb, cmd="status")
        assert st["fallback_orders"] == [] and 2 in sb.local.active_lims()
        assert [o["outcome"].split(":")[0] for o in st["fallback_orders_ended"]] == [
            "cancelled by the operator", "expired after 1 s"]
