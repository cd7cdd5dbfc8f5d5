"""The node operations on the agent's files (mxone_agent.node.files), on a temp root:
snapshot, write, restore byte for byte with modes, the release link, leftovers."""

from __future__ import annotations

import os
from pathlib import Path

from mxone_agent import paths
from mxone_agent.node import files


def at(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def tree(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for d, dirs, names in os.walk(root):
        for n in dirs + names:
            p = Path(d) / n
            st = p.lstat()
            kind = "link:" + os.readlink(p) if p.is_symlink() else (
                "dir" if p.is_dir() else p.read_bytes().hex())
            out[str(p.relative_to(root))] = (kind, st.st_mode & 0o7777)
    return out


def test_a_change_and_its_rollback_leave_the_node_byte_for_byte(tmp_path: Path) -> None:
    root = str(tmp_path)
    at(tmp_path, paths.ETC).mkdir(parents=True)
    # /root is there on every node; releases stay after a rollback (a release is additive).
    for d in ("/root", paths.RELEASES):
        at(tmp_path, d).mkdir(parents=True)
    before = tree(tmp_path)
    snap = files.snapshot(root)
    assert snap["files"] == {k: None for k in files.FILES}
    assert snap["dirs"] == {paths.ETC: True, paths.AGENT_DIR: False, paths.ROOT_SSH: False}
    files.prepare_dirs(root)
    assert at(tmp_path, paths.ROOT_SSH).stat().st_mode & 0o777 == 0o700
    uploads = []
    for name, folder, data, mode in (("key", paths.AGENT_DIR, b"k" * 64 + b"\n", 0o600),
                                     ("node", paths.AGENT_DIR, b'{"generation": 2}\n', 0o644),
                                     ("auth", paths.ROOT_SSH, b"ssh-ed25519 AAAA sync\n", 0o600)):
        tmp = f"{folder}/.{name}.upload-1234"
        at(tmp_path, tmp).write_bytes(data)
        at(tmp_path, tmp).chmod(0o600)
        uploads.append({"name": name, "tmp": tmp, "mode": mode})
    files.write(root, uploads, keep=True)
    assert at(tmp_path, paths.NODE_JSON).stat().st_mode & 0o777 == 0o644
    assert at(tmp_path, paths.CLUSTER_KEY).stat().st_mode & 0o777 == 0o600
    assert not at(tmp_path, paths.NODE_JSON_PREV).exists()  # no node.json before
    # An interrupted upload is left behind; the rollback removes it too.
    at(tmp_path, f"{paths.AGENT_DIR}/.sync.upload-99").write_bytes(b"half")
    files.restore(root, snap["files"], snap["dirs"])
    assert tree(tmp_path) == before


def test_write_keeps_the_previous_node_config_until_commit(tmp_path: Path) -> None:
    root = str(tmp_path)
    files.prepare_dirs(root)
    node = at(tmp_path, paths.NODE_JSON)
    node.write_bytes(b"old\n")
    node.chmod(0o640)
    snap = files.snapshot(root)
    tmp = f"{paths.AGENT_DIR}/.node.upload-1"
    at(tmp_path, tmp).write_bytes(b"new\n")
    files.write(root, [{"name": "node", "tmp": tmp, "mode": 0o644}], keep=True)
    prev = at(tmp_path, paths.NODE_JSON_PREV)
    assert prev.read_bytes() == b"old\n" and prev.stat().st_mode & 0o777 == 0o640
    assert node.read_bytes() == b"new\n"
    files.restore(root, snap["files"], snap["dirs"])
    assert node.read_bytes() == b"old\n" and node.stat().st_mode & 0o777 == 0o640
    assert not prev.exists()
    files.keep_prev(root)
    files.remove(root, files.FILES["prev"])  # commit
    assert not prev.exists()


def test_restore_writes_nothing_already_as_it_was(tmp_path: Path) -> None:
    root = str(tmp_path)
    files.prepare_dirs(root)
    at(tmp_path, paths.NODE_JSON).write_bytes(b"x")
    snap = files.snapshot(root)
    at(tmp_path, paths.AGENT_DIR).chmod(0o555)  # read-only: a write would fail
    try:
        files.restore(root, snap["files"], snap["dirs"])
    finally:
        at(tmp_path, paths.AGENT_DIR).chmod(0o755)


def test_the_release_link_is_switched_and_removed(tmp_path: Path) -> None:
    root = str(tmp_path)
    at(tmp_path, paths.RELEASES).mkdir(parents=True)
    assert files.current(root) is None
    files.switch(root, "releases/abc")
    assert files.current(root) == "releases/abc"
    files.switch(root, "releases/def")
    assert files.current(root) == "releases/def"
    assert sorted(os.listdir(at(tmp_path, paths.AGENT_HOME))) == ["current", "releases"]
    files.switch(root, None)
    assert files.current(root) is None


def test_write_atomic_keeps_owner_and_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"before")
    leftover = tmp_path / f".f.tmp-{os.getpid()}"
    leftover.write_bytes(b"stale")
    leftover.chmod(0o666)
    files.write_atomic(str(path), b"after", 0o600, (os.getuid(), os.getgid()))
    assert path.read_bytes() == b"after" and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
