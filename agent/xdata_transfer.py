"""A version from one side to the other: what to send, in which direction, and receiving it.

Comparing two sides is pure (:func:`plan_transfer`, :func:`sync_direction` and the
refusal sentences :func:`clock_skew_problem`, :func:`disk_problem`). :func:`receive`
builds a version a peer sends under a temporary name, copies locally the files it already
has, checks the result against the manifest, and only then gives it its version name:
a failed transfer leaves every existing version as it was. The receiver checks its free
space against the version's total before the first byte, and keeps versions by its own
policy, never a sender's.

Standard library only: this module ships with the agent to every node.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mxone_agent.xdata_beneath import (
    FILE_MODE,
    ensure_root,
    fsync_file,
    inside,
    is_real_dir,
    make_dirs_beneath,
    open_beneath,
)
from mxone_agent.xdata_manifest import (
    FileEntry,
    Manifest,
    XdataError,
    parse_version_name,
    plain_manifest_path,
    shown,
)
from mxone_agent.xdata_store import (
    KEEP_ON_STANDBY,
    check_keep,
    new_temp_dir,
    newest_valid,
    prune,
    publish,
    verify,
    write_manifest,
)

_CHUNK = 1 << 20


# ---- comparing two sides: what to send, in which direction -------------------------------

@dataclass(frozen=True)
class TransferPlan:
    """What a receiver needs to rebuild ``manifest``: files to fetch and files it already
    has (same path, size and sha256 in its ``base`` version) that it copies locally."""

    manifest: Manifest
    fetch: tuple[FileEntry, ...]
    reuse: tuple[FileEntry, ...]

    @property
    def fetch_bytes(self) -> int:
        """The bytes the receiver must fetch."""
        return sum(f.size for f in self.fetch)


def plan_transfer(source: Manifest, base: Manifest | None) -> TransferPlan:
    """What to fetch and what to copy locally to rebuild ``source`` beside ``base`` (the
    receiver's newest valid version of the LIM, None: it has none)."""
    have = {(f.path, f.size, f.sha256) for f in base.files} if base else set()
    fetch = tuple(f for f in source.files if (f.path, f.size, f.sha256) not in have)
    reuse = tuple(f for f in source.files if (f.path, f.size, f.sha256) in have)
    return TransferPlan(source, fetch, reuse)


def sync_direction(regular: Manifest | None, standby: Manifest | None) -> str:
    """``to-standby``, ``to-regular`` or ``none``, by the reload data's modification times.

    The side whose data changed last is the source: after a LIM ran on the standby and its
    data changed there, the newer data goes back to the regular server.
    """
    if regular is None and standby is None:
        return "none"
    if standby is None:
        return "to-standby"
    if regular is None:
        return "to-regular"
    if {(f.path, f.sha256) for f in regular.files} == {(f.path, f.sha256) for f in standby.files}:
        return "none"
    return "to-regular" if standby.newest_mtime_ns > regular.newest_mtime_ns else "to-standby"


def clock_skew_problem(local_s: float, remote_s: float, bound_s: float, local: str,
                       remote: str) -> str | None:
    """A refusal sentence when two servers' clocks differ by more than ``bound_s``."""
    skew = remote_s - local_s
    if abs(skew) <= bound_s:
        return None
    fmt = "%Y-%m-%d %H:%M:%S"
    return (f"clocks differ by {abs(skew):.1f} s (bound {bound_s:.1f} s): {local} says "
            f"{datetime.fromtimestamp(local_s, UTC).strftime(fmt)} UTC, {remote} says "
            f"{datetime.fromtimestamp(remote_s, UTC).strftime(fmt)} UTC; sync direction is "
            "chosen by modification times, so fix NTP before syncing")


def disk_problem(free_bytes: int, backup_sizes: Iterable[int]) -> str | None:
    """A refusal sentence when the standby cannot hold two backups of every regular."""
    need = 2 * sum(backup_sizes)
    if free_bytes >= need:
        return None
    return (f"the standby has {free_bytes} bytes free for exchange data, two backups of each "
            f"regular server need {need} bytes")


# ---- receiving a version -------------------------------------------------------------------

@dataclass(frozen=True)
class Received:
    """What :func:`receive` did: files and bytes fetched, files copied locally;
    ``already_had``: the version was there already, complete (nothing was fetched)."""

    version: str
    fetched_files: int
    fetched_bytes: int
    reused_files: int
    already_had: bool = False


def _copy_hashing(src_dir: Path, dst_dir: Path, rel: str) -> str:
    """Copy ``rel`` from one version directory to another (new, 0600; no symbolic link
    followed on either side); its sha256."""
    h = hashlib.sha256()
    src = open_beneath(src_dir, rel, os.O_RDONLY)
    with open(src, "rb") as fi:
        if not stat.S_ISREG(os.fstat(fi.fileno()).st_mode):
            raise XdataError(f"{src_dir / rel} is not a regular file")
        dst = open_beneath(dst_dir, rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with open(dst, "wb") as fo:
            while chunk := fi.read(_CHUNK):
                h.update(chunk)
                fo.write(chunk)
    return h.hexdigest()


def _settle(temp: Path, entry: FileEntry) -> None:
    """A file just written into ``temp``: a regular file (reached without a symbolic
    link), mode 0600, the source's modification time (set before its fsync)."""
    fd = open_beneath(temp, entry.path, os.O_RDONLY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise XdataError(f"received {entry.path!r} is not a regular file")
        os.fchmod(fd, FILE_MODE)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
    finally:
        os.close(fd)


def _arrived_meanwhile(final: Path, manifest: Manifest) -> bool:
    """Whether the version is complete under its name (another transfer published it)."""
    return is_real_dir(final) and not verify(final, manifest, quick=True)


def free_space_problem(root: Path, manifest: Manifest) -> str | None:
    """A refusal sentence when ``root``'s file system has less room than the version's
    declared total (every file is written, fetched or copied locally, before the older
    versions are pruned)."""
    need = manifest.total_bytes
    free = shutil.disk_usage(root).free
    if need <= free:
        return None
    return (f"version {manifest.version} needs {need} bytes (the sizes its manifest "
            f"declares), {root} has {free} bytes free; refused before the first byte, the "
            "previous versions are kept")


def receive(root: Path, manifest: Manifest, fetch: Callable[[FileEntry, Path], str | None],
            keep: int = KEEP_ON_STANDBY) -> Received:
    """Build ``manifest``'s version under ``root``: files unchanged since our newest valid
    version are copied locally, the others come through ``fetch(entry, target_path)``
    (which may return the sha256 it computed while writing, to save reading it again).

    ``manifest`` is a checked :class:`Manifest` (its version name and paths are plain);
    every path is resolved and must stay under ``root``, and no symbolic link is followed.
    The free space under ``root`` is checked against the manifest's total before anything
    is written (XdataError naming both numbers). ``keep`` is this receiver's own policy,
    never a sender's (at least 1).

    The result is checked against the manifest (every file's sha256) before it gets its
    version name; on any failure the temporary directory is removed and every existing
    version is untouched. Older versions are pruned to ``keep`` only after the new one is
    in place. Modification times are kept as the source had them (sync direction and the
    quick check depend on them). Directories are 0700, files 0600.
    """
    check_keep(keep)
    if parse_version_name(manifest.version) is None:
        raise XdataError(f"version {shown(manifest.version)} is not lim<N>-<UTC time stamp>")
    for entry in manifest.files:
        plain_manifest_path(entry.path)
    ensure_root(root)
    existing = inside(root, root / manifest.version)
    if is_real_dir(existing) and not verify(existing, manifest, quick=True):
        return Received(manifest.version, 0, 0, len(manifest.files), already_had=True)
    if os.path.lexists(existing):
        raise XdataError(f"{existing} exists but does not match the manifest; move it aside")
    if problem := free_space_problem(root, manifest):
        raise XdataError(problem)
    base = newest_valid(root, manifest.lim, quick=True)
    plan = plan_transfer(manifest, base[1] if base else None)
    temp = new_temp_dir(root)
    hashed: dict[str, str] = {}
    # Each file is fsynced by a helper thread while the next one arrives (fsync releases
    # the GIL): durability without a final pause for the whole version.
    syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xdata-fsync")
    pending: list[Future[None]] = []
    try:
        for entry in plan.reuse:
            assert base is not None
            make_dirs_beneath(temp, entry.path.rpartition("/")[0])
            hashed[entry.path] = _copy_hashing(base[0], temp, entry.path)
            _settle(temp, entry)
            pending.append(syncer.submit(fsync_file, temp / entry.path))
        for entry in plan.fetch:
            make_dirs_beneath(temp, entry.path.rpartition("/")[0])
            digest = fetch(entry, inside(root, temp / entry.path))
            if digest is not None:
                hashed[entry.path] = digest
            _settle(temp, entry)
            pending.append(syncer.submit(fsync_file, temp / entry.path))
        problems = verify(temp, manifest, hashed=hashed)
        if problems:
            raise XdataError(f"received {manifest.version} does not match its manifest: "
                             + "; ".join(problems))
        for done in pending:
            done.result()
        write_manifest(temp, manifest)
        if _arrived_meanwhile(root / manifest.version, manifest):
            shutil.rmtree(temp, ignore_errors=True)  # a concurrent transfer brought it
            syncer.shutdown(wait=True)
            return Received(manifest.version, 0, 0, len(manifest.files), already_had=True)
        publish(temp, root, manifest.version)
    except BaseException as exc:
        syncer.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(temp, ignore_errors=True)
        if isinstance(exc, XdataError | OSError) and _arrived_meanwhile(
                root / manifest.version, manifest):  # publish lost a race to a twin transfer
            return Received(manifest.version, 0, 0, len(manifest.files), already_had=True)
        raise
    syncer.shutdown(wait=True)
    prune(root, manifest.lim, keep)
    return Received(manifest.version, len(plan.fetch), plan.fetch_bytes, len(plan.reuse))
