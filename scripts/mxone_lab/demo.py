"""The demo: build a lab, open an interactive program on one host, tear down when it ends.

The program run on the host is a parameter (:func:`run`'s ``command``): by default the
maintenance menus on lim1 (its system config seeded with the lab's LIM servers), then a
lab shell. The lab is torn down when the program
exits, and also on SIGTERM or SIGHUP (the program is hung up first). A Ctrl-C typed in the
program belongs to the program; a Ctrl-C during the build aborts the build and tears down
whatever was built.
"""

from __future__ import annotations

import contextlib
import os
import signal
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any, TextIO

from mxone_lab import procs
from mxone_lab.commands import venv_bin
from mxone_lab.lab import Lab
from mxone_lab.machine import clear_current, current_link, set_current
from mxone_lab.spec import LabSpec


class _Terminate(BaseException):
    """SIGTERM/SIGHUP before the interactive program started."""


def shell_command(lab: Lab, host: str, first: str = "") -> list[str]:
    """An interactive bash on ``host`` with a lab prompt; ``first`` runs before the prompt."""
    rc = lab.dir / f"demo-{host}.bashrc"
    rc.write_text(
        "# mxone-lab demo shell (lab-only; removed with the lab)\n"
        f"export PATH={venv_bin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"export MXONE_LAB={lab.id}\n"
        # The lab is no console script of the installed product: run from the checkout.
        f"mxone-lab() {{ {shlex.quote(sys.executable)} -m mxone_lab \"$@\"; }}\n"
        f"PS1='(lab {lab.id}) \\u@\\h:\\w\\$ '\n"
        "cd ~\n"
        + first
    )
    return ["bash", "--rcfile", str(rc), "-i"]


def demo_system_text(lab: Lab) -> str:
    """A system config as after MX-ONE installation: the lab's limN hosts are LIM servers.

    The standby candidates are not in the system yet: adding them ("Server in system"),
    converting one to standby and creating a cluster is what the demo is for.
    """
    from mxone_maintenance import configfile
    from mxone_maintenance.model import Role, Server, System

    servers = tuple(
        Server(h.name, h.cidr, "eth0", Role.LIM, int(h.name[3:]))
        for h in lab.hosts.values()
        if h.name.startswith("lim") and h.name[3:].isdigit()
    )
    return configfile.dump(System(generation=1, servers=servers).validated())


def maintenance_command(lab: Lab, host: str) -> list[str]:
    """The default demo program: the maintenance menus on ``host``, then a lab shell."""
    lab.exec(host, "mkdir -p /etc/mxone && cat > /etc/mxone/system.toml",
             input=demo_system_text(lab))
    return shell_command(lab, host, first=(
        "mxone_maintenance\n"
        "echo 'The menus are closed. Run mxone_maintenance to open them again;'\n"
        "echo '`exit` leaves this shell and tears the lab down.'\n"
    ))


def banner(lab: Lab, host: str) -> str:
    """The text shown before the program starts: hosts, addresses, commands, how to leave."""
    lines = [
        (
            f"MX-ONE lab {lab.id}: {len(lab.hosts)} hosts on {lab.spec.subnet}, all inside "
            "network namespaces (this machine's own network is untouched)."
        ),
        "",
    ]
    for h in lab.hosts.values():
        here = "   <- you are here" if h.name == host else ""
        lines.append(f"  {h.name:<10} {h.ip!s:<15} {h.mac}{here}")
    lines += [
        "",
        "Each host has its own hostname, /etc, /var, /root, /opt and an sshd.",
        "Try:  ssh lim2 hostname            (real SSH with the lab key)",
        "      mxone-lab status             (hosts, processes, faults)",
        "      mxone-lab exec lim2 ip -4 addr",
        "      mxone-lab fault cut lim2     (then: ping -c 2 lim2; mxone-lab fault restore)",
        "      mxone-lab fault loss lim2 30 | partition lim1 lim2 | link-down lim2",
        "",
        "`exit` (or Ctrl-D) leaves and tears the whole lab down.",
        "",
    ]
    return "\n".join(lines)


def run(
    spec: LabSpec | None = None,
    host: str = "lim1",
    command: Sequence[str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Build a lab, run ``command`` (default: :func:`maintenance_command`) on ``host`` attached
    to this terminal, tear the lab down when it ends; return the program's exit status.

    While the demo runs its lab is the current lab, so `mxone-lab` in another terminal
    finds it.
    """
    spec = spec or LabSpec.default()
    if host not in spec.names:
        from mxone_lab.errors import UnknownHost

        raise UnknownHost(host, spec.names)
    child: subprocess.Popen[bytes] | None = None
    hangup_at: float | None = None
    terminated_by = 0

    def say(text: str) -> None:
        # After a hangup the terminal is gone (EIO): the teardown must happen anyway.
        with contextlib.suppress(OSError, ValueError):
            print(text, file=out, flush=True)

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        nonlocal hangup_at, terminated_by
        terminated_by = terminated_by or signum
        if child is None:
            raise _Terminate(signum)
        if hangup_at is None:
            hangup_at = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGHUP)  # an interactive bash ignores SIGTERM

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if child is None:
            raise KeyboardInterrupt
        # A Ctrl-C typed in the program is the program's business.

    old = {
        s: signal.signal(s, h)
        for s, h in (
            (signal.SIGTERM, procs.owner_only(on_terminate)),
            (signal.SIGHUP, procs.owner_only(on_terminate)),
            (signal.SIGINT, procs.owner_only(on_interrupt)),
        )
    }
    try:
        say(f"building the lab ({len(spec.hosts)} hosts)...")
        started = time.monotonic()
        lab = Lab.up(spec)
    except _Terminate as exc:
        _restore(old)
        say("interrupted: the lab was not built, nothing is left behind")
        return 128 + int(exc.args[0])
    except BaseException:
        _restore(old)
        raise
    rc = 0
    try:
        if not current_link().exists():  # do not steal "current" from an `mxone-lab up` lab
            set_current(lab)
        say(f"built in {time.monotonic() - started:.2f} s\n")
        say(banner(lab, host))
        argv = list(command) if command is not None else maintenance_command(lab, host)
        child = subprocess.Popen(lab.nsenter_argv(host) + argv, env=lab.host_env(host))
        while child.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(0.2)
            if hangup_at is not None and time.monotonic() - hangup_at > 3 and child.poll() is None:
                child.kill()  # the program ignored the hangup
        rc = child.returncode
        _take_back_terminal()
    finally:
        try:
            say(f"\ntearing down lab {lab.id}...")
            lab.down()
            clear_current(lab)
            say(f"lab {lab.id} torn down: nothing left behind")
        finally:
            _restore(old)
    if terminated_by:
        return 128 + terminated_by
    return rc if rc >= 0 else 128 - rc


def _restore(old: Mapping[signal.Signals, Any]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


def _take_back_terminal() -> None:
    """Make our process group the terminal's foreground again.

    An interactive shell moves the terminal to its own process group; it hands it back
    when it exits normally, but not when it is killed.
    """
    with contextlib.suppress(OSError):
        fd = sys.stdin.fileno()
        if os.isatty(fd) and os.tcgetpgrp(fd) != os.getpgrp():
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(fd, os.getpgrp())
            finally:
                signal.signal(signal.SIGTTOU, old)
