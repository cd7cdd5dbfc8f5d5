"""The record of one lab: what was created, so that exactly that is ended and removed.

A lab's state file ``<lab dir>/lab.json`` names every namespace, every process (PID and
start time, so a recycled PID is never mistaken for the lab's), every cgroup and the faults
in force; it is written after each step of a build, so a lab that failed half-way is torn
down as far as it got. Another process (the CLI, a test) may read and change the same lab:
:meth:`LabState.lock` is the read-modify-write under the lab's lock.

Besides the file, an object remembers the Popen handles of what it started itself
(:class:`Processes`), to reap them as they end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import mxone_lab.procs as procs
import mxone_lab.systemd_host as systemd_host
from mxone_lab.errors import LabError, UnknownHost
from mxone_lab.spec import LabSpec

NETNS_DIR = Path("/run/netns")
ID_RE = re.compile(r"^mx[0-9a-f]{6}$")
STATE_VERSION = 1
#: Directories each host sees through its own overlay (writes stay on that host): also where
#: the deployer puts the agent's unit and where an install links its commands.
OVERLAID = ("/etc", "/var", "/root", "/opt", "/usr/lib/systemd/system", "/usr/local")
#: Every host's own network configuration (systemd-networkd's format): what a server's
#: /etc says about its address. Only a ``networkd`` host reads it at boot.
NETWORK_FILE = "/etc/systemd/network/10-eth0.network"


@dataclass(frozen=True)
class Host:
    """One lab host, as built. Values never change while the lab is up, except
    ``sshd_pid`` after :meth:`Lab.reset` restarted a dead sshd.

    ``host_key`` is the host's SSH public key ``"ssh-ed25519 AAAA..."``, for pinning.
    ``systemd`` hosts are held by systemd: ``holder_pid`` is the PID (on the machine) of
    the host's PID 1, ``boot_seconds`` the time from its start to the end of its boot.
    """

    name: str
    ip: IPv4Address
    prefix: int
    mac: str
    ns: str
    holder_pid: int
    sshd_pid: int | None
    host_key: str
    switch_port: str
    ssh_port: int = 22
    systemd: bool = False
    boot_seconds: float | None = None
    #: systemd-networkd brings up its addresses from its own /etc (see LabSpec).
    networkd: bool = False

    @property
    def cidr(self) -> str:
        """The base address with prefix, e.g. ``"10.77.0.11/24"``."""
        return f"{self.ip}/{self.prefix}"

    @property
    def known_hosts_line(self) -> str:
        """``"lim1,10.77.0.11 ssh-ed25519 AAAA..."`` for a known_hosts file."""
        return f"{self.name},{self.ip} {self.host_key}"

    @property
    def netns_path(self) -> str:
        """A path to the host's network namespace that works from any mount namespace."""
        return f"/proc/{self.holder_pid}/ns/net"


