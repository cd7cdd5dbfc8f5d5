"""bench-tui: how quickly the menus start and answer a key, and what status costs
(figures, not a test).

Start: time from spawning `mxone_maintenance` in a pty until the main menu is on screen.
Keystroke: time from a typed character until it shows on screen (pty + pyte), and the
same without a terminal (App.keypress + render) to separate urwid's drawing from the tty.
Status: on lim1 of a 20-host lab with the real agent deployed, for one cluster (9
servers) and two (18 servers); with ``--status-hosts N`` on a lab of N hosts, one more
cluster of 9 servers at a time up to the largest that fits (N=47: 45 servers):
  * cold: the whole `mxone_maintenance cluster status --json` command (a new process, a new
    SSH connection to every server), as a script would run it;
  * refresh: one more status of an open tool (its SSH connections kept), as the menus' Show
    status refreshes itself; with LIM 1's CPU time per server.
For each, the per-server cost and a linear projection (least squares over the points) for
MX-ONE's largest system, 124 LIMs (13 clusters, 137 servers). At the largest point, where
the cold command's time goes: one fresh process on lim1 timing its phases (imports, config,
connecting to every server, the status round over the open connections), once with the
pool's parallelism and once one server at a time (the per-server cost without overlap). All
hosts share this machine's cores, so the per-server figures also carry the servers' own work
(each server's sshd CPU a connection is measured from /proc, and how busy the cores were),
which on real servers runs in parallel. The last lines give the verdict for 124 LIMs: (a) the cold time measured at the
largest lab, (b) the naive linear projection of the lab's points (every server's sshd on
these 2 cores), (c) a model of a real system, each server on its own CPU, built from the
measured pieces (LIM 1's fixed start and CPU per server, one server's latency, the
parallelism): the figure compared with the 2 s target (see :func:`real_system`).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    fixed, per = _fit(points)
    projected = fixed + per * STATUS_SERVERS_124
    return (f"{name}: per-server cost {per * 1e3:.1f} ms (fixed {fixed:.2f} s); projection for "
            f"124 LIMs ({STATUS_SERVERS_124} servers): {projected:.2f} s (target 2 s; "
            f"projection/target {projected / 2.0:.2f})")


# Where a cold status's time goes, in one fresh process on lim1 (argv: key, workers).
PHASES = """
import time
t0 = time.perf_counter()
import json, statistics, sys
from mxone_maintenance import operations, orchestrate
t_import = time.perf_counter()
b = operations.backend(ssh_key=sys.argv[1])
if int(sys.argv[2]):
    b.pool.max_workers = int(sys.argv[2])
system = b.maintenance.system().validated()
reach = orchestrate.targets(system)
names = [s.name for c in system.clusters for s in system.cluster_servers(c)]
t_config = time.perf_counter()
cpu_config = time.process_time()
failed = b.pool.connect_all([reach[n] for n in names])
t_connect = time.perf_counter()
cpu_connect = time.process_time()
st = b.operations.status(system)
t_status = time.perf_counter()
text = json.dumps(st.to_dict())
t_done = time.perf_counter()
out = {"import": t_import - t0, "config": t_config - t_import, "connect": t_connect - t_config,
       "status": t_status - t_connect, "render": t_done - t_status, "cpu": time.process_time(),
       "cpu_connect": cpu_connect, "cpu_config": cpu_config, "servers": len(names), "failed": len(failed),
       "workers": b.pool.max_workers,
       "per_connect": statistics.median(b.pool.connect_seconds.values() or [0.0])}
t = next(iter(b.pool._conns.values())).transport
out["algorithms"] = f"{t.remote_version}: {t.host_key_type} {t.local_cipher} {t.local_mac}"
phases = getattr(b.pool, "connect_phases", None)  # tcp, kex + host key, auth (when kept)
if phases:
    out["split"] = [statistics.median(p[i] for p in phases.values()) for i in range(3)]
