"""Files over one stream between two real processes (a pipe stands in for the SSH channel's
bytes; the SSH part is exercised in the lab)."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mxone_agent import xdata, xdata_wire

SENDER = """
import sys
from pathlib import Path
from mxone_agent import xdata_wire
xdata_wire.send_files(Path(sys.argv[1]), sys.argv[2:], sys.stdout.buffer)
"""


def make(root: Path) -> xdata.Manifest:
    return xdata.write_version(root, 2, {"a": b"A" * 3_000_000, "sub/b": b"bee", "c": b""},
                               datetime(2026, 11, 28, tzinfo=UTC))


def test_a_version_crosses_a_pipe_between_processes(tmp_path: Path) -> None:
    m = make(tmp_path / "src")
    proc = subprocess.Popen([sys.executable, "-c", SENDER, str(tmp_path / "src" / m.version),
                             *[f.path for f in m.files]], stdout=subprocess.PIPE)
    fetcher = xdata_wire.StreamFetcher(proc.stdout, "lim2")
    got = xdata.receive(tmp_path / "dst", m, fetcher)
    fetcher.finish()
    assert proc.wait(timeout=30) == 0
    assert got.fetched_files == 3 and fetcher.bytes == 3_000_003
    assert xdata.verify(tmp_path / "dst" / m.version) == []


def test_a_truncated_stream_fails_and_leaves_nothing(tmp_path: Path) -> None:
    m = make(tmp_path / "src")
    buf = io.BytesIO()
    xdata_wire.send_files(tmp_path / "src" / m.version, [f.path for f in m.files], buf)
    cut = io.BytesIO(buf.getvalue()[:1_000_000])
    with pytest.raises(xdata.XdataError, match="ended in the middle of a \\(999"):
        xdata.receive(tmp_path / "dst", m, xdata_wire.StreamFetcher(cut, "lim2"))
    assert list((tmp_path / "dst").iterdir()) == []


def test_a_stream_in_the_wrong_order_is_refused(tmp_path: Path) -> None:
    m = make(tmp_path / "src")
    buf = io.BytesIO()
    xdata_wire.send_files(tmp_path / "src" / m.version, ["sub/b", "a", "c"], buf)
    buf.seek(0)
    with pytest.raises(xdata.XdataError, match="lim2 sent 'sub/b' \\(3 bytes\\), expected 'a'"):
        xdata.receive(tmp_path / "dst", m, xdata_wire.StreamFetcher(buf, "lim2"))


def test_extra_files_are_noticed(tmp_path: Path) -> None:
    m = make(tmp_path / "src")
    buf = io.BytesIO()
    xdata_wire.send_files(tmp_path / "src" / m.version, [f.path for f in m.files] + ["a"], buf)
    buf.seek(0)
    fetcher = xdata_wire.StreamFetcher(buf, "lim2")
    xdata.receive(tmp_path / "dst", m, fetcher)
    with pytest.raises(xdata.XdataError, match="more files than were asked for"):
        fetcher.finish()


def test_with_the_manifest_files_no_longer_wanted_are_read_and_dropped(tmp_path: Path) -> None:
    """The receiver got the version meanwhile: it wants none of the files streamed, and
    reads them (no more than their manifest sizes) to the end marker."""
    m = make(tmp_path / "src")
    buf = io.BytesIO()
    xdata_wire.send_files(tmp_path / "src" / m.version, [f.path for f in m.files], buf)
    xdata.receive(tmp_path / "dst", m, xdata_wire.StreamFetcher(io.BytesIO(buf.getvalue())))
    buf.seek(0)
    fetcher = xdata_wire.StreamFetcher(buf, "lim2", m)
    assert xdata.receive(tmp_path / "dst", m, fetcher).already_had
    fetcher.finish()
    assert (fetcher.bytes, fetcher.discarded_files, fetcher.discarded_bytes) == (0, 3, 3_000_003)
    assert buf.read() == b""


def _through_a_pipe() -> subprocess.Popen[bytes]:
    """A process copying its stdin to a pipe (from which the receiving side splices)."""
    return subprocess.Popen([sys.executable, "-c",
                             "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_bytes_changed_in_transit_through_a_pipe_are_caught(tmp_path: Path) -> None:
    m = make(tmp_path / "src")
    buf = io.BytesIO()
    xdata_wire.send_files(tmp_path / "src" / m.version, [f.path for f in m.files], buf)
    data = bytearray(buf.getvalue())
    data[500_123] ^= 0xFF  # deep in the first body: past what the reader buffers
    proc = _through_a_pipe()
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(bytes(data))
    proc.stdin.close()
    with pytest.raises(xdata.XdataError, match="a: sha256 differs from the manifest"):
        xdata.receive(tmp_path / "dst", m, xdata_wire.StreamFetcher(proc.stdout, "lim2"))
    proc.wait(timeout=30)
    assert list((tmp_path / "dst").iterdir()) == []


def test_a_pipe_that_ends_in_the_middle_of_a_file_fails(tmp_path: Path) -> None:
    m = make(tmp_path / "src")
    buf = io.BytesIO()
    xdata_wire.send_files(tmp_path / "src" / m.version, [f.path for f in m.files], buf)
    proc = _through_a_pipe()
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(buf.getvalue()[:1_500_000])
    proc.stdin.close()
    with pytest.raises(xdata.XdataError, match="ended in the middle of"):
        xdata.receive(tmp_path / "dst", m, xdata_wire.StreamFetcher(proc.stdout, "lim2"))
    proc.wait(timeout=30)
    assert list((tmp_path / "dst").iterdir()) == []


@pytest.mark.parametrize("header, error", [
    (b'{"path": "a", "size": true}\n', "lim2 sent 'a' (True bytes), expected 'a' (1 bytes)"),
    (b'{"path": "a", "size": 1.0}\n', "lim2 sent 'a' (1.0 bytes), expected 'a' (1 bytes)"),
    (b'{"path": "a", "size": "1"}\n', "lim2 sent 'a' ('1' bytes), expected 'a' (1 bytes)"),
    (b"[" * 3000 + b"\n", "the stream from lim2 is garbled"),
])
def test_a_file_header_of_the_wrong_type_is_refused(tmp_path: Path, header: bytes,
                                                    error: str) -> None:
    """The size must be the very integer expected: ``true`` equals 1 in Python, yet a
    sender writing it is confused; a header nested too deep is garbage, not a crash."""
    entry = xdata.FileEntry("a", 1, "00" * 32, 0)
    fetcher = xdata_wire.StreamFetcher(io.BytesIO(header + b"x"), "lim2")
    with pytest.raises(xdata.XdataError) as info:
        fetcher(entry, tmp_path / "a")
    assert str(info.value).startswith(error), str(info.value)
