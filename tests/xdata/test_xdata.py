"""Exchange-data versions on a real filesystem: write, verify, keep, compare."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mxone_agent import xdata

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def backup(root: Path, n: int, files: dict[str, bytes], lim: int = 2) -> xdata.Manifest:
    return xdata.write_version(root, lim, files, T0 + timedelta(minutes=n))


def test_a_version_is_complete_and_valid(tmp_path: Path) -> None:
    m = backup(tmp_path, 0, {"reload/ext.db": b"2001\n2002\n", "sysdb/db.dump": b"x" * 5000})
    (path,) = xdata.versions(tmp_path, 2)
    assert path.name == "lim2-20261128T120000.000000Z" == m.version
    assert xdata.verify(path) == []
    assert [f.path for f in m.files] == ["reload/ext.db", "sysdb/db.dump"]
    assert m.total_bytes == 5010
    assert xdata.read_manifest(path) == m
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(xdata.TEMP_PREFIX)]


def test_verify_names_every_problem(tmp_path: Path) -> None:
    backup(tmp_path, 0, {"a": b"1", "b": b"2", "c": b"3"})
    (path,) = xdata.versions(tmp_path)
    (path / "a").write_bytes(b"changed")
    (path / "b").write_bytes(b"9")  # same size, other content
    (path / "c").unlink()
    (path / "extra").write_bytes(b"")
    problems = xdata.verify(path)
    assert problems == ["a: 7 bytes, manifest says 1", "b: sha256 differs from the manifest",
                        "c: missing", "extra: not in the manifest"]


def test_newest_valid_skips_a_damaged_version(tmp_path: Path) -> None:
    backup(tmp_path, 0, {"a": b"old"})
    backup(tmp_path, 1, {"a": b"new"})
    newest = xdata.versions(tmp_path)[0]
    (newest / "a").write_bytes(b"bad")
    path, manifest = xdata.newest_valid(tmp_path, 2)
    assert manifest.version == "lim2-20261128T120000.000000Z"
    assert (path / "a").read_bytes() == b"old"


def test_prune_keeps_the_newest_valid_versions(tmp_path: Path) -> None:
    for n in range(5):
        backup(tmp_path, n, {"a": str(n).encode()})
    backup(tmp_path, 0, {"a": b"other lim"}, lim=3)
    removed = xdata.prune(tmp_path, 2, xdata.KEEP_ON_REGULAR)
    assert [p.name for p in removed] == ["lim2-20261128T120100.000000Z", "lim2-20261128T120000.000000Z"]
    assert len(xdata.versions(tmp_path, 2)) == 3
    assert len(xdata.versions(tmp_path, 3)) == 1  # another LIM's versions are not touched
    assert [p.name for p in xdata.keep_only_newest(tmp_path, 2)][0].endswith("T120300.000000Z")
    assert len(xdata.versions(tmp_path, 2)) == 1


def test_prune_never_removes_the_last_valid_version_for_a_damaged_newer_one(tmp_path: Path) -> None:
    backup(tmp_path, 0, {"a": b"good"})
    backup(tmp_path, 1, {"a": b"will break"})
    (xdata.versions(tmp_path)[0] / "a").write_bytes(b"broken!!!!")
    xdata.prune(tmp_path, 2, 1)
    path, _ = xdata.newest_valid(tmp_path, 2)
    assert (path / "a").read_bytes() == b"good"


def test_a_failed_backup_leaves_no_version_and_no_temporary(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    backup(tmp_path, 0, {"a": b"1"})

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        backup(tmp_path, 1, {"a": b"2"})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["lim2-20261128T120000.000000Z"]


def test_sweep_removes_what_a_crash_left(tmp_path: Path) -> None:
    backup(tmp_path, 0, {"a": b"1"})
    temp = xdata.new_temp_dir(tmp_path)
    (temp / "half").write_bytes(b"...")
    assert xdata.sweep_temporaries(tmp_path) == [temp]
    assert len(list(tmp_path.iterdir())) == 1


def test_unsafe_paths_are_refused(tmp_path: Path) -> None:
    for bad in ("../escape", "/etc/passwd", xdata.MANIFEST):
        with pytest.raises(xdata.XdataError, match="not a plain relative path"):
            backup(tmp_path, 0, {bad: b"x"})
    assert list(tmp_path.iterdir()) == []


def test_transfer_plan_sends_only_changed_files(tmp_path: Path) -> None:
    old = backup(tmp_path, 0, {"a": b"same", "b": b"old", "c": b"gone"})
    new = backup(tmp_path, 1, {"a": b"same", "b": b"new!", "d": b"added"})
    plan = xdata.plan_transfer(new, old)
    assert [f.path for f in plan.fetch] == ["b", "d"]
    assert [f.path for f in plan.reuse] == ["a"]
    assert plan.fetch_bytes == 9
    assert [f.path for f in xdata.plan_transfer(new, None).fetch] == ["a", "b", "d"]


def test_direction_follows_the_newest_modification(tmp_path: Path) -> None:
    reg = backup(tmp_path / "r", 0, {"a": b"1"})
    sb_same = backup(tmp_path / "s", 0, {"a": b"1"})
    assert xdata.sync_direction(reg, sb_same) == "none"
    assert xdata.sync_direction(reg, None) == "to-standby"
    assert xdata.sync_direction(None, reg) == "to-regular"
    assert xdata.sync_direction(None, None) == "none"
    newer_on_standby = xdata.Manifest(2, "v", "t", (xdata.FileEntry("a", 1, "ff", reg.newest_mtime_ns + 1),))
    assert xdata.sync_direction(reg, newer_on_standby) == "to-regular"
    older_on_standby = xdata.Manifest(2, "v", "t", (xdata.FileEntry("a", 1, "ff", reg.newest_mtime_ns - 1),))
    assert xdata.sync_direction(reg, older_on_standby) == "to-standby"


def test_clock_skew_and_disk_refusals() -> None:
    assert xdata.clock_skew_problem(1000.0, 1001.5, 2.0, "lim2", "standby1") is None
    msg = xdata.clock_skew_problem(1_800_000_000.0, 1_800_000_030.0, 2.0, "lim2", "standby1")
    assert msg is not None
    assert "clocks differ by 30.0 s (bound 2.0 s): lim2 says 2027-01-15 08:00:00 UTC, " \
           "standby1 says 2027-01-15 08:00:30 UTC" in msg
    assert xdata.disk_problem(100, [20, 30]) is None
    assert xdata.disk_problem(99, [20, 30]) == (
        "the standby has 99 bytes free for exchange data, two backups of each regular server need 100 bytes")


def test_manifest_refuses_foreign_formats() -> None:
    with pytest.raises(xdata.XdataError, match="format 9"):
        xdata.Manifest.from_json('{"format": 9}')
    with pytest.raises(xdata.XdataError, match="not a valid manifest"):
        xdata.Manifest.from_json("{")


def copier(src_dir: Path, log: list[str]):
    def fetch(entry: xdata.FileEntry, target: Path) -> None:
        log.append(entry.path)
        target.write_bytes((src_dir / entry.path).read_bytes())
    return fetch


def test_receive_fetches_only_changes_and_keeps_two(tmp_path: Path) -> None:
    src, dst = tmp_path / "regular", tmp_path / "standby"
    log: list[str] = []
    m1 = backup(src, 0, {"a": b"same" * 100, "b": b"v1"})
    r1 = xdata.receive(dst, m1, copier(src / m1.version, log))
    assert (r1.fetched_files, r1.reused_files) == (2, 0)
    m2 = backup(src, 1, {"a": b"same" * 100, "b": b"v2"})
    r2 = xdata.receive(dst, m2, copier(src / m2.version, log))
    assert (r2.fetched_files, r2.fetched_bytes, r2.reused_files) == (1, 2, 1)
    assert log == ["a", "b", "b"]
    m3 = backup(src, 2, {"a": b"same" * 100, "b": b"v3"})
    xdata.receive(dst, m3, copier(src / m3.version, log))
    assert [p.name for p in xdata.versions(dst)] == [m3.version, m2.version]
    assert xdata.read_manifest(dst / m3.version) == m3
    assert all(xdata.verify(p) == [] for p in xdata.versions(dst))
    # mtimes are the source's: the direction check compares like with like
    assert xdata.scan(dst / m3.version) == xdata.scan(src / m3.version)
    again = xdata.receive(dst, m3, copier(src / m3.version, log))
    assert again.already_had and again.fetched_files == 0


def test_a_broken_transfer_leaves_the_previous_version_intact(tmp_path: Path) -> None:
    src, dst = tmp_path / "regular", tmp_path / "standby"
    m1 = backup(src, 0, {"a": b"good"})
    xdata.receive(dst, m1, copier(src / m1.version, []))
    m2 = backup(src, 1, {"a": b"newer data"})

    def interrupted(entry: xdata.FileEntry, target: Path) -> None:
        target.write_bytes(b"newer")  # half the file, then the link dies
        raise ConnectionError("ssh: connection reset")

    with pytest.raises(ConnectionError):
        xdata.receive(dst, m2, interrupted)

    def corrupting(entry: xdata.FileEntry, target: Path) -> None:
        target.write_bytes(b"NEWER DATA")

    with pytest.raises(xdata.XdataError, match="a: sha256 differs from the manifest"):
        xdata.receive(dst, m2, corrupting)
    assert [p.name for p in dst.iterdir()] == [m1.version]
    path, manifest = xdata.newest_valid(dst, 2)
    assert manifest == m1 and (path / "a").read_bytes() == b"good"


def test_sweep_leaves_the_transfer_of_another_live_process(tmp_path: Path) -> None:
    under_way = tmp_path / f"{xdata.TEMP_PREFIX}1-123"  # PID 1 is alive
    under_way.mkdir()
    assert xdata.sweep_temporaries(tmp_path) == []
    assert under_way.is_dir()


def test_two_transfers_of_one_version_at_once_both_succeed(tmp_path: Path) -> None:
    """A standby's push and the regular server's pull can bring the same version at once:
    whichever publishes second finds the version complete and says it already had it."""
    src, dst = tmp_path / "standby", tmp_path / "regular"
    m = backup(src, 0, {"a": b"data", "b": b"more"})
    inner: list[xdata.Received] = []

    def racing(entry: xdata.FileEntry, target: Path) -> None:
        if not inner:  # the twin transfer completes while this one is under way
            inner.append(xdata.receive(dst, m, copier(src / m.version, [])))
        target.write_bytes((src / m.version / entry.path).read_bytes())

    outer = xdata.receive(dst, m, racing)
    assert not inner[0].already_had and outer.already_had
    assert [p.name for p in dst.iterdir()] == [m.version]
    assert xdata.verify(dst / m.version) == []


def test_a_version_name_with_an_impossible_date_is_no_version_name(tmp_path: Path) -> None:
    assert xdata.parse_version_name("lim2-20261399T250000.000000Z") is None
    (tmp_path / "lim2-20261399T250000.000000Z").mkdir()  # a stray directory is skipped
    m = backup(tmp_path, 0, {"a": b"1"})
    assert [p.name for p in xdata.versions(tmp_path, 2)] == [m.version]


def test_a_manifest_of_the_wrong_shape_makes_its_version_invalid(tmp_path: Path) -> None:
    """A manifest damaged on disk (a size as text, a file listed twice) is refused with the
    field named, and newest_valid falls back to the previous version instead of failing."""
    good = backup(tmp_path, 0, {"a": b"1"})
    bad = backup(tmp_path, 1, {"a": b"2"})
    path = tmp_path / bad.version / xdata.MANIFEST
    doc = json.loads(path.read_text())
    doc["files"][0]["size"] = "1"
    path.write_text(json.dumps(doc))
    with pytest.raises(xdata.XdataError, match=r"MANIFEST.json: files\[0\]: size is '1', not "
                                               "a whole number of bytes"):
        xdata.read_manifest(tmp_path / bad.version)
    assert xdata.newest_valid(tmp_path, 2)[1] == good
    doc["files"] = [doc["files"][0] | {"size": 1}] * 2
    path.write_text(json.dumps(doc))
    with pytest.raises(xdata.XdataError, match="'a' is listed twice"):
        xdata.read_manifest(tmp_path / bad.version)
    assert xdata.Manifest.from_json(good.to_json()) == good  # a right one still reads back
