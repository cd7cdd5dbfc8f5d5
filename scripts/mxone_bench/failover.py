"""Failover benchmark: client-visible outage, agent vs keepalived, in one lab.

Settings: the agent with the fast (1 s x 3), fastest (0.1 s x 3) and bfd (0.05 s x 3)
presets, each in regular failover (the standby *starts* the LIM's service) and in preloaded
failover (the passive service already runs, only the alias is unblocked); keepalived with
advert_int 1, 0.1 and 0.05 (its backup's service is already running, as preloaded's is).

For each system and timer setting, and each scenario (``killed``: the daemon and the
service of the active server are SIGKILLed; ``link-down``: its switch port goes down), it
runs N times: set up lim1 (active) + standby1, let it settle, start a UDP prober on the
client (a probe every 10 ms), inject the fault, and measure the outage: from the last reply
of lim1 to the first reply of standby1. It prints the median and max outage, the takeover
overhead (outage - configured detection time) and the ratio agent/keepalived at the equal
interval for every agent mode, the overhead split into its steps (from the standby agent's
own timeline of each run, matched with the client's replies on the wall clock: the last
reply -> the decision -> the foreign-owner probe read -> the alias up -> the first
gratuitous ARP -> the service up -> the client's first reply), plus the agent's RSS and
CPU% at idle. Figures only; nothing is asserted. Exit 2 if no lab.

keepalived: 2.2.7 from Debian, VRRPv3 (``vrrp_version 3``) over multicast in the lab
bridge, lim1 priority 150, standby1 100; the same reference Service Node runs on both,
bound to the VIP with IP_FREEBIND. Its detection is 3 x advert_int + skew (skew =
(256 - 100) / 256 x advert_int for the backup).
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from mxone_lab import Lab, LabError

ALIAS = "10.77.0.51"
PRESETS = (("fast", 1.0), ("fastest", 0.1), ("bfd", 0.05))
"""The agent's presets measured, with their heartbeat interval (3 misses each); keepalived
runs at each interval too."""
PORT = 7100
SERVICE_STOPPED = 3


PROBER = r"""
import select, socket, sys, time
alias, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
end = time.monotonic() + duration
nxt = time.monotonic()
out = []
while time.monotonic() < end:
    now = time.monotonic()
    if now >= nxt:
        try:
            s.sendto(b"p", (alias, port))
        except OSError:
            pass
        nxt = now + 0.01
    r, _, _ = select.select([s], [], [], max(0.0, nxt - time.monotonic()))
    if r:
        try:
            while True:
                data = s.recv(200)
                out.append(f"{time.time():.4f} {data.decode().rsplit(' ', 1)[-1]}")
        except (BlockingIOError, ConnectionRefusedError, OSError):
            pass
