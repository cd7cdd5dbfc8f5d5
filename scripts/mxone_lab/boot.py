"""Starting and booting the lab's systemd hosts (what makes them safe: systemd_host.py).

The launcher is ``unshare --pid --fork --kill-child ...`` in the host's network namespace
and its own cgroup; its child becomes PID 1 of the host, recorded as the host's holder.
Hosts boot in parallel; a boot ends when ``systemctl is-system-running`` says so.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import termios
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import mxone_lab.procs as procs
import mxone_lab.systemd_host as systemd_host
from mxone_lab.commands import HostCommands, eth0_addresses, log_tail
from mxone_lab.errors import HostCommandError, LabError
from mxone_lab.state import NETNS_DIR, NETWORK_FILE, LabState, Processes

#: Where a systemd host keeps the lab dir until its boot is over (inside the host).
LAB_DIR_STAGING = "/run/.mxone-lab"


@dataclass(frozen=True, eq=False)
class SystemdHosts:
    """The systemd hosts of one lab: start, wait for boot, record what runs as built."""

    state: LabState
    processes: Processes
    commands: HostCommands

    def spawn(self, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start the host's systemd (via its setup script) and the drain of its console.

        Returns the launcher (its stdout says ``ready`` once the host's mounts are done)
        and the console log (where the setup's errors go too).
        """
        h = self.state.records[name]
        console_log = self.state.host_dir(name) / "console.log"
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
            self.processes.children[drain.pid] = drain
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
                self.holder_script(name),
                f"{self.state.id}-{name}",
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
        self.processes.children[p.pid] = p
        h.update(launcher_pid=p.pid, launcher_start=procs.start_time(p.pid))
        return p, console_log

    def holder_script(self, name: str) -> str:
        return systemd_host.holder_script(
            name=name,
            tag=f"{self.state.id}-{name}",
            net_batch=self.state.host_dir(name) / "net.batch",
            overlays=self.state.overlays(name),
            shown=self.shown_in_tmp(),
        )

    def shown_in_tmp(self) -> list[tuple[Path, str]]:
        """The machine's dirs under /tmp a systemd host needs in its own /tmp, each with its
        staging dir: the lab dir, and the checkout and venv whose python runs on the hosts
        when they live in /tmp (a CI clone, say)."""
        out = [(self.state.dir, LAB_DIR_STAGING)]
        tmp = Path("/tmp")
        for d in (Path(__file__).resolve().parents[2], Path(sys.prefix).resolve()):
            if d.is_relative_to(tmp) and not any(d.is_relative_to(p) for p, _ in out):
                out.append((d, f"{LAB_DIR_STAGING}-{len(out)}"))
        return out

    def find_init(self, name: str, timeout: float) -> None:
        """Record the host's PID 1 (the launcher's only child) as its holder."""
        h = self.state.records[name]
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
                    + log_tail(self.state.host_dir(name) / "console.log")
                )
            time.sleep(0.005)

    def wait_booted(self, started: Mapping[str, float], timeout: float) -> None:
        """Wait until every systemd host has finished booting (hosts boot in parallel).

        ``running`` is what a clean boot ends in; ``degraded`` ends the wait too, with a
        warning naming the failed units. Anything else, or no end within ``timeout`` s,
        raises :class:`LabError` with the host's state, its pending jobs and the tail of
        its console.
        """
        deadline = min(started.values()) + timeout
        for name, since in started.items():
            h = self.state.records[name]
            state = ""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(
                        self._boot_problem(name, f"did not finish booting within {timeout:g} s")
                    )
                try:
                    r = self.commands.exec(
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
                r = self.commands.exec(
                    name, ["systemctl", "show", "-p", "FinishTimestampMonotonic", "--value"]
                )
                finished = int(r.stdout.strip()) / 1e6 or finished
            h["boot_seconds"] = round(finished - since, 3)
            h["boot_state"] = state
            if state == "degraded":
                failed = self._failed_units(name)
                h["failed_units"] = failed
                warnings.warn(
                    f"lab {self.state.id}: systemd host {name} booted degraded; failed units: "
                    f"{', '.join(failed) or '?'} (see `journalctl -u UNIT` on {name})",
                    stacklevel=4,
                )

    def wait_network(self, name: str, timeout: float, want: str | None = None) -> list[str]:
        """Wait until systemd-networkd has brought up ``want`` (any IPv4 address when None)
        on host ``name``'s eth0; the addresses it has then. Raises :class:`LabError` with
        networkd's log when it does not within ``timeout`` s."""
        h = self.state.records[name]
        deadline = time.monotonic() + timeout
        while True:
            have = eth0_addresses(f"/proc/{h['holder_pid']}/ns/net")
            if (want in have) if want else have:
                return have
            if time.monotonic() > deadline:
                log = ""
                with contextlib.suppress(LabError):
                    log = self.commands.exec(
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

    def expose_lab_dir(self, name: str, timeout: float) -> None:
        """Show the lab dir (and a checkout or venv in /tmp: see shown_in_tmp) in the host's
        /tmp at their own paths (configs, keys and the python the lab runs keep their
        paths), now that boot-time cleaning of /tmp is over."""
        q = shlex.quote
        self.commands.exec(
            name,
            " && ".join(
                f"mkdir -p {q(str(path))} && mount --bind {staging} {q(str(path))} "
                f"&& umount {staging} && rmdir {staging}"
                for path, staging in self.shown_in_tmp()
            ),
            timeout=timeout,
        )

    def snapshot_as_built(self, name: str, timeout: float) -> None:
        """Record what reset() puts back: the running units, the unit files and masks."""
        h = self.state.records[name]
        hd = self.state.host_dir(name)
        exec_ = self.commands.exec
        r = exec_(
            name,
            ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full"],
            timeout=timeout,
        )
        units = systemd_host.parse_units(r.stdout)
        h["as_built_units"] = sorted(
            u for u, st in units.items() if st in systemd_host.RUNNING_STATES
        )
        (hd / "units.manifest").write_text(
            exec_(name, systemd_host.MANIFEST, timeout=timeout).stdout
        )
        exec_(name, systemd_host.save_units_command(hd / "units.tar"), timeout=timeout)

    def _failed_units(self, name: str) -> list[str]:
        r = self.commands.exec(
            name,
            ["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--full"],
            check=False,
        )
        return sorted(systemd_host.parse_units(r.stdout))

    def _boot_problem(self, name: str, what: str) -> str:
        """`host X: systemd ...` with the host's state, pending jobs and console tail."""
        detail = ""
        with contextlib.suppress(LabError):
            st = self.commands.exec(
                name, ["systemctl", "is-system-running"], check=False, timeout=5
            )
            detail = f" (state {st.stdout.strip() or '?'}"
            jobs = self.commands.exec(
                name,
                ["systemctl", "list-jobs", "--plain", "--no-legend", "--full"],
                check=False,
                timeout=5,
            )
            pending = [
                line.split()[1] for line in jobs.stdout.splitlines() if len(line.split()) > 1
            ]
            detail += f"; waiting for {', '.join(pending[:8])})" if pending else ")"
        return f"host {name}: systemd {what}{detail}" + log_tail(
            self.state.host_dir(name) / "console.log"
        )
