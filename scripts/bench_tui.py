"""bench-tui: how quickly the menus start and answer a key, and what status costs
(figures, not a test).

Start: time from spawning `mxone_maintenance` in a pty until the main menu is on screen.
Keystroke: time from a typed character until it shows on screen (pty + pyte), and the
same without a terminal (App.keypress + render) to separate urwid's drawing from the tty.
Status: on lim1 of a 20-host lab with the real agent deployed, for one cluster (9
servers) and two (18 servers):
  * cold: the whole `mxone_maintenance cluster status --json` command (a new process, a new
    SSH connection to every server), as a script would run it;
  * refresh: one more status of an open tool (its SSH connections kept), as the menus' Show
    status refreshes itself; with LIM 1's CPU time per server.
For each, the per-server cost and a linear projection for MX-ONE's largest system, 124 LIMs
(13 clusters, 137 servers). All hosts share this machine's cores, so the per-server figures
also carry the servers' own work, which on real servers runs in parallel.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import pyte

ROWS, COLS = 30, 100
BIN = Path(sys.executable).with_name("mxone_maintenance")
TARGET_START, TARGET_KEY = 0.5, 0.050


class Term:
    def __init__(self, config: Path) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        env = {**os.environ, "TERM": "xterm", "ESCDELAY": "25"}
        self.child = pexpect.spawn(str(BIN), ["--config", str(config)], env=env,
                                   dimensions=(ROWS, COLS), timeout=5)
        self.child.delaybeforesend = None  # pexpect sleeps 50 ms before every send by default

    def wait_for(self, needle: str, timeout: float = 10.0) -> float:
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.002))
            except pexpect.TIMEOUT:
                pass
            if needle in "\n".join(self.screen.display):
                return time.perf_counter()
        raise SystemExit(f"bench-tui: {needle!r} never appeared on screen")

    def close(self) -> None:
        self.child.close(force=True)


def seed(config: Path) -> None:
    from mxone_maintenance import configfile
    from mxone_maintenance.model import Server, System

    servers = tuple(Server(f"lim{n}", f"10.0.{n // 200}.{n % 200 + 10}/16", "eth0", "lim", n)
                    for n in range(1, 125))
    config.write_text(configfile.dump(System(generation=1, servers=servers)))


def bench_start(config: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        term = Term(config)
        times.append(term.wait_for("4. Exit") - t0)
        term.close()
    return times


def bench_keys(config: Path, count: int) -> list[float]:
    term = Term(config)
    term.wait_for("4. Exit")
    term.child.send("\r")
    term.wait_for("1. Add a server to the system")
    term.child.send("\r")
    term.wait_for("Base IP/prefix")
    typed, times = "", []
    for i in range(count):
        ch = "abcdefghij"[i % 10]
        typed += ch
        t0 = time.perf_counter()
        term.child.send(ch)
        times.append(term.wait_for(f"Server name                    {typed}") - t0)
    term.close()
    return times


def bench_headless(config: Path, count: int) -> list[float]:
    from mxone_maintenance.service import Maintenance
    from mxone_menus.app import App

    app = App(Maintenance(config), hostname="bench")
    app.screen((COLS, ROWS))
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        app.keypress("down" if i % 2 == 0 else "up", (COLS, ROWS))
        app.screen((COLS, ROWS))
        times.append(time.perf_counter() - t0)
    return times


STATUS_SERVERS_124 = 124 + 13  # 124 regular LIM servers in 13 clusters of <= 10, + 13 standby

# Status refreshes of one open tool: the connections stay, as in the menus' Show status.
REFRESH = """
import json, statistics, sys, time
from mxone_maintenance import operations
b = operations.backend(ssh_key=sys.argv[1])
system = b.maintenance.system().validated()
b.operations.status(system)  # connect
times, cpu0 = [], time.process_time()
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    st = b.operations.status(system)
    times.append(time.perf_counter() - t0)
