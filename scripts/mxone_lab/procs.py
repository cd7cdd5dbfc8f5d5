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


def members(
    net: Collection[NsId], mnt: Collection[NsId] = (), pid: Collection[NsId] = ()
) -> list[int]:
    """PIDs of live processes whose network namespace is in ``net``, mount ns in ``mnt`` or
    PID namespace in ``pid``.

    One pass over /proc; the calling process itself is never listed.
    """
    me = os.getpid()
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        p = int(entry.name)
        if p == me:
            continue
        nid = process_ns(p, "net")
        if nid is not None and nid in net:
            found.append(p)
            continue
        if mnt:
            mid = process_ns(p, "mnt")
            if mid is not None and mid in mnt:
                found.append(p)
                continue
        if pid:
            pns = process_ns(p, "pid")
            if pns is not None and pns in pid:
                found.append(p)
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


def same(pid: int | None, start: int | None) -> bool:
    """True while ``pid`` is the very process that had ``start`` (its start time; None:
    any) - a recorded PID is trusted only while it is, since a recycled one could belong
    to anything, even a process of the machine itself."""
    if not pid:
        return False
    return alive(pid) and (start is None or start_time(pid) == start)


def parent(pid: int) -> int | None:
    """The parent PID of ``pid`` (None if gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (one pass over /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and parent(int(entry.name)) == pid and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def cgroup2(pid: int) -> str | None:
    """The cgroup v2 path of ``pid`` as the machine sees it (``/a/b.service``); None if gone."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


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
    """Wait until every PID is gone (reaping our own children); return those still alive.

    Every child in ``children`` that has ended is reaped, not only those in ``pids``: a
    PID namespace's PID 1 finishes dying only once each process of its namespace has been
    reaped, also one whose parent is outside (our sshd, our commands).
    """
    children = children or {}
    pending = set(pids)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        reap(children)
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
