"""Soak benchmark: false failovers under load and loss, and the agent's cost with 10 peers.

Figures, not a test. Two parts, each in its own lab:

* soak: a cluster of lim1..lim3 + standby1 with the ``fastest`` preset (0.1 s x 3; ``--preset
  bfd``: 0.05 s x 3), 10% of frames dropped in the switch on every cluster port (both
  directions), both cores kept busy by two spinning processes, for SECONDS (default 600). A
  false failover is any LIM started on the standby, or any LIM not answering from its own
  regular server at the end. Near misses: a peer heard again after more than 2/3 of the
  detection time of silence (summed over every node's view of every peer).
* cost: 10 regular servers + standby1 with 1 s heartbeats (``fast``); the standby agent's
  RSS and CPU % over 60 s (it hears and judges all 10 peers).

Run: ``scripts/bench-failover-soak [--seconds N] [--only soak|cost] [--preset fastest|bfd]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from mxone_lab import Lab
from mxone_lab.spec import HostSpec, LabSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for tests.*
from tests.agent_lab.cluster import Cluster, answers_during  # noqa: E402

SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


PRESETS = {"fastest": 0.1, "bfd": 0.05}


def soak(seconds: float, preset: str = "fastest") -> None:
    interval = PRESETS[preset]
    with Lab.up() as lab:
        cluster = Cluster(lab, interval=interval, misses=3, fallback="manual")
        cluster.start()
        for lim, host in ((1, "lim1"), (2, "lim2"), (3, "lim3")):
            got = answers_during(lab, lim, 1.0)
            assert got == {f"LIM {lim} on {host}"}, (lim, got)
        for host in ("lim1", "lim2", "lim3", "standby1"):
            lab.faults.loss(host, 10)
        # The kernel's neighbour (ARP) entries of the heartbeat paths: an entry that fails
        # under loss holds every datagram to that peer until ARP resolves it again.
        # Ended by PID below (and by the lab's teardown in any case).
        neigh = {h: lab.popen(h, ["ip", "-ts", "monitor", "neigh"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
                 for h in ("lim1", "lim2", "lim3", "standby1")}
        # Bounded in time by their own clock; ended by PID below in any case.
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN, str(seconds + 5)]) for _ in range(2)]
        started = time.monotonic()
        try:
            print(f"soak: {preset} ({interval} s x 3), 10% loss on every cluster port, 2 "
                  f"spinning processes, {seconds:.0f} s ...", flush=True)
            time.sleep(seconds)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
            lab.faults.restore()
            for p in neigh.values():
                p.kill()
        unresolved = {h: [f"{h}: {line}" for line in p.communicate()[0].splitlines()
                          if " FAILED" in line or " INCOMPLETE" in line]
                      for h, p in neigh.items()}
        failed = {h: len(lines) for h, lines in unresolved.items()}
        elapsed = time.monotonic() - started
        st = cluster.status("standby1")
        failovers = [t for t in st["transitions"] if t.get("kind") == "failover"]
        ran_on_standby = [a for a in st["alarm_log"] if a.get("code") and
                          "running on standby" in a.get("name", "").lower()]
        drops = st["drops"]
        # a lease that lapses on a busy but healthy node is an outage of its own
        nodes = {h: cluster.status(h) for h in ("lim1", "lim2", "lim3", "standby1")}
        lapses = {h: n.get("lease_lapses") for h, n in nodes.items()}
        late = {h: n.get("tick_late_max_s") for h, n in nodes.items()}
        silences = {p["name"]: p.get("longest_silence_s") for p in st["peers"]}
        near = sum(p.get("near_misses", 0) for n in nodes.values() for p in n["peers"])
        longest = max((p.get("longest_silence_s") or 0.0, f"{h}<-{p['name']}")
                      for h, n in nodes.items() for p in n["peers"])
        declared = [line for h in ("lim1", "lim2", "lim3", "standby1") for line in
                    cluster.log(h).splitlines() if " dead (silent for " in line
                    or "did not run for a while" in line or "lapsed" in line]
        sched = {h: next((line.split(": ", 2)[-1] for line in cluster.log(h).splitlines()
                          if "for the loop thread" in line or "ordinary scheduling" in line),
                         "not said") for h in ("lim1", "lim2", "lim3", "standby1")}
        still = {lim: answers_during(lab, lim, 1.0) for lim in (1, 2, 3)}
        ok = all(still[lim] == {f"LIM {lim} on lim{lim}"} for lim in (1, 2, 3))
        print(f"soak: {preset}, {elapsed:.0f} s: false failovers {len(failovers)} (transitions on the "
              f"standby), 'LIM is running on standby server' alarms {len(ran_on_standby)}; "
              f"every LIM still on its own server: {'yes' if ok else 'NO: ' + json.dumps({k: sorted(v) for k, v in still.items()})}; "
              f"heartbeats dropped as bad at the standby: {drops}; lease lapses on the "
              f"healthy nodes: {lapses} (total {sum(v or 0 for v in lapses.values())}); "
              f"longest silence of each peer at the standby (s): {silences}; longest "
              f"silence anywhere {longest[0]:.3f} s ({longest[1]}) of {3 * interval:.2f} s "
              f"detection; near misses (silences over 2/3 of it) {near}; the latest "
              f"tick of each node (s): {late}; neighbour entries of the cluster ports "
              f"seen INCOMPLETE or FAILED on each node: {failed}")
        print(f"soak: the loop thread's scheduling: {sched}")
        for line in declared[-10:]:
            print(f"soak: {line}")
        for line in [x for lines in unresolved.values() for x in lines][-10:]:
            print(f"soak: neighbour {line}")
        cluster.stop_all()


def cost(seconds: float = 60.0) -> None:
    regulars = tuple(f"lim{i}" for i in range(1, 11))
    spec = LabSpec(hosts=(*(HostSpec(n, 10 + i) for i, n in enumerate(regulars, start=1)),
                          HostSpec("standby1", 40), HostSpec("client", 100)))
    with Lab.up(spec) as lab:
        cluster = Cluster(lab, regulars=regulars, interval=1.0, misses=3)
        cluster.start()
        pid = cluster.status("standby1")["pid"]

        def ticks() -> int:
            stat = lab.exec("standby1", f"cat /proc/{pid}/stat").stdout
            return sum(map(int, stat.rsplit(")", 1)[1].split()[11:13]))

        time.sleep(3.0)
        t0, c0 = time.monotonic(), ticks()
        time.sleep(seconds)
        cpu = (ticks() - c0) / 100 / (time.monotonic() - t0) * 100
        rss = int(lab.exec("standby1", f"grep VmRSS /proc/{pid}/status").stdout.split()[1])
        peers = len(cluster.status("standby1")["peers"])
        print(f"cost: standby agent with {peers} peers at 1 s heartbeats: CPU {cpu:.2f}% of a "
              f"core over {seconds:.0f} s (target <= 1%), RSS {rss / 1024:.1f} MB (target <= 64 MB)")
        cluster.stop_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-failover-soak", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="soak duration (default 600)")
    ap.add_argument("--only", choices=("soak", "cost"))
    ap.add_argument("--preset", choices=tuple(PRESETS), default="fastest",
                    help="the soak's timers (default: fastest)")
    args = ap.parse_args(argv)
    if args.only in (None, "cost"):
        cost()
    if args.only in (None, "soak"):
        soak(args.seconds, args.preset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
