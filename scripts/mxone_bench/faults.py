"""Fault matrix: what a client sees of a 3-LIM cluster under every fault, one row each.

Figures, not a test. The lab's cluster is lim1, lim2, lim3 (LIMs 1-3, priorities 1-3,
automatic fallback) and standby1, at the ``fast`` preset unless ``--timers fastest``;
exchange-data sync is installed and every LIM has a version synced to the standby before
each row. A prober on the client (``mxone_lab.probe``, observer mode) sends an ARP request
for every alias every 100 ms and an ICMP echo every 10 ms through the client's own
neighbour cache. Each row starts from a fresh cluster (the lab reset), injects its fault,
waits until the LIMs have settled where they should be, and prints:

* outage: the longest gap in the client's echo replies from the alias of each LIM the fault
  touches - the reachability of the address, which the fence governs (an echo is answered
  by the kernel, not by the LIM's service); ``down``: the LIM runs nowhere by design, e.g.
  a lower priority the standby cannot take;
* two owners: seconds of ARP rounds in which two MACs answered for one alias, after the
  fault and outside a partition (the one case the vendor allows, printed apart as
  ``(partition)``) - the goal is 0;
* where each LIM runs once things settled (from the client's view), against where it should;
* alarms raised and cleared during the row (all nodes); exchange-data versions intact
  (every version that existed before is still there, byte for byte, and none is damaged).

A row passes when two-owner time outside a partition is 0, every LIM runs where it
should, and the versions are intact. ``--agent-lib DIR`` runs another agent (e.g. an
earlier commit's ``mxone_agent``, for a before/after figure); ``--only`` picks rows.
Run: ``scripts/bench-faults [--timers fast|fastest] [--only ROW,...] [--agent-lib DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxone_lab import Lab, LabError, heartbeats
from mxone_lab.probe import ProbeLog, Prober

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for tests.*
from tests.agent_lab.cluster import (  # noqa: E402
    KNOWN_HOSTS,
    SYNC_KEY,
    Cluster,
    alias,
    eventually,
    wait_answer,
)

REGULARS = ("lim1", "lim2", "lim3")
NODES = (*REGULARS, "standby1")
ROOT = "/var/opt/mxone/xdata"
ARP_EVERY = 0.1
HOME = {1: "lim1", 2: "lim2", 3: "lim3"}
PY = sys.executable
SYNC = {"interval": 86400, "retry_min": 5, "retry_max": 60, "clock_bound": 2.0,
        "timeout": 120, "key": SYNC_KEY, "known_hosts": KNOWN_HOSTS, "user": "root",
        "xdata_root": ROOT}

VERSIONS = r"""
import hashlib, json, sys
from pathlib import Path
from mxone_agent import xdata
root = Path(sys.argv[1])
out = {}
for p in xdata.versions(root):
    try:
        m = hashlib.sha256((p / "MANIFEST.json").read_bytes()).hexdigest()
    except OSError:
        m = None
    out[p.name] = [m, not xdata.verify(p)]