class LabState:
    """The state file of the lab in ``lab_dir`` and the facts read from it.

    ``data`` is the file's content as last read or written; ``records[name]`` is one
    host's part of it. ``torn_down`` is set once teardown left nothing behind.
    """

    def __init__(self, lab_dir: Path, data: dict[str, Any]) -> None:
        self.dir = lab_dir
        self.data = data
        self.torn_down = False
        self._lock_depth = 0

    @classmethod
    def fresh(
        cls, lab_id: str, lab_dir: Path, spec: LabSpec, keeper_pid: int | None
    ) -> LabState:
        """The record of a lab about to be built: names chosen, nothing started yet."""
        hosts: dict[str, dict[str, Any]] = {}
        for h in spec.hosts:
            hosts[h.name] = {
                "ns": f"{lab_id}-{h.name}",
                "ip": str(spec.ip_of(h)),
                "prefix": spec.prefix,
                "mac": h.mac,
                "switch_port": h.switch_port,
                "host_key": "",
                "holder_pid": None,
                "holder_start": None,
                "sshd_pid": None,
                "sshd_start": None,
                "systemd": h.systemd,
                "networkd": h.networkd,
            }
            if h.systemd:
                cgroot = systemd_host.cgroup2_root() or Path("/sys/fs/cgroup")
                hosts[h.name] |= {
                    # the `unshare` that started systemd (and reaps it at teardown)
                    "launcher_pid": None,
                    "launcher_start": None,
                    # the `cat` that drains the host's console pty into console.log
                    "console_pid": None,
                    "console_start": None,
                    "cgroup": str(cgroot / f"{lab_id}-{h.name}"),
                    "cgroup_path": f"/{lab_id}-{h.name}",
                    "boot_seconds": None,
                    "boot_state": None,
                    "failed_units": [],
                    "as_built_units": [],
                }
        return cls(
            lab_dir,
            {
                "version": STATE_VERSION,
                "id": lab_id,
                "dir": str(lab_dir),
                "state": "building",
                "created": time.time(),
                "builder_pid": os.getpid(),
                "keeper_pid": keeper_pid,
                "keeper_start": procs.start_time(keeper_pid) if keeper_pid else None,
                "spec": spec.to_mapping(),
                "sshd": False,
                "switch": {"ns": f"{lab_id}-sw", "pid": None, "start": None},
                "hosts": hosts,
                "faults": {},
                "user_key": str(lab_dir / "keys" / "id_ed25519"),
                "known_hosts": str(lab_dir / "keys" / "known_hosts"),
            },
        )

    # ---------------------------------------------------------------- identity / data

    @property
    def id(self) -> str:
        """The lab id, e.g. ``"mx3fa9c1"``; also the prefix of all its names."""
        return str(self.data["id"])

    @property
    def prefix(self) -> str:
        """The prefix of every namespace of the lab, e.g. ``"mx3fa9c1-"``."""
        return f"{self.id}-"

    @property
    def spec(self) -> LabSpec:
        return LabSpec.from_mapping(self.data["spec"])

    @property
    def file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """Each host's part of the state, by name, in spec order (changed in place)."""
        hosts: dict[str, dict[str, Any]] = self.data["hosts"]
        return hosts

    @property
    def switch_ns(self) -> str:
        return str(self.data["switch"]["ns"])

    @property
    def switch_pid(self) -> int:
        """The PID of the process holding the switch namespace."""
        return int(self.data["switch"]["pid"] or 0)

    @property
    def switch_netns_path(self) -> str:
        """A path to the switch's network namespace that works from any mount namespace."""
        self.check_pid(self.switch_pid, self.data["switch"].get("start"), "the switch")
        return f"/proc/{self.switch_pid}/ns/net"

    @property
    def user_key_path(self) -> Path:
        """The lab-only SSH user private key (root on every host accepts it)."""
        return Path(self.data["user_key"])

    @property
    def known_hosts_path(self) -> Path:
        """A known_hosts file with every host's key, by name and by address."""
        return Path(self.data["known_hosts"])

    @property
    def hosts(self) -> dict[str, Host]:
        """The hosts, by name, in spec order."""
        return {
            name: Host(
                name=name,
                ip=IPv4Address(h["ip"]),
                prefix=int(h["prefix"]),
                mac=h["mac"],
                ns=h["ns"],
                holder_pid=int(h.get("holder_pid") or 0),
                sshd_pid=h.get("sshd_pid"),
                host_key=h["host_key"],
                switch_port=h["switch_port"],
                systemd=bool(h.get("systemd")),
                boot_seconds=h.get("boot_seconds"),
                networkd=bool(h.get("networkd")),
            )
            for name, h in self.records.items()
        }

    def host(self, name: str) -> Host:
        """The host called ``name``; :class:`UnknownHost` lists the lab's hosts otherwise."""
        h = self.hosts.get(name)
        if h is None:
            raise UnknownHost(name, list(self.records))
        return h

    def host_dir(self, name: str) -> Path:
        """Host ``name``'s files in the lab dir: configs, keys, logs, overlay upper dirs."""
        return self.dir / "hosts" / name

    def overlays(self, name: str) -> list[tuple[str, str, str]]:
        """``(dir, source tag, overlayfs options)`` of each of host ``name``'s overlays."""
        out = []
        for lower in OVERLAID:
            ov = self.host_dir(name) / "ov" / lower.strip("/")
            if ov.is_dir():
                opts = f"lowerdir={lower},upperdir={ov / 'upper'},workdir={ov / 'work'}"
                out.append((lower, f"{self.id}-{name}{lower}", opts))
        return out

    def check_pid(self, pid: int, start: int | None, what: str) -> None:
        """Raise :class:`LabError` unless ``pid`` is still the process the lab started."""
        if not procs.same(pid, start):
            raise LabError(
                f"lab {self.id}: {what} is down (process {pid} is gone); rebuild the lab"
            )

    # ------------------------------------------------------ the lab's own namespaces

    def ns_names(self) -> list[str]:
        """The lab's network namespaces by name: the recorded ones and any other with its
        prefix (a build that failed before recording)."""
        recorded = [self.switch_ns] + [h["ns"] for h in self.records.values()]
        found = [n for n in netns_names() if n.startswith(self.prefix)]
        return list(dict.fromkeys(recorded + found))

    def net_ids(self, names: Sequence[str] | None = None) -> set[procs.NsId]:
        """The lab's network namespaces, never the machine's own (whatever a file says)."""
        ids = set()
        for name in names if names is not None else self.ns_names():
            nid = procs.ns_id(str(NETNS_DIR / name))
            if nid is not None:
                ids.add(nid)
        return ids - forbidden_ids("net")

    def infra_pids(self) -> set[int]:
        """The lab's own processes: switch, holders, sshd, systemd launchers and consoles."""
        pids = {self.switch_pid}
        for h in self.records.values():
            pids |= {h.get("holder_pid") or 0, h.get("sshd_pid") or 0}
            pids |= {h.get("launcher_pid") or 0, h.get("console_pid") or 0}
        return pids - {0}

    def systemd_pid_ids(self) -> dict[procs.NsId, str]:
        """The PID namespaces of the live systemd hosts (never the machine's), by host."""
        ids = {}
        for name, h in self.records.items():
            if h.get("systemd") and procs.same(h.get("holder_pid"), h.get("holder_start")):
                nid = procs.process_ns(h["holder_pid"], "pid")
                if nid is not None and nid not in forbidden_ids("pid"):
                    ids[nid] = name
        return ids

    # ---------------------------------------------------------------- the file

    def write(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.file)

    def read(self) -> dict[str, Any]:
        """The file as it is now (another process may have changed it); the last known
        state when it is gone (torn down meanwhile)."""
        try:
            self.data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            pass
        return self.data

    @contextlib.contextmanager
    def lock(self) -> Iterator[dict[str, Any]]:
        """The state, read fresh under an exclusive lock and written back on success.

        Other processes (the CLI, a test) may change the same lab; re-entrant per object.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self.data
            finally:
                self._lock_depth -= 1
            return
        try:
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            raise LabError(f"lab {self.id} has been torn down") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_depth = 1
            data = self.read()
            yield data
            self.data = data
            self.write()
        finally:
            self._lock_depth = 0
            os.close(fd)


@dataclass
class Tracked:
    """A process started on a host with :meth:`Lab.popen`."""

    host: str
    proc: subprocess.Popen[Any]
    keep_on_reset: bool


class Processes:
    """The Popen handles of what this object started: the lab's own processes
    (``children``: holders, sshd, launchers, console drains) and commands started on
    hosts (``tracked``). Kept to reap them; what runs in the lab is found by namespace."""

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen[Any]] = {}
        self.tracked: list[Tracked] = []

    def all(self) -> dict[int, subprocess.Popen[Any]]:
        return dict(self.children) | {t.proc.pid: t.proc for t in self.tracked}

    def forget_ended(self) -> None:
        self.children = {p: c for p, c in self.children.items() if c.poll() is None}
        self.tracked = [t for t in self.tracked if t.proc.poll() is None]

    def reap(self, pid: int) -> None:
        p = self.children.get(pid)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(0.5)


def netns_names() -> list[str]:
    """The names of the machine's named network namespaces (every lab's among them)."""
    try:
        return os.listdir(NETNS_DIR)
    except OSError:
        return []


def forbidden_ids(kind: str) -> set[procs.NsId]:
    """The machine's own namespaces and ours: never a lab's, whatever a state file says."""
    return {i for i in (procs.process_ns(1, kind), procs.process_ns(os.getpid(), kind)) if i}
