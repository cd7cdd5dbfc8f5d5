"""No recording of heartbeats can be replayed, across agent restarts on either side.

Real heartbeats between lim2 and standby1 are recorded in the lab switch; then agents are
restarted, and the recording is replayed from the client with the original (spoofed)
source addresses. No peer's view changes: a live peer keeps its incarnation, a dead one
stays dead and its LIM stays where the cluster put it; every replayed datagram is counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from mxone_lab import Lab, heartbeats

from tests.agent_lab.cluster import STANDBY, Cluster, eventually, wait_answer

pytestmark = pytest.mark.lab
MARGIN = 5.0

def record(lab: Lab, seconds: float) -> list:
    return heartbeats.record(lab, "lim2", seconds)


def replay(lab: Lab, frames: list, rounds: int = 1) -> None:
    heartbeats.replay(lab, frames, rounds)


def peer(cluster: Cluster, node: str, name: str) -> dict:
    return next(p for p in cluster.status(node)["peers"] if p["name"] == name)


@pytest.fixture
def cluster(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    # fast timers by default: an agent restarted within its lease (2.5 s) is no failover
    interval = getattr(request, "param", 1.0)
    c = Cluster(lab, regulars=("lim2",), interval=interval, misses=3, fallback="manual")
    yield c
    c.stop_all()


def restart(cluster: Cluster, node: str) -> None:
    cluster.kill_agent(node, 15)
    cluster.procs[node].wait(timeout=10)
    cluster.start_agent(node)
    cluster.wait_ready(node)


def test_a_recording_replayed_after_restarts_on_both_sides_changes_nothing(
        cluster: Cluster) -> None:
    lab = cluster.lab
    ips = {str(lab.hosts[n].ip): n for n in ("lim2", STANDBY)}
    cluster.start()
    assert wait_answer(lab, 2, "lim2", timeout=MARGIN)[0]
    eventually(lambda: peer(cluster, STANDBY, "lim2")["liveness"] == "alive", MARGIN,
               "the standby hears lim2")
    frames = [f for f in record(lab, 3.0) if f[0] in ips and f[1] in ips]
    to_standby = [f for f in frames if ips[f[1]] == STANDBY]
    to_lim2 = [f for f in frames if ips[f[1]] == "lim2"]
    assert len(to_standby) >= 6 and len(to_lim2) >= 6, len(frames)

    for node in ("lim2", STANDBY):
        restart(cluster, node)
    eventually(lambda: peer(cluster, STANDBY, "lim2")["liveness"] == "alive" and peer(
        cluster, "lim2", STANDBY)["liveness"] == "alive", MARGIN, "both hear each other again")
    before = {n: cluster.status(n) for n in ("lim2", STANDBY)}
    replay(lab, frames, rounds=3)
    time.sleep(0.5)
    for node, other, sent in (("lim2", STANDBY, to_lim2), (STANDBY, "lim2", to_standby)):
        after = cluster.status(node)
        view = next(p for p in after["peers"] if p["name"] == other)
        was = next(p for p in before[node]["peers"] if p["name"] == other)
        assert view["liveness"] == "alive" and view["incarnation"] == was["incarnation"]
        grew = {k: after["drops"][k] - before[node]["drops"][k] for k in after["drops"]}
        assert grew == {"forged": 0, "replayed": 3 * len(sent), "stale": 0, "malformed": 0}
        assert after["transitions"] == before[node]["transitions"]
    assert cluster.lim_row(STANDBY, 2)["owner"] == "regular"


@pytest.mark.parametrize("cluster", [0.1], indirect=True, ids=["fastest"])
def test_a_replayed_peer_stays_dead_and_only_the_receiver_restarted(cluster: Cluster) -> None:
    """Only the standby restarts, then lim2 dies: replaying lim2's old heartbeats at the
    standby for two seconds neither brings lim2 back to life nor its LIM back to it."""
    lab = cluster.lab
    cluster.start()
    assert wait_answer(lab, 2, "lim2", timeout=MARGIN)[0]
    eventually(lambda: peer(cluster, STANDBY, "lim2")["liveness"] == "alive", MARGIN,
               "the standby hears lim2")
    lim2, sb = str(lab.hosts["lim2"].ip), str(lab.hosts[STANDBY].ip)
    frames = [f for f in record(lab, 1.0) if f[0] == lim2 and f[1] == sb]
    assert len(frames) >= 15
    restart(cluster, STANDBY)
    eventually(lambda: peer(cluster, STANDBY, "lim2")["liveness"] == "alive", MARGIN,
               "the restarted standby hears lim2")
    cluster.kill_agent("lim2")
    cluster.kill_service("lim2", 2)
    assert wait_answer(lab, 2, STANDBY, timeout=MARGIN)[0]
    before = cluster.status(STANDBY)
    replay(lab, frames, rounds=10)
    after = cluster.status(STANDBY)
    assert peer(cluster, STANDBY, "lim2")["liveness"] == "dead"
    assert cluster.lim_row(STANDBY, 2)["owner"] == "standby"
    assert after["drops"]["replayed"] - before["drops"]["replayed"] == 10 * len(frames)
    assert [t["kind"] for t in after["transitions"]] == ["failover"]
