"""The keeper: the parent process of an ``mxone-lab up`` lab.

``mxone-lab up`` must return while its lab stays up. If the command itself started the
holders and sshds, they would be orphaned when it exits, and on machines whose PID 1 does
not reap orphans (this one's does not) each of them would stay a zombie forever once the
lab is torn down. So ``up`` forks a keeper that builds the lab, reports the outcome on a
pipe, then does nothing but reap its children. When ``mxone-lab down`` (another process)
ends the lab's processes, the keeper reaps them and exits. A SIGTERM or SIGHUP sent to the
keeper tears the lab down.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from typing import NoReturn

from mxone_lab import procs
from mxone_lab.errors import LabError
from mxone_lab.lab import Lab
from mxone_lab.machine import set_current
from mxone_lab.spec import LabSpec


class _Stop(BaseException):
    """A termination signal arrived (BaseException: no `except Exception` swallows it)."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop(signum)


def run(spec: LabSpec, report_fd: int, sshd: bool = True) -> NoReturn:
    """Body of the forked keeper: build, report ``{"ok", "id"|"error"}`` on ``report_fd``,
    then reap children until none is left. Never returns."""
    os.setsid()  # no terminal: the CLI's Ctrl-C or hangup must not reach the lab
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, procs.owner_only(_stop))
    lab: Lab | None = None
    try:
        lab = Lab.up(spec, sshd=sshd, keeper_pid=os.getpid())
        set_current(lab)
        _report(report_fd, {"ok": True, "id": lab.id})
        _detach(lab)
        # A name that says what this process is in `ps` (comm holds 15 characters).
        with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
            f.write(f"keeper-{lab.id}")
        while True:
            try:
                os.wait()
            except ChildProcessError:
                os._exit(0)  # every child is gone: the lab was torn down
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the lab must not leak
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        code = 0 if isinstance(exc, _Stop) else 1
        if isinstance(exc, _Stop):
            message = "interrupted; nothing was left behind"
        elif isinstance(exc, LabError):
            message = str(exc)
        else:
            message = f"internal error: {exc!r}"
            traceback.print_exc()
            code = 2
        if lab is not None:
            try:
                lab.down()
            except LabError as td:
                message += f"; {td}"
                print(f"keeper: {td}", file=sys.stderr)
        _report(report_fd, {"ok": False, "error": message})  # a no-op once reported
        os._exit(code)


_reported = False


def _report(fd: int, message: dict[str, object]) -> None:
    """Send the outcome once; the CLI may be gone (killed): then nobody hears it."""
    global _reported
    if _reported:
        return
    _reported = True
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(message).encode())
    with contextlib.suppress(OSError):
        os.close(fd)


def _detach(lab: Lab) -> None:
    """Let go of the terminal: stdin/stdout to /dev/null, stderr to the lab's keeper.log."""
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(lab.dir / "keeper.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