print(json.dumps(out))
"""

@dataclass
class Result:
    name: str
    outage: str
    two_owner_s: float
    partition_s: float
    location: dict[int, str]
    expected: dict[int, str]
    raised: int
    cleared: int
    xdata: str
    note: str = ""

    @property
    def passed(self) -> bool:
        return (self.two_owner_s == 0 and self.location == self.expected
                and self.xdata.startswith("intact"))


@dataclass
class Row:
    """What a fault does: ``inject`` runs it (it may wait, heal, repair) and returns the
    partition windows ``[(start, end)]`` in which two owners are allowed; ``expected`` is
    where each LIM must run in the end (``none``: nowhere); ``touched`` the LIMs whose
    outage is reported."""

    name: str
    inject: Callable[[Matrix, Any, Prober], list[tuple[float, float]]]
    expected: dict[int, str]
    touched: tuple[int, ...]
    settle: float = 30.0
    sync: bool = True
    serve_prefix: str = ""
    notes: list[str] = field(default_factory=list)
    fastest: dict[int, str] | None = None  # where the LIMs end at fastest, when different
    tool: bool = False  # the cluster is built and changed by mxone_maintenance on lim1


class Matrix:
    def __init__(self, lab: Lab, interval: float, misses: int,
                 agent_env: dict[str, str] | None) -> None:
        self.lab = lab
        self.interval, self.misses = interval, misses
        self.detection = interval * misses
        self.agent_env = agent_env
        self.macs = {lab.hosts[h].mac.lower(): h for h in NODES}
        self.keys = Path(tempfile.mkdtemp(prefix="mxone-bench-faults-"))
        self.aliases = {n: alias(n) for n in (1, 2, 3)}
        self._artefact: Path | None = None

    # ---- a fresh cluster ---------------------------------------------------------------

    def fresh(self, row: Row) -> Cluster:
        self.lab.reset()
        c = Cluster(self.lab, regulars=REGULARS, interval=self.interval, misses=self.misses,
                    fallback="automatic", sync=SYNC if row.sync else None)
        if row.sync:
            key_dir = Path(tempfile.mkdtemp(dir=self.keys))
            c.install_sync(key_dir, row.serve_prefix)
        c.start()
        for n in (1, 2, 3):
            ok, out = wait_answer(self.lab, n, HOME[n], timeout=20)
            if not ok:
                raise LabError(f"LIM {n} does not answer from {HOME[n]} at the start: {out}")
        if row.sync:
            for n in (1, 2, 3):
                self.backup(HOME[n], n)
            if not row.serve_prefix:  # a peer whose clock is off refuses even the first
                self.wait(lambda: all(self.synced(c, n) for n in (1, 2, 3)), 60,
                          "every LIM's first version synced to the standby")
        return c

    def fresh_by_tool(self) -> Any:
        """The system as an administrator builds it with mxone_maintenance on lim1: LIM 1
        on lim1 (no cluster), cluster c1 of lim2 and lim3 (their old base addresses are now
        the aliases) and standby1, fast timers, the real agent deployed over SSH."""
        from mxone_maintenance import artefact

        from tests.orchestration.conftest import Admin

        self.lab.reset()
        if self._artefact is None:
            cache = Path(tempfile.mkdtemp(dir=self.keys))
            cache.chmod(0o755)
            self._artefact = artefact.build(cache).path
            self._artefact.chmod(0o644)
        admin = Admin(self.lab, self._artefact)
        admin.build_system()
        self.aliases = {2: str(self.lab.hosts["lim2"].ip), 3: str(self.lab.hosts["lim3"].ip)}
        admin.settled_status()
        return admin

    def backup(self, node: str, lim: int) -> str:
        r = self.lab.exec(node, [PY, "-m", "mxone_agent", "service", "data_backup", "--lim",
                                 str(lim)], check=False, timeout=60)
        if r.returncode != 0:
            raise LabError(f"data backup of LIM {lim} on {node}: {r.stderr.strip()}")
        return r.stdout.split()[4]

    @staticmethod
    def synced(c: Cluster, lim: int) -> bool:
        try:
            rows = c.status(f"lim{lim}")["sync"]["lims"]
        except AssertionError:
            return False
        row = next((r for r in rows if r["lim"] == lim), {})
        return bool(row.get("last_success")) and row.get("last_error") is None

    @staticmethod
    def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
        return eventually(check, timeout, what, step=0.2)

    def versions(self) -> dict[str, dict[str, list]]:
        out = {}
        for h in NODES:
            r = self.lab.run_python(h, VERSIONS, args=[ROOT], check=False, timeout=60)
            out[h] = json.loads(r.stdout) if r.returncode == 0 else {}
        return out

    def alarm_log(self, c: Cluster, since: str) -> tuple[int, int]:
        raised = cleared = 0
        for h in NODES:
            try:
                log = c.status(h)["alarm_log"]
            except (AssertionError, KeyError, subprocess.TimeoutExpired):
                continue  # a dead agent: its alarms show on the node that holds them now
            for a in log:
                if a.get("severity", 0) > 0 and a.get("raised_at", "") >= since:
                    raised += 1
                elif a.get("severity", 1) == 0 and (a.get("cleared_at") or "") >= since:
                    cleared += 1
        return raised, cleared

    # ---- one row -------------------------------------------------------------------------

    def expected(self, row: Row) -> dict[int, str]:
        return row.fastest if row.fastest is not None and self.interval < 1 else row.expected

    def run(self, row: Row) -> Result:
        self.aliases = {n: alias(n) for n in (1, 2, 3)}
        handle = self.fresh_by_tool() if row.tool else self.fresh(row)
        before = self.versions()
        expected = self.expected(row)
        try:
            with Prober(self.lab, "client", list(self.aliases.values()), arp_every=ARP_EVERY,
                        icmp_every=0.01, arp_sender="observer", duration=600) as p:
                time.sleep(1.0)
                since = _iso_now()
                t0 = time.monotonic()
                windows = row.inject(self, handle, p)
                settled = self.settle(p, expected, row.settle)
                end = time.monotonic()
            log = p.stop()
            raised, cleared = (0, 0) if row.tool else self.alarm_log(handle, since)
            after = self.versions()
        finally:
            if not row.tool:
                handle.stop_all()
        return self.result(row, expected, log, t0, end, windows, settled, raised, cleared,
                           before, after)

    def owners(self, log: ProbeLog, lim: int, since: float, until: float) -> str:
        macs = log.answering_macs(self.aliases[lim], since, until)
        rounds = log.rounds_of(self.aliases[lim], since, until)
        if not macs and all(not r.macs for r in rounds):
            return "none"
        if len(macs) == 1 and all(len(r.macs) == 1 for r in rounds):
            return self.macs.get(next(iter(macs)), next(iter(macs)))
        return "+".join(sorted(self.macs.get(m, m) for m in macs)) or "?"

    def settle(self, p: Prober, expected: dict[int, str], timeout: float) -> bool:
        """Wait until, over the last second, every LIM is answered by the server it should
        be (or by nobody, for ``none``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            time.sleep(0.5)
            log = p.log()
            now = log.end or time.monotonic()
            if all(self.owners(log, n, now - 1.0, now) == want for n, want in expected.items()):
                return True
        return False

    def result(self, row: Row, expected: dict[int, str], log: ProbeLog, t0: float, end: float,
               windows: list[tuple[float, float]], settled: bool, raised: int, cleared: int,
               before: dict, after: dict) -> Result:
        inside = outside = 0
        for n, a in self.aliases.items():
            for t, _ in log.two_owner_rounds(a, since=t0, until=end):
                if any(a <= t <= b for a, b in windows):
                    inside += 1
                else:
                    outside += 1
        outages = []
        for n in row.touched:
            if expected.get(n) == "none":
                outages.append("down")
                continue
            o = log.outage(self.aliases[n], since=t0, until=end)
            outages.append("never" if o is None else f"{o:.2f}")
        location = {n: self.owners(log, n, end - 1.0, end) for n in self.aliases}
        return Result(row.name, "/".join(outages) or "0", round(outside * ARP_EVERY, 2),
                      round(inside * ARP_EVERY, 2), location, expected, raised, cleared,
                      _xdata(before, after), "; ".join(row.notes) + (
                          "" if settled else " (did not settle)"))


# ---- the faults -------------------------------------------------------------------------------

def _iso_now() -> str:
    from mxone_agent.alarms import iso_now
    return iso_now()


def _xdata(before: dict, after: dict) -> str:
    lost, damaged, new = [], [], 0
    for h, versions in before.items():
        for name, (sha, ok) in versions.items():
            now = after.get(h, {}).get(name)
            if now is None or now[0] != sha:
                lost.append(f"{h}:{name}")
        for name, (_sha, ok) in after.get(h, {}).items():
            if not ok:
                damaged.append(f"{h}:{name}")
            if name not in versions:
                new += 1
    if lost or damaged:
        return "LOST " + ", ".join(lost + [f"damaged {d}" for d in damaged])
    return "intact" + (f" (+{new} new)" if new else "")


def _kill(c: Cluster, node: str, sig: int = signal.SIGKILL) -> None:
    c.kill_agent(node, sig)


def _lim_of(node: str) -> int:
    return int(node.removeprefix("lim"))


def kill_agent(node: str, service_too: bool = False) -> Callable:
    def inject(m: Matrix, c: Cluster, p: Prober) -> list:
        _kill(c, node)
        if service_too:
            c.kill_service(node, _lim_of(node))
        time.sleep(m.detection + 1)
        return []
    return inject


def sigstop_regular(m: Matrix, c: Cluster, p: Prober) -> list:
    _kill(c, "lim2", signal.SIGSTOP)
    time.sleep(m.detection + 2)
    _kill(c, "lim2", signal.SIGCONT)
    return []


def link_down(m: Matrix, c: Cluster, p: Prober) -> list:
    start = time.monotonic()
    m.lab.faults.link_down("lim2")
    time.sleep(m.detection + 2)
    m.lab.faults.link_up("lim2")
    return [(start, time.monotonic() + m.detection + 1)]


def partition_regular_standby(m: Matrix, c: Cluster, p: Prober) -> list:
    start = time.monotonic()
    m.lab.faults.partition("lim2", "standby1")
    time.sleep(m.detection + 2)
    m.lab.faults.restore()
    return [(start, time.monotonic() + m.detection + 1)]


def random_halves(seed: int) -> Callable:
    def inject(m: Matrix, c: Cluster, p: Prober) -> list:
        rnd = random.Random(seed)
        nodes = list(NODES)
        rnd.shuffle(nodes)
        cut = rnd.randint(1, len(nodes) - 1)
        a, b = nodes[:cut], nodes[cut:]
        start = time.monotonic()
        for x in a:
            for y in b:
                m.lab.faults.partition(x, y)
        time.sleep(m.detection + 2)
        m.lab.faults.restore()
        return [(start, time.monotonic() + m.detection + 1)]
    return inject


def loss(percent: int, seconds: float) -> Callable:
    def inject(m: Matrix, c: Cluster, p: Prober) -> list:
        start = time.monotonic()
        for h in NODES:
            m.lab.faults.loss(h, percent)
        time.sleep(seconds)
        m.lab.faults.restore()
        # heavy loss is a partial partition: a peer that missed every copy of its peers'
        # heartbeats for a detection period acts as in a partition until it hears them again
        return [(start, time.monotonic() + m.detection + 1)]
    return inject


def bandwidth(kbit: int, seconds: float) -> Callable:
    def inject(m: Matrix, c: Cluster, p: Prober) -> list:
        for h in NODES:  # every cluster port: both directions of every cluster path
            m.lab.faults.rate(h, kbit)
        time.sleep(seconds)
        m.lab.faults.restore()
        return []
    return inject


def reboot_loop(times: int, every: float) -> Callable:
    def inject(m: Matrix, c: Cluster, p: Prober) -> list:
        for _ in range(times):
            _kill(c, "lim2")
            c.start_agent("lim2")
            c.wait_ready("lim2")
            time.sleep(every)
        return []
    return inject


def two_regulars_at_once(m: Matrix, c: Cluster, p: Prober) -> list:
    for node in ("lim2", "lim3"):
        _kill(c, node)
        c.kill_service(node, _lim_of(node))
    time.sleep(m.detection + 1)
    return []


def higher_priority_fails_later(m: Matrix, c: Cluster, p: Prober) -> list:
    _kill(c, "lim3")
    c.kill_service("lim3", 3)
    m.wait(lambda: c.runs("standby1").get(3) == "active", m.detection + 10,
           "the standby runs LIM 3")
    _kill(c, "lim2")
    c.kill_service("lim2", 2)
    time.sleep(m.detection + 1)
    why = c.lim_row("standby1", 3).get("why") or ""
    ROWS_BY_NAME["higher-priority regular fails while the standby runs a lower one"].notes[:] = [
        f"LIM 3: {why[:60]}..." if why else "no reason given for LIM 3"]
    return []


def standby_dies_running_a_lim(m: Matrix, c: Cluster, p: Prober) -> list:
    _kill(c, "lim2")
    c.kill_service("lim2", 2)
    m.wait(lambda: c.runs("standby1").get(2) == "active", m.detection + 10,
           "the standby runs LIM 2")
    _kill(c, "standby1")
    c.kill_service("standby1", 2)
    time.sleep(1.0)
    c.start_agent("lim2")
    c.wait_ready("lim2")
    return []


def all_agents_at_once(m: Matrix, c: Cluster, p: Prober) -> list:
    for node in NODES:
        c.kill_agent(node, signal.SIGTERM)
    for node in NODES:
        c.procs[node].wait(timeout=10)
    for node in NODES:  # all started before any is waited for
        c.start_agent(node)
    for node in NODES:
        c.wait_ready(node)
    return []


def garp_dropped(m: Matrix, c: Cluster, p: Prober) -> list:
    m.lab.faults.drop_garp([alias(n) for n in (1, 2, 3)])
    try:
        _kill(c, "lim2")
        c.kill_service("lim2", 2)
        m.settle(p, {1: "lim1", 2: "standby1", 3: "lim3"}, 90)
    finally:
        m.lab.faults.restore()
    return []


def standby_disk_full(m: Matrix, c: Cluster, p: Prober) -> list:
    small = "/var/opt/mxone/small"
    m.lab.exec("standby1", f"mkdir -p {small} && mount -t tmpfs -o size=4m tmpfs {small} && "
                           f"cp -a {ROOT}/. {small}/ && mount --bind {small} {ROOT}")
    try:
        big = ("import json, os, sys\nfrom pathlib import Path\nfrom mxone_agent import xdata, "
               "xdata_sync\nm = xdata.write_version(Path(sys.argv[1]), 2, {'reload/extensions."
               "json': json.dumps({'format': 1, 'lim': 2, 'extensions': ['4001']}).encode(), "
               "'sysdb/blob': os.urandom(6_000_000)})\nxdata_sync.notify_agent({'cmd': "
               "'backup', 'lim': 2, 'version': m.version})\n")
        m.lab.run_python("lim2", big, args=[ROOT], timeout=60)
        m.wait(lambda: any(a["name"].startswith("Standby cluster has failed")
                           for a in c.status("lim2")["alarms"]), 60, "the sync alarm")
        ROWS_BY_NAME["standby disk full during a sync"].notes[:] = [
            "sync refused, alarm raised: " + (next(
                (r.get("last_error") or "" for r in c.status("lim2")["sync"]["lims"]
                 if r["lim"] == 2), "")[:50])]
        versions = m.versions()  # read while the small disk is still what the standby sees
        ROWS_BY_NAME["standby disk full during a sync"].notes.append(
            f"standby versions of LIM 2 while full: "
            f"{sorted(v for v in versions['standby1'] if v.startswith('lim2-'))}")
    finally:
        m.lab.exec("standby1", f"umount {ROOT}; umount {small}", check=False)
    return []


def clock_skew(m: Matrix, c: Cluster, p: Prober) -> list:
    m.backup("lim2", 2)
    m.wait(lambda: any(a["name"].startswith("Standby cluster has failed")
                       for a in c.status("lim2")["alarms"]), 60, "the sync alarm")
    err = next((r.get("last_error") or "" for r in c.status("lim2")["sync"]["lims"]
                if r["lim"] == 2), "")
    ROWS_BY_NAME["clock skew during a sync"].notes[:] = [f"sync refused: {err[:60]}"]
    return []


def replayed_heartbeats(m: Matrix, c: Cluster, p: Prober) -> list:
    lab = m.lab
    frames = [f for h in ("lim2", "standby1") for f in heartbeats.record(lab, h, 2.0)]
    for node in NODES:
        c.kill_agent(node, signal.SIGTERM)
        c.procs[node].wait(timeout=10)
        c.start_agent(node)
    for node in NODES:
        c.wait_ready(node)
    time.sleep(m.detection)
    before = sum(c.status(n)["drops"]["replayed"] for n in NODES)
    # The restarts above have transitions of their own (at fastest, a restart outlasts the
    # lease: "lease retaken"); only those during the replay are the replay's.
    restarts = sum(len(c.status(n)["transitions"]) for n in NODES)
    heartbeats.replay(lab, frames, rounds=3)
    time.sleep(1.0)
    counted = sum(c.status(n)["drops"]["replayed"] for n in NODES) - before
    transitions = sum(len(c.status(n)["transitions"]) for n in NODES) - restarts
    ROWS_BY_NAME["replayed heartbeats"].notes[:] = [
        f"{3 * len(frames)} replayed, {counted} counted as replayed, {transitions} transitions "
        f"during the replay ({restarts} after the restarts before it)"]
    assert counted == 3 * len(frames) and transitions == 0, ROWS_BY_NAME[
        "replayed heartbeats"].notes[0]
    return []


def ssh_dropped_during_a_deploy(m: Matrix, admin: Any, p: Prober) -> list:
    """mxone_maintenance on lim1 changes cluster c1 (fallback type: a new generation to
    every node over SSH; about 1.5 s here) and standby1's SSH traffic is dropped 0.7 s in,
    for 8 s (the tool waits 4 s per command): measured, standby1 has its new config by then
    and its reload is what fails. The change is rolled back, the part standby1 missed is
    repaired once it answers again (``cluster repair``), no node's files differ from
    before, and the agents - whose heartbeats still pass - notice nothing."""
    from tests.orchestration.conftest import all_trees

    lab = m.lab
    trees = all_trees(lab)
    listed = admin.json("cluster", "list")
    gen = listed["generation"]
    now = next(c for c in listed["clusters"] if c["name"] == "c1")["fallback"]
    other = "automatic" if now == "manual" else "manual"
    cmd = [PY, "-m", "mxone_maintenance", "cluster", "set", "c1", "--fallback", other,
           "--timeout", "4", "--ssh-key", str(lab.user_key_path),
           "--agent-artefact", str(admin.artefact)]
    proc = lab.popen("lim1", cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.7)
    lab.faults.drop_ssh("standby1")
    time.sleep(8.0)
    lab.faults.restore()
    out, err = proc.communicate(timeout=300)
    failed = [ln.strip() for ln in (out + err).decode().splitlines() if "FAILED" in ln
              and ln.strip().startswith("[")]
    repaired = admin.run("cluster", "repair")
    after = admin.json("cluster", "list")["generation"]
    landed = after != gen
    gens = {h: json.loads(lab.exec(h, ["cat", "/etc/mxone/agent/node.json"]).stdout)[
        "generation"] for h in ("lim2", "lim3", "standby1")}
    same = trees == all_trees(lab)
    outcome = (f"landed everywhere (generation {gen} -> {after})" if landed else
               f"rolled back (generation {gen} kept), every node's files "
               f"{'unchanged' if same else 'CHANGED'}")
    ROWS_BY_NAME["SSH dropped during a deploy"].notes[:] = [
        f"tool exit {proc.returncode} ({failed[0] if failed else 'no step failed'}), repair "
        f"exit {repaired.returncode}: {outcome}; nodes at {sorted(set(gens.values()))}"]
    if set(gens.values()) != {after} or (not landed and not same) or repaired.returncode:
        raise LabError(ROWS_BY_NAME["SSH dropped during a deploy"].notes[0])
    return []


ALL = {1: "lim1", 2: "lim2", 3: "lim3"}
ROWS = [
    Row("kill -9 agent (regular)", kill_agent("lim2"), {**ALL, 2: "standby1"}, (2,)),
    Row("kill -9 agent and service (regular)", kill_agent("lim2", True),
        {**ALL, 2: "standby1"}, (2,)),
    Row("kill -9 agent (standby)", kill_agent("standby1"), ALL, (1, 2, 3)),
    Row("SIGSTOP agent beyond detection", sigstop_regular, ALL, (2,)),
    Row("link down (regular), then up", link_down, ALL, (2,)),
    Row("partition regular|standby, then heal", partition_regular_standby, ALL, (2,)),
    Row("random halves, then heal", random_halves(13), ALL, (1, 2, 3)),
    Row("30 % loss for 20 s", loss(30, 20.0), ALL, (1, 2, 3)),
    Row("bandwidth cap 256 kbit/s (tbf) for 15 s", bandwidth(256, 15.0), ALL, (1, 2, 3)),
    # at fastest every restart outlasts the lease and the detection time: the standby takes
    # LIM 2 over and the growing hold-down keeps it there while lim2 flaps
    Row("regular reboot loop (agent, 10 times)", reboot_loop(10, 2.0), ALL, (2,),
        fastest={**ALL, 2: "standby1"}),
    Row("two regulars fail at once", two_regulars_at_once,
        {1: "lim1", 2: "standby1", 3: "none"}, (2, 3)),
    Row("higher-priority regular fails while the standby runs a lower one",
        higher_priority_fails_later, {1: "lim1", 2: "standby1", 3: "none"}, (2, 3)),
    Row("standby dies while running a LIM", standby_dies_running_a_lim, ALL, (2,)),
    Row("all agents started at once", all_agents_at_once, ALL, (1, 2, 3)),
    Row("GARP dropped in the switch", garp_dropped, {**ALL, 2: "standby1"}, (2,), settle=90),
    Row("standby disk full during a sync", standby_disk_full, ALL, (2,)),
    Row("SSH dropped during a deploy", ssh_dropped_during_a_deploy, {2: "lim2", 3: "lim3"},
        (2, 3), sync=False, tool=True),
    Row("clock skew during a sync", clock_skew, ALL, (2,), serve_prefix="faketime -f +45s "),
    Row("replayed heartbeats", replayed_heartbeats, ALL, (1, 2, 3)),
]
ROWS_BY_NAME = {r.name: r for r in ROWS}


def _table(results: list[Result], timers: str) -> list[str]:
    lines = [f"bench-faults: 3-LIM cluster (lim1-3 + standby1), {timers}, automatic fallback; "
             "client: ARP every 100 ms, ICMP every 10 ms", "",
             f"{'fault':<66} {'outage s':>9} {'2 owners s':>10} {'(partition)':>11}  "
             f"{'LIMs after (1 2 3)':<28} {'alarms r/c':>10}  {'xdata':<16} result"]
    for r in results:
        where = " ".join(r.location.get(n, "-") for n in (1, 2, 3))
        if r.location != r.expected:
            where += " ≠ " + " ".join(r.expected.get(n, "-") for n in (1, 2, 3))
        lines.append(f"{r.name:<66} {r.outage:>9} {r.two_owner_s:>10.1f} "
                     f"{r.partition_s:>11.1f}  {where:<28} {f'{r.raised}/{r.cleared}':>10}  "
                     f"{r.xdata:<16} {'PASS' if r.passed else 'FAIL'}")
        if r.note:
            lines.append(f"{'':<4}{r.note}")
    passed = sum(r.passed for r in results)
    lines += ["", f"{passed}/{len(results)} rows pass"]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--timers", choices=("fast", "fastest"), default="fast")
    ap.add_argument("--only", help="comma-separated row numbers (1-based) or name prefixes")
    ap.add_argument("--agent-lib", help="run the agent from this lib dir (holding mxone_agent)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    rows = ROWS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        rows = [r for i, r in enumerate(ROWS, 1)
                if any(w == str(i) if w.isdigit() else r.name.startswith(w) for w in wanted)]
    if args.agent_lib:
        os.environ["MXONE_AGENT_LIB"] = str(Path(args.agent_lib).resolve())
    interval, misses = (1.0, 3) if args.timers == "fast" else (0.1, 3)
    try:
        lab = Lab.up()
    except LabError as e:
        print(f"bench-faults: no lab: {e}", file=sys.stderr)
        return 2
    results: list[Result] = []
    try:
        m = Matrix(lab, interval, misses, None)
        for i, row in enumerate(rows, 1):
            print(f"[{i}/{len(rows)}] {row.name} ...", flush=True)
            try:
                results.append(m.run(row))
            except (LabError, AssertionError, subprocess.SubprocessError, OSError) as e:
                results.append(Result(row.name, "?", 0.0, 0.0, {1: "?", 2: "?", 3: "?"},
                                      row.expected, 0, 0, "?", f"ERROR: {e}"[:300]))
            r = results[-1]
            print(f"    outage {r.outage} s, two owners {r.two_owner_s} s (partition "
                  f"{r.partition_s} s), LIMs {r.location}, alarms {r.raised}/{r.cleared}, "
                  f"xdata {r.xdata}: {'PASS' if r.passed else 'FAIL'} {r.note}", flush=True)
    finally:
        with contextlib.suppress(LabError):
            lab.down()
        import shutil
        shutil.rmtree(m.keys, ignore_errors=True)
    timers = f"{args.timers} ({interval:g} s x {misses})" + (
        f", agent from {args.agent_lib}" if args.agent_lib else "")
    print()
    print("\n".join(_table(results, timers)))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
