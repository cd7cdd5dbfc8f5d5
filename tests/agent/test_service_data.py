"""The reference Service Node's data: the datagram answers, loading the newest valid
version, the data backup command (and its refusals), and ``xdata keep-newest``."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mxone_agent import service_node as sn
from mxone_agent import xdata, xdata_sync
from mxone_agent.main import main


@pytest.mark.parametrize("datagram, reply, after", [
    (b"probe", "LIM 2 on h", {"2001"}),
    (b"REGISTER 2002", "OK LIM 2 registered 2002 on h", {"2001", "2002"}),
    (b"REGISTER 2001", "OK LIM 2 registered 2001 on h", {"2001"}),
    (b"EXTENSIONS", "LIM 2 on h extensions: 2001", {"2001"}),
    (b"REGISTER 12ab", "ERROR LIM 2 on h: '12ab' is not an extension (1-20 digits)", {"2001"}),
    (b"REGISTER", "LIM 2 on h", {"2001"}),
])
def test_answers(datagram: bytes, reply: str, after: set[str]) -> None:
    extensions = {"2001"}
    got, changed = sn.answer(2, "h", extensions, datagram)
    assert got.decode() == reply
    assert extensions == after and changed == (after != {"2001"})


def test_extensions_are_listed_sorted() -> None:
    assert sn.answer(2, "h", {"300", "1002", "20"}, b"EXTENSIONS")[0] == \
        b"LIM 2 on h extensions: 1002,20,300"


def version(root: Path, lim: int, extensions: list[str], stamp: str) -> Path:
    when = datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    m = xdata.write_version(root, lim, {sn.RELOAD_FILE: sn.reload_data(lim, set(extensions)),
                                        sn.sysdb_file(lim): sn.sysdb_data(lim, set(extensions))},
                            when)
    return root / m.version


def test_loads_the_newest_version_that_passes_the_full_check(tmp_path: Path) -> None:
    assert sn.newest_loadable(tmp_path, 2) is None
    old = version(tmp_path, 2, ["2001"], "20261128T100000")
    new = version(tmp_path, 2, ["2001", "2002"], "20261128T110000")
    assert sn.newest_loadable(tmp_path, 2) == (new.name, {"2001", "2002"})
    # same size, other bytes: only the sha256 tells
    path = new / sn.RELOAD_FILE
    path.write_bytes(path.read_bytes().replace(b"2002", b"2003"))
    assert sn.newest_loadable(tmp_path, 2) == (old.name, {"2001"})
    assert sn._load(2, 0, str(tmp_path)) == (old.name, {"2001"})
    assert sn._load(3, 0, str(tmp_path)) == (None, set())


def test_reload_data_of_another_lim_is_refused() -> None:
    with pytest.raises(xdata.XdataError, match="not reload data of LIM 3"):
        sn.parse_reload_data(sn.reload_data(2, {"1"}), 3, "f")


def fake_running(run_dir: Path, lim: int, extensions: list[str], loaded: str = "") -> None:
    """Files of a running, loaded service of ``lim`` (this test process stands in for it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    sn.pidfile(str(run_dir), lim).write_text(f"{os.getpid()}\n")
    sn.loadedfile(str(run_dir), lim).write_text(loaded + "\n")
    sn._save_live(str(run_dir), lim, loaded or None, set(extensions))


def test_data_backup_writes_a_version_of_the_live_data_and_keeps_three(tmp_path: Path) -> None:
    run, root = tmp_path / "run", tmp_path / "xdata"
    fake_running(run, 2, ["2002", "2001"])
    made = [sn.data_backup(2, str(run), str(root)).version for _ in range(4)]
    assert [p.name for p in xdata.versions(root, 2)] == made[:0:-1]
    assert sn.newest_loadable(root, 2) == (made[-1], {"2001", "2002"})
    assert not any(p.name.endswith(".tmp") for p in run.iterdir())


def test_data_backup_refuses_a_lim_that_does_not_run_here(tmp_path: Path) -> None:
    with pytest.raises(sn.BackupError, match=r"LIM 2 does not run on .* \(no service in "):
        sn.data_backup(2, str(tmp_path / "run"), str(tmp_path / "xdata"))
    fake_running(tmp_path / "run", 2, [])
    sn.loadedfile(str(tmp_path / "run"), 2).unlink()
    with pytest.raises(sn.BackupError, match="is still loading its data"):
        sn.data_backup(2, str(tmp_path / "run"), str(tmp_path / "xdata"))


def test_a_full_disk_fails_the_backup_and_keeps_the_previous_versions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, root = tmp_path / "run", tmp_path / "xdata"
    fake_running(run, 2, ["2001"])
    first = sn.data_backup(2, str(run), str(root)).version

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(sn.BackupError, match="no data backup written under .*: No space left "
                       "on device; the previous versions are kept"):
        sn.data_backup(2, str(run), str(root))
    monkeypatch.undo()
    assert [p.name for p in root.iterdir()] == [first]


def test_the_backup_command_prints_the_version_and_exits_0_or_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, root = tmp_path / "run", tmp_path / "xdata"
    args = ["service", "data_backup", "--lim", "2", "--run-dir", str(run), "--xdata-root",
            str(root), "--control", str(tmp_path / "no-agent.sock")]
    assert main(args) == 1
    assert capsys.readouterr().err.startswith("data backup failed: LIM 2 does not run on ")
    fake_running(run, 2, ["2001"])
    assert main(args) == 0
    out = capsys.readouterr().out
    [made] = [p.name for p in root.iterdir()]
    assert out.startswith(f"LIM 2: data backup {made} written on ")
    assert "no agent answered" in out


def test_service_status_names_the_loaded_version(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    fake_running(run, 2, [], loaded="lim2-20261128T100000.000000Z")
    assert main(["service", "status", "--lim", "2", "--run-dir", str(run)]) == 0
    assert capsys.readouterr().out == "running (data lim2-20261128T100000.000000Z)\n"
    sn.loadedfile(str(run), 2).write_text("\n")
    assert main(["service", "status", "--lim", "2", "--run-dir", str(run)]) == 0
    assert capsys.readouterr().out == "running (no data)\n"


def test_keep_newest_removes_all_but_the_newest_valid_version(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = version(tmp_path, 2, ["1"], "20261128T100000")
    mid = version(tmp_path, 2, ["1", "2"], "20261128T110000")
    other = version(tmp_path, 3, ["7"], "20261128T100000")
    assert main(["xdata", "keep-newest", "--root", str(tmp_path), "2", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": {"2": [old.name], "3": []}}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mid.name, other.name])
    assert main(["xdata", "keep-newest", "--root", str(tmp_path), "two"]) == 2
    assert "whole numbers" in capsys.readouterr().err


def test_notify_without_an_agent_is_quietly_none(tmp_path: Path) -> None:
    assert xdata_sync.notify_agent({"cmd": "backup"}, str(tmp_path / "none.sock")) is None
