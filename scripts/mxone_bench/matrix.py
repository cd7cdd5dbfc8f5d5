"""The fault matrix's machinery: a fresh cluster per row, the prober on the client, and
what a row measured (outage, two-owner time, where the LIMs ended, alarms, versions)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxone_lab import Lab, LabError
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
        self.current: Row | None = None  # the row being run (its inject may add notes)
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

    def row(self) -> Row:
        """The row being run."""
        assert self.current is not None
        return self.current

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
                self.current = row
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
