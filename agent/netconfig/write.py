"""Writing a plan on the node, keeping each changed file's previous content, and putting
everything back byte for byte from a snapshot.

While a file is changed, its previous content is kept under :data:`BACKUP_ROOT` at its own
path (never beside it: ifupdown and wicked read every file of their directories).
"""

from __future__ import annotations

import hashlib
import os

from mxone_agent import paths
from mxone_agent.netconfig.plan import Plan
from mxone_agent.node.files import write_atomic

#: Where a changed file's previous content is kept, at its own path below this dir.
BACKUP_ROOT = paths.NETCONFIG_BACKUP


def backup_path(path: str) -> str:
    return BACKUP_ROOT + path


def snapshot(root: str, wanted: list[str]) -> dict[str, dict[str, object] | None]:
    """Path -> {"data": hex, "mode"} (None when absent), for a byte-for-byte restore."""
    out: dict[str, dict[str, object] | None] = {}
    for p in wanted:
        try:
            with open(root + p, "rb") as f:
                data = f.read()
            out[p] = {"data": data.hex(), "mode": os.stat(root + p).st_mode & 0o7777}
        except FileNotFoundError:
            out[p] = None
    return out


def touched_paths(plan: Plan) -> list[str]:
    """Every path applying ``plan`` may write: the files and their backups."""
    return [p for e in plan.edits for p in (e.path, backup_path(e.path))]


def apply_plan(root: str, plan: Plan, keep_backup: bool) -> list[str]:
    """Write the plan's edits; returns the paths written.

    ``keep_backup``: keep each file's previous content under :data:`BACKUP_ROOT` first (an
    existing backup is left: it holds the content from before the first change). Without
    it (an undo), the backups are removed once the file is written.
    """
    written = []
    for e in plan.edits:
        full = root + e.path
        st = os.stat(full)
        if keep_backup:
            b = root + backup_path(e.path)
            if not os.path.exists(b):
                _makedirs(root, os.path.dirname(backup_path(e.path)))
                write_atomic(b, e.before.encode("utf-8", "surrogateescape"), st.st_mode & 0o7777)
        write_atomic(full, e.after.encode("utf-8", "surrogateescape"), st.st_mode & 0o7777,
                     (st.st_uid, st.st_gid))
        written.append(e.path)
        if not keep_backup:
            _remove_backup(root, e.path)
    return written


def _makedirs(root: str, path: str) -> None:
    """``path`` (below BACKUP_ROOT's parent) made with mode 0700 where missing."""
    if os.path.isdir(root + path):
        return
    _makedirs(root, os.path.dirname(path))
    os.mkdir(root + path, 0o700)


def _remove_backup(root: str, path: str) -> None:
    try:
        os.unlink(root + backup_path(path))
    except FileNotFoundError:
        return
    prune_backups(root)


def prune_backups(root: str) -> None:
    """Remove the empty directories of :data:`BACKUP_ROOT` (itself included)."""
    top = root + BACKUP_ROOT
    if not os.path.isdir(top):
        return
    for d, _, _ in sorted(os.walk(top), key=lambda x: -len(x[0])):
        try:
            os.rmdir(d)
        except OSError:
            pass


def backup_dirs(root: str) -> dict[str, bool]:
    """The directories applying a plan may create (:data:`BACKUP_ROOT` and its parent),
    and whether each exists now."""
    dirs = [os.path.dirname(BACKUP_ROOT), BACKUP_ROOT]
    return {d: os.path.isdir(root + d) for d in dirs}


def restore(root: str, files: dict[str, dict[str, object] | None],
            dirs: dict[str, object] | None = None) -> list[str]:
    """Put every path back as :func:`snapshot` saw it, byte for byte, and remove the
    directories of ``dirs`` (from :func:`backup_dirs`) that did not exist then and are
    empty now; the paths written."""
    changed = []
    for p, snap in sorted(files.items()):
        if snapshot(root, [p])[p] == snap:
            continue
        if snap is None:
            os.unlink(root + p)
        else:
            if p.startswith(BACKUP_ROOT + "/"):
                _makedirs(root, os.path.dirname(p))
            write_atomic(root + p, bytes.fromhex(str(snap["data"])), int(str(snap["mode"])))
        changed.append(p)
    prune_backups(root)
    for d, existed in sorted((dirs or {}).items(), reverse=True):
        if not existed:
            try:
                os.rmdir(root + d)
            except OSError:
                pass
    return changed


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
