"""The one atomic file write of the project, for the agent's state and the tool's files.

A reader of a file written here, also after a crash or a full disk, finds the old content
or the new, never half of one: temp file beside the target (created fresh, its mode set
from the first byte), every byte written, fsync, rename over the target, fsync of the
directory. On any failure the temp file is removed and the target is untouched.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *,
                 owner: tuple[int, int] | None = None, sync_directory: bool = True) -> None:
    """Replace ``path`` with ``data``: file mode ``mode`` whatever the umask, and owner
    ``(uid, gid)`` when given, both set before the first byte.

    ``sync_directory`` False skips the fsync of the directory, for a file rewritten every
    few seconds whose loss in a crash costs nothing (the rename is still atomic).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        # A buffered file writes every byte or raises (a short write on a full disk
        # must not pass for the whole file).
        with os.fdopen(fd, "wb") as f:
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), mode)  # the umask may have taken bits away
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_dir(path.parent)


def fsync_dir(path: str | Path) -> None:
    """Make a directory's entries durable (a rename, a new or a removed file in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, mode 0600), atomically as :func:`atomic_write`."""
    atomic_write(path, text.encode("utf-8"), 0o600)
