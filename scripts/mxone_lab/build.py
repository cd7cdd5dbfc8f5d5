"""Building a lab: files, namespaces, the switch, the hosts' holders, sshd, systemd boots.

Every veth pair is created inside the switch namespace and its host end moved straight
into the host namespace, so the machine's own namespace never sees a lab link, address or
route. Each step is recorded in the state file before the next starts, so a build that
fails half-way is torn down exactly as far as it got (see :meth:`Lab.up`).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mxone_lab.keys as keys
import mxone_lab.procs as procs
import mxone_lab.systemd_etc as systemd_etc
from mxone_lab.boot import SystemdHosts
from mxone_lab.commands import log_tail, run
from mxone_lab.errors import LabError
from mxone_lab.sshd import Sshd
from mxone_lab.state import NETWORK_FILE, OVERLAID, LabState, Processes

_PLAIN_BASHRC = (
    "# lab host: a plain shell. The machine's own ~/.bashrc runs `pyenv init`, which costs\n"
    "# ~150 ms on every SSH command.\n"
)


@dataclass(frozen=True, eq=False)
class Builder:
    """Builds the lab recorded in ``state`` (claimed, nothing started yet)."""

    state: LabState
    processes: Processes
    sshd: Sshd
    systemd: SystemdHosts

    def build(self, with_sshd: bool, timeout: float, boot_timeout: float = 120.0) -> None:
        """Build everything, in order; raises on the first failure (the caller tears down)."""
        st = self.state
        self.write_files()
        # Namespaces and the switch wiring go through `ip -batch`: measured on this kernel,
        # one `ip -batch` for all namespaces costs ~3 ms where pyroute2's netns.create and
        # IPRoute(netns=...) fork a helper per call (~6 ms each). Worse, that helper is a
        # fork of the calling Python process: a SIGTERM pyroute2 sends it early runs the
        # caller's Python signal handlers in the copy (seen: a pytest copy running the
        # session teardown). So work in other namespaces is `ip`/`nsenter`; pyroute2
        # only removes namespaces (in-process, no fork).
        batch = st.dir / "netns.batch"
        names = [st.switch_ns] + [h["ns"] for h in st.records.values()]
        batch.write_text("".join(f"netns add {n}\n" for n in names))
        run(["ip", "-batch", str(batch)], "creating the lab namespaces")

        sw = self.spawn_holder(
            ["ip", "netns", "exec", st.switch_ns, "sh", "-c", self.switch_script()],
            st.dir / "switch" / "holder.log",
        )
        st.data["switch"].update(pid=sw.pid, start=procs.start_time(sw.pid))
        wait_ready({"the switch": (sw, st.dir / "switch" / "holder.log")}, timeout)

        holders = {}
        booting: dict[str, float] = {}  # systemd host -> when its holder started
        for name, h in st.records.items():
            if h.get("systemd"):
                booting[name] = time.monotonic()
                holders[f"host {name}"] = self.systemd.spawn(name)
                continue
            log = st.host_dir(name) / "holder.log"
            argv = ["ip", "netns", "exec", h["ns"], "unshare", "--uts", "--mount",
                    "--propagation", "private", "--", "sh", "-c", self.holder_script(name)]
            p = self.spawn_holder(argv, log)
            h.update(holder_pid=p.pid, holder_start=procs.start_time(p.pid))
            holders[f"host {name}"] = (p, log)
        st.write()
        wait_ready(holders, timeout)
        for name in booting:
            self.systemd.find_init(name, timeout)
        st.write()

        plain = [n for n in st.records if n not in booting]
        if with_sshd:
            st.data["sshd"] = True
            for name in plain:
                self.sshd.start(name)
            st.write()
        if booting:
            # Meanwhile the plain hosts' sshd come up; a systemd host's starts after boot,
            # once the lab dir (its config and keys) is visible in the host's /tmp.
            self.systemd.wait_booted(booting, boot_timeout)
            for name in booting:
                if st.records[name].get("networkd"):
                    self.systemd.wait_network(name, timeout, st.host(name).cidr)
                self.systemd.expose_lab_dir(name, timeout)
                self.systemd.snapshot_as_built(name, timeout)
                if with_sshd:
                    self.sshd.start(name)
            st.write()
        if with_sshd:
            self.sshd.wait(list(st.records), timeout)
        st.data["state"] = "up"
        st.write()

    def write_files(self) -> None:
        """Keys, configs and the hosts' pre-populated overlay upper dirs."""
        st = self.state
        spec = st.spec
        kdir = st.dir / "keys"
        kdir.mkdir(mode=0o700)
        user = keys.generate(f"mxone-lab-{st.id}-root")
        keys.write_private(st.user_key_path, user)
        (kdir / "authorized_keys").write_text(user.public_line + "\n")
        host_keys = {h.name: keys.generate(f"mxone-lab-{st.id}-{h.name}") for h in spec.hosts}
        known = "".join(
            f"{h.name},{spec.ip_of(h)} {host_keys[h.name].public_key}\n" for h in spec.hosts
        )
        st.known_hosts_path.write_text(known)
        etc_hosts = "127.0.0.1\tlocalhost\n" + "".join(
            f"{spec.ip_of(h)}\t{h.name}\n" for h in spec.hosts
        )
        (st.dir / "switch").mkdir()
        (st.dir / "switch" / "setup.batch").write_text(self.switch_batch())
        for h in spec.hosts:
            hd = st.host_dir(h.name)
            hd.mkdir(parents=True)
            st.records[h.name]["host_key"] = host_keys[h.name].public_key
            keys.write_private(hd / "ssh_host_ed25519_key", host_keys[h.name])
            (hd / "sshd_config").write_text(self.sshd.config(h.name))
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
            network.write_text(network_file(st, h.name))
            if h.systemd:
                systemd_etc.write_etc(etc, networkd=h.networkd)
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
        st.write()

    def switch_batch(self) -> str:
        lines = [
            "link set lo up",
            "link add br0 type bridge stp_state 0 forward_delay 0",
            "link set br0 up",
        ]
        for h in self.state.records.values():
            lines += plug_lines(h["switch_port"], h["mac"], h["ns"])
        return "\n".join(lines) + "\n"

    def switch_script(self) -> str:
        batch = shlex.quote(str(self.state.dir / "switch" / "setup.batch"))
        # IPv6 off before the bridge exists, so the switch never speaks on the lab segment.
        return (
            "set -e\n"
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6\n"
            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6\n"
            f"ip -batch {batch}\n"
            "echo ready\n"
            "exec sleep infinity >/dev/null\n"
        )

    def holder_script(self, name: str) -> str:
        """The script of a plain host's holder: network, hostname, overlays, /run."""
        q = shlex.quote
        tag = f"{self.state.id}-{name}"
        mounts = [
            f"mount -t overlay {q(source)} -o {q(opts)} {lower}"
            for lower, source, opts in self.state.overlays(name)
        ]
        return (
            "\n".join(
                [
                    "set -e",
                    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
                    "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
                    f"ip -batch {q(str(self.state.host_dir(name) / 'net.batch'))}",
                    f"echo {q(name)} > /proc/sys/kernel/hostname",
                    # This mount namespace is a private copy: its copies of the /run/netns
                    # bind mounts would keep every other lab's namespaces alive after their
                    # teardown. Drop them (only here; the machine's are untouched).
                    "umount -l /run/netns 2>/dev/null || true",
                    *mounts,
                    f"mount -t tmpfs -o mode=0755,size=64m {q(f'{tag}-run')} /run",
                    "mkdir -p /run/sshd /run/lock",
                    "echo ready",
                    "exec sleep infinity >/dev/null",
                ]
            )
            + "\n"
        )

    def spawn_holder(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as err:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,  # survive the builder's terminal (Ctrl-C, hangup)
                close_fds=True,
            )
        self.processes.children[p.pid] = p
        return p


