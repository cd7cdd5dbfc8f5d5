"""Putting every host of a lab back to its just-built state, between tests."""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass

import mxone_lab.machine as machine
import mxone_lab.procs as procs
import mxone_lab.systemd_host as systemd_host
from mxone_lab.build import network_file
from mxone_lab.commands import HostCommands
from mxone_lab.errors import HostCommandError, LabError
from mxone_lab.faults import Faults
from mxone_lab.sshd import Sshd
from mxone_lab.state import NETWORK_FILE, LabState, Processes

#: Directories the product writes on a host; ``reset()`` wipes them.
PRODUCT_DIRS = ("/etc/mxone", "/var/opt/mxone", "/opt/mxone", "/var/log/mxone")

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


@dataclass(frozen=True, eq=False)
class Resetter:
    """Resets the hosts of one lab (see :meth:`Lab.reset`)."""

    state: LabState
    processes: Processes
    commands: HostCommands
    sshd: Sshd
    faults: Faults

    def reset(self, timeout: float) -> None:
        st = self.state
        machine.require_local(st)
        for name, h in st.records.items():
            st.check_pid(h["holder_pid"], h.get("holder_start"), f"host {name}")
        self.faults.restore()

        problems: list[str] = []
        for name, h in st.records.items():
            if h.get("systemd"):
                problems += self._reset_units(name, timeout)

        # Processes: everything in the lab's namespaces but the lab's own.
        tracked = self.processes.tracked
        keep = {t.proc.pid for t in tracked if t.keep_on_reset and t.proc.poll() is None}
        keep |= self._as_built_processes()
        lab_pids = procs.members(st.net_ids(), pid=st.systemd_pid_ids())
        victims = [p for p in lab_pids if p not in st.infra_pids() | keep]
        left = procs.end(victims, grace=0.5, children=self.processes.all())
        self.processes.tracked = [t for t in tracked if t.proc.poll() is None]
        problems += [f"process {p} ({procs.comm(p)}) did not end" for p in left]

        # One shell per host, all hosts at once: network, files, firewall, sysctls.
        shells = {
            name: self.commands.host_popen(
                name,
                ["sh", "-c", self._reset_script(name)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.commands.host_env(name),
                text=True,
            )
            for name in st.records
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
        if st.data.get("sshd"):
            dead = self.sshd.dead()
            if dead:
                with st.lock():
                    for name in dead:
                        self.sshd.start(name)
                try:
                    self.sshd.wait(dead, timeout)
                except LabError as exc:
                    problems.append(str(exc))
        if problems:
            raise LabError(f"lab {st.id}: reset incomplete: " + "; ".join(problems))

    def _reset_script(self, name: str) -> str:
        """The shell script that puts one host back to as-built (run on that host)."""
        h = self.state.host(name)
        record = self.state.records[name]
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
            f"printf '%s' {q(network_file(self.state, name))} > {NETWORK_FILE}\n"
            + ("networkctl reload\n" if record.get("networkd") else "")
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
            + (_SYSTEMD_RESET if record.get("systemd") else "")
            + "true\n"
        )

    def _reset_units(self, name: str, timeout: float) -> list[str]:
        """Stop what runs on systemd host ``name`` but did not as built, and put its unit
        files back; the problems met (none normally)."""
        h = self.state.records[name]
        hd = self.state.host_dir(name)
        problems = []

        def run(argv: list[str] | str, check: bool = True) -> str:
            try:
                return self.commands.exec(name, argv, check=check, timeout=timeout).stdout
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
        ids = self.state.systemd_pid_ids()
        spared: set[int] = set()
        if not ids:
            return spared
        for pid in procs.members((), pid=ids):
            ns = procs.process_ns(pid, "pid")
            if ns is None or ns not in ids:
                continue
            host = self.state.records[ids[ns]]
            units = set(host.get("as_built_units") or [])
            if systemd_host.in_units(procs.cgroup2(pid), host["cgroup_path"], units):
                spared.add(pid)
        return spared
