"""A regular server whose agent comes back with an older config generation than its peers'.

The cluster runs at generation 7 (automatic fallback, nothing locked). lim2's agent and its
LIM 2 service are killed; the standby takes LIM 2 over. lim2's agent then starts again from
a node config at generation 6 - what a server that was down while the maintenance tool
changed the cluster finds on its disk. Seen from the client (probe: an ARP round every
100 ms, an ICMP echo every 10 ms): never two owners; lim2 starts nothing and answers for
nothing while it is behind, its status says ``behind``, the standby keeps LIM 2 instead of
handing it back (automatic fallback would, at equal generations). Once lim2 gets the
generation-7 config (written, then ``ctl reload``), it is current again and the automatic
fallback brings LIM 2 home.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from mxone_lab import Lab
from mxone_lab.probe import Prober

from tests.agent_lab.cluster import STANDBY, Cluster, alias, eventually, wait_answer

pytestmark = pytest.mark.lab
MARGIN = 5.0
#: The "fast" preset's timers: 3 s detection. At the 0.3 s of "fastest", a loaded machine's
#: stall (lim2 silent for 0.3 s around its reload) makes the standby declare lim2 dead; lim2
#: then comes back a second time within the flap window and the automatic fallback of LIM 2
#: is held down for 30 s - the flap protection, not the generations this test is about.
TIMERS = {"interval": 1.0, "misses": 3}
WATCHED = 3  # detection periods lim2 is watched while behind (9 heartbeats)
OLD, NEW = 6, 7


def mac(lab: Lab, host: str) -> str:
    return lab.hosts[host].mac.lower()


def behind_hearing_all(cluster: Cluster, node: str) -> dict[str, Any] | None:
    """``node``'s status ``behind`` once it hears every peer (None before): it learns the
    peers' generations one heartbeat at a time."""
    st = cluster.status(node)
    heard = all(p["liveness"] == "alive" for p in st["peers"])
    return st["behind"] if heard else None


def test_regular_back_with_an_older_generation_starts_nothing(lab: Lab) -> None:
    cluster = Cluster(lab, regulars=("lim2", "lim3"), fallback="automatic", generation=NEW,
                      **TIMERS)
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2", timeout=cluster.detection + MARGIN)[0]
        with Prober(lab, "client", [alias(2)], duration=120) as p:
            cluster.kill_agent("lim2")
            cluster.kill_service("lim2", 2)
            ok, out = wait_answer(lab, 2, STANDBY, timeout=cluster.detection + MARGIN)
            assert ok, out + cluster.log(STANDBY)

            cluster.write("lim2", generation=OLD)
            cluster.start_agent("lim2")
            cluster.wait_ready("lim2")
            behind = eventually(lambda: behind_hearing_all(cluster, "lim2"),
                                cluster.detection + MARGIN,
                                "lim2 hears its peers and its status says it is behind")
            assert behind == {"generation": OLD, "current": NEW, "peers": ["lim3", STANDBY]}
            since = time.monotonic()
            time.sleep(WATCHED * cluster.detection)
            until = time.monotonic()
            lim2 = cluster.status("lim2")
            standby = cluster.status(STANDBY)
            assert lim2["behind"] == behind and lim2["generation"] == OLD
            assert cluster.runs("lim2") == {}, lim2["lims"]
            assert ("lim3, standby1 hold generation 7 and lim2 is at 6 (behind): lim2 starts "
                    "nothing but its own LIM while standby1 is dead, until the maintenance "
                    "tool brings it to generation 7") in lim2["last_decision"]
            assert "standby1 runs LIM 2; lim2 does not run LIM 2 while behind" in \
                lim2["last_decision"]
            assert standby["behind"] is None
            assert cluster.runs(STANDBY) == {2: "active"}
            assert ("lim2 is at generation 6, behind standby1's 7; standby1 keeps LIM 2 until "
                    "the maintenance tool brings lim2 to generation 7") in \
                standby["last_decision"], standby["last_decision"]
            assert not [t for t in standby["transitions"] if t["kind"] == "fallback"
                        and t.get("lim") == 2]
            log = p.log()
            assert log.answering_macs(alias(2), since, until) == {mac(lab, STANDBY)}

            cluster.write("lim2", generation=NEW)
            code, reply = cluster.ctl("lim2", "reload")
            assert code == 0 and reply.get("generation") == NEW, reply
            current = time.monotonic()
            ok, out = wait_answer(lab, 2, "lim2", timeout=cluster.detection + MARGIN)
            assert ok, out + cluster.log("lim2") + cluster.log(STANDBY)
            eventually(lambda: cluster.runs(STANDBY) == {}, MARGIN,
                       "the standby let LIM 2 go")
            assert cluster.status("lim2")["behind"] is None
            eventually(lambda: (log := p.log()).end is not None and log.owner_after(
                alias(2), log.end - 1.0) == mac(lab, "lim2"), MARGIN + 2.0,
                "lim2 alone answers for LIM 2 again", step=0.2)
        log = p.stop()
        assert log.two_owner_rounds(alias(2)) == [], log.two_owner_rounds(alias(2))[:5]
        assert log.answering_macs(alias(2), since, current) == {mac(lab, STANDBY)}
        print(f"\nlim2 behind: {behind}\nlim2 decided: {lim2['last_decision']}\n"
              f"standby1 decided: {standby['last_decision']}\n"
              f"after reload to {NEW}: {alias(2)} answered by lim2 only; two-owner rounds: 0 "
              f"of {len(log.rounds_of(alias(2)))}")
    finally:
        cluster.stop_all()