cpu = (time.process_time() - cpu0) / int(sys.argv[2])
running = sum(1 for c in st.clusters for s in c.servers if s.agent == "running")
print(json.dumps({"median": statistics.median(times), "cpu": cpu, "running": running}))
b.close()
"""


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _projection(name: str, points: list[tuple[int, float]]) -> str:
    (n1, t1), (n2, t2) = points
    per = (t2 - t1) / (n2 - n1)
    fixed = t1 - per * n1
    projected = fixed + per * STATUS_SERVERS_124
    return (f"{name}: per-server cost {per * 1e3:.1f} ms (fixed {fixed:.2f} s); projection for "
            f"124 LIMs ({STATUS_SERVERS_124} servers): {projected:.2f} s (target 2 s; "
            f"projection/target {projected / 2.0:.2f})")


def bench_status(runs: int) -> list[str]:
    from mxone_lab.lab import Lab
    from mxone_lab.spec import LabSpec

    out = []
    with Lab.up(LabSpec.with_hosts(20)) as lab:
        names = [f"lim{i}" for i in range(1, 20)]
        lab.exec("lim1", "mkdir -p /etc/mxone && cat > /etc/mxone/known_hosts",
                 input="".join(lab.hosts[n].known_hosts_line + "\n" for n in names))

        def admin(*args: str) -> str:
            r = lab.exec("lim1", [sys.executable, "-m", "mxone_maintenance", *args,
                                  "--ssh-key", str(lab.user_key_path)], timeout=300, check=False)
            if r.returncode != 0:
                raise SystemExit(f"bench-tui: {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
            return r.stdout

        for i in range(1, 18):
            admin("server", "add", f"lim{i}", lab.hosts[f"lim{i}"].cidr, "--lim", str(i),
                  *(("--new",) if i == 1 else ()))
        for sb in ("lim18", "lim19"):
            admin("server", "add", sb, lab.hosts[sb].cidr)
            admin("standby", "convert", sb)
        points, refresh = [], []
        for k, (sb, lims) in enumerate((("lim18", range(2, 10)), ("lim19", range(10, 18)))):
            admin("cluster", "create", f"c{k + 1}", "--standby", sb, "--timers", "fast",
                  *[a for n in lims for a in ("--lim", f"{n}:10.77.0.{100 + n}")])
            servers = 9 * (k + 1)
            admin("cluster", "status", "--json")  # warm: connections, caches
            times = []
            cpu0 = _children_cpu()
            for _ in range(runs):
                t0 = time.perf_counter()
                data = json.loads(admin("cluster", "status", "--json"))
                times.append(time.perf_counter() - t0)
            cold_cpu = (_children_cpu() - cpu0) / runs  # the tool's process on lim1 (+ nsenter)
            points.append((servers, statistics.median(times)))
            healthy = sum(1 for c in data["clusters"] for srv in c["servers"] if srv["agent"] == "running")
            out.append(f"cold cluster status, {servers:>2} servers ({k + 1} cluster(s)): median "
                       f"{points[-1][1]:.2f} s over {runs} runs (whole command on lim1; LIM 1 CPU "
                       f"{cold_cpu:.2f} s a run; {healthy} agents answered)")
            r = json.loads(lab.run_python("lim1", REFRESH, args=[str(lab.user_key_path), str(runs * 4)],
                                          timeout=300).stdout)
            refresh.append((servers, r["median"]))
            out.append(f"status refresh,      {servers:>2} servers: median {r['median'] * 1e3:.0f} ms "
                       f"over {runs * 4} refreshes; LIM 1 CPU {r['cpu'] * 1e3 / servers:.1f} ms per "
                       f"server ({r['running']} agents answered)")
    out.append(_projection("cold command", points))
    out.append(_projection("refresh (Show status)", refresh))
    return out


def line(name: str, xs: list[float], target: float) -> str:
    med, worst = statistics.median(xs), max(xs)
    return (f"{name:<38} median {med * 1e3:7.1f} ms  max {worst * 1e3:7.1f} ms  "
            f"(n={len(xs)}; target {target * 1e3:.0f} ms; median/target {med / target:.2f})")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as d:
        config = Path(d) / "system.toml"
        seed(config)
        print("bench-tui: a 124-LIM system config, terminal 100x30")
        print(line("start to main menu drawn (pty)", bench_start(config, 10), TARGET_START))
        print(line("keystroke to character shown (pty)", bench_keys(config, 60), TARGET_KEY))
        print(line("keystroke + render, headless", bench_headless(config, 200), TARGET_KEY))
    if "--no-status" not in sys.argv:
        for text in bench_status(runs=5):
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
