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
import subprocess
import sys
from pathlib import Path

from mxone_bench.injections import (
    all_agents_at_once,
    bandwidth,
    clock_skew,
    garp_dropped,
    higher_priority_fails_later,
    kill_agent,
    link_down,
    loss,
    partition_regular_standby,
    random_halves,
    reboot_loop,
    replayed_heartbeats,
    sigstop_regular,
    ssh_dropped_during_a_deploy,
    standby_dies_running_a_lim,
    standby_disk_full,
    two_regulars_at_once,
)
from mxone_bench.matrix import Matrix, Result, Row
from mxone_lab import Lab, LabError

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
