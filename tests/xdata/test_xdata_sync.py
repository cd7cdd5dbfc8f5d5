"""sync_lim between two directories through real processes speaking the serve protocol.

The peer is a local process instead of an SSH session (same bytes on stdin/stdout); the
SSH transport, clocks and disks of real hosts are exercised in the lab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mxone_agent import xdata, xdata_sync

from tests.agent.builders import config_dict

# argv: -c CONFIG mxone-agent xdata serve --root ROOT WORDS...
PEER = ("import sys; from mxone_agent import xdata_sync; "
        "sys.exit(xdata_sync.main(['serve', '--config', sys.argv[1], *sys.argv[5:]]))")
T0 = datetime(2026, 11, 28, tzinfo=UTC)


def node_config(directory: Path, node: str = "sb") -> Path:
    """The reference cluster's node config of ``node`` (standby ``sb``; lim2, lim3, lim4
    with LIMs 2, 3, 4), written in ``directory``."""
    path = directory / f"{node}.json"
    path.write_text(json.dumps(config_dict(node)))
    return path


def local_peer(root: Path, node: str = "sb") -> xdata_sync.Peer:
    """``node`` answering through a local ``xdata serve`` process on ``root``."""
    config = node_config(root.parent, node)
    return xdata_sync.Peer("standby1", (sys.executable, "-c", PEER, str(config)),
                           agent="mxone-agent", root=root)


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
    scope = xdata_sync.read_scope(node_config(tmp_path))
    assert xdata_sync.serve(["format", "disk"], tmp_path, io.BytesIO(), out, scope) == 1
    assert capsysbinary.readouterr().err.decode() == \
        "xdata serve: unknown request 'format disk'\n"
    assert xdata_sync.serve(["send", "2", "lim3-20261128T000000.000000Z", "a"], tmp_path,
                            io.BytesIO(), out, scope) == 1
    assert capsysbinary.readouterr().err.decode() == (
        "xdata serve: request: version 'lim3-20261128T000000.000000Z' is not "
        "lim2-<UTC time stamp>\n")
    assert xdata_sync.serve(["send", "2", "lim2-20261128T000000.000000Z", "a"], tmp_path,
                            io.BytesIO(), out, scope) == 1
    assert capsysbinary.readouterr().err.decode() == (
        "xdata serve: no version lim2-20261128T000000.000000Z of LIM 2 here\n")
    assert out.getvalue() == b""


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
             "sys.exit(xdata_sync.main(['serve', '--config', sys.argv[1], *sys.argv[5:]]))")
    peer = xdata_sync.Peer("standby1", (sys.executable, "-c", dying, str(node_config(tmp_path))),
                           agent="a", root=sb)
    with pytest.raises(xdata.XdataError, match="sending LIM data with standby1 failed"):
        xdata_sync.sync_lim(2, reg, "lim2", peer)
    assert xdata.newest_valid(sb, 2)[1] == before
    assert [p.name for p in sb.iterdir()] == [before.version]


def test_from_the_standby_directions_are_named_for_the_regular_server(tmp_path: Path) -> None:
    """The standby pushes a backup made while it ran the LIM: a push from here is
    ``to-regular``, and the regular server keeps three versions."""
    sb, reg = tmp_path / "standby1", tmp_path / "lim2"
    m = xdata.write_version(sb, 2, {"ext": b"2001\n2003\n"}, T0)
    r = xdata_sync.sync_lim(2, sb, "standby1", local_peer(reg, "lim2"),
                            keep_here=xdata.KEEP_ON_STANDBY, peer_is_standby=False)
    assert (r.direction, r.version) == ("to-regular", m.version)
    assert xdata.newest_valid(reg, 2)[1] == m


def test_a_pull_only_sync_leaves_a_push_for_later(tmp_path: Path) -> None:
    reg, sb = tmp_path / "lim2", tmp_path / "standby1"
    m = xdata.write_version(reg, 2, {"ext": b"2001\n"}, T0)
    r = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb), pull_only=True)
    assert (r.direction, r.version, r.push_left) == ("none", m.version, True)
    assert xdata.versions(sb, 2) == []


# ---- a race: the receiver's versions change between the sender's plan and the transfer --------

def race(monkeypatch: pytest.MonkeyPatch, request: str, version_dir: Path, into: Path) -> None:
    """Just before this side starts the peer's ``request`` (``receive``: a push, ``send``:
    a pull), another sync brings ``version_dir`` into the versions root ``into`` (the
    standby's, or this side's)."""
    popen = subprocess.Popen

    def racing(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        if request in argv:
            shutil.copytree(version_dir, into / version_dir.name)
        return popen(argv, **kwargs)

    monkeypatch.setattr(xdata_sync.subprocess, "Popen", racing)


def test_a_push_to_a_standby_that_got_the_version_meanwhile_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standby's status said it holds the first version, so both files of the second
    are streamed; by the time they arrive it has the second (a concurrent sync brought
    it): it reads the stream to its end and answers that it had it."""
    reg, sb = tmp_path / "lim2", tmp_path / "standby1"
    xdata.write_version(reg, 2, {"ext": b"2001\n", "db": b"A" * 3000}, T0)
    xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    m = xdata.write_version(reg, 2, {"ext": b"2001\n2002\n", "db": b"B" * 3000},
                            T0 + timedelta(hours=1))
    race(monkeypatch, "receive", reg / m.version, sb)
    r = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    assert (r.direction, r.version, r.fetched_files, r.fetched_bytes, r.reused_files) == (
        "to-standby", m.version, 0, 0, 2)
    assert xdata.newest_valid(sb, 2)[1] == m


