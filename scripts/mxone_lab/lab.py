"""The lab: several real-looking hosts on one machine, built from Linux namespaces.

Layout of a lab with id ``mx3fa9c1`` (the id is random per build, so labs coexist)::

    netns mx3fa9c1-sw      the "switch": bridge br0, one port v-<host> per host,
                           the fault table (faults.py); a holder process keeps it
    netns mx3fa9c1-<host>  one per host: eth0 (the peer of v-<host>), lo
    holder of <host>       `sleep infinity` in the host's netns plus its own UTS and
                           mount namespaces: hostname <host>, overlayfs over /etc, /var,
                           /root, /opt (upper dirs in the lab dir), a tmpfs on /run
    sshd of <host>         listening on every address of the host, lab-only keys
    /tmp/mx3fa9c1/         everything on disk: lab.json (the state), keys, per-host
                           configs, logs and overlay upper dirs

A host marked ``systemd`` in the spec is held by a real systemd instead of `sleep`: PID 1
of the host's own PID namespace, with its own /tmp, /run, /dev, IPC and cgroup namespace
(the cgroup ``<lab id>-<host>`` on the machine's cgroup2 hierarchy), booted until
``systemctl is-system-running`` says so; see systemd_host.py for what keeps it off the
machine. Its console goes to ``hosts/<host>/console.log``. :meth:`Lab.reboot` power-cycles
it with its disks (overlay upper dirs) kept. Every host has its own network configuration
(:data:`NETWORK_FILE`); a ``networkd`` host's systemd-networkd brings its addresses up from
it at every boot, on the others the lab adds the base address itself.

Every veth pair is created inside the switch namespace and its host end moved straight
into the host namespace, so the machine's own namespace never sees a lab link, address or
route. Everything is ended by PID and namespaces are deleted by name, both restricted to
this lab's unique prefix.

Running something "on" a host means entering its holder's network, mount and UTS
namespaces (``nsenter -t HOLDER -n -m -u``); a plain ``ip netns exec`` would see the
machine's /etc, not the host's. On a systemd host a command also enters the host's IPC
and PID namespaces, so ``systemctl``, ``journalctl`` and ``kill MAINPID`` work there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Self

from mxone_lab import keys, procs, systemd_host
from mxone_lab.errors import (
    BuildError,
    HostCommandError,
    LabError,
    LabNotFound,
    PrerequisiteError,
    TeardownError,
    UnknownHost,
)
from mxone_lab.faults import Faults
from mxone_lab.remote import SshResult
from mxone_lab.spec import LabSpec

#: Where lab dirs live unless told otherwise.
DEFAULT_ROOT = Path("/tmp")
#: The ``mxone-lab up`` lab that commands use when given no id (override: $MXONE_LAB_CURRENT).
DEFAULT_CURRENT_LINK = Path("/tmp/mxone-lab.current")
NETNS_DIR = Path("/run/netns")
ID_RE = re.compile(r"^mx[0-9a-f]{6}$")

#: Directories the product writes on a host; ``reset()`` wipes them.
PRODUCT_DIRS = ("/etc/mxone", "/var/opt/mxone", "/opt/mxone", "/var/log/mxone")
#: Directories each host sees through its own overlay (writes stay on that host).
OVERLAID = ("/etc", "/var", "/root", "/opt")
SSHD = "/usr/sbin/sshd"
TOOLS = ("ip", "nsenter", "unshare", "nft", "sh", "sleep", "mount")
STATE_VERSION = 1
#: Where a systemd host keeps the lab dir until its boot is over (inside the host).
_LAB_DIR_STAGING = "/run/.mxone-lab"
#: Every host's own network configuration (systemd-networkd's format): what a server's
#: /etc says about its address. Only a ``networkd`` host reads it at boot.
NETWORK_FILE = "/etc/systemd/network/10-eth0.network"

# Host sysctls a test may change (blocked-alias experiments) that reset() puts back.
_RESET_SYSCTLS = {
    "net/ipv4/ip_nonlocal_bind": "0",
    "net/ipv4/conf/all/arp_ignore": "0",
    "net/ipv4/conf/all/arp_announce": "0",
    "net/ipv4/conf/all/arp_accept": "0",
    "net/ipv4/conf/eth0/arp_ignore": "0",
    "net/ipv4/conf/eth0/arp_announce": "0",
    "net/ipv4/conf/eth0/arp_accept": "0",
}

# After the common reset of a systemd host (its processes are ended by then).
_SYSTEMD_RESET = (
    "rm -rf /run/mxone\n"
    "systemctl reset-failed\n"
    # the journal of earlier tests: rotate, then drop every archived file
    "journalctl --rotate --vacuum-size=1 -q 2>/dev/null\n"
)

_PLAIN_BASHRC = (
    "# lab host: a plain shell. The machine's own ~/.bashrc runs `pyenv init`, which costs\n"
    "# ~150 ms on every SSH command.\n"
)


def current_link() -> Path:
    """The symlink naming the current lab ($MXONE_LAB_CURRENT or /tmp/mxone-lab.current)."""
    return Path(os.environ.get("MXONE_LAB_CURRENT") or DEFAULT_CURRENT_LINK)


def set_current(lab: Lab) -> None:
    """Make ``lab`` the current lab (the one commands use when given no id)."""
    link = current_link()
    tmp = link.with_name(f"{link.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(lab.dir, tmp)
    os.replace(tmp, link)  # atomic: a reader sees the old lab or the new one


def clear_current(lab: Lab) -> None:
    """Remove the current-lab link if it names ``lab``."""
    link = current_link()
    with contextlib.suppress(OSError):
        if Path(os.readlink(link)) == lab.dir:
            link.unlink()


def venv_bin() -> Path:
    """The bin dir of the Python running the lab (the project venv), for hosts' PATH."""
    return Path(sys.executable).parent


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


@dataclass(frozen=True)
class HostStatus:
    """What :meth:`Lab.status` observed on one host, live."""

    name: str
    ip: IPv4Address
    mac: str
    ns: str
    holder_pid: int
    holder_alive: bool
    sshd_pid: int | None
    sshd_alive: bool
    addresses: tuple[str, ...]
    port_up: bool | None
    systemd: bool = False
    #: ``systemctl is-system-running`` on a systemd host ('' on others, '?' if unknown).
    system_state: str = ""


@dataclass(frozen=True)
class LabStatus:
    """What :meth:`Lab.status` observed on the whole lab, live."""

    id: str
    dir: Path
    state: str
    subnet: str
    hosts: tuple[HostStatus, ...]
    faults: tuple[str, ...]


@dataclass
class _Tracked:
    host: str
    proc: subprocess.Popen[Any]
    keep_on_reset: bool


