"""sync_lim between two directories through real processes speaking the serve protocol.

The peer is a local process instead of an SSH session (same bytes on stdin/stdout); the
SSH transport, clocks and disks of real hosts are exercised in the lab."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mxone_agent import xdata, xdata_sync

PEER = ("import sys; from mxone_agent import xdata_sync; "
        "sys.exit(xdata_sync.main(sys.argv[3:]))")
T0 = datetime(2026, 11, 28, tzinfo=UTC)


def local_peer(root: Path) -> xdata_sync.Peer:
    return xdata_sync.Peer("standby1", (sys.executable, "-c", PEER), agent="mxone-agent", root=root)


def test_regular_data_goes_to_the_standby_then_only_changes(tmp_path: Path) -> None:
    reg, sb = tmp_path / "lim2", tmp_path / "standby1"
    xdata.write_version(reg, 2, {"ext": b"2001\n" * 1000, "db": b"sys" * 1000}, T0)
    r = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    assert (r.direction, r.fetched_files, r.reused_files) == ("to-standby", 2, 0)
    assert xdata.newest_valid(sb, 2)[1] == xdata.newest_valid(reg, 2)[1]
    xdata.write_version(reg, 2, {"ext": b"2001\n" * 1000, "db": b"SYS" * 1000}, T0 + timedelta(hours=1))
    r2 = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    assert (r2.direction, r2.fetched_files, r2.fetched_bytes, r2.reused_files) == ("to-standby", 1, 3000, 1)
    assert len(xdata.versions(sb, 2)) == 2
    r3 = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    assert r3.direction == "none" and r3.notes == ("both sides hold the same data",)


def test_data_changed_on_the_standby_comes_back_to_the_regular(tmp_path: Path) -> None:
    reg, sb = tmp_path / "lim2", tmp_path / "standby1"
    xdata.write_version(reg, 2, {"ext": b"2001\n"}, T0)
    xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    time.sleep(0.01)  # the standby's backup is written later: its mtimes are newer
    m = xdata.write_version(sb, 2, {"ext": b"2001\n2002\n"}, T0 + timedelta(hours=2))
    r = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    assert (r.direction, r.version) == ("to-regular", m.version)
    path, got = xdata.newest_valid(reg, 2)
    assert got == m and (path / "ext").read_bytes() == b"2001\n2002\n"


def test_nothing_anywhere_is_not_an_error(tmp_path: Path) -> None:
    r = xdata_sync.sync_lim(2, tmp_path / "a", "lim2", local_peer(tmp_path / "b"))
    assert (r.direction, r.version, r.notes) == ("none", None, ("no data on either side",))


def test_a_refusing_peer_is_reported_with_its_reason(tmp_path: Path) -> None:
    xdata.write_version(tmp_path / "a", 2, {"x": b"1"}, T0)
    broken = xdata_sync.Peer("standby1", (sys.executable, "-c", "import sys; "
                                          "sys.stderr.write('no such command\\n'); sys.exit(127)"))
    with pytest.raises(xdata.XdataError, match="standby1 refused `status`: no such command"):
        xdata_sync.sync_lim(2, tmp_path / "a", "lim2", broken)


def test_serve_refuses_unknown_requests_and_foreign_versions(tmp_path: Path, capsysbinary) -> None:
    import io

    out = io.BytesIO()
    assert xdata_sync.serve(["format", "disk"], tmp_path, io.BytesIO(), out) == 1
    assert xdata_sync.serve(["send", "2", "lim3-20261128T000000.000000Z", "a"], tmp_path, io.BytesIO(), out) == 1
    assert "no version lim3-20261128T000000.000000Z of LIM 2 here" in capsysbinary.readouterr().err.decode()


def test_forced_command_takes_the_request_from_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsysbinary) -> None:
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "/opt/x/mxone-agent xdata serve --root /elsewhere clock")
    assert xdata_sync.main(["serve", "--root", str(tmp_path)]) == 0
    assert b'"time"' in capsysbinary.readouterr().out


def test_ssh_arguments_pin_the_host_key(tmp_path: Path) -> None:
    args = xdata_sync.ssh_args("10.77.0.20", tmp_path / "k", tmp_path / "kh")
    assert "StrictHostKeyChecking=yes" in args and f"UserKnownHostsFile={tmp_path / 'kh'}" in args
    assert args[-1] == "root@10.77.0.20" and "BatchMode=yes" in args
    assert os.fspath(tmp_path / "k") in args


def test_a_receiver_that_dies_midway_keeps_its_previous_version(tmp_path: Path) -> None:
    reg, sb = tmp_path / "lim2", tmp_path / "standby1"
    xdata.write_version(reg, 2, {"big": b"1" * 1000}, T0)
    xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    before = xdata.newest_valid(sb, 2)[1]
    xdata.write_version(reg, 2, {"big": os.urandom(8 << 20)}, T0 + timedelta(hours=1))
    # a peer that answers the questions but dies after reading a little of the data
    dying = ("import sys, os; from mxone_agent import xdata_sync\n"
             "if 'receive' in sys.argv:\n"
             "    sys.stdin.buffer.readline(); sys.stdin.buffer.read(65536); os._exit(9)\n"
             "sys.exit(xdata_sync.main(sys.argv[3:]))")
    peer = xdata_sync.Peer("standby1", (sys.executable, "-c", dying), agent="a", root=sb)
    with pytest.raises(xdata.XdataError, match="sending LIM data with standby1 failed"):
        xdata_sync.sync_lim(2, reg, "lim2", peer)
    assert xdata.newest_valid(sb, 2)[1] == before
    assert [p.name for p in sb.iterdir()] == [before.version]


def test_from_the_standby_directions_are_named_for_the_regular_server(tmp_path: Path) -> None:
    """The standby pushes a backup made while it ran the LIM: a push from here is
    ``to-regular``, and the regular server keeps three versions."""
    sb, reg = tmp_path / "standby1", tmp_path / "lim2"
    m = xdata.write_version(sb, 2, {"ext": b"2001\n2003\n"}, T0)
    r = xdata_sync.sync_lim(2, sb, "standby1", local_peer(reg), keep_here=xdata.KEEP_ON_STANDBY,
                            keep_there=xdata.KEEP_ON_REGULAR, peer_is_standby=False)
    assert (r.direction, r.version) == ("to-regular", m.version)
    assert xdata.newest_valid(reg, 2)[1] == m


def test_a_pull_only_sync_leaves_a_push_for_later(tmp_path: Path) -> None:
    reg, sb = tmp_path / "lim2", tmp_path / "standby1"
    m = xdata.write_version(reg, 2, {"ext": b"2001\n"}, T0)
    r = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb), pull_only=True)
    assert (r.direction, r.version, r.push_left) == ("none", m.version, True)
    assert xdata.versions(sb, 2) == []
