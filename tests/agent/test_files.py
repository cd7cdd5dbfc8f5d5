"""The one atomic file write: old or new content, never half, mode and owner from the start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mxone_agent import files


def test_replaces_with_mode_and_owner_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text("old")
    old = os.umask(0o077)
    try:
        files.atomic_write(path, b"new", 0o644, owner=(os.getuid(), os.getgid()))
    finally:
        os.umask(old)
    st = path.stat()
    assert path.read_bytes() == b"new" and st.st_mode & 0o777 == 0o644
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    files.write_private(path, "private\n")
    assert path.read_text() == "private\n" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["node.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "status"
    files.atomic_write(path, b"old", sync_directory=False)

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        files.atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["status"]
