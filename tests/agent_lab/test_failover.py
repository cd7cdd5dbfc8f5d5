"""Failover and fallback with real agents, real services and a client in the lab."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest
from mxone_lab import Lab

from tests.agent_lab.cluster import (
    STANDBY,
    Cluster,
    alias,
    answers_during,
    eventually,
    wait_answer,
)

pytestmark = pytest.mark.lab
MARGIN = 5.0  # generous: process start-up on a loaded 2-core machine


@pytest.fixture
def cluster(lab: Lab) -> Iterator[Cluster]:
    c = Cluster(lab)
    yield c
    c.stop_all()


def test_boot_every_regular_runs_its_lim(cluster: Cluster) -> None:
    cluster.start()
    for n in (1, 2, 3):
        ok, out = wait_answer(cluster.lab, n, f"lim{n}", timeout=10)
        assert ok, out
    eventually(lambda: [x["owner"] for x in cluster.status(STANDBY)["lims"]] == ["regular"] * 3,
               5, "the standby sees every LIM on its regular server")
    st = cluster.status(STANDBY)
    # "stale": heartbeats sent before their sender heard this agent's incarnation (boot)
    assert {k: v for k, v in st["drops"].items() if k != "stale"} == {
        "forged": 0, "replayed": 0, "malformed": 0}


def test_agent_and_service_killed_standby_takes_over(cluster: Cluster) -> None:
    cluster.start()
    assert wait_answer(cluster.lab, 2, "lim2")[0]
    t0 = time.monotonic()
    cluster.kill_agent("lim2")
    cluster.kill_service("lim2", 2)
    ok, out = wait_answer(cluster.lab, 2, STANDBY, timeout=cluster.detection + MARGIN)
    assert ok, out + cluster.log(STANDBY)
    eventually(lambda: cluster.lim_row(STANDBY, 2)["here"] == "active", MARGIN,
               "the standby reports LIM 2 loaded")
    st = cluster.status(STANDBY)
    row = next(x for x in st["lims"] if x["lim"] == 2)
    assert row["owner"] == "standby"
    assert [a["name"] for a in st["alarms"]] == ["LIM is running on standby server"]
    t = st["transitions"][-1]
    assert t["kind"] == "failover" and t["lim"] == 2 and t["first_garp"] and t["service_up"]
    print(f"outage seen by the client within {time.monotonic() - t0:.2f} s")


def test_killed_regular_comes_back_automatic_fallback(cluster: Cluster) -> None:
    cluster.start()
    assert wait_answer(cluster.lab, 2, "lim2")[0]
    cluster.kill_agent("lim2")
    cluster.kill_service("lim2", 2)
    assert wait_answer(cluster.lab, 2, STANDBY, timeout=cluster.detection + MARGIN)[0]
    cluster.start_agent("lim2")
    ok, out = wait_answer(cluster.lab, 2, "lim2", timeout=cluster.detection + MARGIN)
    assert ok, out + cluster.log(STANDBY) + cluster.log("lim2")
    eventually(lambda: cluster.lim_row(STANDBY, 2)["owner"] == "regular", MARGIN,
               "the standby sees LIM 2 back on lim2")
    st = cluster.status(STANDBY)
    assert st["alarms"] == []
    assert [a["severity"] for a in st["alarm_log"]] == [3, 0]
    assert [t["kind"] for t in st["transitions"]] == ["failover", "fallback"]


def test_link_down_then_up(cluster: Cluster) -> None:
    cluster.start()
    assert wait_answer(cluster.lab, 2, "lim2")[0]
    cluster.lab.faults.link_down("lim2")
    ok, out = wait_answer(cluster.lab, 2, STANDBY, timeout=cluster.detection + MARGIN)
    assert ok, out
    cluster.lab.faults.link_up("lim2")
    # lim2 kept LIM 2 while cut off; it hears the standby runs it, stops it (split brain),
    # then automatic fallback brings it back.
    ok, out = wait_answer(cluster.lab, 2, "lim2", timeout=cluster.detection + 2 * MARGIN)
    assert ok, out + cluster.log("lim2")
    kinds = [t["kind"] for t in cluster.status("lim2")["transitions"]]
    assert "split-brain" in kinds, kinds
    eventually(lambda: cluster.runs(STANDBY) == {}, MARGIN, "the standby gives LIM 2 back")


def client_entry(lab: Lab, lim: int) -> str:
    """The MAC the client's neighbour table gives for LIM ``lim``'s alias ('' if none)."""
    words = lab.exec("client", f"ip neigh show {alias(lim)} dev eth0").stdout.split()
    return words[words.index("lladdr") + 1].lower() if "lladdr" in words else ""


def test_a_split_brain_over_the_client_is_pointed_at_the_side_that_keeps(lab: Lab) -> None:
    """lim2, cut off, kept LIM 2 while the standby took it over. Back, its copy may point
    the client at itself before it stops (its refresh or an ARP reply: here the client's
    entry is set to lim2's MAC). The standby keeps LIM 2 (manual fallback) and announces
    it again the moment lim2's copy is gone, so the client reaches it at once rather than
    when its entry goes stale. This cluster has no periodic refresh to hide the gap."""
    cluster = Cluster(lab, interval=0.5, fallback="manual",
                      garp={"burst": 3, "second_burst_after": 1.0, "refresh_interval": None})
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2")[0]
        lab.faults.link_down("lim2")
        assert wait_answer(lab, 2, STANDBY, timeout=cluster.detection + MARGIN)[0]
        time.sleep(1.5)  # the standby's second burst is over: nothing more is due from it
        lim2_mac, standby_mac = lab.hosts["lim2"].mac.lower(), lab.hosts[STANDBY].mac.lower()
        lab.exec("client", f"ip neigh replace {alias(2)} lladdr {lim2_mac} dev eth0 "
                           "nud reachable")
        assert client_entry(lab, 2) == lim2_mac
        lab.faults.link_up("lim2")
        eventually(lambda: cluster.runs("lim2") == {}, cluster.detection + MARGIN,
                   "lim2 stops its copy after hearing the standby runs LIM 2")
        eventually(lambda: client_entry(lab, 2) == standby_mac, 2.0,
                   "the standby announces LIM 2 again")
        assert answers_during(lab, 2, 1.0) == {"LIM 2 on standby1"}
        assert "no longer claimed elsewhere" in cluster.log(STANDBY)
    finally:
        cluster.stop_all()


@pytest.mark.parametrize("stop_service", [True, False], ids=["whole-server", "agent-only"])
def test_sigstop_longer_than_detection(lab: Lab, stop_service: bool) -> None:
    cluster = Cluster(lab, fallback="manual")
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2")[0]
        pid = cluster.procs["lim2"].pid
        svc = lab.exec("lim2", "cat /run/mxone/service-lim2.pid").stdout.strip()
        lab.exec("lim2", f"kill -STOP {pid}" + (f" {svc}" if stop_service else ""))
        try:
            eventually(lambda: cluster.runs(STANDBY).get(2) == "active",
                       cluster.detection + MARGIN, "the standby takes LIM 2 over")
        finally:
            lab.exec("lim2", f"kill -CONT {pid} {svc}")
        # After one detection period (plus process scheduling) lim2 has heard the standby
        # and stopped: from then on only the standby answers.
        eventually(lambda: cluster.runs("lim2") == {}, cluster.detection + MARGIN,
                   "lim2 stops LIM 2 after hearing the standby runs it")
        assert answers_during(lab, 2, 1.5) == {"LIM 2 on standby1"}
        assert cluster.lim_row(STANDBY, 2)["owner"] == "standby"
        assert cluster.lim_row("lim2", 2)["owner"] == "standby"
        # manual fallback: stays until ordered
        code, reply = cluster.ctl(STANDBY, "fallback", "2")
        assert code == 0, reply
        ok, out = wait_answer(lab, 2, "lim2", timeout=MARGIN)
        assert ok, out
        assert cluster.status(STANDBY)["fallback_requests"] == []
    finally:
        cluster.stop_all()


@pytest.mark.parametrize("fallback", ["automatic", "manual"])
def test_partition_regular_and_standby(lab: Lab, fallback: str) -> None:
    cluster = Cluster(lab, fallback=fallback)
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2")[0]
        lab.faults.partition("lim2", STANDBY)
        eventually(lambda: cluster.runs(STANDBY).get(2) == "active",
                   cluster.detection + MARGIN, "the standby takes LIM 2 over")
        assert cluster.runs("lim2") == {2: "active"}  # both run it while partitioned
        lab.faults.restore()
        eventually(lambda: cluster.runs("lim2") == {} or cluster.runs(STANDBY) == {},
                   cluster.detection + MARGIN, "one side stops after healing")
        if fallback == "automatic":
            ok, out = wait_answer(lab, 2, "lim2", timeout=MARGIN)
            assert ok, out
            eventually(lambda: cluster.runs(STANDBY) == {}, MARGIN, "standby released LIM 2")
        else:
            ok, out = wait_answer(lab, 2, STANDBY, timeout=MARGIN)
            assert ok, out
            assert cluster.runs("lim2") == {}
            assert cluster.ctl(STANDBY, "fallback", "2")[0] == 0
            assert wait_answer(lab, 2, "lim2", timeout=MARGIN)[0]
        kinds = [t["kind"] for t in cluster.status("lim2")["transitions"]]
        assert "split-brain" in kinds
    finally:
        cluster.stop_all()


def test_a_loading_lim_shows_as_loading_until_its_service_is_up(lab: Lab) -> None:
    from tests.agent_lab.cluster import alias

    base = [sys.executable, "-m", "mxone_agent", "service"]
    tail = ["--lim", "2", "--run-dir", "/run/mxone"]
    services = {2: {"start": [*base, "start", *tail, "--alias", alias(2),
                              "--load-seconds", "2"],
                    "stop": [*base, "stop", *tail], "status": [*base, "status", *tail]}}
    cluster = Cluster(lab, services=services)
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2", timeout=10)[0]
        cluster.kill_agent("lim2")
        cluster.kill_service("lim2", 2)
        eventually(lambda: cluster.runs(STANDBY).get(2) == "loading",
                   cluster.detection + MARGIN, "the standby shows LIM 2 loading")

        def standby_runs_seen_by_lim1() -> list:
            return next(p for p in cluster.status("lim1")["peers"] if p["name"] == STANDBY)[
                "runs"]

        eventually(lambda: standby_runs_seen_by_lim1() == [
            {"lim": 2, "mode": "active", "loading": True, "fenced": False}], 1.5,
            "lim1 hears that the standby loads LIM 2")
        ok, out = wait_answer(lab, 2, STANDBY, timeout=2 + MARGIN)
        assert ok, out
        eventually(lambda: cluster.runs(STANDBY).get(2) == "active", MARGIN,
                   "LIM 2 is loaded on the standby")
    finally:
        cluster.stop_all()


def test_a_frozen_standby_does_not_take_over_when_it_resumes(lab: Lab) -> None:
    """The late-wakeup rule: a standby that was not running (SIGSTOP) and heard nothing
    meanwhile must not count its own absence as its peers' silence."""
    cluster = Cluster(lab, interval=1.0)  # 3 s detection: room to lift the cut after SIGCONT
    try:
        cluster.start()
        eventually(lambda: [x["owner"] for x in cluster.status(STANDBY)["lims"]] ==
                   ["regular"] * 3, 10, "the standby sees every LIM on its regular server")
        pid = cluster.procs[STANDBY].pid
        lab.exec(STANDBY, f"kill -STOP {pid}")
        lab.faults.cut(STANDBY)
        time.sleep(cluster.detection + 2.0)
        lab.exec(STANDBY, f"kill -CONT {pid}")
        time.sleep(0.3)
        lab.faults.restore()
        time.sleep(2.0)
        st = cluster.status(STANDBY)
        assert st["transitions"] == [], st["transitions"]
        assert cluster.runs(STANDBY) == {}
        assert all(p["liveness"] == "alive" for p in st["peers"])
    finally:
        cluster.stop_all()
