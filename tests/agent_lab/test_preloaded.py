"""A preloaded cluster (one regular server, the standby): the passive side is really blocked."""

from __future__ import annotations

import pytest
from mxone_lab import Lab

from tests.agent_lab.cluster import STANDBY, Cluster, answers_during, eventually, wait_answer

pytestmark = pytest.mark.lab
MARGIN = 5.0


@pytest.mark.parametrize("fallback", ["automatic", "manual"])
def test_preloaded_failover_and_fallback(lab: Lab, fallback: str) -> None:
    cluster = Cluster(lab, regulars=("lim1",), failover="preloaded", fallback=fallback)
    try:
        cluster.start()
        assert wait_answer(lab, 1, "lim1")[0]
        eventually(lambda: cluster.runs(STANDBY) == {1: "preloaded"}, MARGIN,
                   "the standby preloads LIM 1")
        sb_pid = lab.exec(STANDBY, "cat /run/mxone/service-lim1.pid").stdout.strip()
        tables = lab.exec(STANDBY, "nft list tables").stdout
        assert "table arp mxone_block_lim1" in tables and "table ip mxone_block_lim1" in tables
        # The passive side holds the alias, its service is bound, yet nobody reaches it.
        assert "10.77.0.51/24" in " ".join(lab.addresses(STANDBY))
        assert answers_during(lab, 1, 1.0) == {"LIM 1 on lim1"}

        cluster.kill_agent("lim1")
        cluster.kill_service("lim1", 1)
        ok, out = wait_answer(lab, 1, STANDBY, timeout=cluster.detection + MARGIN)
        assert ok, out + cluster.log(STANDBY)
        # activation kept the preloaded service: same PID, blocks gone
        assert lab.exec(STANDBY, "cat /run/mxone/service-lim1.pid").stdout.strip() == sb_pid
        assert "mxone_block_lim1" not in lab.exec(STANDBY, "nft list tables").stdout
        t = cluster.status(STANDBY)["transitions"][-1]
        assert t["kind"] == "failover" and t["service_up"] is None and t["first_garp"]

        cluster.start_agent("lim1")
        cluster.wait_ready("lim1")
        eventually(lambda: cluster.runs("lim1").get(1) is not None, MARGIN,
                   "lim1 runs LIM 1 again (passive first)")
        if fallback == "manual":
            eventually(lambda: cluster.runs("lim1") == {1: "preloaded"}, MARGIN,
                       "lim1 preloads LIM 1 while the standby runs it")
            assert answers_during(lab, 1, 1.0) == {"LIM 1 on standby1"}
            assert cluster.ctl(STANDBY, "fallback", "1")[0] == 0
        ok, out = wait_answer(lab, 1, "lim1", timeout=cluster.detection + MARGIN)
        assert ok, out + cluster.log("lim1")
        eventually(lambda: cluster.runs(STANDBY) == {1: "preloaded"}, MARGIN,
                   "the standby is passive again")
        assert answers_during(lab, 1, 1.0) == {"LIM 1 on lim1"}
    finally:
        cluster.stop_all()
