"""The agent's files on a node, written so that a crash leaves the old or the new content.

Every function takes ``root``: the file system to work in ("" on a node; a temp dir in the
unit tests). Snapshots are ``{"data": hex, "mode": int}`` (None: no file), so that a
rollback puts a file back byte for byte and with its mode.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from mxone_agent import paths
from mxone_agent.files import fsync_dir as fsync_dir

FILES = {"node": paths.NODE_JSON, "prev": paths.NODE_JSON_PREV, "key": paths.CLUSTER_KEY,
         "sync": paths.SYNC_KEY, "hosts": paths.KNOWN_HOSTS, "auth": paths.AUTHORIZED_KEYS}
"""The files a change writes, by the name the tool uses for each."""
DIRS = (paths.ETC, paths.AGENT_DIR, paths.ROOT_SSH)
"""The directories a change may create (removed again by a rollback if it did)."""

Snapshot = dict[str, Any] | None


def write_atomic(full: str, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Replace ``full`` with ``data``: a fresh temp file beside it, created with ``mode``
    (never wider; a leftover temp file is removed first, so a secret never lands in a file
    with another mode), fsynced, renamed over it, the directory fsynced."""
    d = os.path.dirname(full)
    tmp = os.path.join(d, f".{os.path.basename(full)}.tmp-{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o777)
    try:
        try:
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:  # a short write (a full disk) must not pass for the whole file
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, full)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(d)


def read(root: str, path: str) -> Snapshot:
    """The snapshot of one file (None when it does not exist)."""
    try:
        st = os.lstat(root + path)
        with open(root + path, "rb") as f:
            return {"data": f.read().hex(), "mode": st.st_mode & 0o7777}
    except FileNotFoundError:
        return None


def put(root: str, path: str, snap: Mapping[str, Any]) -> None:
    write_atomic(root + path, bytes.fromhex(str(snap["data"])), int(snap["mode"]))


def remove(root: str, path: str) -> None:
    try:
        os.unlink(root + path)
        fsync_dir(os.path.dirname(root + path))
    except FileNotFoundError:
        pass


def commit_upload(root: str, tmp: str, path: str, mode: int) -> None:
    """Rename an uploaded temp file (created 0600 by the upload) over ``path`` with ``mode``."""
    fd = os.open(root + tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(root + tmp, mode)
    os.replace(root + tmp, root + path)
    fsync_dir(os.path.dirname(root + path))


def snapshot(root: str) -> dict[str, Any]:
    """Every file of :data:`FILES` and whether each directory of :data:`DIRS` exists."""
    return {"files": {k: read(root, p) for k, p in FILES.items()},
            "dirs": {d: os.path.isdir(root + d) for d in DIRS}}


def prepare_dirs(root: str) -> None:
    os.makedirs(root + paths.AGENT_DIR, mode=0o755, exist_ok=True)
    os.makedirs(root + paths.RELEASES, mode=0o755, exist_ok=True)
    os.makedirs(root + paths.ROOT_SSH, mode=0o700, exist_ok=True)


def keep_prev(root: str) -> None:
    """node.json.prev := node.json (removed when there is no node.json)."""
    cur = read(root, FILES["node"])
    if cur is not None:
        put(root, FILES["prev"], cur)
    else:
        remove(root, FILES["prev"])


def write(root: str, uploads: list[Mapping[str, Any]], keep: bool) -> None:
    """Put each upload (``{"name", "tmp", "mode"}``) in place; ``keep``: node.json.prev first."""
    if keep:
        keep_prev(root)
    for f in uploads:
        commit_upload(root, str(f["tmp"]), FILES[str(f["name"])], int(f["mode"]))


def restore(root: str, files: Mapping[str, Snapshot], dirs: Mapping[str, bool]) -> None:
    """Put the files back as :func:`snapshot` saw them, byte for byte (a file already as it
    was is not written: the disk may be read-only), remove the directories that did not
    exist then (when empty), and the leftovers of an interrupted change."""
    for d in (paths.AGENT_DIR, paths.RELEASES, paths.ROOT_SSH):
        if os.path.isdir(root + d):
            for n in os.listdir(root + d):
                if n.startswith(".") and (".upload-" in n or ".tmp-" in n):
                    p = os.path.join(root + d, n)
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p)
                    else:
                        os.unlink(p)
    for name, snap in files.items():
        if name not in FILES or read(root, FILES[name]) == snap:
            continue
        if snap is None:
            remove(root, FILES[name])
        else:
            put(root, FILES[name], snap)
    for d, existed in sorted(dirs.items(), reverse=True):
        if not existed:
            try:
                os.rmdir(root + d)
            except OSError:
                pass


def switch(root: str, target: str | None) -> None:
    """Point ``current`` at ``target`` (``releases/<name>``), or remove it (None)."""
    link = root + paths.CURRENT
    if target is None:
        remove(root, paths.CURRENT)
        return
    tmp = f"{link}.tmp-{os.getpid()}"
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(os.path.dirname(link))


def current(root: str) -> str | None:
    link = root + paths.CURRENT
    return os.readlink(link) if os.path.islink(link) else None