class Lab:
    """A running lab. Build one with :meth:`up`, find a running one with :meth:`attach`.

    A ``Lab`` is a context manager that tears the lab down on exit. Methods that act on a
    host take its name and raise :class:`~mxone_lab.errors.UnknownHost` for others.
    """

    def __init__(self, lab_dir: Path, state: dict[str, Any]) -> None:
        """Internal: use :meth:`up` or :meth:`attach`."""
        self.dir = lab_dir
        self._state = state
        self._children: dict[int, subprocess.Popen[Any]] = {}
        self._procs: list[_Tracked] = []
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._torn_down = False
        self.faults = Faults(self)

    # ---------------------------------------------------------------- identity / data

    @property
    def id(self) -> str:
        """The lab id, e.g. ``"mx3fa9c1"``; also the prefix of all its names."""
        return str(self._state["id"])

    @property
    def prefix(self) -> str:
        """The prefix of every namespace of the lab, e.g. ``"mx3fa9c1-"``."""
        return f"{self.id}-"

    @property
    def spec(self) -> LabSpec:
        return LabSpec.from_mapping(self._state["spec"])

    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def switch_ns(self) -> str:
        return str(self._state["switch"]["ns"])

    @property
    def switch_pid(self) -> int:
        """The PID of the process holding the switch namespace."""
        return int(self._state["switch"]["pid"] or 0)

    @property
    def switch_netns_path(self) -> str:
        """A path to the switch's network namespace that works from any mount namespace."""
        self._check_pid(self.switch_pid, self._state["switch"].get("start"), "the switch")
        return f"/proc/{self.switch_pid}/ns/net"

    @property
    def user_key_path(self) -> Path:
        """The lab-only SSH user private key (root on every host accepts it)."""
        return Path(self._state["user_key"])

    @property
    def known_hosts_path(self) -> Path:
        """A known_hosts file with every host's key, by name and by address."""
        return Path(self._state["known_hosts"])

    @property
    def hosts(self) -> dict[str, Host]:
        """The hosts, by name, in spec order."""
        out: dict[str, Host] = {}
        for name, h in self._state["hosts"].items():
            out[name] = Host(
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
        return out

    def host(self, name: str) -> Host:
        """The host called ``name``; :class:`UnknownHost` lists the lab's hosts otherwise."""
        h = self.hosts.get(name)
        if h is None:
            raise UnknownHost(name, list(self._state["hosts"]))
        return h

    def __repr__(self) -> str:
        return f"<Lab {self.id} {len(self._state['hosts'])} hosts {self._state.get('state')}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ------------------------------------------------------------------------ build

    @classmethod
    def up(
        cls,
        spec: LabSpec | None = None,
        *,
        sshd: bool = True,
        root: Path = DEFAULT_ROOT,
        timeout: float = 10.0,
        boot_timeout: float = 120.0,
        keeper_pid: int | None = None,
    ) -> Lab:
        """Build a lab and return it running.

        ``spec`` defaults to :meth:`LabSpec.default`. With ``sshd`` every host runs an sshd
        on its base address, listening before this returns. ``timeout`` bounds each wait
        (holders ready, sshd listening). Hosts marked ``systemd`` in the spec boot systemd;
        this returns once ``systemctl is-system-running`` says ``running`` (or
        ``degraded``: then a warning names the failed units, and :meth:`status` shows them),
        each boot bounded by ``boot_timeout``. On any failure, or KeyboardInterrupt,
        whatever was built is torn down before the error propagates (:class:`BuildError`
        for failures). The processes of the lab are started in their own sessions: they
        outlive the calling process unless :meth:`down` is called.
        """
        spec = spec or LabSpec.default()
        check_prerequisites(sshd=sshd, systemd=bool(spec.systemd_names))
        lab = cls._claim(spec, root, keeper_pid)
        try:
            lab._build(sshd, timeout, boot_timeout)
        except BaseException as exc:
            cleanup_note = ""
            try:
                lab.down()
            except LabError as td:
                cleanup_note = f"; and teardown failed: {td}"
            if isinstance(exc, (LabError, OSError, subprocess.SubprocessError)):
                raise BuildError(
                    f"building lab {lab.id} failed: {exc}" + (cleanup_note or "; torn down")
                ) from exc
            raise
        return lab

    @classmethod
    def _claim(cls, spec: LabSpec, root: Path, keeper_pid: int | None) -> Lab:
        """Reserve a fresh lab id: its dir is created exclusively, so no two builds share one."""
        root.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            lab_id = "mx" + secrets.token_hex(3)
            lab_dir = root / lab_id
            if any(n.startswith(f"{lab_id}-") for n in _netns_names()):
                continue
            try:
                lab_dir.mkdir(mode=0o700)
            except FileExistsError:
                continue
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
            state = {
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
            }
            lab = cls(lab_dir, state)
            lab._write_state()
            return lab
        raise BuildError(f"could not find a free lab id under {root}")

    def _build(self, sshd: bool, timeout: float, boot_timeout: float = 120.0) -> None:
        self._write_files()
        # Namespaces and the switch wiring go through `ip -batch`: measured on this kernel,
        # one `ip -batch` for all namespaces costs ~3 ms where pyroute2's netns.create and
        # IPRoute(netns=...) fork a helper per call (~6 ms each). Worse, that helper is a
        # fork of the calling Python process: a SIGTERM pyroute2 sends it early runs the
        # caller's Python signal handlers in the copy (seen: a pytest copy running the
        # session teardown). So work in other namespaces is `ip`/`nsenter`; pyroute2
        # only removes namespaces (in-process, no fork).
        batch = self.dir / "netns.batch"
        names = [self.switch_ns] + [h["ns"] for h in self._state["hosts"].values()]
        batch.write_text("".join(f"netns add {n}\n" for n in names))
        _run(["ip", "-batch", str(batch)], "creating the lab namespaces")

        sw = self._spawn_holder(
            "switch",
            ["ip", "netns", "exec", self.switch_ns, "sh", "-c", self._switch_script()],
            self.dir / "switch" / "holder.log",
        )
        self._state["switch"].update(pid=sw.pid, start=procs.start_time(sw.pid))
        self._wait_ready({"the switch": (sw, self.dir / "switch" / "holder.log")}, timeout)

        holders = {}
        booting: dict[str, float] = {}  # systemd host -> when its holder started
        for name, h in self._state["hosts"].items():
            if h.get("systemd"):
                booting[name] = time.monotonic()
                holders[f"host {name}"] = self._spawn_systemd_host(name)
                continue
            log = self._host_dir(name) / "holder.log"
            argv = [
                "ip",
                "netns",
                "exec",
                h["ns"],
                "unshare",
                "--uts",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                self._holder_script(name),
            ]
            p = self._spawn_holder(name, argv, log)
            h.update(holder_pid=p.pid, holder_start=procs.start_time(p.pid))
            holders[f"host {name}"] = (p, log)
        self._write_state()
        self._wait_ready(holders, timeout)
        for name in booting:
            self._find_init(name, timeout)
        self._write_state()

        plain = [n for n in self._state["hosts"] if n not in booting]
        if sshd:
            self._state["sshd"] = True
            for name in plain:
                self._start_sshd(name)
            self._write_state()
        if booting:
            # Meanwhile the plain hosts' sshd come up; a systemd host's starts after boot,
            # once the lab dir (its config and keys) is visible in the host's /tmp.
            self._wait_booted(booting, boot_timeout)
            for name in booting:
                if self._state["hosts"][name].get("networkd"):
                    self._wait_network(name, timeout, self.host(name).cidr)
                self._expose_lab_dir(name, timeout)
                self._snapshot_as_built(name, timeout)
                if sshd:
                    self._start_sshd(name)
            self._write_state()
        if sshd:
            self._wait_sshd(list(self._state["hosts"]), timeout)
        self._state["state"] = "up"
        self._write_state()

    def _host_dir(self, name: str) -> Path:
        return self.dir / "hosts" / name

    def _write_files(self) -> None:
        """Keys, configs and the hosts' pre-populated overlay upper dirs."""
        spec = self.spec
        kdir = self.dir / "keys"
        kdir.mkdir(mode=0o700)
        user = keys.generate(f"mxone-lab-{self.id}-root")
        keys.write_private(self.user_key_path, user)
        (kdir / "authorized_keys").write_text(user.public_line + "\n")
        host_keys = {h.name: keys.generate(f"mxone-lab-{self.id}-{h.name}") for h in spec.hosts}
        known = "".join(
            f"{h.name},{spec.ip_of(h)} {host_keys[h.name].public_key}\n" for h in spec.hosts
        )
        self.known_hosts_path.write_text(known)
        etc_hosts = "127.0.0.1\tlocalhost\n" + "".join(
            f"{spec.ip_of(h)}\t{h.name}\n" for h in spec.hosts
        )
        (self.dir / "switch").mkdir()
        (self.dir / "switch" / "setup.batch").write_text(self._switch_batch())
        for h in spec.hosts:
            hd = self._host_dir(h.name)
            hd.mkdir(parents=True)
            self._state["hosts"][h.name]["host_key"] = host_keys[h.name].public_key
            keys.write_private(hd / "ssh_host_ed25519_key", host_keys[h.name])
            (hd / "sshd_config").write_text(self._sshd_config(h.name))
            # A networkd host gets its address from its own config, at every boot.
            (hd / "net.batch").write_text(
                "link set lo up\n"
                if h.networkd
                else f"link set lo up\naddr add {spec.ip_of(h)}/{spec.prefix} dev eth0\n"
                "link set eth0 up\n"
            )
            for lower in OVERLAID:
                if not os.path.isdir(lower):
                    continue
                ov = hd / "ov" / lower.strip("/")
                (ov / "upper").mkdir(parents=True)
                (ov / "work").mkdir()
                # The merged root dir takes the upper dir's mode: keep the lower's (/root 0700).
                os.chmod(ov / "upper", os.stat(lower).st_mode & 0o7777)
            etc = hd / "ov" / "etc" / "upper"
            (etc / "hostname").write_text(h.name + "\n")
            (etc / "hosts").write_text(etc_hosts)
            network = etc / NETWORK_FILE.removeprefix("/etc/")
            network.parent.mkdir(parents=True, exist_ok=True)
            network.write_text(self._network_file(h.name))
            if h.systemd:
                systemd_host.write_etc(etc, networkd=h.networkd)
            home = hd / "ov" / "root" / "upper"
            (home / ".bashrc").write_text(_PLAIN_BASHRC)
            (home / ".profile").write_text(_PLAIN_BASHRC + "[ -f ~/.bashrc ] && . ~/.bashrc\n")
            ssh = home / ".ssh"
            ssh.mkdir(mode=0o700)
            # Opaque: the host's /root/.ssh holds only the lab's key, never the machine's.
            with contextlib.suppress(OSError):
                os.setxattr(ssh, "trusted.overlay.opaque", b"y")
            keys.write_private(ssh / "id_ed25519", user)
            (ssh / "known_hosts").write_text(known)
        self._write_state()

    def _network_file(self, name: str) -> str:
        """The text of host ``name``'s :data:`NETWORK_FILE` as built."""
        h = self._state["hosts"][name]
        reader = (
            "systemd-networkd brings it up at every boot"
            if h.get("networkd")
            else "the lab brings the address up itself; nothing reads this file"
        )
        return (
            f"# lab {self.id} host {name}: its own network configuration ({reader}).\n"
            "[Match]\n"
            "Name=eth0\n"
            "\n"
            "[Network]\n"
            f"Address={h['ip']}/{h['prefix']}\n"
            "LinkLocalAddressing=no\n"
            "IPv6AcceptRA=no\n"
        )

    def _switch_batch(self) -> str:
        lines = [
            "link set lo up",
            "link add br0 type bridge stp_state 0 forward_delay 0",
            "link set br0 up",
        ]
        for h in self._state["hosts"].values():
            port = h["switch_port"]
            lines += [
                f"link add {port} type veth peer name eth0 address {h['mac']} netns {h['ns']}",
                f"link set {port} master br0",
                f"link set {port} up",
            ]
        return "\n".join(lines) + "\n"

    def _switch_script(self) -> str:
        batch = shlex.quote(str(self.dir / "switch" / "setup.batch"))
        # IPv6 off before the bridge exists, so the switch never speaks on the lab segment.
        return (
            "set -e\n"
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6\n"
            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6\n"
            f"ip -batch {batch}\n"
            "echo ready\n"
            "exec sleep infinity >/dev/null\n"
        )

    def _holder_script(self, name: str) -> str:
        hd = self._host_dir(name)
        q = shlex.quote
        mounts = []
        for lower in OVERLAID:
            ov = hd / "ov" / lower.strip("/")
            if not ov.is_dir():
                continue
            opts = f"lowerdir={lower},upperdir={ov / 'upper'},workdir={ov / 'work'}"
            mounts.append(f"mount -t overlay {q(f'{self.id}-{name}{lower}')} -o {q(opts)} {lower}")
        return (
            "\n".join(
                [
                    "set -e",
                    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
                    "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
                    f"ip -batch {q(str(hd / 'net.batch'))}",
                    f"echo {q(name)} > /proc/sys/kernel/hostname",
                    # This mount namespace is a private copy: its copies of the /run/netns
                    # bind mounts would keep every other lab's namespaces alive after their
                    # teardown. Drop them (only here; the machine's are untouched).
                    "umount -l /run/netns 2>/dev/null || true",
                    *mounts,
                    f"mount -t tmpfs -o mode=0755,size=64m {q(f'{self.id}-{name}-run')} /run",
                    "mkdir -p /run/sshd /run/lock",
                    "echo ready",
                    "exec sleep infinity >/dev/null",
                ]
            )
            + "\n"
        )

    # ------------------------------------------------------------- systemd hosts

    def _spawn_systemd_host(self, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start the host's systemd (via its setup script) and the drain of its console.

        The launcher is ``unshare --pid --fork --kill-child ...`` in the host's network
        namespace and its own cgroup; its child becomes PID 1 of the host. Returns the
        launcher (its stdout says ``ready`` once the host's mounts are done) and the
        console log (where the setup's errors go too).
        """
        h = self._state["hosts"][name]
        hd = self._host_dir(name)
        console_log = hd / "console.log"
        cgroup = Path(h["cgroup"])
        cgroup.mkdir()  # fails if it exists: the name is this lab's alone
        master, slave = os.openpty()
        try:
            # Plain newlines in console.log (no "\r\n" from the tty's output processing).
            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.OPOST
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            with open(console_log, "ab") as log:
                drain = subprocess.Popen(
                    ["nsenter", f"--net={NETNS_DIR / h['ns']}", "--", "cat"],
                    stdin=master,
                    stdout=log,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    close_fds=True,
                )
            self._children[drain.pid] = drain
            h.update(console_pid=drain.pid, console_start=procs.start_time(drain.pid))
            argv = [
                "sh",
                "-c",
                'echo 0 > "$0" && exec "$@"',  # into the host's cgroup, then on
                str(cgroup / "cgroup.procs"),
                "ip",
                "netns",
                "exec",
                h["ns"],
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--uts",
                "--ipc",
                "--cgroup",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                self._systemd_holder_script(name),
                f"{self.id}-{name}",
                os.ttyname(slave),
            ]
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=slave,
                start_new_session=True,
                close_fds=True,
                env=systemd_host.BOOT_ENV,
            )
        finally:
            os.close(master)
            os.close(slave)
        self._children[p.pid] = p
        h.update(launcher_pid=p.pid, launcher_start=procs.start_time(p.pid))
        return p, console_log

    def _systemd_holder_script(self, name: str) -> str:
        hd = self._host_dir(name)
        overlays = []
        for lower in OVERLAID:
            ov = hd / "ov" / lower.strip("/")
            if ov.is_dir():
                opts = f"lowerdir={lower},upperdir={ov / 'upper'},workdir={ov / 'work'}"
                overlays.append((lower, f"{self.id}-{name}{lower}", opts))
        return systemd_host.holder_script(
            name=name,
            tag=f"{self.id}-{name}",
            net_batch=hd / "net.batch",
            overlays=overlays,
            shown=self._shown_in_tmp(),
        )

    def _shown_in_tmp(self) -> list[tuple[Path, str]]:
        """The machine's dirs under /tmp a systemd host needs in its own /tmp, each with its
        staging dir: the lab dir, and the checkout and venv whose python runs on the hosts
        when they live in /tmp (a CI clone, say)."""
        out = [(self.dir, _LAB_DIR_STAGING)]
        tmp = Path("/tmp")
        for d in (Path(__file__).resolve().parents[2], Path(sys.prefix).resolve()):
            if d.is_relative_to(tmp) and not any(d.is_relative_to(p) for p, _ in out):
                out.append((d, f"{_LAB_DIR_STAGING}-{len(out)}"))
        return out

    def _find_init(self, name: str, timeout: float) -> None:
        """Record the host's PID 1 (the launcher's only child) as its holder."""
        h = self._state["hosts"][name]
        launcher = int(h["launcher_pid"])
        deadline = time.monotonic() + timeout
        while True:
            kids = procs.children(launcher)
            if kids:
                h.update(holder_pid=kids[0], holder_start=procs.start_time(kids[0]))
                return
            if not procs.alive(launcher) or time.monotonic() > deadline:
                raise LabError(
                    f"host {name}: systemd did not start"
                    + _log_tail(self._host_dir(name) / "console.log")
                )
            time.sleep(0.005)

    def _wait_booted(self, started: Mapping[str, float], timeout: float) -> None:
        """Wait until every systemd host has finished booting (hosts boot in parallel).

        ``running`` is what a clean boot ends in; ``degraded`` ends the wait too, with a
        warning naming the failed units. Anything else, or no end within ``timeout`` s,
        raises :class:`LabError` with the host's state, its pending jobs and the tail of
        its console.
        """
        deadline = min(started.values()) + timeout
        for name, since in started.items():
            h = self._state["hosts"][name]
            state = ""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(
                        self._boot_problem(name, f"did not finish booting within {timeout:g} s")
                    )
                try:
                    r = self.exec(
                        name,
                        ["systemctl", "is-system-running", "--wait"],
                        check=False,
                        timeout=left,
                    )
                except HostCommandError:
                    continue  # timed out: the deadline check above reports it
                except LabError:  # its PID 1 is gone
                    raise LabError(self._boot_problem(name, "ended while booting")) from None
                state = r.stdout.strip()
                if state in ("running", "degraded"):
                    break
                if state in ("maintenance", "stopping"):
                    raise LabError(self._boot_problem(name, f"booted into state {state!r}"))
                time.sleep(0.05)  # systemd is not reachable yet ("offline")
            # From the start of its holder to the end of boot by systemd's own clock (the
            # machine's CLOCK_MONOTONIC): not when this loop got round to the host.
            finished = time.monotonic()
            with contextlib.suppress(LabError, ValueError):
                r = self.exec(
                    name, ["systemctl", "show", "-p", "FinishTimestampMonotonic", "--value"]
                )
                finished = int(r.stdout.strip()) / 1e6 or finished
            h["boot_seconds"] = round(finished - since, 3)
            h["boot_state"] = state
            if state == "degraded":
                failed = self._failed_units(name)
                h["failed_units"] = failed
                warnings.warn(
                    f"lab {self.id}: systemd host {name} booted degraded; failed units: "
                    f"{', '.join(failed) or '?'} (see `journalctl -u UNIT` on {name})",
                    stacklevel=4,
                )

    def _wait_network(self, name: str, timeout: float, want: str | None = None) -> list[str]:
        """Wait until systemd-networkd has brought up ``want`` (any IPv4 address when None)
        on host ``name``'s eth0; the addresses it has then. Raises :class:`LabError` with
        networkd's log when it does not within ``timeout`` s."""
        h = self._state["hosts"][name]
        deadline = time.monotonic() + timeout
        while True:
            data = _ip_json(
                f"/proc/{h['holder_pid']}/ns/net", ["-4", "addr", "show", "dev", "eth0"]
            )
            have = sorted(
                f"{a['local']}/{a['prefixlen']}" for x in data for a in x.get("addr_info", [])
            )
            if (want in have) if want else have:
                return have
            if time.monotonic() > deadline:
                log = ""
                with contextlib.suppress(LabError):
                    log = self.exec(
                        name,
                        "journalctl -u systemd-networkd --no-pager -o cat | tail -n 5",
                        check=False,
                        timeout=5,
                    ).stdout
                raise LabError(
                    f"host {name}: systemd-networkd did not bring up {want or 'an address'} on "
                    f"eth0 within {timeout:g} s (it has {', '.join(have) or 'none'}; its "
                    f"config: {NETWORK_FILE}); networkd says: "
                    + (" | ".join(log.strip().splitlines()) or "nothing")
                )
            time.sleep(0.05)

    def _failed_units(self, name: str) -> list[str]:
        r = self.exec(
            name,
            ["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--full"],
            check=False,
        )
        return sorted(systemd_host.parse_units(r.stdout))

    def _boot_problem(self, name: str, what: str) -> str:
        """`host X: systemd ...` with the host's state, pending jobs and console tail."""
        detail = ""
        with contextlib.suppress(LabError):
            st = self.exec(name, ["systemctl", "is-system-running"], check=False, timeout=5)
            detail = f" (state {st.stdout.strip() or '?'}"
            jobs = self.exec(
                name,
                ["systemctl", "list-jobs", "--plain", "--no-legend", "--full"],
                check=False,
                timeout=5,
            )
            pending = [
                line.split()[1] for line in jobs.stdout.splitlines() if len(line.split()) > 1
            ]
            detail += f"; waiting for {', '.join(pending[:8])})" if pending else ")"
        return f"host {name}: systemd {what}{detail}" + _log_tail(
            self._host_dir(name) / "console.log"
        )

    def _expose_lab_dir(self, name: str, timeout: float) -> None:
        """Show the lab dir (and a checkout or venv in /tmp: see _shown_in_tmp) in the host's
        /tmp at their own paths (configs, keys and the python the lab runs keep their
        paths), now that boot-time cleaning of /tmp is over."""
        q = shlex.quote
        self.exec(
            name,
            " && ".join(
                f"mkdir -p {q(str(path))} && mount --bind {staging} {q(str(path))} "
                f"&& umount {staging} && rmdir {staging}"
                for path, staging in self._shown_in_tmp()
            ),
            timeout=timeout,
        )

    def _snapshot_as_built(self, name: str, timeout: float) -> None:
        """Record what reset() puts back: the running units, the unit files and masks."""
        h = self._state["hosts"][name]
        hd = self._host_dir(name)
        r = self.exec(
            name,
            ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full"],
            timeout=timeout,
        )
        units = systemd_host.parse_units(r.stdout)
        h["as_built_units"] = sorted(
            u for u, st in units.items() if st in systemd_host.RUNNING_STATES
        )
        (hd / "units.manifest").write_text(
            self.exec(name, systemd_host.MANIFEST, timeout=timeout).stdout
        )
        self.exec(name, systemd_host.save_units_command(hd / "units.tar"), timeout=timeout)

    def _host_popen(
        self, name: str, args: Sequence[str], cwd: str | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``args`` on host ``name``; the Popen's PID is the command's own.

        On a systemd host the command is born in the host's PID namespace (under its
        systemd), so it sees the host's processes and ``systemctl`` reaches PID 1.
        """
        argv = self._nsenter(name, cwd) + list(args)
        h = self._state["hosts"][name]
        if not h.get("systemd"):
            return subprocess.Popen(argv, **kwargs)
        with systemd_host.children_in_pid_ns(int(h["holder_pid"])):
            return subprocess.Popen(argv, **kwargs)

    def _sshd_config(self, name: str) -> str:
        hd = self._host_dir(name)
        return (
            f"# lab {self.id} host {name}: lab-only keys, nothing from /etc/ssh\n"
            # Every address of the host's own namespace, as on a real server: after a LIM
            # joins a cluster it has a new base address (and its old one is the alias).
            "ListenAddress 0.0.0.0\n"
            "Port 22\n"
            f"HostKey {hd / 'ssh_host_ed25519_key'}\n"
            f"PidFile {hd / 'sshd.pid'}\n"
            # The lab's root key for every host, then the host's own file (where the tool
            # installs the cluster's sync key with its forced command).
            f"AuthorizedKeysFile {self.dir / 'keys' / 'authorized_keys'} .ssh/authorized_keys\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            # Tests and benchmarks may open many sessions at once.
            "MaxStartups 100:30:200\n"
            "MaxSessions 100\n"
            "Subsystem sftp internal-sftp\n"
        )

    def _spawn_holder(self, label: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as err:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,  # survive the builder's terminal (Ctrl-C, hangup)
                close_fds=True,
            )
        self._children[p.pid] = p
        return p

    def _wait_ready(
        self, holders: Mapping[str, tuple[subprocess.Popen[bytes], Path]], timeout: float
    ) -> None:
        """Wait until each holder printed ``ready`` (its setup succeeded), all in parallel."""
        sel = selectors.DefaultSelector()
        buffers: dict[str, bytes] = {}
        for label, (p, _) in holders.items():
            assert p.stdout is not None
            sel.register(p.stdout, selectors.EVENT_READ, label)
            buffers[label] = b""
        deadline = time.monotonic() + timeout
        try:
            while buffers:
                left = deadline - time.monotonic()
                if left <= 0:
                    label = min(buffers)
                    raise LabError(
                        f"{label} was not ready within {timeout:g} s" + _log_tail(holders[label][1])
                    )
                for key, _ in sel.select(left):
                    label = key.data
                    chunk = os.read(key.fd, 4096)
                    buffers[label] += chunk
                    if b"ready\n" in buffers[label]:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()  # type: ignore[union-attr]
                        del buffers[label]
                    elif not chunk:
                        p, log = holders[label]
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            p.wait(1)
                        raise LabError(
                            f"setting up {label} failed (exit status {p.returncode})"
                            + _log_tail(log)
                        )
        finally:
            sel.close()

    def _start_sshd(self, name: str) -> None:
        h = self._state["hosts"][name]
        hd = self._host_dir(name)
        argv = [SSHD, "-D", "-f", str(hd / "sshd_config"), "-E", str(hd / "sshd.log")]
        # nsenter -n -m -u sets the namespaces and execs without forking (only -p/-U
        # need a fork), so this PID is sshd's own.
        p = self._host_popen(
            name,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=self.host_env(name),
        )
        self._children[p.pid] = p
        h.update(sshd_pid=p.pid, sshd_start=procs.start_time(p.pid))

    def _wait_sshd(self, names: Sequence[str], timeout: float) -> None:
        """Wait until every named host's sshd listens on all its addresses (bounded)."""
        pending = list(names)
        deadline = time.monotonic() + timeout
        while pending:
            for name in list(pending):
                h = self._state["hosts"][name]
                pid = h["sshd_pid"]
                if _listening(pid, "0.0.0.0", 22):
                    pending.remove(name)
                elif not procs.alive(pid):
                    self._reap(pid)
                    raise LabError(
                        f"sshd on {name} exited before listening on {h['ip']}:22"
                        + _log_tail(self._host_dir(name) / "sshd.log")
                    )
            if pending and time.monotonic() > deadline:
                name = pending[0]
                raise LabError(
                    f"sshd on {name} did not listen on {self._state['hosts'][name]['ip']}:22 "
                    f"within {timeout:g} s" + _log_tail(self._host_dir(name) / "sshd.log")
                )
            if pending:
                time.sleep(0.003)

    # ----------------------------------------------------------------------- attach

    @classmethod
    def attach(cls, lab_id: str | None = None, *, root: Path = DEFAULT_ROOT) -> Lab:
        """The running lab ``lab_id``; without one: $MXONE_LAB, else the current lab.

        Raises :class:`LabNotFound` with the ids of the labs that do exist.
        """
        lab_id = lab_id or os.environ.get("MXONE_LAB") or None
        if lab_id is None:
            link = current_link()
            try:
                lab_id = Path(os.readlink(link)).name
            except OSError:
                raise LabNotFound(
                    "no lab given and no current lab (start one with `mxone-lab up`)"
                    + _existing_hint(root)
                ) from None
        if not ID_RE.match(lab_id):
            raise LabNotFound(f"{lab_id!r} is not a lab id (like mx3fa9c1)" + _existing_hint(root))
        lab_dir = root / lab_id
        try:
            state = json.loads((lab_dir / "lab.json").read_text())
        except FileNotFoundError:
            raise LabNotFound(f"lab {lab_id} does not exist" + _existing_hint(root)) from None
        except (OSError, ValueError) as exc:
            raise LabNotFound(f"lab {lab_id}: cannot read {lab_dir / 'lab.json'}: {exc}") from None
        return cls(lab_dir, state)

    @staticmethod
    def list_ids(root: Path = DEFAULT_ROOT) -> list[str]:
        """Ids of the labs with a state file under ``root``, oldest first."""
        found = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(root):
                if ID_RE.match(entry.name) and os.path.exists(os.path.join(entry.path, "lab.json")):
                    found.append((entry.stat().st_mtime, entry.name))
        return [n for _, n in sorted(found)]

    # ------------------------------------------------------------------ run on hosts

    def _check_pid(self, pid: int, start: int | None, what: str) -> None:
        # A recorded PID is trusted only while it is the very process we started: a
        # recycled PID could belong to anything, even a process of the machine itself.
        if (
            not pid
            or not procs.alive(pid)
            or (start is not None and procs.start_time(pid) != start)
        ):
            raise LabError(
                f"lab {self.id}: {what} is down (process {pid} is gone); rebuild the lab"
            )

    def _nsenter(self, name: str, cwd: str | None = None) -> list[str]:
        if self._torn_down:
            raise LabError(f"lab {self.id} has been torn down")
        h = self._state["hosts"][name]
        self._check_pid(h["holder_pid"], h.get("holder_start"), f"host {name}")
        argv = ["nsenter", "-t", str(h["holder_pid"]), "-n", "-m", "-u"]
        if h.get("systemd"):
            # IPC and cgroup namespaces too (systemctl status, systemd-cgls read the host's
            # cgroup tree); the PID namespace: see _host_popen.
            argv += ["-i", "-C"]
        if cwd:
            argv.append(f"--wd={cwd}")
        return argv + ["--"]

    def nsenter_argv(self, host: str, cwd: str | None = None) -> list[str]:
        """The argv prefix that runs a command on ``host`` (its net, mount and UTS ns;
        on a systemd host also its IPC and PID namespaces - then nsenter forks, so the
        PID of the process started with this prefix is nsenter's, not the command's)."""
        self.host(host)
        argv = self._nsenter(host, cwd)
        if self._state["hosts"][host].get("systemd"):
            argv.insert(-1, "-p")
        return argv

    def host_env(self, host: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment commands get on ``host``: a clean one, not the caller's.

        PATH starts with the project venv's bin dir (so ``python3`` has the project's
        packages); HOME=/root; MXONE_LAB and MXONE_LAB_HOST name the lab and the host.
        No SSH agent or other variable of the caller leaks in; ``extra`` is added last.
        """
        env = {
            "PATH": f"{venv_bin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "USER": "root",
            "LOGNAME": "root",
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "MXONE_LAB": self.id,
            "MXONE_LAB_HOST": host,
        }
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
        env.update(extra or {})
        return env

    def exec(
        self,
        host: str,
        argv: Sequence[str] | str,
        *,
        input: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on ``host`` and wait for it; output is captured as text.

        ``argv`` is an argument list, or a string run by ``sh -c``. With ``check`` a
        non-zero exit raises :class:`HostCommandError` (with stdout/stderr). A command
        still running after ``timeout`` s is killed and raises :class:`HostCommandError`
        (``returncode`` None) whatever ``check`` says.

        Returns once the command has exited and its output is drained; a background
        child (``"daemon &"``) that keeps the output pipes open does not hold it up, but
        loses them (use :meth:`popen` for long-running processes).
        """
        self.host(host)
        args = ["sh", "-c", argv] if isinstance(argv, str) else list(argv)
        p = self._host_popen(
            host,
            args,
            cwd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.host_env(host, env),
        )
        rc, out, err = _communicate(p, input.encode() if input is not None else None, timeout)
        if rc is None:
            raise HostCommandError(host, args, None, out, err, timeout)
        r = subprocess.CompletedProcess(args, rc, out, err)
        if check and rc != 0:
            raise HostCommandError(host, args, rc, out, err)
        return r

    def popen(
        self,
        host: str,
        argv: Sequence[str] | str,
        *,
        keep_on_reset: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start a command on ``host`` without waiting; returns its Popen (PID = the command).

        The process is tracked: :meth:`reset` ends it unless ``keep_on_reset``, and
        :meth:`down` always does. ``kwargs`` go to :class:`subprocess.Popen`; by default
        the process starts in its own session (a Ctrl-C meant for the caller misses it).
        """
        self.host(host)
        args = ["sh", "-c", argv] if isinstance(argv, str) else list(argv)
        kwargs.setdefault("start_new_session", True)
        p = self._host_popen(host, args, cwd, env=self.host_env(host, env), **kwargs)
        self._procs.append(_Tracked(host, p, keep_on_reset))
        return p

    def run_python(
        self,
        host: str,
        code: str,
        *,
        args: Sequence[str] = (),
        input: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` on ``host`` with the project's interpreter (its packages,
        paramiko included, are importable there); like :meth:`exec` otherwise."""
        return self.exec(
            host,
            [sys.executable, "-c", code, *args],
            input=input,
            timeout=timeout,
            check=check,
            env=env,
        )

    def ssh_exec(
        self,
        from_host: str,
        command: str,
        *,
        to: Sequence[str] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, SshResult]:
        """Log in over SSH from ``from_host`` to each host in ``to`` (default: all) and run
        ``command``; the per-host result map, one host's failure never stopping the others.

        Real SSH: paramiko on ``from_host``, key auth with the lab user key, each host key
        verified against the lab's (unknown or changed keys are rejected). ``timeout``
        bounds each connect and each command.
        """
        self.host(from_host)
        targets = [self.host(n) for n in (to if to is not None else list(self.hosts))]
        request = {
            "targets": [
                {"name": h.name, "ip": str(h.ip), "port": h.ssh_port, "host_key": h.host_key}
                for h in targets
            ],
            "command": command,
            "key_path": str(self.user_key_path),
            "timeout": timeout,
        }
        r = self.exec(
            from_host,
            [sys.executable, "-m", "mxone_lab.remote"],
            input=json.dumps(request),
            timeout=10.0 + 2 * timeout * max(1, len(targets)),
        )
        return {name: SshResult(**res) for name, res in json.loads(r.stdout).items()}

    def addresses(self, host: str) -> list[str]:
        """The IPv4 addresses on ``host``'s eth0 right now, as ``"a.b.c.d/len"``, sorted."""
        h = self.host(host)
        self._check_pid(
            h.holder_pid, self._state["hosts"][host].get("holder_start"), f"host {host}"
        )
        data = _ip_json(h.netns_path, ["-4", "addr", "show", "dev", "eth0"])
        return sorted(
            f"{a['local']}/{a['prefixlen']}" for link in data for a in link.get("addr_info", [])
        )

    # ---------------------------------------------------------------------- status

    def status(self) -> LabStatus:
        """A live look at the lab: processes alive, addresses, switch ports, faults."""
        hosts = []
        port_up = self._switch_ports_up()
        for name, h in self._state["hosts"].items():
            holder_ok = _same_process(h.get("holder_pid"), h.get("holder_start"))
            sshd_ok = _same_process(h.get("sshd_pid"), h.get("sshd_start"))
            addrs: tuple[str, ...] = ()
            system_state = "?" if h.get("systemd") else ""
            if holder_ok:
                with contextlib.suppress(Exception):
                    addrs = tuple(self.addresses(name))
                if h.get("systemd"):
                    with contextlib.suppress(LabError):
                        r = self.exec(
                            name, ["systemctl", "is-system-running"], check=False, timeout=10
                        )
                        system_state = r.stdout.strip() or "?"
            hosts.append(
                HostStatus(
                    name=name,
                    ip=IPv4Address(h["ip"]),
                    mac=h["mac"],
                    ns=h["ns"],
                    holder_pid=int(h.get("holder_pid") or 0),
                    holder_alive=holder_ok,
                    sshd_pid=h.get("sshd_pid"),
                    sshd_alive=sshd_ok,
                    addresses=addrs,
                    port_up=port_up.get(h["switch_port"]),
                    systemd=bool(h.get("systemd")),
                    system_state=system_state,
                )
            )
        return LabStatus(
            id=self.id,
            dir=self.dir,
            state=str(self._read_state().get("state")),
            subnet=str(self._state["spec"]["subnet"]),
            hosts=tuple(hosts),
            faults=tuple(self.faults.active()),
        )

    def _switch_ports_up(self) -> dict[str, bool]:
        if not _same_process(self.switch_pid, self._state["switch"].get("start")):
            return {}
        try:
            links = _ip_json(self.switch_netns_path, ["link", "show"])
        except LabError:
            return {}
        return {link["ifname"]: "UP" in link.get("flags", []) for link in links}

    # ----------------------------------------------------------------------- reset

    def reset(self, timeout: float = 10.0) -> None:
        """Put every host back to its just-built state, between tests.

        Lifts every fault; ends every process on the hosts except the lab's own (holders,
        sshd listeners) and those started with ``popen(..., keep_on_reset=True)``;
        restarts an sshd that died; removes links other than lo/eth0, addresses other than
        the base one, non-kernel routes and every neighbour entry; restores hostname,
        eth0's MAC and up state, nftables (flushed), qdiscs and a few ARP sysctls; wipes
        the product dirs (:data:`PRODUCT_DIRS`) and root's authorized_keys. Raises
        :class:`LabError` naming what could not be reset; a host whose holder died cannot
        be (rebuild the lab).

        On a systemd host, first every unit that was not running as built is stopped
        (0.5 s for a clean stop, then SIGKILL to all its processes), the unit files, masks
        and enablement symlinks go back to as-built (what the product installed under
        /etc/systemd/system is removed), then ``daemon-reload`` and ``reset-failed``; its
        processes outside the as-built units (leftovers of ``KillMode=process``, commands
        run there) are ended like any other; /run/mxone is removed and the journal emptied.
        The host's systemd and its as-built units keep running (one a test stopped is
        started again).
        """
        self._require_local()
        for name, h in self._state["hosts"].items():
            self._check_pid(h["holder_pid"], h.get("holder_start"), f"host {name}")
        self.faults.restore()

        problems: list[str] = []
        for name, h in self._state["hosts"].items():
            if h.get("systemd"):
                problems += self._reset_units(name, timeout)

        # Processes: everything in the lab's namespaces but the lab's own.
        keep = {t.proc.pid for t in self._procs if t.keep_on_reset and t.proc.poll() is None}
        keep |= self._as_built_processes()
        lab_pids = procs.members(self._net_ids(), pid=self._systemd_pid_ids())
        victims = [p for p in lab_pids if p not in self._infra_pids() | keep]
        tracked = {t.proc.pid: t.proc for t in self._procs}
        left = procs.end(victims, grace=0.5, children=tracked | self._children)
        self._procs = [t for t in self._procs if t.proc.poll() is None]
        problems += [f"process {p} ({procs.comm(p)}) did not end" for p in left]

        # One shell per host, all hosts at once: network, files, firewall, sysctls.
        shells = {
            name: self._host_popen(
                name,
                ["sh", "-c", self._reset_script(name)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.host_env(name),
                text=True,
            )
            for name in self._state["hosts"]
        }
        deadline = time.monotonic() + timeout
        for name, p in shells.items():
            try:
                out, _ = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                problems.append(f"{name}: reset script did not finish within {timeout:g} s")
                continue
            if p.returncode != 0:
                problems.append(f"{name}: reset script failed: {out.strip()}")

        # An sshd that a test stopped comes back.
        if self._state.get("sshd"):
            dead = [
                n
                for n, h in self._state["hosts"].items()
                if not _same_process(h.get("sshd_pid"), h.get("sshd_start"))
            ]
            if dead:
                with self._state_lock() as state:
                    self._state = state
                    for name in dead:
                        self._start_sshd(name)
                try:
                    self._wait_sshd(dead, timeout)
                except LabError as exc:
                    problems.append(str(exc))
        if problems:
            raise LabError(f"lab {self.id}: reset incomplete: " + "; ".join(problems))

    def reboot(self, name: str, timeout: float = 10.0, boot_timeout: float = 120.0) -> None:
        """Power-cycle systemd host ``name``: everything it ran ends, its disks stay.

        Kept, as on a server's disks: the host's own /etc, /var, /root and /opt (its
        overlay upper dirs). Lost, as in a power cycle: every process (its PID 1 is killed,
        so the kernel ends everything in its PID namespace, the lab's sshd there too),
        /run, /tmp, /dev, and the kernel's network state: the host's network namespace is
        replaced by a new one with a fresh eth0 (same name, MAC and switch port), so its
        addresses, routes, neighbours, nftables and sysctls are gone. Faults in force on
        its switch port stay in force. Then systemd boots again from the host's own files:
        on a ``networkd`` host systemd-networkd brings up whatever the host's network
        configuration says (not necessarily the lab's base address); on another the lab
        adds the base address as at build. Returns once boot is over, eth0 has an address
        and (if the lab runs sshd) sshd listens.

        Raises :class:`LabError` for a host that does not boot systemd (nothing would boot
        it again), or when it does not come back (with its console log).
        """
        self._require_local()
        self.host(name)
        h = self._state["hosts"][name]
        if not h.get("systemd"):
            raise LabError(
                f"host {name} does not boot systemd: only a systemd host can be rebooted "
                f"(HostSpec systemd=True; `mxone-lab up --systemd {name}`)"
            )
        self._check_pid(h["holder_pid"], h.get("holder_start"), f"host {name}")
        children = dict(self._children) | {t.proc.pid: t.proc for t in self._procs}
        old_net = procs.process_ns(int(h["holder_pid"]), "net")

        # Power off: PID 1 and with it every process of the host.
        init = int(h["holder_pid"])
        launcher = int(h["launcher_pid"]) if _same_process(
            h.get("launcher_pid"), h.get("launcher_start")) else 0
        procs.signal_all([init], signal.SIGKILL)
        left = procs.wait_gone([init, launcher] if launcher else [init], timeout, children)
        # The console's drain ends once nothing holds the console; anything else still in
        # the host's network namespace (a command entered from outside) ends with it.
        strays = procs.members({old_net} if old_net else set())
        procs.signal_all(strays, signal.SIGKILL)
        left += procs.wait_gone(strays, timeout, children)
        if left:
            raise LabError(
                f"host {name}: did not power off within {timeout:g} s: "
                + ", ".join(f"process {p} ({procs.comm(p)})" for p in left)
            )
        self._children = {p: c for p, c in self._children.items() if c.poll() is None}
        self._procs = [t for t in self._procs if t.proc.poll() is None]
        h.update(holder_pid=None, holder_start=None, sshd_pid=None, sshd_start=None,
                 launcher_pid=None, launcher_start=None, console_pid=None, console_start=None)
        self._write_state()

        # A new network namespace with a fresh eth0 on the same switch port.
        _run(["ip", "netns", "del", h["ns"]], f"host {name}: removing its network namespace")
        deadline = time.monotonic() + timeout
        port = h["switch_port"]
        while _link_exists(self.switch_ns, port):
            if time.monotonic() > deadline:
                raise LabError(f"host {name}: its switch port {port} was not gone within "
                               f"{timeout:g} s of its network namespace")
            time.sleep(0.01)
        _run(["ip", "netns", "add", h["ns"]], f"host {name}: creating its network namespace")
        batch = self._host_dir(name) / "replug.batch"
        batch.write_text(
            f"link add {port} type veth peer name eth0 address {h['mac']} netns {h['ns']}\n"
            f"link set {port} master br0\n"
            f"link set {port} up\n"
        )
        _run(["ip", "-n", self.switch_ns, "-batch", str(batch)],
             f"host {name}: plugging its eth0 into the switch")
        self.faults.replug(name)
        left = systemd_host.remove_cgroup(Path(h["cgroup"]))
        if left:
            raise LabError(f"host {name}: cannot reboot: {', '.join(left)} still there")

        # Power on.
        started = time.monotonic()
        holder = self._spawn_systemd_host(name)
        self._write_state()
        self._wait_ready({f"host {name}": holder}, timeout)
        self._find_init(name, timeout)
        self._write_state()
        self._wait_booted({name: started}, boot_timeout)
        if h.get("networkd"):
            self._wait_network(name, timeout)
        self._expose_lab_dir(name, timeout)
        if self._state.get("sshd"):
            self._start_sshd(name)
            self._write_state()
            self._wait_sshd([name], timeout)
        self._write_state()

    def _reset_script(self, name: str) -> str:
        """The shell script that puts one host back to as-built (run on that host)."""
        h = self.host(name)
        q = shlex.quote
        sysctls = "".join(
            f"[ -e /proc/sys/{k} ] && echo {v} > /proc/sys/{k}\n" for k, v in _RESET_SYSCTLS.items()
        )
        return (
            # links other than lo/eth0 (veth, macvlan... a test made)
            "for l in $(ls /sys/class/net); do\n"
            '  case "$l" in lo|eth0) ;; *) ip link del "$l" 2>/dev/null ;; esac\n'
            "done\n"
            f'[ "$(cat /sys/class/net/eth0/address)" = {h.mac} ] || '
            f"{{ ip link set eth0 down; ip link set eth0 address {h.mac}; }}\n"
            "ip link set lo up\n"
            "ip link set eth0 up\n"
            # the host's own network configuration as built (the tool rewrites it), and
            # networkd (if it runs) reading it again
            f"printf '%s' {q(self._network_file(name))} > {NETWORK_FILE}\n"
            + ("networkctl reload\n" if self._state["hosts"][name].get("networkd") else "")
            # addresses: the base one stays (no moment without it), others go
            + "ip -o -4 addr show dev eth0 | while read -r _ _ _ cidr _; do\n"
            f'  [ "$cidr" = {h.cidr} ] || ip addr del "$cidr" dev eth0\n'
            "done\n"
            f"ip -o -4 addr show dev eth0 | grep -q ' {h.cidr} ' || ip addr add {h.cidr} dev eth0\n"
            "ip -4 addr flush dev lo scope global\n"
            # routes a test added (the kernel's connected routes stay)
            "ip -4 route show table main | grep -v ' proto kernel ' | while read -r a b _; do\n"
            "  case $a in\n"
            "    blackhole|unreachable|prohibit|throw) ip route del $a $b table main ;;\n"
            "    *) ip route del $a table main ;;\n"
            "  esac\n"
            "done\n"
            "ip -4 neigh flush all nud all 2>/dev/null || ip -4 neigh flush all\n"
            "nft flush ruleset\n"
            "tc qdisc del dev eth0 root 2>/dev/null\n"
            f"rm -rf {' '.join(PRODUCT_DIRS)}\n"
            # the tool adds the cluster's sync key here; as built the host has no such file
            "rm -f /root/.ssh/authorized_keys\n"
            f"echo {q(name)} > /proc/sys/kernel/hostname\n"
            f"{sysctls}"
            + (_SYSTEMD_RESET if self._state["hosts"][name].get("systemd") else "")
            + "true\n"
        )

    def _reset_units(self, name: str, timeout: float) -> list[str]:
        """Stop what runs on systemd host ``name`` but did not as built, and put its unit
        files back; the problems met (none normally)."""
        h = self._state["hosts"][name]
        hd = self._host_dir(name)
        problems = []

        def run(argv: list[str] | str, check: bool = True) -> str:
            try:
                return self.exec(name, argv, check=check, timeout=timeout).stdout
            except HostCommandError as exc:
                problems.append(str(exc))
                return ""

        as_built = set(h.get("as_built_units") or [])
        listed = systemd_host.parse_units(
            run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full"])
        )
        extra = sorted(
            u
            for u, st in listed.items()
            if st in systemd_host.RUNNING_STATES
            and u not in as_built
            and u.endswith(systemd_host.RESET_TYPES)
        )
        reload = False
        if extra:
            run(["systemctl", "stop", "--no-block", *extra], check=False)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                states = run(["systemctl", "show", "-p", "ActiveState", "--value", *extra], False)
                if all(st in ("inactive", "failed") for st in states.split()):
                    break
                time.sleep(0.05)
            # Whatever did not stop in time, and every process a unit leaves behind
            # (KillMode=process), now; then the stop jobs finish at once.
            run(["systemctl", "kill", "--kill-whom=all", "--signal=SIGKILL", *extra], False)
            run(["systemctl", "stop", *extra], check=False)
            reload = True
        if run(systemd_host.MANIFEST) != (hd / "units.manifest").read_text():
            run(systemd_host.restore_units_command(hd / "units.tar"))
            reload = True
        if reload:
            run(["systemctl", "daemon-reload"])
        # As-built services a test stopped or killed (dbus, logind...) run again.
        stopped = sorted(
            u
            for u in as_built
            if u.endswith((".service", ".socket", ".timer", ".path"))
            and listed.get(u) not in systemd_host.RUNNING_STATES
        )
        if stopped:
            run(["systemctl", "reset-failed", *stopped], check=False)
            run(["systemctl", "start", *stopped])
        return [f"{name}: {p}" for p in problems]

    def _as_built_processes(self) -> set[int]:
        """The processes of the systemd hosts' as-built units (journald, dbus, logind...)."""
        ids = self._systemd_pid_ids()
        spared: set[int] = set()
        if not ids:
            return spared
        for pid in procs.members((), pid=ids):
            ns = procs.process_ns(pid, "pid")
            if ns is None or ns not in ids:
                continue
            host = self._state["hosts"][ids[ns]]
            units = set(host.get("as_built_units") or [])
            if systemd_host.in_units(procs.cgroup2(pid), host["cgroup_path"], units):
                spared.add(pid)
        return spared

    # ------------------------------------------------------------------------ down

    def down(self, timeout: float = 10.0) -> None:
        """Tear the lab down and check that nothing is left.

        Ends every process in the lab's namespaces (holders, sshd, anything), deletes the
        namespaces, checks no mount of the lab remains in the machine's mount table,
        removes the lab dir and, if it names this lab, the current-lab link. Idempotent.
        A systemd host is ended by SIGKILL to its PID 1 (the kernel then ends everything
        in its PID namespace), then its cgroup tree is removed.
        Raises :class:`TeardownError` naming each leftover (after doing all it could).
        """
        if self._torn_down:
            return
        self._require_local()
        leftovers: list[str] = []
        names = self._ns_names()
        net_ids = self._net_ids(names)
        mnt_ids = set()
        for h in self._state["hosts"].values():
            if (
                _same_process(h.get("holder_pid"), h.get("holder_start"))
                and procs.process_ns(h["holder_pid"], "net") in net_ids
            ):
                mid = procs.process_ns(h["holder_pid"], "mnt")
                if mid is not None:
                    mnt_ids.add(mid)
        mnt_ids -= _forbidden_ids("mnt")
        children = dict(self._children) | {t.proc.pid: t.proc for t in self._procs}
        pid_ids = {
            nid: name
            for nid, name in self._systemd_pid_ids().items()
            if procs.process_ns(self._state["hosts"][name]["holder_pid"], "net") in net_ids
        }
        if pid_ids:
            # PID 1 of each systemd host first: its launcher reaps it and exits (and is
            # reaped by its own parent), so no zombie is left to the machine's init.
            hosts = [self._state["hosts"][name] for name in pid_ids.values()]
            inits = [int(h["holder_pid"]) for h in hosts]
            launchers = [
                int(h["launcher_pid"])
                for h in hosts
                if _same_process(h.get("launcher_pid"), h.get("launcher_start"))
            ]
            procs.signal_all(inits, signal.SIGKILL)
            procs.wait_gone(inits + launchers, 3.0, children)
        # Kill in rounds: a process may fork while the previous round is being killed.
        deadline = time.monotonic() + timeout
        while True:
            pids = procs.members(net_ids, mnt_ids, pid_ids)
            if not pids:
                break
            if time.monotonic() > deadline:
                leftovers += [f"process {p} ({procs.comm(p)})" for p in pids]
                break
            procs.signal_all(pids, signal.SIGKILL)
            procs.wait_gone(pids, min(3.0, max(0.1, deadline - time.monotonic())), children)
        for p in children.values():
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                p.wait(0.5)
        self._procs.clear()

        from pyroute2 import netns  # type: ignore[import-untyped]

        for name in names:
            if (NETNS_DIR / name).exists():
                try:
                    netns.remove(name)  # in-process umount + unlink, no helper process
                except OSError:
                    subprocess.run(
                        ["ip", "netns", "del", name], check=False, capture_output=True, timeout=10
                    )
        leftovers += [f"namespace {n}" for n in _netns_names() if n.startswith(self.prefix)]
        leftovers += [f"mount {m}" for m in self.mounts_left()]
        leftovers += self._remove_cgroups()
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.dir.exists():
                leftovers.append(f"directory {self.dir}")
        clear_current(self)
        leftovers += self._wait_keeper()
        self._torn_down = not leftovers  # with leftovers, a later call tries again
        if leftovers:
            raise TeardownError(self.id, leftovers)

    def _remove_cgroups(self) -> list[str]:
        """Remove the systemd hosts' cgroup trees (only ones named with this lab's prefix)."""
        left = []
        root = systemd_host.cgroup2_root()
        for h in self._state["hosts"].values():
            path = Path(h["cgroup"]) if h.get("cgroup") else None
            if path is None or root is None:
                continue
            if path.parent != root or not path.name.startswith(self.prefix):
                left.append(f"cgroup {path} (not this lab's: left alone)")
                continue
            left += systemd_host.remove_cgroup(path)
        return left

    def cgroups_left(self) -> list[str]:
        """Cgroups on the machine named after this lab (want: none once torn down)."""
        root = systemd_host.cgroup2_root()
        if root is None:
            return []
        with contextlib.suppress(OSError):
            return sorted(str(root / n) for n in os.listdir(root) if n.startswith(self.prefix))
        return []

    def mounts_left(self) -> list[str]:
        """Mount points in the machine's mount table that belong to this lab (want: none)."""
        marks = (str(self.dir), str(NETNS_DIR / self.prefix), f"{self.id}-")
        found = []
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                if any(m in line for m in marks):
                    found.append(line.split()[4])
        return found

    def _wait_keeper(self) -> list[str]:
        """The keeper of an ``mxone-lab up`` lab exits once its children are gone."""
        pid, start = self._state.get("keeper_pid"), self._state.get("keeper_start")
        if not pid or pid == os.getpid() or not _same_process(pid, start):
            return []
        if not procs.wait_gone([pid], 2.0):
            return []
        procs.signal_all([pid], signal.SIGTERM)
        if not procs.wait_gone([pid], 3.0):
            return []
        return [f"keeper process {pid}"]

    # -------------------------------------------------------------------- internals

    def _require_local(self) -> None:
        # Deleting namespaces needs the machine's /run/netns: a lab host has its own /run.
        where = inside_lab_host(self.dir.parent)
        if where:
            raise PrerequisiteError(
                f"lab {self.id}: this must run on the machine itself, not inside {where}"
            )

    def _ns_names(self) -> list[str]:
        recorded = [self.switch_ns] + [h["ns"] for h in self._state["hosts"].values()]
        found = [n for n in _netns_names() if n.startswith(self.prefix)]
        return list(dict.fromkeys(recorded + found))

    def _net_ids(self, names: Sequence[str] | None = None) -> set[procs.NsId]:
        """The lab's network namespaces, never the machine's own (whatever a file says)."""
        ids = set()
        for name in names if names is not None else self._ns_names():
            nid = procs.ns_id(str(NETNS_DIR / name))
            if nid is not None:
                ids.add(nid)
        return ids - _forbidden_ids("net")

    def _infra_pids(self) -> set[int]:
        pids = {self.switch_pid}
        for h in self._state["hosts"].values():
            pids |= {h.get("holder_pid") or 0, h.get("sshd_pid") or 0}
            pids |= {h.get("launcher_pid") or 0, h.get("console_pid") or 0}
        return pids - {0}

    def _systemd_pid_ids(self) -> dict[procs.NsId, str]:
        """The PID namespaces of the live systemd hosts (never the machine's), by host."""
        ids = {}
        for name, h in self._state["hosts"].items():
            if h.get("systemd") and _same_process(h.get("holder_pid"), h.get("holder_start")):
                nid = procs.process_ns(h["holder_pid"], "pid")
                if nid is not None and nid not in _forbidden_ids("pid"):
                    ids[nid] = name
        return ids

    def _reap(self, pid: int) -> None:
        p = self._children.get(pid)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(0.5)

    def _write_state(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=1))
        os.replace(tmp, self.state_file)

    def _read_state(self) -> dict[str, Any]:
        try:
            self._state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            pass  # torn down meanwhile: keep the last known state
        return self._state

    @contextlib.contextmanager
    def _state_lock(self) -> Iterator[dict[str, Any]]:
        """The state, read fresh under an exclusive lock and written back on success.

        Other processes (the CLI, a test) may change the same lab; re-entrant per object.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self._state
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
            state = self._read_state()
            yield state
            self._state = state
            self._write_state()
        finally:
            self._lock_depth = 0
            os.close(fd)


# ---------------------------------------------------------------------- helpers


def check_prerequisites(sshd: bool = True, systemd: bool = False) -> None:
    """Raise :class:`PrerequisiteError` unless this machine can build a lab here and now
    (with ``systemd``: one with hosts that boot systemd)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (it creates network namespaces): run it with sudo")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        problems.append(
            f"missing tool(s) {', '.join(missing)}: install iproute2, util-linux and nftables "
            "(scripts/bootstrap does)"
        )
    if sshd and not os.access(SSHD, os.X_OK):
        problems.append(f"{SSHD} is missing: install openssh-server (scripts/bootstrap does)")
    if systemd and os.geteuid() == 0:
        problems += systemd_host.prerequisite_problems()
    where = inside_lab_host() if os.geteuid() == 0 else None
    if where:
        problems.append(f"this runs inside {where}: build labs on the machine itself")
    if problems:
        raise PrerequisiteError("; ".join(problems))


def inside_lab_host(root: Path = DEFAULT_ROOT) -> str | None:
    """Which lab host this process runs in (``"host lim1 of lab mx3fa9c1"``), or None.

    Compares this process's namespaces with every lab's holders (PID 1's are not always
    readable, even for root, so "the machine's namespace" cannot be asked directly).
    """
    mine = {procs.process_ns(os.getpid(), "net"), procs.process_ns(os.getpid(), "mnt")} - {None}
    for lab_id in Lab.list_ids(root):
        try:
            state = json.loads((root / lab_id / "lab.json").read_text())
        except (OSError, ValueError):
            continue
        holders = [("the switch", state["switch"].get("pid"), state["switch"].get("start"))]
        holders += [
            (f"host {n}", h.get("holder_pid"), h.get("holder_start"))
            for n, h in state.get("hosts", {}).items()
        ]
        for what, pid, start in holders:
            if pid and _same_process(pid, start):
                theirs = {procs.process_ns(pid, "net"), procs.process_ns(pid, "mnt")}
                if mine & theirs:
                    return f"{what} of lab {lab_id}"
    return None


def _forbidden_ids(kind: str) -> set[procs.NsId]:
    """The machine's own namespaces and ours: never a lab's, whatever a state file says."""
    return {i for i in (procs.process_ns(1, kind), procs.process_ns(os.getpid(), kind)) if i}


def _netns_names() -> list[str]:
    try:
        return os.listdir(NETNS_DIR)
    except OSError:
        return []


def _same_process(pid: int | None, start: int | None) -> bool:
    if not pid:
        return False
    return procs.alive(pid) and (start is None or procs.start_time(pid) == start)


def _listening(pid: int, ip: str, port: int) -> bool:
    """True when a TCP socket listens on ip:port in ``pid``'s network namespace.

    Reads /proc/PID/net/tcp (the namespace of PID), so no process is started per check.
    """
    (raw,) = struct.unpack("=I", socket.inet_aton(ip))
    want = f"{raw:08X}:{port:04X}"
    try:
        with open(f"/proc/{pid}/net/tcp", encoding="ascii") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":  # TCP_LISTEN
                    return True
    except OSError:
        return False
    return False


def _ip_json(netns_path: str, args: list[str], timeout: float = 10.0) -> list[dict[str, Any]]:
    """``ip -j ARGS`` in the network namespace at ``netns_path``, parsed."""
    argv = ["nsenter", f"--net={netns_path}", "--", "ip", "-j", *args]
    try:
        r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout:g} s") from None
    if r.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {r.stderr.strip()}")
    data: list[dict[str, Any]] = json.loads(r.stdout or "[]")
    return data


def _link_exists(ns: str, link: str) -> bool:
    r = subprocess.run(["ip", "-n", ns, "link", "show", "dev", link], check=False,
                       capture_output=True, timeout=10)
    return r.returncode == 0


def _run(argv: list[str], what: str, timeout: float = 10.0) -> None:
    try:
        r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: `{' '.join(argv)}` did not finish within {timeout:g} s") from None
    if r.returncode != 0:
        raise LabError(f"{what}: `{' '.join(argv)}` failed: {(r.stderr or r.stdout).strip()}")


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    if not text:
        return f" (log {path} is empty)"
    # Blank lines say nothing (a console log ends its lines with "\r\n").
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return f"; last lines of {path}: " + " | ".join(kept[-lines:])


def _communicate(
    p: subprocess.Popen[bytes], data: bytes | None, timeout: float
) -> tuple[int | None, str, str]:
    """Feed ``data``, collect stdout/stderr until the process exits and the pipes are
    drained; (None, out, err) after killing it if ``timeout`` expires.

    Unlike ``communicate()``, EOF is not awaited forever once the process has exited:
    a background grandchild may hold the pipes open indefinitely.
    """
    assert p.stdout is not None and p.stderr is not None
    deadline = time.monotonic() + timeout
    chunks: dict[int, list[bytes]] = {p.stdout.fileno(): [], p.stderr.fileno(): []}
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    sel.register(p.stderr, selectors.EVENT_READ)
    pending = memoryview(data or b"")
    if p.stdin is not None:
        if pending:
            os.set_blocking(p.stdin.fileno(), False)
            sel.register(p.stdin, selectors.EVENT_WRITE)
        else:
            p.stdin.close()
    exited_at: float | None = None
    timed_out = False
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exited_at is None and p.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                break
            for key, _ in sel.select(min(0.05, deadline - now)):
                if key.fileobj is p.stdin:
                    try:
                        n = os.write(key.fd, pending[:65536])
                    except BrokenPipeError:
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(key.fileobj)
                        p.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if chunk:
                    chunks[key.fd].append(chunk)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
    if not timed_out:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out:
        p.kill()
        p.wait()
    out = b"".join(chunks[p.stdout.fileno()]).decode("utf-8", "replace")
    err = b"".join(chunks[p.stderr.fileno()]).decode("utf-8", "replace")
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
    return (None if timed_out else p.returncode), out, err


def _existing_hint(root: Path) -> str:
    ids = Lab.list_ids(root)
    return f" (labs on this machine: {', '.join(ids)})" if ids else " (no lab is running)"
