"""Processes and namespaces, read straight from /proc.

Everything the lab ends, it ends by PID: a PID it started itself, or a PID found living in
one of *its own* namespaces (which only the lab's processes can be in, since the lab's
names are unique per run). Nothing here selects processes by name.

A zombie counts as gone: it holds no namespace any more (its ``/proc/PID/ns/*`` links
vanish at exit) and only its parent can reap it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from types import FrameType
from typing import Any

SignalHandler = Callable[[int, FrameType | None], Any]

#: A namespace identity: (st_dev, st_ino) of its nsfs file.
NsId = tuple[int, int]


def ns_id(path: str) -> NsId | None:
    """The identity of the namespace behind ``path`` (``/run/netns/X``, ``/proc/P/ns/net``)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def process_ns(pid: int, kind: str = "net") -> NsId | None:
    """The identity of ``pid``'s namespace of ``kind``; None if gone or a zombie."""
    return ns_id(f"/proc/{pid}/ns/{kind}")


def members(net: Collection[NsId], mnt: Collection[NsId] = ()) -> list[int]:
    """PIDs of live processes whose network namespace is in ``net`` or mount ns in ``mnt``.

    One pass over /proc; the calling process itself is never listed.
    """
    me = os.getpid()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        nid = process_ns(pid, "net")
        if nid is not None and nid in net:
            found.append(pid)
            continue
        if mnt:
            mid = process_ns(pid, "mnt")
            if mid is not None and mid in mnt:
                found.append(pid)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # The state letter follows the command name, which may contain spaces and ')'.
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (tells a reused PID apart)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


def comm(pid: int) -> str:
    """The command name of ``pid`` ('' if gone)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each PID; a PID that is already gone is not an error."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def reap(children: Mapping[int, subprocess.Popen[bytes] | subprocess.Popen[str]]) -> None:
    """Collect the exit status of those of our own children that have ended."""
    for proc in children.values():
        try:
            proc.poll()
        except ChildProcessError:
            pass


def wait_gone(
    pids: Iterable[int],
    timeout: float,
    children: Mapping[int, subprocess.Popen[bytes] | subprocess.Popen[str]] | None = None,
) -> list[int]:
    """Wait until every PID is gone (reaping our own children); return those still alive."""
    children = children or {}
    pending = set(pids)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        reap({p: c for p, c in children.items() if p in pending})
        pending = {p for p in pending if alive(p)}
        if not pending or time.monotonic() >= deadline:
            return sorted(pending)
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def end(
    pids: Iterable[int],
    grace: float,
    children: Mapping[int, subprocess.Popen[bytes] | subprocess.Popen[str]] | None = None,
    kill_timeout: float = 3.0,
) -> list[int]:
    """End PIDs: SIGTERM and up to ``grace`` s to exit (0 = SIGKILL at once), then SIGKILL.

    Returns the PIDs still alive after ``kill_timeout`` more seconds (normally none).
    """
    pids = list(pids)
    if not pids:
        return []
    if grace > 0:
        signal_all(pids, signal.SIGTERM)
        pids = wait_gone(pids, grace, children)
        if not pids:
            return []
    signal_all(pids, signal.SIGKILL)
    return wait_gone(pids, kill_timeout, children)


def owner_only(handler: SignalHandler) -> SignalHandler:
    """Wrap a Python signal handler so that it runs only in the process installing it.

    A fork of this process (pyroute2 and multiprocessing fork helpers) inherits the
    handler; there it would unwind a copy of the caller's stack (run its teardown, say).
    In a fork the wrapped handler ends the fork at once instead.
    """
    owner = os.getpid()

    def guarded(signum: int, frame: FrameType | None) -> Any:
        if os.getpid() != owner:
            os._exit(128 + signum)
        return handler(signum, frame)

    return guarded
