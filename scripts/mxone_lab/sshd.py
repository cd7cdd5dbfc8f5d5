"""Each host's sshd: lab-only keys, listening on every address of the host, started and
watched by the lab (never the machine's own sshd or /etc/ssh)."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import mxone_lab.procs as procs
from mxone_lab.commands import HostCommands, log_tail
from mxone_lab.errors import LabError
from mxone_lab.state import LabState, Processes

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True, eq=False)
class Sshd:
    """The sshd of each host of one lab."""

    state: LabState
    processes: Processes
    commands: HostCommands

    def config(self, name: str) -> str:
        """The text of host ``name``'s sshd_config."""
        hd = self.state.host_dir(name)
        return (
            f"# lab {self.state.id} host {name}: lab-only keys, nothing from /etc/ssh\n"
            # Every address of the host's own namespace, as on a real server: after a LIM
            # joins a cluster it has a new base address (and its old one is the alias).
            "ListenAddress 0.0.0.0\n"
            "Port 22\n"
            f"HostKey {hd / 'ssh_host_ed25519_key'}\n"
            f"PidFile {hd / 'sshd.pid'}\n"
            # The lab's root key for every host, then the host's own file (where the tool
            # installs the cluster's sync key with its forced command).
            f"AuthorizedKeysFile {self.state.dir / 'keys' / 'authorized_keys'} "
            ".ssh/authorized_keys\n"
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

    def start(self, name: str) -> None:
        """Start host ``name``'s sshd and record it (the caller writes the state)."""
        h = self.state.records[name]
        hd = self.state.host_dir(name)
        argv = [SSHD, "-D", "-f", str(hd / "sshd_config"), "-E", str(hd / "sshd.log")]
        # nsenter -n -m -u sets the namespaces and execs without forking (only -p/-U
        # need a fork), so this PID is sshd's own.
        p = self.commands.host_popen(
            name,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=self.commands.host_env(name),
        )
        self.processes.children[p.pid] = p
        h.update(sshd_pid=p.pid, sshd_start=procs.start_time(p.pid))

    def wait(self, names: Sequence[str], timeout: float) -> None:
        """Wait until every named host's sshd listens on all its addresses (bounded)."""
        pending = list(names)
        deadline = time.monotonic() + timeout
        while pending:
            for name in list(pending):
                h = self.state.records[name]
                pid = h["sshd_pid"]
                if listening(pid, "0.0.0.0", 22):
                    pending.remove(name)
                elif not procs.alive(pid):
                    self.processes.reap(pid)
                    raise LabError(
                        f"sshd on {name} exited before listening on {h['ip']}:22"
                        + log_tail(self.state.host_dir(name) / "sshd.log")
                    )
            if pending and time.monotonic() > deadline:
                name = pending[0]
                raise LabError(
                    f"sshd on {name} did not listen on {self.state.records[name]['ip']}:22 "
                    f"within {timeout:g} s" + log_tail(self.state.host_dir(name) / "sshd.log")
                )
            if pending:
                time.sleep(0.003)

    def dead(self) -> list[str]:
        """The hosts whose sshd is no longer running (a test stopped it)."""
        return [
            n
            for n, h in self.state.records.items()
            if not procs.same(h.get("sshd_pid"), h.get("sshd_start"))
        ]


def listening(pid: int, ip: str, port: int) -> bool:
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
