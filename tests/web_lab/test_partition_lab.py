"""The PM/SNM pair cut in two, master | standby alone, while the cluster's agents run and
a client writes through the VIP: the standby's hook learns from the witness (lim2, through
its own agent) that the master is alive, keeps its database a standby and gives the VIP
up; the master goes on writing; healed, the pair has one primary and every committed row.
Then the master really dies: the same rule lets the standby take over at once.

The cluster: lim1 (the master's server) and lim2 regular, standby1 its standby, agents at
``fast`` timers (1 s x 3). The client probes the VIP's ARP answers throughout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from mxone_lab import Lab
from mxone_lab.pair import CLIENT, MASTER, STANDBY, VIP, Pair, eventually, records, spec
from mxone_lab.probe import Prober
from mxone_web.stack import keepalived

from tests.agent_lab.cluster import Cluster
from tests.conftest import systemd_lab_up

pytestmark = pytest.mark.lab

#: Seconds the partition lasts: past keepalived's detection, the witness window (2 x 1 s
#: + 0.5 s), the check's two failures and the master's degradation to asynchronous.
PARTITION = 16.0
TAKEOVER_MARGIN = 2.5


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Pair, Cluster]]:
    with systemd_lab_up(spec()) as lab:
        p = Pair(lab)
        p.configure()
        cluster = Cluster(lab, regulars=(MASTER, "lim2"), interval=1.0, misses=3)
        try:
            cluster.start()
            yield p, cluster
        finally:
            cluster.stop_all()


def journal(lab: Lab, host: str) -> str:
    return lab.exec(host, "journalctl -t mxone-web --no-pager -o cat").stdout


def holds_vip(lab: Lab, host: str) -> bool:
    return f" {VIP}/" in lab.exec(host, "ip -o -4 addr show dev eth0").stdout


def mac(lab: Lab, host: str) -> str:
    return lab.hosts[host].mac.lower()


def test_partition_master_standby_alone_keeps_one_primary_and_every_row(
    pair: tuple[Pair, Cluster],
) -> None:
    p, cluster = pair
    lab = p.lab
    p.synchronous()
    p.serves(MASTER)
    witness = eventually("lim2 tells standby1 that it hears lim1", lambda: next(
        (r["heard_by_s_ago"] for r in cluster.status(STANDBY)["peers"]
         if r["name"] == MASTER and "lim2" in r["heard_by_s_ago"]), None))
    assert witness["lim2"] < 2.5
    with Prober(lab, CLIENT, [VIP], duration=120) as probe:
        writer = p.client("write", "partition", "90")
        time.sleep(1.0)
        t0 = time.monotonic()
        lab.faults.partition(MASTER, STANDBY)
        held = eventually("standby1 holds back from the partition",
                          lambda: "a partition between the two" in journal(lab, STANDBY),
                          timeout=20)
        assert held
        gave_up = eventually("standby1 gave the VIP up", lambda: not holds_vip(lab, STANDBY),
                             timeout=10)
        assert gave_up
        t_gave_up = time.monotonic()
        roles = []
        while time.monotonic() < t0 + PARTITION:
            roles.append(lab.exec(STANDBY, ["su", "postgres", "-c", "psql -tAc 'SELECT "
                                            "pg_is_in_recovery()'"]).stdout.strip())
            time.sleep(0.5)
        t_heal = time.monotonic()
        lab.faults.restore()
        p.synchronous(timeout=45)
        eventually("standby1 sees the partition is over", lambda: "no longer held back (the "
                   "partition is over" in journal(lab, STANDBY), timeout=15)
        answers = records(writer)
        log = probe.stop()
    # The standby's database stayed a standby all through: never a second primary.
    assert roles and set(roles) == {"t"}, roles
    said = journal(lab, STANDBY)
    assert "became MASTER but lim1 is alive (lim2 heard it" in said, said[-2000:]
    assert "promoting the standby database" not in said
    # From the client's side: once standby1 gave the VIP up, lim1 alone answered for it.
    assert log.answering_macs(VIP, t_gave_up + 0.5, t_heal) == {mac(lab, MASTER)}
    assert log.two_owner_rounds(VIP, t_gave_up + 0.5, t_heal) == []
    both = log.two_owner_rounds(VIP, t0, t_gave_up)
    # The master went on committing rows while cut off from its standby (asynchronously,
    # said in its journal), and every committed row is on both servers after the heal.
    ids = {a["id"] for a in answers if "id" in a}
    during = [a for a in answers if "id" in a and t_gave_up < a["t"] < t_heal]
    assert during and all(a["server"] == MASTER for a in during), during[:3]
    assert "degraded to asynchronous replication" in journal(lab, MASTER)
    assert p.status(MASTER)["db_role"] == "primary"
    assert p.status(STANDBY)["db_role"] == "standby"
    on_master = {r["id"] for r in p.page()["rows"]}
    on_standby = {r["id"] for r in p.page(str(lab.host(STANDBY).ip))["rows"]}
    assert ids <= on_master and ids <= on_standby, sorted(ids - (on_master & on_standby))
    failed = [a for a in answers if "error" in a]
    print(f"\n[pmsnm] partition lim1|standby1 for {t_heal - t0:.1f} s: standby1 held back "
          f"{held and 'after ' + format(t_gave_up - t0, '.1f')} s (VIP given up); two owners "
          f"in {len(both)} ARP rounds before that, none after; {len(ids)} rows committed, "
          f"{len(during)} of them while partitioned, {len(failed)} writes refused; healed to "
          "one primary (lim1), every committed row on both")


def test_master_dead_is_taken_over_at_once_with_the_witnesses_asked(
    pair: tuple[Pair, Cluster],
) -> None:
    p, cluster = pair
    lab = p.lab
    p.synchronous()
    before = journal(lab, STANDBY)
    t0 = time.monotonic()
    p.kill_master()
    p.serves(STANDBY, timeout=30)
    outage = time.monotonic() - t0
    eventually("standby1's database is the primary", lambda: p.page()["role"] == "primary",
               timeout=15)
    promoted = time.monotonic() - t0
    bound = keepalived.DETECTION_SECONDS + TAKEOVER_MARGIN
    said = journal(lab, STANDBY)[len(before):]
    print(f"\n[pmsnm] with the witnesses asked, the VIP answered from standby1 {outage:.2f} s "
          f"after the kill, its database primary at {promoted:.2f} s (bound {bound:.2f} s)")
    assert "promoting the standby database" in said, said
    assert "partition" not in said and "no cluster agent answers" not in said
    assert promoted < bound


def test_automatic_fallback_takes_the_vip_back_only_once_the_master_caught_up(
    pair: tuple[Pair, Cluster],
) -> None:
    """After the kill: the master comes back with its old primary. Made automatic
    (Reconfigure Fallback on both), its keepalived would take the VIP back at once; the
    hook holds it back while its database is an old primary, and once it has rejoined as
    the synchronous standby, the master takes the VIP back by itself with every row."""
    p, cluster = pair
    lab = p.lab
    assert p.page()["server"] == STANDBY
    writer = p.client("write", "automatic", "120")
    p.bring_back()
    for host, role in ((STANDBY, "standby"), (MASTER, "master")):
        p.stack(host, "reconfigure-fallback", role, fallback="automatic")
    eventually("lim1 holds back with its old primary", lambda: "held back: the database here "
               "is an old primary (timeline 1)" in journal(lab, MASTER), timeout=20)
    served = []
    for _ in range(12):  # the old primary never serves the VIP, even for a moment
        served.append(p.page().get("server"))
        time.sleep(0.5)
    assert set(served) == {STANDBY}, served
    assert not holds_vip(lab, MASTER)
    t0 = time.monotonic()
    p.stack(MASTER, "rejoin", "master")
    p.serves(MASTER, timeout=40)
    eventually("lim1's database is the primary", lambda: p.page()["role"] == "primary",
               timeout=15)
    took = time.monotonic() - t0
    answers = records(writer)
    ids = {a["id"] for a in answers if "id" in a}
    assert ids and ids <= {r["id"] for r in p.page()["rows"]}, "a committed row was lost"
    said = journal(lab, MASTER)
    assert "no longer held back" in said and "promoting the standby database" in said
    p.stack(STANDBY, "rejoin", "standby")
    p.synchronous()
    print(f"\n[pmsnm] automatic fallback: lim1 held back while its database was the old "
          f"primary; rejoined, it took the VIP back by itself {took:.1f} s after the rejoin "
          f"began; {len(ids)} rows committed meanwhile, none lost")


def test_without_an_agent_to_ask_a_split_brain_is_reported_and_no_row_dropped(
    pair: tuple[Pair, Cluster],
) -> None:
    """The standby's cluster agent is dead, so the partition rule cannot be applied: the
    standby promotes on keepalived's word alone (logged) while the master writes on. Healed,
    the master keeps the VIP, the standby's primary is fenced, and the hook reports the
    conflict; every row acknowledged by either side is still on that side."""
    p, cluster = pair
    lab = p.lab
    p.synchronous()
    p.serves(MASTER)
    cluster.kill_agent(STANDBY)
    writer = p.client("write", "split", "60")
    time.sleep(1.0)
    lab.faults.partition(MASTER, STANDBY)
    eventually("standby1 promotes on keepalived's word alone", lambda: "no cluster agent "
               "answers" in journal(lab, STANDBY) and p.status(STANDBY)["db_role"] == "primary",
               timeout=30)
    time.sleep(6.0)  # both write, each on its own timeline
    lab.faults.restore()
    report = eventually("standby1 reports the conflict", lambda: next(
        (line for line in journal(lab, STANDBY).splitlines() if line.startswith("conflict: ")),
        None), timeout=30)
    answers = records(writer)
    assert report.startswith("conflict: lim1's primary (timeline ") and \
        "rows written here since are not on lim1's" in report, report
    p.serves(MASTER)
    by_server: dict[str, set[int]] = {MASTER: set(), STANDBY: set()}
    for a in answers:
        if "id" in a:
            by_server[a["server"]].add(a["id"])
    kept = {MASTER: {r["id"] for r in p.page(str(lab.host(MASTER).ip))["rows"]},
            STANDBY: {r["id"] for r in p.page(str(lab.host(STANDBY).ip))["rows"]}}
    for server, ids in by_server.items():
        assert ids <= kept[server], f"{server} dropped rows it acknowledged: {ids - kept[server]}"
    assert p.status(STANDBY)["db_role"] == "primary" and not holds_vip(lab, STANDBY)
    print(f"\n[pmsnm] split brain without the standby's agent: lim1 acknowledged "
          f"{len(by_server[MASTER])} rows, standby1 {len(by_server[STANDBY])}; healed, lim1 "
          f"keeps the VIP and standby1 reported: {report}")