t_again = time.perf_counter()
again = b.pool.run_all([reach[n] for n in names], operations.STATUS_COMMAND, timeout=20)
out["again"] = time.perf_counter() - t_again
out["from_file"] = sum(1 for r in again.values() if r.ok and r.stdout.split()[0].replace(
    ",", ".").replace(".", "", 1).isdigit())
print(json.dumps(out))
b.close()
"""


def _phases(lab: Any, key: str, workers: int) -> tuple[str, dict[str, Any]]:
    t0 = time.perf_counter()
    r = json.loads(lab.run_python("lim1", PHASES, args=[key, str(workers)], timeout=300).stdout)
    wall = time.perf_counter() - t0
    r["wall"] = wall
    n = r["servers"]
    split = ""
    if "split" in r:
        split = (" (per connection, median: TCP {:.1f} ms, key exchange + host key {:.1f} ms, "
                 "login {:.1f} ms)".format(*(x * 1e3 for x in r["split"])))
    return (f"  cold phases, {n} servers, {r['workers']} at a time: whole {wall:.2f} s (process "
            f"start + exit {wall - sum(r[k] for k in ('import', 'config', 'connect', 'status', 'render', 'again')):.2f}), "
            f"imports {r['import']:.2f}, config {r['config']:.2f}, connect {r['connect']:.2f} "
            f"({r['connect'] * 1e3 / n:.1f} ms/server; each {r['per_connect'] * 1e3:.0f} ms"
            f"{split}), status round {r['status']:.2f}, JSON {r['render']:.3f} s; CPU "
            f"{r['cpu']:.2f} s ({(r['cpu_connect'] - r['cpu_config']) * 1e3 / n:.1f} ms/server connecting, "
            f"{(r['cpu'] - r['cpu_connect']) * 1e3 / n:.1f} ms/server in the status round; "
            f"{r['failed']} failed; {r['algorithms']}; {r['from_file']} answered from "
            f"the agent's status file, in a second round of {r['again']:.2f} s)"), r


def _layout(hosts: int) -> list[tuple[str, list[int]]]:
    """Clusters of 9 servers (8 LIMs + a standby) on lim2..: (standby, LIM hosts) each;
    hosts=20 gives the original (lim18: 2..9, lim19: 10..17)."""
    count = (hosts - 2) // 9
    first_standby = hosts - count
    return [(f"lim{first_standby + k}", list(range(2 + 8 * k, 10 + 8 * k))) for k in range(count)]


def bench_status(runs: int, hosts: int = 20) -> list[str]:
    from mxone_lab.lab import Lab
    from mxone_lab.spec import LabSpec

    out = []
    layout = _layout(hosts)
    standbys = [sb for sb, _ in layout]
    with Lab.up(LabSpec.with_hosts(hosts), timeout=max(10.0, hosts / 2)) as lab:
        names = [f"lim{i}" for i in range(1, hosts)]
        lab.exec("lim1", "mkdir -p /etc/mxone && cat > /etc/mxone/known_hosts",
                 input="".join(lab.hosts[n].known_hosts_line + "\n" for n in names))

        def admin(*args: str) -> str:
            r = lab.exec("lim1", [sys.executable, "-m", "mxone_maintenance", *args,
                                  "--ssh-key", str(lab.user_key_path)], timeout=300, check=False)
            if r.returncode != 0:
                raise SystemExit(f"bench-tui: {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
            return r.stdout

        for i in range(1, hosts - len(standbys)):
            admin("server", "add", f"lim{i}", lab.hosts[f"lim{i}"].cidr, "--lim", str(i),
                  *(("--new",) if i == 1 else ()))
        for sb in standbys:
            admin("server", "add", sb, lab.hosts[sb].cidr)
            admin("standby", "convert", sb)
        points, refresh, cpu = [], [], []
        final: dict[str, Any] = {}
        for k, (sb, lims) in enumerate(layout):
            admin("cluster", "create", f"c{k + 1}", "--standby", sb, "--timers", "fast",
                  *[a for n in lims for a in ("--lim", f"{n}:10.77.0.{100 + n}")])
            servers = 9 * (k + 1)
            admin("cluster", "status", "--json")  # warm: connections, caches
            times = []
            cpu0, sshd0, busy0 = _children_cpu(), _sshd_cpu(lab), _machine_busy()
            for _ in range(runs):
                t0 = time.perf_counter()
                data = json.loads(admin("cluster", "status", "--json"))
                times.append(time.perf_counter() - t0)
            cold_cpu = (_children_cpu() - cpu0) / runs  # the tool's process on lim1 (+ nsenter)
            busy = _busy_share(busy0, _machine_busy())
            time.sleep(0.3)  # each sshd reaps its connections' processes
            sshd_cpu = (_sshd_cpu(lab) - sshd0) / (runs * servers)
            points.append((servers, statistics.median(times)))
            cpu.append((servers, cold_cpu))
            healthy = sum(1 for c in data["clusters"] for srv in c["servers"] if srv["agent"] == "running")
            out.append(f"cold cluster status, {servers:>2} servers ({k + 1} cluster(s)): median "
                       f"{points[-1][1]:.2f} s over {runs} runs (whole command on lim1; LIM 1 CPU "
                       f"{cold_cpu:.2f} s a run; the servers' sshd CPU {sshd_cpu * 1e3:.1f} ms a "
                       f"connection; this machine's cores {busy:.0%} busy meanwhile; {healthy} "
                       f"agents answered)")
            r = json.loads(lab.run_python("lim1", REFRESH, args=[str(lab.user_key_path), str(runs * 4)],
                                          timeout=300).stdout)
            refresh.append((servers, r["median"]))
            if k == len(layout) - 1 and hosts > 20:
                out.append(f"cold cluster status measured at {servers} servers ({hosts}-host "
                           f"lab): median {points[-1][1]:.2f} s")
                text, par = _phases(lab, str(lab.user_key_path), 0)
                out.append(text)
                text, seq = _phases(lab, str(lab.user_key_path), 1)
                out.append(text)
                final = {"servers": servers, "hosts": hosts, "measured": points[-1][1],
                         "runs": runs, "sshd": sshd_cpu, "par": par, "seq": seq, "busy": busy}
            out.append(f"status refresh,      {servers:>2} servers: median {r['median'] * 1e3:.0f} ms "
                       f"over {runs * 4} refreshes; LIM 1 CPU {r['cpu'] * 1e3 / servers:.1f} ms per "
                       f"server ({r['running']} agents answered)")
    out.append(_projection("cold command", points))
    out.append(_projection("refresh (Show status)", refresh))
    # LIM 1's own share: the servers' sshd work above runs on these same cores, on a real
    # system each server does it on its own.
    out.append(_projection("LIM 1 CPU of the cold command", cpu).replace(
        "projection for", "CPU seconds for"))
    if final:
        out.extend(_verdict(final, _fit(points)))
    return out


def _sshd_cpu(lab: Any) -> float:
    """CPU seconds so far of every lab host's sshd and of the processes it started and
    reaped (each connection's sshd, its shell)."""
    total = 0
    for h in lab.state.records.values():
        try:
            fields = Path(f"/proc/{h.get('sshd_pid')}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[int, int]:
    """(busy, all) jiffies of this machine's cores so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares: (fixed, per server)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    per = (sum((x - mean_x) * (y - mean_y) for x, y in points)
           / sum((x - mean_x) ** 2 for x, _ in points))
    return mean_y - per * mean_x, per


LIM1_CORES = 1
"""The cores LIM 1's share of a cold status can use: one, as the tool's connection threads
share one Python interpreter lock (a conservative figure: their kernel work is not bound)."""


def real_system(fixed: float, cpu: float, latency: float, workers: int, servers: int,
                cores: int = LIM1_CORES) -> float:
    """The cold status on a real system, where every server has its own CPU: LIM 1's fixed
    start, then the larger of LIM 1's CPU for every server (on its cores) followed by the
    last server's own latency, and the servers' latency in waves of ``workers``."""
    return fixed + max(servers * cpu / cores + latency, -(-servers // workers) * latency)


def _verdict(f: dict[str, Any], naive: tuple[float, float]) -> list[str]:
    par, seq, n = f["par"], f["seq"], f["servers"]
    fixed = par["wall"] - par["connect"] - par["status"] - par["again"]
    cpu = (par["cpu"] - par["cpu_config"]) / n
    latency = (seq["connect"] + seq["status"]) / n
    workers, big = par["workers"], STATUS_SERVERS_124
    model = real_system(fixed, cpu, latency, workers, big)
    shared = fixed + n * (cpu + f["sshd"]) / (os.cpu_count() or 1)
    naive_big = naive[0] + naive[1] * big
    rest = " (the rest: the agents, and waiting for a core)" if shared < f["measured"] else ""
    return [
        f"COLD STATUS FOR 124 LIMs ({big} servers), target 2 s:",
        f"  (a) measured: {n} servers on a {f['hosts']}-host lab, median {f['measured']:.2f} s "
        f"over {f['runs']} runs (the whole `cluster status --json` on lim1)",
        f"  (b) naive linear projection from the lab's points: {naive_big:.2f} s "
        f"({naive[1] * 1e3:.1f} ms a server); not the figure compared with the target: in the "
        f"lab every server's sshd ({f['sshd'] * 1e3:.1f} ms CPU a connection, measured) runs on "
        f"this machine's {os.cpu_count()} cores beside LIM 1 and every host's agent: the cores "
        f"were {f['busy']:.0%} busy during the cold runs at {n}, and LIM 1's and the sshds' "
        f"CPU alone come to fixed + N x (c + sshd) / cores = {shared:.2f} s of the measured "
        f"{f['measured']:.2f} s{rest}",
        f"  (c) real system, each server on its own CPU: T = F + max(N x c / k + L, "
        f"ceil(N / W) x L), LIM 1's fixed start F = {fixed:.2f} s, LIM 1's CPU c = "
        f"{cpu * 1e3:.1f} ms a server (measured at {workers} at a time) on k = {LIM1_CORES} "
        f"core (its threads share one interpreter lock), one server's connect + status L = "
        f"{latency * 1e3:.1f} ms (measured one at a time), W = {workers} at a time: "
        f"T({big}) = {model:.2f} s  <- THE FIGURE COMPARED WITH 2 s "
        f"({'under' if model < 2.0 else 'OVER'} the target; model/target {model / 2.0:.2f})",
        "      why (c): on a real system only LIM 1's own work is shared among the servers; "
        "each server's sshd runs on that server, which the lab cannot give 137 of",
    ]


def line(name: str, xs: list[float], target: float) -> str:
    med, worst = statistics.median(xs), max(xs)
    return (f"{name:<38} median {med * 1e3:7.1f} ms  max {worst * 1e3:7.1f} ms  "
            f"(n={len(xs)}; target {target * 1e3:.0f} ms; median/target {med / target:.2f})")


def _hosts(argv: list[str]) -> int:
    if "--status-hosts" not in argv:
        return 20
    hosts = int(argv[argv.index("--status-hosts") + 1])
    if not 20 <= hosts <= 90:
        raise SystemExit("bench-tui: --status-hosts N: a lab of 20 to 90 hosts")
    return hosts


def main() -> int:
    hosts = _hosts(sys.argv)
    if "--status-only" not in sys.argv:
        menus()
    if "--no-status" not in sys.argv:
        for text in bench_status(runs=5, hosts=hosts):
            print(text, flush=True)
    return 0


def menus() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as d:
        config = Path(d) / "system.toml"
        seed(config)
        print("bench-tui: a 124-LIM system config, terminal 100x30")
        print(line("start to main menu drawn (pty)", bench_start(config, 10), TARGET_START))
        print(line("keystroke to character shown (pty)", bench_keys(config, 60), TARGET_KEY))
        print(line("keystroke + render, headless", bench_headless(config, 200), TARGET_KEY))


if __name__ == "__main__":
    sys.exit(main())
