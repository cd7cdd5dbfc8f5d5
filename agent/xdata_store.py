"""Exchange-data versions on disk: written whole, read, checked against their manifests,
listed, kept and removed.

A version directory with a version name exists only once it is complete: it is built
under a temporary name (:func:`new_temp_dir`), every file and the manifest are fsynced
(:func:`seal`), then it is renamed into place and its parent fsynced (:func:`publish`). A
crash leaves at most a temporary directory, which :func:`sweep_temporaries` removes.
:func:`verify` checks a version's files against its manifest (sizes and sha256, or sizes
and modification times when ``quick``); :func:`newest_valid` skips versions that fail it,
and :func:`prune` removes old versions only after counting the valid ones, newest first.

Standard library only: this module ships with the agent to every node.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from mxone_agent.xdata_beneath import (
    DIR_MODE,
    ensure_root,
    entries_below,
    fsync_dir,
    fsync_file,
    inside,
    is_real_dir,
    make_dirs_beneath,
    open_beneath,
    write_private,
)
from mxone_agent.xdata_manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    XdataError,
    parse_version_name,
    plain_manifest_path,
    shown,
    version_name,
)

KEEP_ON_REGULAR = 3
KEEP_ON_STANDBY = 2
TEMP_PREFIX = ".incoming-"
_CHUNK = 1 << 20


def check_keep(keep: object) -> int:
    """``keep`` when it is a number of versions to keep from 1 (the newest valid version
    always stays); XdataError otherwise."""
    if type(keep) is not int or keep < 1:
        raise XdataError(f"keep is {shown(keep)}, not a number of versions from 1: the newest "
                         "valid version always stays")
    return keep


def sha256_file(path: Path) -> str:
    """The sha256 (hex) of the file at ``path``."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()



def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()



def scan(directory: Path) -> tuple[FileEntry, ...]:
    """Every regular file below ``directory`` (the manifest excepted), sorted by path;
    XdataError for anything else there (a symbolic link, a path no manifest may list)."""
    entries = []
    for rel, regular in entries_below(directory):  # (hashes every file: for writing only)
        if not regular:
            raise XdataError(f"{directory / rel} is not a regular file; a version holds "
                             "regular files only")
        plain_manifest_path(rel)
        st = os.lstat(directory / rel)
        entries.append(FileEntry(rel, st.st_size, sha256_file(directory / rel), st.st_mtime_ns))
    return tuple(entries)


def seal(temp_dir: Path, lim: int, name: str) -> Manifest:
    """Write the manifest of a filled temporary version directory and fsync everything in it."""
    parsed = parse_version_name(name)
    if parsed is None or parsed[0] != lim:
        raise XdataError(f"version name {name!r} is not lim{lim}-<UTC time stamp>")
    manifest = Manifest(lim, name, parsed[1].isoformat(), scan(temp_dir))
    for entry in manifest.files:
        fsync_file(temp_dir / entry.path)
    write_manifest(temp_dir, manifest)
    return manifest


def write_manifest(temp_dir: Path, manifest: Manifest) -> None:
    """Write the manifest into a temporary version directory whose files are all durable
    already, then fsync every directory of the version, deepest first."""
    write_private(temp_dir / MANIFEST, manifest.to_json().encode("utf-8"))
    dirs = {(temp_dir / e.path).parent for e in manifest.files} | {temp_dir}
    for d in sorted(dirs, reverse=True):
        fsync_dir(d)


def publish(temp_dir: Path, root: Path, name: str) -> Path:
    """Rename a sealed temporary directory to its version name under ``root``, durably."""
    if parse_version_name(name) is None:
        raise XdataError(f"version {shown(name)} is not lim<N>-<UTC time stamp>")
    final = inside(root, root / name)
    if os.path.lexists(final):
        raise XdataError(f"version {name} already exists under {root}")
    os.rename(inside(root, temp_dir), final)
    fsync_dir(root)
    return final


def new_temp_dir(root: Path) -> Path:
    """A new empty temporary directory (mode 0700) under the versions root (made 0700)."""
    ensure_root(root)
    temp = root / f"{TEMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
    temp.mkdir(mode=DIR_MODE)
    return temp