def plug_lines(port: str, mac: str, ns: str) -> list[str]:
    """``ip -batch`` lines (run in the switch) that plug a host's eth0 into the bridge."""
    return [
        f"link add {port} type veth peer name eth0 address {mac} netns {ns}",
        f"link set {port} master br0",
        f"link set {port} up",
    ]


def network_file(state: LabState, name: str) -> str:
    """The text of host ``name``'s :data:`NETWORK_FILE` as built."""
    h = state.records[name]
    reader = (
        "systemd-networkd brings it up at every boot"
        if h.get("networkd")
        else "the lab brings the address up itself; nothing reads this file"
    )
    return (
        f"# lab {state.id} host {name}: its own network configuration ({reader}).\n"
        "[Match]\n"
        "Name=eth0\n"
        "\n"
        "[Network]\n"
        f"Address={h['ip']}/{h['prefix']}\n"
        "LinkLocalAddressing=no\n"
        "IPv6AcceptRA=no\n"
    )


def wait_ready(
    holders: Mapping[str, tuple[subprocess.Popen[bytes], Path]], timeout: float
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
                    f"{label} was not ready within {timeout:g} s" + log_tail(holders[label][1])
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
                        f"setting up {label} failed (exit status {p.returncode})" + log_tail(log)
                    )
    finally:
        sel.close()
