"""Benchmark: build and tear down a lab several times, and prove nothing is left behind.

Prints figures only; no time is asserted (machines differ). Exits 1 only if a run left
something behind (a namespace, a process, a mount, a directory, a change to the machine's
network), naming it; 2 if a lab could not be built at all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from mxone_lab import procs
from mxone_lab.errors import LabError
from mxone_lab.lab import Lab
from mxone_lab.spec import LabSpec
from mxone_lab.state import NETNS_DIR


def _machine_network() -> str:
    """The machine's own addresses, links and routes, to compare before and after."""
    parts = []
    for argv in (
        ["ip", "-o", "addr"],
        ["ip", "-o", "link"],
        ["ip", "route", "show", "table", "all"],
    ):
        parts.append(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    return "\n".join(parts)


def _one_run(spec: LabSpec, ssh_check: bool) -> tuple[float, float, float | None, list[str]]:
    """(build s, teardown s, ssh round over all hosts s or None, leftovers) of one lab."""
    started = time.perf_counter()
    lab = Lab.up(spec)
    built = time.perf_counter()
    ssh_s = None
    try:
        if ssh_check:
            t = time.perf_counter()
            results = lab.ssh_exec("client" if "client" in lab.hosts else spec.names[0], "hostname")
            ssh_s = time.perf_counter() - t
            bad = [n for n, r in results.items() if not r.ok or r.stdout.strip() != n]
            if bad:
                raise LabError(f"SSH check failed on {', '.join(bad)}")
        ns_ids = {
            procs.ns_id(str(NETNS_DIR / n))
            for n in os.listdir(NETNS_DIR)
            if n.startswith(lab.prefix)
        }
        pids = set(procs.members({i for i in ns_ids if i}))
        holders = [h.holder_pid for h in lab.hosts.values()]
    finally:
        t = time.perf_counter()
        lab.down()
        down_s = time.perf_counter() - t
    left: list[str] = []
    left += [f"namespace {n}" for n in os.listdir(NETNS_DIR) if n.startswith(lab.prefix)]
    left += [f"process {p} ({procs.comm(p)})" for p in sorted(pids) if procs.alive(p)]
    left += [f"mount namespace of holder {p}" for p in holders if procs.alive(p)]
    left += [f"mount {m}" for m in lab.mounts_left()]
    if lab.dir.exists():
        left.append(f"directory {lab.dir}")
    return built - started, down_s, ssh_s, left


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench-lab", description=__doc__)
    p.add_argument("--runs", type=int, default=5, help="builds to time (default 5)")
    p.add_argument(
        "--hosts",
        type=int,
        help="N hosts (lim1..lim<N-1> + client); default: the 5-host default lab",
    )
    args = p.parse_args(argv)
    try:
        spec = LabSpec.with_hosts(args.hosts) if args.hosts else LabSpec.default()
        before = _machine_network()
        builds, downs, sshs, leftovers = [], [], [], []
        for i in range(args.runs):
            b, d, s, left = _one_run(spec, ssh_check=(i == 0))
            builds.append(b)
            downs.append(d)
            if s is not None:
                sshs.append(s)
            leftovers += [f"run {i + 1}: {x}" for x in left]
        if _machine_network() != before:
            leftovers.append("the machine's own addresses, links or routes changed")
    except LabError as exc:
        print(f"bench-lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench-lab: interrupted", file=sys.stderr)
        return 130
    n = len(spec.hosts)
    print(
        f"{n}-host lab with sshd: build median {statistics.median(builds):.2f} s "
        f"max {max(builds):.2f} s ({args.runs} runs); teardown median "
        f"{statistics.median(downs):.2f} s max {max(downs):.2f} s; "
        f"left behind: {'nothing' if not leftovers else f'{len(leftovers)} thing(s)'}"
    )
    if sshs:
        print(f"SSH from client: login + `hostname` on all {n} hosts in {sshs[0]:.2f} s (one run)")
    for item in leftovers:
        print(f"LEFT BEHIND: {item}")
    return 1 if leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