def write_version(root: Path, lim: int, files: Mapping[str, bytes],
                  when: datetime | None = None) -> Manifest:
    """A data backup: write ``files`` as a new complete version of ``lim`` under ``root``
    (directories 0700, files 0600)."""
    name = version_name(lim, when)
    temp = new_temp_dir(root)
    try:
        for rel, data in files.items():
            plain_manifest_path(rel)
            make_dirs_beneath(temp, rel.rpartition("/")[0])
            # made 0600 (and no link) first; written into this new file of our own 0700 dir
            os.close(open_beneath(temp, rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            (temp / rel).write_bytes(data)
        manifest = seal(temp, lim, name)
        publish(temp, root, name)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return manifest


def read_manifest(version_dir: Path) -> Manifest:
    """The checked manifest of a version (read without following a symbolic link);
    XdataError when there is none or it is not one."""
    try:
        fd = os.open(version_dir / MANIFEST, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, encoding="utf-8") as f:
            text = f.read(1 << 26)
    except OSError as exc:
        raise XdataError(f"{version_dir}: no readable manifest ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise XdataError(f"{version_dir / MANIFEST}: not UTF-8 text") from None
    return Manifest.from_json(text, str(version_dir / MANIFEST))


def verify(version_dir: Path, manifest: Manifest | None = None, *, quick: bool = False,
           hashed: Mapping[str, str] | None = None) -> list[str]:
    """Problems found checking a version against its manifest (empty: the version is valid).

    Full check: every file's size and sha256, and no file the manifest does not list.
    ``quick``: sizes and modification times only (what a sync decision needs; a version
    was hashed when it was written or received). ``hashed``: digests already computed
    while the files were written, so they are not read again. A listed file must be a
    regular file reached without a symbolic link; anything unlisted (a link too) is a
    problem.
    """
    try:
        manifest = manifest or read_manifest(version_dir)
    except XdataError as exc:
        return [str(exc)]
    problems = []
    listed = set()
    for entry in manifest.files:
        rel = plain_manifest_path(entry.path)
        listed.add(rel)
        try:
            fd = open_beneath(version_dir, rel, os.O_RDONLY)
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
            continue
        except (OSError, XdataError):
            problems.append(f"{rel}: not a regular file below the version (a symbolic link "
                            "is never followed)")
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel}: not a regular file")
            elif st.st_size != entry.size:
                problems.append(f"{rel}: {st.st_size} bytes, manifest says {entry.size}")
            elif quick:
                if st.st_mtime_ns != entry.mtime_ns:
                    problems.append(f"{rel}: modified after the version was made")
            else:
                digest = hashed[rel] if hashed and rel in hashed else _sha256_fd(fd)
                if digest != entry.sha256:
                    problems.append(f"{rel}: sha256 differs from the manifest")
        finally:
            os.close(fd)
    try:
        present = entries_below(version_dir)
    except OSError as exc:
        return [*problems, f"{version_dir}: cannot be listed ({exc.strerror})"]
    for rel, _ in present:
        if rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems



def versions(root: Path, lim: int | None = None) -> list[Path]:
    """Version directories under ``root`` (for one LIM if given), newest first. Only real
    directories with a version name count (a symbolic link named like one does not)."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        parsed = parse_version_name(path.name)
        if parsed and is_real_dir(path) and (lim is None or parsed[0] == lim):
            found.append((parsed[1], path))
    return [p for _, p in sorted(found, reverse=True)]


def newest_valid(root: Path, lim: int, *, quick: bool = False) -> tuple[Path, Manifest] | None:
    """The newest version of ``lim`` whose files match its manifest, or None.

    ``quick``: judge by sizes and modification times (see :func:`verify`); a restore
    uses the full check.
    """
    for path in versions(root, lim):
        try:
            manifest = read_manifest(path)
        except XdataError:
            continue
        if not verify(path, manifest, quick=quick):
            return path, manifest
    return None


def prune(root: Path, lim: int, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest *valid* versions of ``lim`` (invalid ones older
    than the kept ones go too). Returns what was removed. ``keep`` below 1 is refused: the
    newest valid version always stays."""
    check_keep(keep)
    kept = 0
    removed = []
    for path in versions(root, lim):
        if kept < keep and not verify(path, quick=True):
            kept += 1
            continue
        if kept < keep:
            continue  # an invalid version newer than the kept ones: leave it to be looked at
        shutil.rmtree(inside(root, path))
        removed.append(path)
    if removed:
        fsync_dir(root)
    return removed


def keep_only_newest(root: Path, lim: int) -> list[Path]:
    """After a cluster change that makes older versions unfit: keep one version only."""
    return prune(root, lim, 1)


def _temp_owner(path: Path) -> int | None:
    """The PID in a temporary directory's name (``.incoming-<pid>-<ns>``), or None."""
    try:
        return int(path.name[len(TEMP_PREFIX):].split("-", 1)[0])
    except ValueError:
        return None


def _other_live_process(pid: int | None) -> bool:
    return pid is not None and pid != os.getpid() and os.path.exists(f"/proc/{pid}")


def sweep_temporaries(root: Path) -> list[Path]:
    """Remove temporary directories a crash or an interrupted transfer left behind.

    A temporary directory of another live process is a transfer under way (a peer's
    push while this server pulls, say) and stays; this process's own are leftovers.
    """
    if not root.is_dir():
        return []
    gone = [p for p in root.iterdir() if p.name.startswith(TEMP_PREFIX) and is_real_dir(p)
            and not _other_live_process(_temp_owner(p))]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone

