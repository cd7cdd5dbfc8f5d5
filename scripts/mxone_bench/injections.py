"""The faults of the matrix, one function (or one maker of a function) per row: each
injects its fault into the lab, waits, heals or repairs, and returns the partition windows
in which two owners are allowed."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mxone_lab import LabError, heartbeats
from mxone_lab.probe import Prober

from mxone_bench.matrix import NODES, PY, ROOT, Matrix

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for tests.*
from tests.agent_lab.cluster import Cluster, alias  # noqa: E402


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
    m.row().notes[:] = [
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
        m.row().notes[:] = [
            "sync refused, alarm raised: " + (next(
                (r.get("last_error") or "" for r in c.status("lim2")["sync"]["lims"]
                 if r["lim"] == 2), "")[:50])]
        versions = m.versions()  # read while the small disk is still what the standby sees
        m.row().notes.append(
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
    m.row().notes[:] = [f"sync refused: {err[:60]}"]
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
    m.row().notes[:] = [
        f"{3 * len(frames)} replayed, {counted} counted as replayed, {transitions} transitions "
        f"during the replay ({restarts} after the restarts before it)"]
    assert counted == 3 * len(frames) and transitions == 0, m.row().notes[0]
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
    m.row().notes[:] = [
        f"tool exit {proc.returncode} ({failed[0] if failed else 'no step failed'}), repair "
        f"exit {repaired.returncode}: {outcome}; nodes at {sorted(set(gens.values()))}"]
    if set(gens.values()) != {after} or (not landed and not same) or repaired.returncode:
        raise LabError(m.row().notes[0])
    return []