def test_a_push_to_a_standby_whose_base_got_newer_fetches_less(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planned against the first version (both files change), received beside a newer
    one that another sync brought meanwhile (the database file as in the version sent):
    the standby keeps the reload file, discards the database file sent and copies its own."""
    reg, sb, other = tmp_path / "lim2", tmp_path / "standby1", tmp_path / "other"
    xdata.write_version(reg, 2, {"ext": b"2001\n", "db": b"A" * 3000}, T0)
    xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    meanwhile = xdata.write_version(other, 2, {"ext": b"2001\n", "db": b"B" * 3000},
                                    T0 + timedelta(hours=1))
    m = xdata.write_version(reg, 2, {"ext": b"2001\n2002\n", "db": b"B" * 3000},
                            T0 + timedelta(hours=2))
    race(monkeypatch, "receive", other / meanwhile.version, sb)
    r = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    assert (r.direction, r.version, r.fetched_files, r.fetched_bytes, r.reused_files) == (
        "to-standby", m.version, 1, 10, 1)
    assert xdata.verify(sb / m.version) == []


def test_a_pull_while_a_push_brings_the_version_here_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This side plans which files of the standby's newer version to ask for; just as it
    asks, a push from the standby brings that very version here: the files asked for are
    read and discarded."""
    reg, sb = tmp_path / "lim2", tmp_path / "standby1"
    xdata.write_version(reg, 2, {"ext": b"2001\n", "db": b"A" * 3000}, T0)
    xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    time.sleep(0.01)  # the standby's backup is written later: its mtimes are newer
    m = xdata.write_version(sb, 2, {"ext": b"2001\n2003\n", "db": b"A" * 3000},
                            T0 + timedelta(hours=1))
    race(monkeypatch, "send", sb / m.version, reg)
    r = xdata_sync.sync_lim(2, reg, "lim2", local_peer(sb))
    assert (r.direction, r.version, r.fetched_files, r.reused_files) == (
        "to-regular", m.version, 0, 2)
    assert xdata.newest_valid(reg, 2)[1] == m


# ---- a peer's unexpected answers: a clear refusal naming the field, never another exception --

FAKE_PEER = r"""
import json, sys, time
answers, words = json.loads(sys.argv[1]), sys.argv[7:]
if words[0] == "receive":
    sys.stdin.buffer.read()
raw = answers.get(words[0])
if raw is None:
    sys.stderr.write(f"no answer for {words[0]}\n")
    sys.exit(1)
sys.stdout.write(raw.replace("NOW", repr(time.time())))
"""
VALID_STATUS = '{"time": NOW, "free": 1000000, "xdata": 0, "manifest": null}'
SHA = "ab" * 32


def answering(**answers: str) -> xdata_sync.Peer:
    """A peer that prints ``answers[request]`` (``NOW``: its clock) whatever it is asked."""
    return xdata_sync.Peer("standby1", (sys.executable, "-c", FAKE_PEER, json.dumps(answers)),
                           agent="mxone-agent")


def status_with(**fields: str) -> str:
    base = {"time": "NOW", "free": "1000000", "xdata": "0", "manifest": "null"}
    base.update(fields)
    return "{" + ", ".join(f'"{k}": {v}' for k, v in base.items()) + "}"


def manifest_json(lim: int = 2, version: str = '"lim2-20261128T000000.000000Z"',
                  files: str = f'[{{"path": "a", "size": 1, "sha256": "{SHA}", '
                               '"mtime_ns": 1}]') -> str:
    return (f'{{"format": 1, "lim": {lim}, "version": {version}, '
            f'"created": "2026-11-28T00:00:00+00:00", "files": {files}}}')


def file_entry(**change: str) -> str:
    entry = {"path": '"a"', "size": "1", "sha256": f'"{SHA}"', "mtime_ns": "1"}
    entry.update(change)
    return "[{" + ", ".join(f'"{k}": {v}' for k, v in entry.items()) + "}]"


@pytest.mark.parametrize("status, error", [
    ('[1, 2]', "peer status: [1, 2] is not a JSON object"),
    ('"ok"', "peer status: 'ok' is not a JSON object"),
    ('{"free": 1, "xdata": 0}', "peer status: time, manifest missing"),
    ('{"time": ', "peer status: not a JSON answer: b'{\"time\": '"),
    ("[" * 5000, "peer status: not a JSON answer: b'[[[["),
    (status_with(free='"x"'), "peer status: free is 'x', not a whole number of bytes"),
    (status_with(free='"12"'), "peer status: free is '12', not a whole number of bytes"),
    (status_with(free="1.5"), "peer status: free is 1.5, not a whole number of bytes"),
    (status_with(free="true"), "peer status: free is True, not a whole number of bytes"),
    (status_with(free="-1"),
     "peer status: free is -1, not a whole number of bytes from 0 to 9223372036854775808"),
    (status_with(free=str(2**64)), "peer status: free is 18446744073709551616, not a whole "
                                   "number of bytes from 0 to 9223372036854775808"),
    (status_with(xdata="1e400"), "peer status: xdata is inf, not a whole number of bytes"),
    (status_with(time="1e300"),
     "peer status: time is 1e+300, not a time in seconds since 1970 (UTC)"),
    (status_with(time="NaN"), "peer status: time is nan, not a time in seconds since 1970"),
    (status_with(time="-Infinity"), "peer status: time is -inf, not a time in seconds"),
    (status_with(time='"NOW"'), "peer status: time is '"),
    (status_with(time="null"), "peer status: time is None, not a time in seconds since 1970"),
    (status_with(manifest="[]"), "peer status: manifest: [] is not a manifest (a JSON object)"),
    (status_with(manifest='{"format": 1}'),
     "peer status: manifest: lim, version, created, files missing"),
    (status_with(manifest=manifest_json(lim=3, version='"lim3-20261128T000000.000000Z"')),
     "peer status: manifest is of LIM 3, not 2"),
    (status_with(manifest=manifest_json(lim='"2"')),
     "peer status: manifest: lim is '2', not a LIM number"),
    (status_with(manifest=manifest_json(version='"../../etc"')),
     "peer status: manifest: version is '../../etc', not a version name of LIM 2 "
     "(lim2-<UTC time stamp>)"),
    (status_with(manifest=manifest_json(version='"lim2-20261399T000000.000000Z"')),
     "peer status: manifest: version is 'lim2-20261399T000000.000000Z', not a version name"),
    (status_with(manifest=manifest_json(files='{"a": 1}')),
     "peer status: manifest: files is {'a': 1}, not a list"),
    (status_with(manifest=manifest_json(files='["a"]')),
     "peer status: manifest: files[0] is 'a', not a file entry (a JSON object)"),
    (status_with(manifest=manifest_json(files='[{"path": "a"}]')),
     "peer status: manifest: files[0]: size, sha256, mtime_ns missing"),
    (status_with(manifest=manifest_json(files=file_entry(size='"12"'))),
     "peer status: manifest: files[0]: size is '12', not a whole number of bytes"),
    (status_with(manifest=manifest_json(files=file_entry(size="-5"))),
     "peer status: manifest: files[0]: size is -5, not a whole number of bytes from 0"),
    (status_with(manifest=manifest_json(files=file_entry(mtime_ns="1e30"))),
     "peer status: manifest: files[0]: mtime_ns is 1e+30, not a time in nanoseconds"),
    (status_with(manifest=manifest_json(files=file_entry(mtime_ns=str(2**70)))),
     "peer status: manifest: files[0]: mtime_ns is 1180591620717411303424, not a time in "
     "nanoseconds from"),
    (status_with(manifest=manifest_json(files=file_entry(sha256="7"))),
     "peer status: manifest: files[0]: sha256 is 7, not 64 hex digits"),
    (status_with(manifest=manifest_json(files=file_entry(path='"../x"'))),
     "peer status: manifest: files[0]: path is '../x', not a plain relative path"),
    (status_with(manifest=manifest_json(files=file_entry(path="[]"))),
     "peer status: manifest: files[0]: path is [], not a file path"),
    (status_with(manifest=manifest_json(files=file_entry()[:-1] + ", " + file_entry()[1:])),
     "peer status: manifest: 'a' is listed twice"),
])
def test_a_wrong_status_answer_is_a_refusal_naming_the_field(tmp_path: Path, status: str,
                                                             error: str) -> None:
    xdata.write_version(tmp_path / "here", 2, {"x": b"1"}, T0)
    with pytest.raises(xdata.XdataError) as info:
        xdata_sync.sync_lim(2, tmp_path / "here", "lim2", answering(status=status))
    assert str(info.value).startswith(error), str(info.value)
    assert type(info.value.__cause__) is not RecursionError  # a refusal, not a crash


@pytest.mark.parametrize("receipt, error", [
    ("[]", "peer receive answer: [] is not a JSON object"),
    ("", "peer receive answer: not a JSON answer: b''"),
    ('{"version": "lim2-20261128T000000.000000Z", "fetched_files": 1, "fetched_bytes": 1}',
     "peer receive answer: reused_files missing"),
    ('{"version": "lim2-20261128T000000.000000Z", "fetched_files": "1", "fetched_bytes": 1, '
     '"reused_files": 0}', "peer receive answer: fetched_files is '1', not a count of files"),
    ('{"version": "lim2-20261128T000000.000000Z", "fetched_files": 1, "fetched_bytes": 1e99, '
     '"reused_files": 0}', "peer receive answer: fetched_bytes is 1e+99, not a whole number "
                           "of bytes"),
    ('{"version": "lim9-20261128T000000.000000Z", "fetched_files": 1, "fetched_bytes": 1, '
     '"reused_files": 0}', "peer receive answer: version is 'lim9-20261128T000000.000000Z', "
                           "not lim2-20261128T000000.000000Z (the version sent)"),
])
def test_a_wrong_receive_answer_is_a_failure_naming_the_field(tmp_path: Path, receipt: str,
                                                              error: str) -> None:
    xdata.write_version(tmp_path / "here", 2, {"x": b"1"}, T0)
    peer = answering(status=VALID_STATUS, receive=receipt)
    with pytest.raises(xdata.XdataError) as info:
        xdata_sync.sync_lim(2, tmp_path / "here", "lim2", peer)
    assert str(info.value).startswith(error), str(info.value)


def test_a_well_formed_fake_peer_is_accepted(tmp_path: Path) -> None:
    """The fake peer above speaks the protocol when its answers are right: the refusals
    are the wrong fields' doing."""
    m = xdata.write_version(tmp_path / "here", 2, {"x": b"1"}, T0)
    peer = answering(status=VALID_STATUS, receive=(
        f'{{"version": "{m.version}", "fetched_files": 1, "fetched_bytes": 1, '
        '"reused_files": 0, "already_had": false}'))
    r = xdata_sync.sync_lim(2, tmp_path / "here", "lim2", peer)
    assert (r.direction, r.version, r.fetched_files, r.fetched_bytes) == (
        "to-standby", m.version, 1, 1)
