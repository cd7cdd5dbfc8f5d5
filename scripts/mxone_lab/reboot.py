"""Power-cycling a systemd host: every process and the kernel's network state go, its
disks (overlay upper dirs) stay, and systemd boots again from the host's own files."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import mxone_lab.machine as machine
import mxone_lab.procs as procs
import mxone_lab.systemd_host as systemd_host
from mxone_lab.boot import SystemdHosts
from mxone_lab.build import plug_lines, wait_ready
from mxone_lab.commands import link_exists, run
from mxone_lab.errors import LabError
from mxone_lab.faults import Faults
from mxone_lab.sshd import Sshd
from mxone_lab.state import NETNS_DIR, LabState, Processes


@dataclass(frozen=True, eq=False)
class Rebooter:
    """Reboots the systemd hosts of one lab (see :meth:`Lab.reboot`)."""

    state: LabState
    processes: Processes
    sshd: Sshd
    systemd: SystemdHosts
    faults: Faults

    def reboot(self, name: str, timeout: float, boot_timeout: float) -> None:
        st = self.state
        machine.require_local(st)
        st.host(name)
        h = st.records[name]
        if not h.get("systemd"):
            raise LabError(
                f"host {name} does not boot systemd: only a systemd host can be rebooted "
                f"(HostSpec systemd=True; `mxone-lab up --systemd {name}`)"
            )
        st.check_pid(h["holder_pid"], h.get("holder_start"), f"host {name}")
        self._power_off(name, timeout)
        self._replug(name, timeout)
        left = systemd_host.remove_cgroup(Path(h["cgroup"]))
        if left:
            raise LabError(f"host {name}: cannot reboot: {', '.join(left)} still there")

        # Power on.
        started = time.monotonic()
        holder = self.systemd.spawn(name)
        st.write()
        wait_ready({f"host {name}": holder}, timeout)
        self.systemd.find_init(name, timeout)
        st.write()
        self.systemd.wait_booted({name: started}, boot_timeout)
        if h.get("networkd"):
            self.systemd.wait_network(name, timeout)
        self.systemd.expose_lab_dir(name, timeout)
        if st.data.get("sshd"):
            self.sshd.start(name)
            st.write()
            self.sshd.wait([name], timeout)
        st.write()

    def _power_off(self, name: str, timeout: float) -> None:
        """End PID 1 of host ``name`` and with it every process of the host."""
        h = self.state.records[name]
        children = self.processes.all()
        old_net = procs.process_ns(int(h["holder_pid"]), "net")
        init = int(h["holder_pid"])
        launcher = (
            int(h["launcher_pid"])
            if procs.same(h.get("launcher_pid"), h.get("launcher_start"))
            else 0
        )
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
        self.processes.forget_ended()
        h.update(holder_pid=None, holder_start=None, sshd_pid=None, sshd_start=None,
                 launcher_pid=None, launcher_start=None, console_pid=None, console_start=None)
        self.state.write()

    def _replug(self, name: str, timeout: float) -> None:
        """A new network namespace for host ``name`` with a fresh eth0 on the same switch
        port; the faults on that port are applied to it again."""
        st = self.state
        h = st.records[name]
        left = self._end_connections(name)
        run(["ip", "netns", "del", h["ns"]], f"host {name}: removing its network namespace")
        deadline = time.monotonic() + timeout
        port = h["switch_port"]
        while link_exists(st.switch_ns, port):
            if time.monotonic() > deadline:
                raise LabError(f"host {name}: its switch port {port} was not gone within "
                               f"{timeout:g} s of its network namespace (TCP sockets left in "
                               f"it: {left or 'none'})")
            time.sleep(0.01)
        run(["ip", "netns", "add", h["ns"]], f"host {name}: creating its network namespace")
        batch = st.host_dir(name) / "replug.batch"
        batch.write_text("".join(line + "\n" for line in plug_lines(port, h["mac"], h["ns"])))
        run(["ip", "-n", st.switch_ns, "-batch", str(batch)],
            f"host {name}: plugging its eth0 into the switch")
        self.faults.replug(name)

    def _end_connections(self, name: str) -> str:
        """End every TCP socket left in host ``name``'s network namespace once its
        processes are gone, as a power cycle does; the sockets still there after (``ss``
        lines, '' for none).

        A dead process's connection lingers, orphaned, while the kernel retransmits its
        unacknowledged data and FIN (a minute or two when the peer no longer answers, e.g.
        a connection from an address that has moved to another host), and such a socket
        holds the namespace - and with it eth0 and its switch port - alive that long.
        Only TCP sockets outlive their process; ``ss -K`` aborts them (no wait)."""
        path = NETNS_DIR / self.state.records[name]["ns"]
        enter = ["nsenter", f"--net={path}", "--"]
        run([*enter, "ss", "-K", "-t", "-a", "-n"], f"host {name}: ending its TCP connections")
        left = run([*enter, "ss", "-t", "-a", "-n", "-H"], f"host {name}: listing its sockets")
        return " | ".join(" ".join(line.split()) for line in left.stdout.splitlines())
