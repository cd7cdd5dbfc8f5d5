"""This server, as the stack acts on it: commands, units, files, the database's superuser.

Every function runs as root on the server it is called on and raises :class:`StackError`
naming the command and its error when something fails. ``Say`` is how progress reaches the
operator: one line per step, in the operator's words.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mxone_agent import files

Say = Callable[[str], None]


class StackError(Exception):
    """A step of the stack failed on this server; the message names the step and why."""


def run(argv: Sequence[str], *, input: str | None = None, timeout: float = 60.0,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, output captured; :class:`StackError` when it fails (with ``check``)."""
    try:
        r = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise StackError(f"`{' '.join(argv)}` did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise StackError(f"`{' '.join(argv)}` could not start: {exc.strerror}") from None
    if check and r.returncode != 0:
        detail = (r.stderr or r.stdout).strip().splitlines()
        raise StackError(f"`{' '.join(argv)}` failed: {' | '.join(detail[-3:]) or r.returncode}")
    return r


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["systemctl", *args], check=check, timeout=120.0)


def is_active(unit: str) -> bool:
    return systemctl("is-active", "--quiet", unit, check=False).returncode == 0


def is_enabled(unit: str) -> bool:
    return systemctl("is-enabled", "--quiet", unit, check=False).returncode == 0


def write(path: Path, text: str, mode: int = 0o644, owner: str | None = None) -> None:
    """Replace ``path`` atomically; mode and owner set before the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = None
    if owner is not None:
        pw = pwd.getpwnam(owner)
        ids = (pw.pw_uid, pw.pw_gid)
    files.atomic_write(path, text.encode(), mode, owner=ids)


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def home_of(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir)


def system_user(name: str) -> None:
    """Create the system user ``name`` (no home, no login) unless it exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", name])


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` every 0.1 s; :class:`StackError` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


def as_user(user: str, argv: Sequence[str]) -> list[str]:
    """``argv`` to be run as ``user`` (runuser)."""
    return ["runuser", "-u", user, "--", *argv]


def hostname() -> str:
    return os.uname().nodename
