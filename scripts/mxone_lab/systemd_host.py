"""Lab hosts that boot a real systemd as PID 1: what makes them safe and what they run.

A systemd host is a plain lab host (own network, hostname, overlays over /etc, /var, /root,
/opt, the lab's sshd) whose holder is ``/lib/systemd/systemd`` itself, PID 1 of the host's
own PID namespace. systemd assumes it owns the machine, so the host gets everything a
container manager would give it, and nothing of the machine reaches it:

- a private tmpfs on /tmp (systemd-tmpfiles empties /tmp at boot: on the machine's /tmp it
  would wipe every file there) and on /run; the lab dir appears in the host's /tmp only
  after boot (so the host's files, keys and configs keep their paths);
- its own /dev: a tmpfs with the harmless device nodes bound in, its own devpts, and a
  /dev/console that is a pty the lab drains into ``console.log`` (systemd writes to
  /dev/console: the machine's console must never see it);
- its own IPC and cgroup namespaces; the cgroup namespace is rooted at a cgroup named
  ``<lab id>-<host>`` that the lab creates and removes, and systemd manages only that tree;
- /sys and /proc/sys read-only except the parts that belong to the host's own namespaces
  (/proc/sys/net, the hostname), so no unit can change a kernel setting of the machine;
- units masked and generators disabled through the host's overlay /etc (symlinks to
  /dev/null written in the upper dir before boot): everything that would touch the
  network, the disks, the clock or the kernel of the machine, and every unit the machine
  itself has enabled (ssh, keepalived, postgresql, timers...), keeping journald, dbus and
  logind; tmpfiles.d lines for paths the host shares with the machine (``/home``,
  ``/srv``, ``/forcefsck``...) are left out of its boot-time setup. The machine's own /etc
  is never written (systemd_etc.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import mxone_lab.procs as procs

SYSTEMD = "/lib/systemd/systemd"

#: The environment systemd starts with (``container`` tells it what it cannot do).
BOOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "container": "lab",
    "SYSTEMD_COLORS": "0",
}

#: What ``reset()`` treats as a unit the product (or a test) started.
RUNNING_STATES = frozenset({"active", "activating", "deactivating", "reloading", "refreshing"})
#: The unit types ``reset()`` stops when they were not running as built.
RESET_TYPES = (".service", ".socket", ".timer", ".path", ".scope", ".mount", ".automount")

#: Where a host's unit files, masks and generator switches live (relative to /).
UNIT_DIRS = ("etc/systemd/system", "etc/systemd/system-generators", "run/systemd/system")
_EXISTING = 'cd / && set -- $(for d in {dirs}; do [ -e "$d" ] && echo "$d"; done)'.format(
    dirs=" ".join(UNIT_DIRS)
)
#: A shell command printing a manifest of :data:`UNIT_DIRS` (names, types, links, modes,
#: contents): equal manifests, equal unit files.
MANIFEST = (
    f"{_EXISTING}; "
    '{ find "$@" -printf \'%p %y %l %m\\n\'; find "$@" -type f -exec md5sum {} +; } | sort'
)


def save_units_command(tar: Path) -> str:
    """A shell command saving :data:`UNIT_DIRS` into ``tar``."""
    return f'{_EXISTING}; tar -cf {shlex.quote(str(tar))} "$@"'


def restore_units_command(tar: Path) -> str:
    """A shell command putting :data:`UNIT_DIRS` back to what ``tar`` holds."""
    return f"cd / && rm -rf {' '.join(UNIT_DIRS)} && tar -xpf {shlex.quote(str(tar))}"


def prerequisite_problems() -> list[str]:
    """Why this machine cannot boot systemd hosts (empty: it can)."""
    problems = []
    if not os.access(SYSTEMD, os.X_OK):
        problems.append(f"{SYSTEMD} is missing: systemd hosts need the systemd package")
    root = cgroup2_root()
    if root is None:
        problems.append("no cgroup2 hierarchy is mounted: systemd hosts need one")
    elif not os.access(root, os.W_OK):
        problems.append(f"the cgroup2 hierarchy at {root} is not writable")
    return problems


def cgroup2_root() -> Path | None:
    """Where the machine's cgroup2 hierarchy is mounted (``/sys/fs/cgroup/unified`` on a
    hybrid machine), or None."""
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                return Path(left.split()[4])
    return None


def holder_script(
    *,
    name: str,
    tag: str,
    net_batch: Path,
    overlays: list[tuple[str, str, str]],
    shown: list[tuple[Path, str]],
) -> str:
    """The shell script that turns fresh namespaces into a host and execs systemd.

    Runs as PID 1 of the new PID namespace (``$1`` is the console pty); prints ``ready``
    on stdout once everything is mounted, then hands stdout to the console. ``tag``
    (``<lab id>-<host>``) names every mount; ``overlays`` are (lower, mount name, options);
    ``shown`` are (machine dir under /tmp, staging dir): each is kept aside until boot has
    cleaned the host's own /tmp, then shown there at its own path (the lab dir; a checkout
    or venv that lives in /tmp, whose python the lab runs on every host).
    """
    q = shlex.quote
    d = "/run/.mxone-lab-dev"
    lines = [
        "set -e",
        "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
        "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
        f"ip -batch {q(str(net_batch))}",
        f"echo {q(name)} > /proc/sys/kernel/hostname",
        "umount -l /run/netns 2>/dev/null || true",
        "mount --make-rprivate /",
        *(f"mount -t overlay {q(mname)} -o {q(opts)} {lower}" for lower, mname, opts in overlays),
        f"mount -t tmpfs -o mode=0755,size=64m {q(tag + '-run')} /run",
        "mkdir -p /run/sshd /run/lock",
        # Dirs of the machine's /tmp the host needs, kept aside until boot is over (see
        # SystemdHosts.expose_lab_dir in boot.py).
        *(f"mkdir -m 0700 {staging} && mount --bind {q(str(path))} {staging}"
          for path, staging in shown),
        f"mount -t tmpfs -o mode=1777,size=512m {q(tag + '-tmp')} /tmp",
        # /dev: the harmless nodes of the machine, its own ptys, the lab's console.
        f"mkdir -m 0755 {d}",
        f"mount -t tmpfs -o mode=0755,nosuid,size=4m {q(tag + '-dev')} {d}",
        "for n in null zero full random urandom tty; do",
        f"  touch {d}/$n; mount --bind /dev/$n {d}/$n",
        "done",
        f"mkdir -p {d}/net {d}/pts {d}/shm",
        f"if [ -c /dev/net/tun ]; then touch {d}/net/tun; mount --bind /dev/net/tun {d}/net/tun; fi",
        f"mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 {q(tag + '-pts')} {d}/pts",
        f"ln -s pts/ptmx {d}/ptmx",
        f'touch {d}/console; mount --bind "$1" {d}/console',
        f"mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m {q(tag + '-shm')} {d}/shm",
        f"ln -s /proc/self/fd {d}/fd",
        f"ln -s /proc/self/fd/0 {d}/stdin",
        f"ln -s /proc/self/fd/1 {d}/stdout",
        f"ln -s /proc/self/fd/2 {d}/stderr",
        f"mount --move {d} /dev",
        f"rmdir {d}",
        # cgroups: this namespace's root is the lab's cgroup for the host.
        f"mount -t cgroup2 {q(tag + '-cgroup')} /sys/fs/cgroup",
        "mount -o remount,bind,ro /sys",
        # /proc of the new PID namespace; of /proc/sys only the host's own parts writable.
        "mount -t proc proc /proc",
        "mount --bind /proc/sys /proc/sys",
        "for p in net kernel/hostname kernel/domainname; do",
        "  mount --bind /proc/sys/$p /proc/sys/$p",
        "done",
        "mount -o remount,bind,ro /proc/sys",
        "echo ready",
        "exec 1>&2",
        # The manager logs to the journal once journald runs (`journalctl -u UNIT` shows
        # "Watchdog timeout", "Main process exited" as on a server); before that, and for
        # its status lines, to the console: there is no /dev/kmsg in the host.
        f"exec {SYSTEMD} --system --log-target=journal-or-kmsg",
    ]
    return "\n".join(lines) + "\n"


_CLONE_NEWPID = 0x20000000
_libc: ctypes.CDLL | None = None


def _setns(fd: int, nstype: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def children_in_pid_ns(pid: int) -> Iterator[None]:
    """Processes this thread starts inside the block are born in ``pid``'s PID namespace.

    The calling thread itself stays where it is (``setns`` on a PID namespace changes only
    where its *children* go), so ``Popen.pid`` is the command's own PID and the command
    runs under the host's PID 1 like every process of that host. Only this thread is
    affected, and only until the block ends.
    """
    target = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, _CLONE_NEWPID)
            try:
                yield
            finally:
                _setns(own, _CLONE_NEWPID)
        finally:
            os.close(own)
    finally:
        os.close(target)


def parse_units(text: str) -> dict[str, str]:
    """``systemctl list-units --all --plain --no-legend --full`` output: unit -> ACTIVE."""
    units = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            units[parts[0]] = parts[2]
    return units


def in_units(cgroup: str | None, root: str, units: frozenset[str] | set[str]) -> bool:
    """True when a process with cgroup path ``cgroup`` belongs to one of ``units`` of the
    host whose cgroup tree is ``root`` (slices do not count: a slice holds anything)."""
    if not cgroup or not cgroup.startswith(root.rstrip("/") + "/"):
        return False
    parts = cgroup[len(root.rstrip("/")) + 1 :].split("/")
    return any(p in units and not p.endswith(".slice") for p in parts)


def remove_cgroup(path: Path, timeout: float = 3.0) -> list[str]:
    """Remove a host's cgroup tree (deepest first); what could not be removed.

    Normally every process is gone already; one still in the tree is killed through the
    tree's own ``cgroup.kill`` first.
    """
    if not path.is_dir():
        return []
    with contextlib.suppress(OSError):
        if "populated 1" in (path / "cgroup.events").read_text():
            _kill_tree(path)
    deadline = time.monotonic() + timeout
    while True:
        left: list[str] = []
        for top, dirs, _ in os.walk(path, topdown=False):
            for d in dirs:
                _rmdir(os.path.join(top, d), left)
        _rmdir(str(path), left)
        if not left or time.monotonic() > deadline:
            return [f"cgroup {p}" for p in left]
        time.sleep(0.05)


def _rmdir(path: str, left: list[str]) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        left.append(path)


def _kill_tree(path: Path) -> None:
    pids: list[int] = []
    for top, _, files in os.walk(path):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                pids += [int(p) for p in Path(top, "cgroup.procs").read_text().split()]
    try:
        (path / "cgroup.kill").write_text("1")
    except OSError:  # a kernel without cgroup.kill: the same processes, by PID
        procs.signal_all(pids, signal.SIGKILL)
    procs.wait_gone(pids, 2.0)