print("\n".join(out))
"""


@dataclass
class Setting:
    system: str  # "agent" | "keepalived"
    name: str  # "fast", "fastest", "advert 1 s", "advert 0.1 s"
    interval: float
    detection: float
    failover: str = "regular"  # the agent's failover behaviour
    outages: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    steps: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # scenario -> runs


def _agent_doc(lab: Lab, node: str, interval: float, failover: str = "regular") -> dict:
    servers = [{"name": n, "base_ip": str(lab.hosts[n].ip), "prefix": 24, "interface": "eth0",
                "role": r} for n, r in (("lim1", "regular"), ("standby1", "standby"))]
    return {"format": 1, "generation": 1, "node": node, "cluster": "bench",
            "fallback": "manual", "failover": failover,
            "timers": {"interval": interval, "misses": 3},
            "garp": {"burst": 3, "second_burst_after": 1.0, "refresh_interval": None},
            "heartbeat_port": 7011, "servers": servers,
            "lims": [{"lim": 1, "server": "lim1", "alias_ip": ALIAS, "prefix": 24,
                      "interface": "eth0", "priority": 1, "lock": "none"}]}


def _service(lab: Lab, host: str) -> None:
    lab.exec(host, [sys.executable, "-m", "mxone_agent", "service", "start", "--lim", "1",
                    "--alias", ALIAS])


def _wait_answer(lab: Lab, host: str, timeout: float = 15.0) -> None:
    code = ("import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "s.settimeout(0.05)\nend=time.monotonic()+float(sys.argv[1])\n"
            "while time.monotonic()<end:\n  try:\n    s.sendto(b'p',(sys.argv[2],7100))\n"
            "    if s.recv(99).decode().endswith(sys.argv[3]): sys.exit(0)\n"
            "  except OSError: time.sleep(0.02)\nsys.exit(1)\n")
    r = lab.exec("client", [sys.executable, "-c", code, str(timeout), ALIAS, host],
                 check=False, timeout=timeout + 10)
    if r.returncode != 0:
        raise LabError(f"{host} does not answer on {ALIAS} within {timeout} s")


def _start_agents(lab: Lab, interval: float,
                  failover: str = "regular") -> dict[str, subprocess.Popen]:
    key = secrets.token_hex(32)
    procs = {}
    for node in ("lim1", "standby1"):
        lab.exec(node, "mkdir -p /etc/mxone/agent /var/log/mxone && umask 077 && "
                 "cat > /etc/mxone/agent/node.json", input=json.dumps(_agent_doc(
                     lab, node, interval, failover)))
        lab.exec(node, "umask 077 && cat > /etc/mxone/agent/cluster.key", input=key)
    for node in ("lim1", "standby1"):
        procs[node] = lab.popen(node, [sys.executable, "-m", "mxone_agent", "run", "--log",
                                       "/var/log/mxone/agent.log"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3 if node == "lim1" else 0)
    _wait_answer(lab, "lim1")
    return procs


KEEPALIVED_CONF = """\
global_defs {{
  vrrp_version 3
  script_user root
  enable_script_security
}}
vrrp_instance LIM1 {{
  state {state}
  interface eth0
  virtual_router_id 51
  priority {prio}
  advert_int {advert}
  virtual_ipaddress {{
    {alias}/24 dev eth0
  }}
}}
"""


def _start_keepalived(lab: Lab, advert: float) -> dict[str, subprocess.Popen]:
    procs = {}
    for node, state, prio in (("lim1", "MASTER", 150), ("standby1", "BACKUP", 100)):
        conf = KEEPALIVED_CONF.format(state=state, prio=prio, advert=advert, alias=ALIAS)
        lab.exec(node, "mkdir -p /etc/mxone/bench && cat > /etc/mxone/bench/keepalived.conf",
                 input=conf)
        _service(lab, node)  # bound with IP_FREEBIND: answers once the VIP is here
        procs[node] = lab.popen(node, [
            "keepalived", "-n", "-l", "-D", "-f", "/etc/mxone/bench/keepalived.conf",
            "-p", "/run/mxone/keepalived.pid", "-r", "/run/mxone/vrrp.pid"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_answer(lab, "lim1", timeout=20)
    return procs


def _fault(lab: Lab, system: str, scenario: str, procs: dict[str, subprocess.Popen]) -> None:
    if scenario == "link-down":
        lab.faults.link_down("lim1")
        return
    # the whole process group of the daemon (keepalived's VRRP child too), then the service
    lab.exec("lim1", f"kill -9 -{procs['lim1'].pid}; "
             "kill -9 $(cat /run/mxone/service-lim1.pid)", check=False)


STEPS = ("decided", "probed", "alias_up", "first_garp", "service_up")


def _iso(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def _transition(lab: Lab) -> dict | None:
    """The standby agent's last transition (its timed steps)."""
    r = lab.exec("standby1", [sys.executable, "-m", "mxone_agent", "ctl", "status"], check=False)
    try:
        got = json.loads(r.stdout).get("transitions") or []
    except ValueError:
        return None
    return got[-1] if got else None


def _split(t: dict | None, last_old: float, first_new: float) -> dict[str, float]:
    """The outage's parts in seconds: silence (the last reply to the decision), then each
    step of the agent's timeline, then the client (the last step to the first reply)."""
    if t is None:
        return {}
    at = [(k, _iso(t.get(k))) for k in STEPS]
    marks = [(k, v) for k, v in at if v is not None]
    if not marks:
        return {}
    out = {"silence": marks[0][1] - last_old}
    for (_, a), (k, b) in itertools.pairwise(marks):
        out[k] = b - a
    out["client"] = first_new - marks[-1][1]
    return out


def _one_run(lab: Lab, s: Setting, scenario: str) -> tuple[float | None, dict[str, float]]:
    procs = (_start_agents(lab, s.interval, s.failover) if s.system == "agent"
             else _start_keepalived(lab, s.interval))
    t = None
    try:
        time.sleep(max(1.0, 3 * s.interval))  # settle
        window = s.detection + 4.0
        prober = lab.popen("client", [sys.executable, "-c", PROBER, ALIAS, str(PORT),
                                      str(window + 1.0)], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        _fault(lab, s.system, scenario, procs)
        out, _ = prober.communicate(timeout=window + 30)
        if s.system == "agent":
            t = _transition(lab)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        lab.reset()
    replies = [(float(t), h) for t, h in (line.split() for line in out.splitlines() if line)]
    first_new = next((t for t, h in replies if h == "standby1"), None)
    if first_new is None:
        return None, {}
    last_old = max((t for t, h in replies if h == "lim1" and t < first_new), default=None)
    if last_old is None:
        return None, {}
    return first_new - last_old, _split(t, last_old, first_new)


def _agent_cost(lab: Lab, interval: float) -> tuple[int, float]:
    """RSS (kB) and CPU % of the idle standby agent, over 3 s."""
    procs = _start_agents(lab, interval)
    try:
        time.sleep(1.0)
        r = lab.exec("standby1", [sys.executable, "-m", "mxone_agent", "ctl", "status"])
        pid = json.loads(r.stdout)["pid"]

        def ticks() -> int:
            stat = lab.exec("standby1", f"cat /proc/{pid}/stat").stdout
            return sum(map(int, stat.rsplit(")", 1)[1].split()[11:13]))

        t0, c0 = time.monotonic(), ticks()
        time.sleep(3.0)
        cpu = (ticks() - c0) / 100 / (time.monotonic() - t0) * 100
        rss = int(lab.exec("standby1", f"grep VmRSS /proc/{pid}/status").stdout.split()[1])
        return rss, cpu
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=5)
        lab.reset()


def _fmt(xs: list[float]) -> str:
    if not xs:
        return "no successful run"
    return f"median {statistics.median(xs):.3f} s  max {max(xs):.3f} s  (n={len(xs)})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-failover", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=("agent", "preloaded", "keepalived"))
    ap.add_argument("--preset", choices=[n for n, _ in PRESETS],
                    help="only this preset and keepalived at its interval")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    settings = []
    presets = [(n, i) for n, i in PRESETS if args.preset in (None, n)]
    if args.only in (None, "agent"):
        settings += [Setting("agent", n, i, 3 * i) for n, i in presets]
    if args.only in (None, "preloaded"):
        # the passive side already runs the service, as keepalived's backup does here
        settings += [Setting("agent", f"{n} prel.", i, 3 * i, failover="preloaded")
                     for n, i in presets]
    if args.only in (None, "keepalived"):
        skew = (256 - 100) / 256
        settings += [Setting("keepalived", f"advert {i:g} s", i, i * (3 + skew))
                     for _, i in presets]
    scenarios = ("killed", "link-down")
    try:
        lab = Lab.up()
    except LabError as e:
        print(f"bench-failover: no lab: {e}", file=sys.stderr)
        return 2
    costs: dict[str, tuple[int, float]] = {}
    try:
        for s in settings:
            for sc in scenarios:
                xs = []
                for i in range(args.runs):
                    o, parts = _one_run(lab, s, sc)
                    print(f"  {s.system:10} {s.name:13} {sc:9} run {i + 1}: "
                          + ("no takeover seen" if o is None else f"{o:.3f} s")
                          + ("  (" + ", ".join(f"{k} {v * 1e3:.0f}" for k, v in parts.items())
                             + " ms)" if parts else ""), flush=True)
                    if o is None:
                        s.failed[sc] = s.failed.get(sc, 0) + 1
                    else:
                        xs.append(o)
                        if parts:
                            s.steps.setdefault(sc, []).append(parts)
                s.outages[sc] = xs
        if args.only in (None, "agent"):
            for name, interval in presets:
                costs[name] = _agent_cost(lab, interval)
    finally:
        lab.down()

    print("\nclient-visible outage (last reply of lim1 -> first reply of standby1)")
    for s in settings:
        for sc in scenarios:
            xs = s.outages.get(sc, [])
            over = [x - s.detection for x in xs]
            print(f"{s.system:10} {s.name:13} {sc:9} detection {s.detection:.3f} s: {_fmt(xs)}"
                  + (f"; takeover overhead median {statistics.median(over):.3f} s"
                     if over else "") + (f"; {s.failed[sc]} runs failed"
                                         if s.failed.get(sc) else ""))
    by_interval = {s.interval: s for s in settings if s.system == "keepalived"}
    print("\nratio agent / keepalived at the equal interval (median outage; <= 1.00: the "
          "agent is at or ahead of keepalived)")
    for a in settings:
        k = by_interval.get(a.interval)
        if a.system != "agent" or k is None:
            continue
        for sc in scenarios:
            if a.outages.get(sc) and k.outages.get(sc):
                ours, theirs = statistics.median(a.outages[sc]), statistics.median(k.outages[sc])
                print(f"ratio agent {a.name:13} / keepalived {k.name:12} {sc:9}: "
                      f"{ours / theirs:.2f} ({ours:.3f} / {theirs:.3f} s)"
                      + ("  AHEAD" if ours <= theirs else "  BEHIND"))
    print("\ntakeover split, median ms over the runs (silence: the last reply of lim1 to the "
          "decision; then each step of the standby agent's timeline; client: the last step "
          "to the first reply of standby1)")
    for a in settings:
        for sc in scenarios:
            runs = a.steps.get(sc) or []
            if not runs:
                continue
            keys = [k for k in ("silence", *STEPS[1:], "client") if any(k in r for r in runs)]
            parts = ", ".join(f"{k} {statistics.median([r[k] for r in runs if k in r]) * 1e3:.0f}"
                              for k in keys)
            after = [sum(v for k, v in r.items() if k != "silence") for r in runs]
            print(f"{a.name:13} {sc:9}: {parts}; decision to first reply "
                  f"{statistics.median(after) * 1e3:.0f} ms")
    for name, (rss, cpu) in costs.items():
        print(f"agent ({name} timers, idle standby): RSS {rss / 1024:.1f} MB, CPU {cpu:.1f} %")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"settings": [asdict(s) for s in settings],
                       "agent_cost": {k: {"rss_kb": v[0], "cpu_percent": v[1]}
                                      for k, v in costs.items()}}, f, indent=2)
    return 0
