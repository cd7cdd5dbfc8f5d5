"""The metrics: the Prometheus text format (0.0.4) read back by a strict parser, the
heartbeat counters moved by refused datagrams of each reason, and ``ctl metrics`` and the
textfile of a running agent."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxone_agent import daemon, metrics, service_node
from mxone_agent.control_client import ctl_request
from mxone_agent.heartbeat import Heartbeat, encode
from mxone_agent.heartbeat_link import HeartbeatLink
from mxone_agent.model import LimRun, Readiness, Role
from mxone_agent.network import RecordingNetwork
from mxone_agent.notify_hooks import HookCounts

from tests.agent.builders import cluster_config
from tests.agent.test_daemon import STALL_PROOF, loopback_doc, write_files

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"'
SAMPLE = re.compile(rf"({NAME})(?:\{{((?:{LABEL},)*(?:{LABEL})?)\}})? (\S+)")
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, str], Series]:
    """The families' types and every sample of ``text``; AssertionError on anything the
    text format 0.0.4 does not allow (or that node_exporter's textfile collector refuses:
    timestamps, a family split up, a sample before its TYPE, a series twice)."""
    assert text.endswith("\n") and not text.endswith("\n\n"), "one newline at the end"
    types: dict[str, str] = {}
    helps: set[str] = set()
    series: Series = {}
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and name not in helps and doc, line
            assert re.fullmatch(r"(?:[^\\\n]|\\\\|\\n)*", doc), f"bad escape: {line}"
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert name not in types and kind in ("counter", "gauge"), line
            assert name in helps, f"HELP of {name} comes first"
            assert kind != "counter" or name.endswith("_total"), line
            types[name] = kind
            current = name
            continue
        assert not line.startswith("#") and line.strip(), f"unexpected line {line!r}"
        m = SAMPLE.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        name, inner, value = m.group(1), m.group(2) or "", m.groups()[-1]
        assert name == current, f"{name} outside its family (after TYPE {current})"
        labels = frozenset((k, v) for k, v in re.findall(LABEL, inner))
        assert len(labels) == inner.count('="'), line
        key = (name, labels)
        assert key not in series, f"series twice: {line}"
        number = float(value)  # NaN, +Inf and -Inf included
        assert value in ("NaN", "+Inf", "-Inf") or math.isfinite(number), line
        series[key] = number
    return types, series


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def test_render_escapes_and_writes_numbers_as_the_format_wants() -> None:
    fam = metrics.Family("x_total", "counter", 'back\\slash and\nnewline')
    fam.add(3, peer='a "quoted"\\ \nname').add(0.25, peer="").add(math.inf, peer="b")
    text = metrics.render([fam, metrics.Family("y", "gauge", "no samples"),
                           metrics.Family("z", "gauge", "plain").add(math.nan)])
    assert text == ('# HELP x_total back\\\\slash and\\nnewline\n# TYPE x_total counter\n'
                    'x_total{peer="a \\"quoted\\"\\\\ \\nname"} 3\nx_total{peer=""} 0.25\n'
                    'x_total{peer="b"} +Inf\n# HELP y no samples\n# TYPE y gauge\n'
                    '# HELP z plain\n# TYPE z gauge\nz NaN\n')
    _, series = parse(text)
    assert value(series, "x_total", peer='a \\"quoted\\"\\\\ \\nname') == 3


# ---- the heartbeat counters ---------------------------------------------------------------

KEY = bytes.fromhex("ab" * 32)
LIM3_IP = "10.77.0.33"


def link_of_lim2() -> HeartbeatLink:
    cfg = cluster_config("lim2")
    link = HeartbeatLink(lambda: cfg, lambda: KEY, lambda: None, lambda n, t: None)
    link.incarnation = 5
    return link


def from_lim3(seq: int, *, receiver: str = "lim2", echo: int = 5, key: bytes = KEY) -> bytes:
    return encode(Heartbeat(cluster="cluster1", sender="lim3", receiver=receiver,
                            incarnation=9, seq=seq, generation=1, role=Role.REGULAR,
                            readiness=Readiness.READY, echo=echo,
                            lims=(LimRun(3),)), key)


def test_counters_move_for_each_reason_per_peer() -> None:
    link = link_of_lim2()  # peers lim3, lim4, sb: each heartbeat of lim3 to lim2 is 3 apart
    for data, ip in [
        (from_lim3(1), "10.77.0.99"),              # no peer's address: forged, peer ""
        (from_lim3(1, key=b"x" * 32), LIM3_IP),     # bad MAC: forged
        (b"MXHB\x02garbage", LIM3_IP),              # malformed
        (from_lim3(1, receiver="lim4"), LIM3_IP),   # meant for another server: replayed
        (from_lim3(2, echo=4), LIM3_IP),            # for an earlier incarnation: stale
        (from_lim3(5), LIM3_IP),                    # accepted
        (from_lim3(5), LIM3_IP),                    # the same again: replayed
        (from_lim3(8), LIM3_IP),                    # accepted, the next one: nothing lost
        (from_lim3(17), LIM3_IP),                   # accepted, 2 heartbeats to lim2 lost
    ]:
        link.accept(data, ip, time.monotonic())
    text = metrics.render(metrics.heartbeat_families(cluster_config("lim2"), link,
                                                     link.status(time.monotonic())))
    types, series = parse(text)
    refused = {(dict(k[1])["peer"], dict(k[1])["reason"]): v for k, v in series.items()
               if k[0] == "mxone_heartbeats_refused_total" and v}
    assert refused == {("", "forged"): 1, ("lim3", "forged"): 1, ("lim3", "malformed"): 1,
                       ("lim3", "replayed"): 2, ("lim3", "stale"): 1}
    assert value(series, "mxone_heartbeats_received_total", peer="lim3") == 3
    assert value(series, "mxone_heartbeats_lost_total", peer="lim3") == 2
    assert value(series, "mxone_heartbeats_received_total", peer="lim4") == 0
    assert value(series, "mxone_peer_alive", peer="lim3") == 1
    assert value(series, "mxone_peer_alive", peer="lim4") == 0
    assert types["mxone_heartbeats_lost_total"] == "counter"
    # status keeps its totals
    assert link.drops == {"forged": 2, "replayed": 2, "stale": 1, "malformed": 1}


def test_a_peer_declared_dead_counts_a_death_and_its_detection_time() -> None:
    link = link_of_lim2()
    t0 = time.monotonic()
    link.accept(from_lim3(1), LIM3_IP, t0)
    link.judge(t0 + 3.5, lambda: None)  # 3 s detection
    link.judge(t0 + 4.0, lambda: None)  # still dead: no second death
    _, series = parse(metrics.render(metrics.heartbeat_families(
        cluster_config("lim2"), link, link.status(t0 + 4))))
    assert value(series, "mxone_peer_deaths_total", peer="lim3") == 1
    assert value(series, "mxone_peer_detection_seconds", peer="lim3") == 3.5
    assert value(series, "mxone_detection_period_seconds") == 3.0


# ---- the other families, from a status ------------------------------------------------------

def test_lims_transitions_alarms_and_sync_from_a_status() -> None:
    cfg = cluster_config("sb")
    status = {
        "incarnation": 4, "tick_late_max_s": 0.01, "lease_lapses": 0,
        "lims": [{"lim": 2, "server": "lim2", "owner": "standby"},
                 {"lim": 3, "server": "lim3", "owner": "regular"},
                 {"lim": 4, "server": "lim4", "owner": "unknown"}],
        "transitions": [
            {"lim": 2, "kind": "failover", "ok": True, "detected": "2026-12-02T10:00:00.000Z",
             "decided": "2026-12-02T10:00:00.010Z", "alias_up": "2026-12-02T10:00:00.050Z",
             "first_garp": "2026-12-02T10:00:00.060Z", "service_up": "2026-12-02T10:00:01.500Z"},
            {"lim": 3, "kind": "failover", "ok": False, "detected": "2026-12-02T10:00:00.000Z",
             "decided": "2026-12-02T10:00:00.020Z", "alias_up": None, "first_garp": None,
             "service_up": None}],
        "alarms": [{"code": "lim-running-on-standby", "severity": 3, "lim": 2}],
        "sync": {"enabled": True, "lims": [
            {"lim": 2, "last_success": "2026-12-02T09:59:00.000Z", "failures": 0},
            {"lim": 3, "last_success": None, "failures": 2}]},
        "peers": [],
    }
    now = metrics.epoch("2026-12-02T10:01:00.000Z")
    assert now is not None
    text = metrics.agent_text(cfg, status, link_of_lim2(), HookCounts(), version="9.9.9",
                              started=now - 60, now_wall=now)
    types, series = parse(text)
    assert value(series, "mxone_lim_location", lim="2", server="sb") == 1
    assert value(series, "mxone_lim_location", lim="2", server="lim2") == 0
    assert value(series, "mxone_lim_location", lim="3", server="lim3") == 1
    assert value(series, "mxone_lim_owner", lim="4", owner="unknown") == 1
    assert value(series, "mxone_transition_takeover_seconds", lim="2", kind="failover") == 1.5
    assert value(series, "mxone_transition_step_seconds", lim="2", kind="failover",
                 step="first_garp") == 0.06
    assert value(series, "mxone_transition_ok", lim="3", kind="failover") == 0
    assert value(series, "mxone_transition_takeover_seconds", lim="3", kind="failover") == 0.02
    assert value(series, "mxone_alarms_active", code="lim-running-on-standby",
                 severity="3") == 1
    assert value(series, "mxone_alarms_active", code="standby-out-of-order", severity="2") == 0
    assert value(series, "mxone_alarm_active", code="lim-running-on-standby", severity="3",
                 lim="2") == 1
    assert value(series, "mxone_sync_age_seconds", lim="2") == 120
    assert value(series, "mxone_sync_last_ok", lim="2") == 1
    assert value(series, "mxone_sync_last_ok", lim="3") == 0
    assert ("mxone_sync_age_seconds", frozenset({("lim", "3")})) not in series
    assert value(series, "mxone_agent_info", version="9.9.9", server="sb", cluster="cluster1",
                 role="standby") == 1
    assert value(series, "mxone_notify_hook_runs_total", result="timeout") == 0
    assert types["mxone_lim_location"] == "gauge"


# ---- a running agent -------------------------------------------------------------------------

@pytest.fixture
def agent(tmp_path: Path) -> Iterator[daemon.Agent]:
    doc = loopback_doc("lim2", port=16000 + os.getpid() % 900)
    doc["timers"] = dict(STALL_PROOF)
    cfg, sec = write_files(tmp_path, doc)
    (tmp_path / "textfile").mkdir()
    a = daemon.Agent(cfg, sec, str(tmp_path / "state"), str(tmp_path / "agent.sock"),
                     RecordingNetwork, run_dir=str(tmp_path / "run"), alarm_file=None,
                     notify_dir=None, metrics_file=str(tmp_path / "textfile" / "mxone.prom"))
    a.metrics._every = 0.2
    a.start()
    t = threading.Thread(target=a.run, daemon=True)
    t.start()
    try:
        yield a
    finally:
        a.stop_flag = True
        t.join(timeout=5)
        a.close()
        for lim in a.config.lims:
            service_node.stop(lim.lim, str(tmp_path / "run"))


def test_ctl_metrics_and_the_textfile_of_a_running_agent(agent: daemon.Agent) -> None:
    reply = ctl_request(agent.control_path, {"cmd": "metrics"})
    assert reply["ok"] is True
    types, series = parse(reply["text"])
    assert value(series, "mxone_agent_up") == 1
    assert value(series, "mxone_agent_incarnation") == agent.incarnation
    assert sum(v for (name, labels), v in series.items() if name == "mxone_lim_owner"
               and ("lim", "2") in labels) == 1
    path = agent.metrics.path
    assert path is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and agent.metrics.written < 2:
        time.sleep(0.05)
    assert agent.metrics.written >= 2  # rewritten every few seconds (0.2 s here)
    file_types, _ = parse(path.read_text())
    assert file_types == types
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    agent.metrics.stop()  # as the agent does when it stops
    assert not path.exists()  # no agent, no metrics


def test_no_textfile_without_its_directory(tmp_path: Path, agent: daemon.Agent) -> None:
    agent.metrics.path = tmp_path / "absent" / "mxone.prom"
    agent.metrics._due = 0
    time.sleep(0.5)
    assert not agent.metrics.path.parent.exists()
