"""The file system below the exchange-data versions root, reached without following links.

A peer holds the cluster's sync key, nothing more, and must not make this agent write
anywhere else as root. So every path is resolved and must stay under the versions root
(:func:`inside`), files below a version are opened one directory at a time without
following a symbolic link anywhere (:func:`open_beneath`, :func:`make_dirs_beneath`), and
what a directory holds is listed without following one (:func:`entries_below`).
Directories are made 0700, files 0600, from their first byte.

Standard library only: this module ships with the agent to every node.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from mxone_agent.files import fsync_dir as fsync_dir
from mxone_agent.xdata_manifest import MANIFEST, XdataError, path_problem, shown

DIR_MODE = 0o700
FILE_MODE = 0o600


def inside(root: Path, path: Path) -> Path:
    """``path`` once it is checked to resolve (symbolic links followed) to a place under
    ``root``; XdataError otherwise. The versions root itself may be a symbolic link (an
    administrator's choice); nothing below it may lead out."""
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base or real == base:
        raise XdataError(f"{path} resolves to {real}, outside the versions root {base}; "
                         "refused")
    return path


def open_beneath(directory: Path, rel: str, flags: int, mode: int = FILE_MODE) -> int:
    """A file descriptor of ``directory / rel`` opened without following a symbolic link
    in any component of ``rel`` (``rel`` must be plain, see
    :func:`~mxone_agent.xdata_manifest.path_problem`).
    XdataError when a component is a symbolic link or no directory; OSError otherwise."""
    if why := path_problem(rel):
        raise XdataError(f"file path {shown(rel)} is not a plain relative path: {why}")
    parts = rel.split("/")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = _subdir(fd, part, directory / rel, "is not a directory (a symbolic link is "
                          "never followed)")
            os.close(fd)
            fd = nxt
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise XdataError(f"{directory / rel} is a symbolic link; it is never "
                                 "followed") from None
            raise
    finally:
        os.close(fd)


def ensure_root(root: Path) -> Path:
    """Make the versions root (parents as the system makes them) and keep it root's only:
    mode 0700, tightened if an older install left it open."""
    root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    st = os.stat(root)
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(root, DIR_MODE)
    return root


def make_dirs_beneath(directory: Path, rel_dir: str) -> None:
    """Make the directories of ``rel_dir`` below ``directory`` (mode 0700), never
    following a symbolic link; XdataError when a component exists as anything else."""
    if rel_dir in ("", "."):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel_dir.split("/"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, DIR_MODE, dir_fd=fd)
            nxt = _subdir(fd, part, directory / rel_dir, "exists and is not a directory")
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def _subdir(fd: int, part: str, where: Path, is_not: str) -> int:
    """Open directory ``part`` below the directory open as ``fd``, never following a
    symbolic link; XdataError "``where``: ``part`` ``is_not``" when it is no directory."""
    try:
        return os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise XdataError(f"{where}: {part!r} {is_not}") from None
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write a new file ``path`` with mode 0600 from its first byte, and fsync it.

    Exclusive and without following a symbolic link (not a replace through a temporary
    name, as :func:`mxone_agent.files.write_private` does): a version's manifest is written
    once into a directory of the version's own, whose other names a peer chose."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_use(root: Path) -> int:
    """Bytes the regular files below ``root`` take (symbolic links are not followed)."""
    total = 0
    for top, dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(top, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


def fsync_file(path: Path) -> None:
    """Make a file's data durable; the file is opened without following a symbolic link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_real_dir(path: Path) -> bool:
    """A directory itself, not a symbolic link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def entries_below(directory: Path) -> list[tuple[str, bool]]:
    """(path relative to ``directory``, is a regular file) of every entry below it that is
    not a directory, the manifest excepted, sorted by path; symbolic links are listed,
    never followed."""
    found = []
    for top, dirs, files in os.walk(directory):  # (does not descend into linked dirs)
        rel_top = os.path.relpath(top, directory)
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(top, d)))]:
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            if rel == MANIFEST:
                continue
            regular = stat.S_ISREG(os.lstat(os.path.join(top, name)).st_mode)
            found.append((rel.replace(os.sep, "/"), regular))
    return sorted(found)

