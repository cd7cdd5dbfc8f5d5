"""A real cluster in the lab: node configs, the secret, agents started with lab.popen, a
client probing the aliases, ``ctl status`` read on any node.

The cluster: regular servers lim1, lim2, lim3 (LIMs 1, 2, 3, aliases 10.77.0.51-53,
priorities as given) and standby1; fastest timers unless told otherwise.

:meth:`Cluster.install_sync` sets up exchange-data sync as the maintenance tool does: one
ed25519 sync key for the cluster on every node, the peers' host keys by base IP, and in
root's authorized_keys on every node the key with the forced command ``mxone-agent xdata
serve`` (run the way the lab runs the agent). The lab's reset removes those files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mxone_lab import Lab

CONFIG = "/etc/mxone/agent/node.json"
SECRET = "/etc/mxone/agent/cluster.key"
SYNC_KEY = "/etc/mxone/agent/sync.key"
KNOWN_HOSTS = "/etc/mxone/agent/known_hosts"
STANDBY = "standby1"
PORT = 7100


def alias(lim: int) -> str:
    return f"10.77.0.{50 + lim}"


def cluster_doc(lab: Lab, node: str, regulars: Sequence[str] = ("lim1", "lim2", "lim3"), *,
                priorities: Mapping[int, int] | None = None, fallback: str = "automatic",
                failover: str = "regular", interval: float = 0.1, misses: int = 3,
                locks: Mapping[int, str] | None = None, generation: int = 1,
                garp: Mapping[str, Any] | None = None,
                services: Mapping[int, dict] | None = None,
                sync: Mapping[str, Any] | None = None) -> dict[str, Any]:
    priorities = priorities or {}
    locks = locks or {}
    servers = [{"name": n, "base_ip": str(lab.hosts[n].ip), "prefix": 24, "interface": "eth0",
                "role": "regular"} for n in regulars]
    servers.append({"name": STANDBY, "base_ip": str(lab.hosts[STANDBY].ip), "prefix": 24,
                    "interface": "eth0", "role": "standby"})
    lims = []
    for n in regulars:
        number = int(n.removeprefix("lim"))
        lim = {"lim": number, "server": n, "alias_ip": alias(number), "prefix": 24,
               "interface": "eth0", "priority": priorities.get(number, number),
               "lock": locks.get(number, "none")}
        if services and number in services:
            lim["service"] = services[number]
        lims.append(lim)
    doc = {"format": 1, "generation": generation, "node": node, "cluster": "cluster1",
           "fallback": fallback, "failover": failover,
           "timers": {"interval": interval, "misses": misses},
           "garp": dict(garp or {"burst": 3, "second_burst_after": 1.0,
                                 "refresh_interval": 5.0}),
           "heartbeat_port": 7011, "servers": servers, "lims": lims}
    if sync is not None:
        doc["sync"] = dict(sync)
    return doc


def agent_command() -> tuple[list[str], dict[str, str] | None]:
    """How the lab runs the agent on a host: (argv prefix, extra environment).

    MXONE_AGENT_LIB: run the agent from another lib dir (a deployed tarball's, a mutated
    copy's) instead of the project's.
    """
    lib = os.environ.get("MXONE_AGENT_LIB")
    return [sys.executable, "-m", "mxone_agent"], ({"PYTHONPATH": lib} if lib else None)


def forced_command(prefix: str = "") -> str:
    """The authorized_keys forced command that runs ``xdata serve`` the way the lab runs
    the agent (``prefix``: e.g. ``faketime -f +45s `` for a peer whose clock is off)."""
    argv, env = agent_command()
    head = f"env PYTHONPATH={shlex.quote(env['PYTHONPATH'])} " if env else ""
    return f"{prefix}{head}{shlex.join(argv)} xdata serve"


class Cluster:
    """Agents of one cluster in the lab. ``start()`` writes files and starts every agent."""

    def __init__(self, lab: Lab, regulars: Sequence[str] = ("lim1", "lim2", "lim3"),
                 **kw: Any) -> None:
        self.lab = lab
        self.regulars = tuple(regulars)
        self.nodes = (*self.regulars, STANDBY)
        self.kw = kw
        self.key = secrets.token_hex(32)
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def detection(self) -> float:
        return self.kw.get("interval", 0.1) * self.kw.get("misses", 3)

    def write(self, node: str, **override: Any) -> None:
        doc = cluster_doc(self.lab, node, self.regulars, **{**self.kw, **override})
        self.lab.exec(node, "mkdir -p /etc/mxone/agent && umask 077 && "
                      f"cat > {CONFIG}.tmp && mv {CONFIG}.tmp {CONFIG}",
                      input=json.dumps(doc))
        self.lab.exec(node, f"umask 077 && cat > {SECRET}", input=self.key + "\n")

    def install_sync(self, key_dir: Path, serve_prefix: str = "") -> None:
        """Give every node the cluster's sync key and its peers' host keys, and authorize
        the key with the forced command (see the module docstring)."""
        key = key_dir / "sync.key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        "mxone-sync-cluster1", "-f", str(key)], check=True, timeout=30)
        private = key.read_text()
        for n in self.nodes:
            known = "".join(self.lab.hosts[m].known_hosts_line + "\n"
                            for m in self.nodes if m != n)
            self.lab.exec(n, f"mkdir -p /etc/mxone/agent && umask 077 && cat > {SYNC_KEY}",
                          input=private)
            self.lab.exec(n, f"cat > {KNOWN_HOSTS}", input=known)
        public = key.with_name("sync.key.pub").read_text().strip()
        line = f'command="{forced_command(serve_prefix)}",restrict {public}\n'
        for n in self.nodes:
            self.lab.exec(n, "mkdir -p /root/.ssh && cat >> /root/.ssh/authorized_keys",
                          input=line)

    def start(self, nodes: Sequence[str] | None = None, write: bool = True) -> None:
        for n in nodes or self.nodes:
            if write:
                self.write(n)
            self.start_agent(n)
        for n in nodes or self.nodes:
            self.wait_ready(n)

    def start_agent(self, node: str, argv: Sequence[str] | None = None) -> subprocess.Popen:
        """Start the agent on ``node`` (``argv``: the command, default the project's)."""
        self.lab.exec(node, "mkdir -p /var/log/mxone")
        default, env = agent_command()
        p = self.lab.popen(node, [*(argv or default), "run", "--log", "/var/log/mxone/agent.log"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs[node] = p
        return p

    def wait_ready(self, node: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.procs.get(node)
            if p is not None and p.poll() is not None:
                raise AssertionError(f"agent on {node} exited {p.returncode}: "
                                     f"{p.stderr.read().decode() if p.stderr else ''}")
            r = self.lab.exec(node, [sys.executable, "-m", "mxone_agent", "ctl", "status"],
                              check=False)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"agent on {node} not ready in {timeout} s: {self.log(node)}")

    def ctl(self, node: str, *args: str) -> tuple[int, dict]:
        r = self.lab.exec(node, [sys.executable, "-m", "mxone_agent", "ctl", *args], check=False)
        try:
            return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}
        except json.JSONDecodeError:
            return r.returncode, {"raw": r.stdout, "err": r.stderr}

    def status(self, node: str) -> dict:
        code, st = self.ctl(node, "status")
        assert code == 0, st
        return st

    def log(self, node: str) -> str:
        return self.lab.exec(node, "cat /var/log/mxone/agent.log 2>/dev/null; true").stdout

    @contextlib.contextmanager
    def logs_on_failure(self, *nodes: str) -> Iterator[None]:
        """Print the agents' logs of ``nodes`` (tails) when the block fails: a failure
        seen only under CI load then says which agent did what."""
        try:
            yield
        except BaseException:
            for n in nodes:
                print(f"--- {n}'s log:\n{self.log(n)[-8000:]}")
            raise

    def kill_agent(self, node: str, sig: int = 9) -> None:
        p = self.procs[node]
        p.send_signal(sig)
        if sig == 9:
            p.wait(timeout=5)

    def kill_service(self, node: str, lim: int) -> None:
        self.lab.exec(node, f"kill -9 $(cat /run/mxone/service-lim{lim}.pid)", check=False)

    def lim_row(self, node: str, lim: int) -> dict:
        return next(x for x in self.status(node)["lims"] if x["lim"] == lim)

    def runs(self, node: str) -> dict[int, str]:
        return {x["lim"]: x["here"] for x in self.status(node)["lims"] if x["here"]}

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


PROBE = r"""
import socket, sys, time
alias, want, timeout, port = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.05)
t0 = time.monotonic()
last = ""
while time.monotonic() - t0 < timeout:
    try:
        s.sendto(b"probe", (alias, port))
        data = s.recv(200).decode()
        last = data
        if want == "*" or data.endswith(" " + want):
            print(f"{time.monotonic() - t0:.3f} {data}")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.02)
print(f"timeout last={last!r}")
sys.exit(1)
"""

SILENCE = r"""
import socket, sys, time
alias, duration, port = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.05)
t0 = time.monotonic()
got = []
while time.monotonic() - t0 < duration:
    try:
        s.sendto(b"probe", (alias, port))
        got.append(s.recv(200).decode())
    except OSError:
        pass
    time.sleep(0.02)
print("\n".join(sorted(set(got))))
"""


def wait_answer(lab: Lab, lim: int, host: str = "*", timeout: float = 10.0) -> tuple[bool, str]:
    """Probe LIM ``lim``'s alias from the client until ``host`` answers (``*``: anyone)."""
    r = lab.exec("client", [sys.executable, "-c", PROBE, alias(lim), host, str(timeout),
                            str(PORT)], check=False, timeout=timeout + 10)
    return r.returncode == 0, r.stdout.strip()


def answers_during(lab: Lab, lim: int, seconds: float) -> set[str]:
    """Every distinct reply the client got from LIM ``lim``'s alias in ``seconds``."""
    r = lab.exec("client", [sys.executable, "-c", SILENCE, alias(lim), str(seconds), str(PORT)],
                 timeout=seconds + 10)
    return {x for x in r.stdout.splitlines() if x}


def eventually(check: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Call ``check`` until it returns a true value (returned), else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r})")
