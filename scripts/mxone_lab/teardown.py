"""Tearing a lab down: exactly what its state file names and its unique prefix marks,
ended by PID and removed by name, then checked for leftovers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import mxone_lab.machine as machine
import mxone_lab.procs as procs
import mxone_lab.systemd_host as systemd_host
from mxone_lab.errors import TeardownError
from mxone_lab.state import NETNS_DIR, LabState, Processes, forbidden_ids, netns_names


@dataclass(frozen=True, eq=False)
class Teardown:
    """Tears down the lab recorded in ``state`` (see :meth:`Lab.down`)."""

    state: LabState
    processes: Processes

    def down(self, timeout: float) -> None:
        st = self.state
        if st.torn_down:
            return
        machine.require_local(st)
        leftovers: list[str] = []
        names = st.ns_names()
        net_ids = st.net_ids(names)
        mnt_ids = set()
        for h in st.records.values():
            if (
                procs.same(h.get("holder_pid"), h.get("holder_start"))
                and procs.process_ns(h["holder_pid"], "net") in net_ids
            ):
                mid = procs.process_ns(h["holder_pid"], "mnt")
                if mid is not None:
                    mnt_ids.add(mid)
        mnt_ids -= forbidden_ids("mnt")
        children = self.processes.all()
        pid_ids = {
            nid: name
            for nid, name in st.systemd_pid_ids().items()
            if procs.process_ns(st.records[name]["holder_pid"], "net") in net_ids
        }
        if pid_ids:
            # PID 1 of each systemd host first: its launcher reaps it and exits (and is
            # reaped by its own parent), so no zombie is left to the machine's init.
            hosts = [st.records[name] for name in pid_ids.values()]
            inits = [int(h["holder_pid"]) for h in hosts]
            launchers = [
                int(h["launcher_pid"])
                for h in hosts
                if procs.same(h.get("launcher_pid"), h.get("launcher_start"))
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
        self.processes.tracked.clear()

        from pyroute2 import netns  # type: ignore[import-untyped]

        for name in names:
            if (NETNS_DIR / name).exists():
                try:
                    netns.remove(name)  # in-process umount + unlink, no helper process
                except OSError:
                    subprocess.run(
                        ["ip", "netns", "del", name], check=False, capture_output=True, timeout=10
                    )
        leftovers += [f"namespace {n}" for n in netns_names() if n.startswith(st.prefix)]
        leftovers += [f"mount {m}" for m in self.mounts_left()]
        leftovers += self._remove_cgroups()
        if st.dir.exists():
            shutil.rmtree(st.dir, ignore_errors=True)
            if st.dir.exists():
                leftovers.append(f"directory {st.dir}")
        machine.clear_current(st)
        leftovers += self._wait_keeper()
        st.torn_down = not leftovers  # with leftovers, a later call tries again
        if leftovers:
            raise TeardownError(st.id, leftovers)

    def cgroups_left(self) -> list[str]:
        """Cgroups on the machine named after this lab (want: none once torn down)."""
        root = systemd_host.cgroup2_root()
        if root is None:
            return []
        with contextlib.suppress(OSError):
            return sorted(
                str(root / n) for n in os.listdir(root) if n.startswith(self.state.prefix)
            )
        return []

    def mounts_left(self) -> list[str]:
        """Mount points in the machine's mount table that belong to this lab (want: none)."""
        st = self.state
        marks = (str(st.dir), str(NETNS_DIR / st.prefix), f"{st.id}-")
        found = []
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                if any(m in line for m in marks):
                    found.append(line.split()[4])
        return found

    def _remove_cgroups(self) -> list[str]:
        """Remove the systemd hosts' cgroup trees (only ones named with this lab's prefix)."""
        left = []
        root = systemd_host.cgroup2_root()
        for h in self.state.records.values():
            path = Path(h["cgroup"]) if h.get("cgroup") else None
            if path is None or root is None:
                continue
            if path.parent != root or not path.name.startswith(self.state.prefix):
                left.append(f"cgroup {path} (not this lab's: left alone)")
                continue
            left += systemd_host.remove_cgroup(path)
        return left

    def _wait_keeper(self) -> list[str]:
        """The keeper of an ``mxone-lab up`` lab exits once its children are gone."""
        pid, start = self.state.data.get("keeper_pid"), self.state.data.get("keeper_start")
        if not pid or pid == os.getpid() or not procs.same(pid, start):
            return []
        if not procs.wait_gone([pid], 2.0):
            return []
        procs.signal_all([pid], signal.SIGTERM)
        if not procs.wait_gone([pid], 3.0):
            return []
        return [f"keeper process {pid}"]
