"""Exchange-data files over one byte stream (an SSH channel's stdin/stdout).

The sender writes, for each requested file in the order asked, one header line of JSON
``{"path": ..., "size": N}`` followed by exactly N bytes; then a line ``{"end": true}``.
The receiver (:class:`StreamFetcher`) is a ``fetch`` callable for
:func:`mxone_agent.xdata.receive`: it reads the next file from the stream and checks that it
is the one expected, so a confused or truncated stream fails loudly, never silently.

Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import queue
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from mxone_agent.xdata import FileEntry, XdataError, _safe_relpath

CHUNK = 1 << 20
MAX_HEADER = 4096
PIPE_SIZE = 1 << 20  # a larger pipe to/from ssh: fewer, larger reads and writes
HASH_QUEUE = 8  # chunks waiting for the hashing thread (bounds memory: 8 MiB)


def widen_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Make ``fd``'s pipe buffer ``size`` bytes if it is a pipe (best-effort)."""
    with contextlib.suppress(OSError, AttributeError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


class _Hasher:
    """sha256 of a file's chunks in a thread of its own: hashlib releases the GIL, so the
    hashing overlaps with reading the stream and writing the file."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=HASH_QUEUE)
        self._thread = threading.Thread(target=self._run, name="xdata-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self.digest.update(chunk)

    def add(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def finish(self) -> str:
        """Wait for the chunks given so far; the hex digest."""
        self._chunks.put(None)
        self._thread.join()
        return self.digest.hexdigest()


def send_files(version_dir: Path, paths: Sequence[str], out: BinaryIO) -> int:
    """Write the named files of a version to ``out``; returns the bytes of file data sent.

    File bodies go with sendfile(2) when ``out`` is a real file descriptor (a pipe to ssh):
    the data is not copied through Python.
    """
    sent = 0
    try:
        out_fd: int | None = out.fileno()
    except (OSError, AttributeError, io.UnsupportedOperation):
        out_fd = None
    if out_fd is not None:
        widen_pipe(out_fd)
    for rel in paths:
        path = version_dir / _safe_relpath(rel)
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            out.write(json.dumps({"path": rel, "size": size}).encode() + b"\n")
            left = size
            if out_fd is not None:
                out.flush()
                offset = 0
                while left:
                    n = os.sendfile(out_fd, f.fileno(), offset, min(left, 1 << 30))
                    if n == 0:
                        raise XdataError(f"{path} shrank while being sent")
                    offset += n
                    left -= n
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise XdataError(f"{path} shrank while being sent")
                out.write(chunk)
                left -= len(chunk)
            sent += size
    out.write(b'{"end": true}\n')
    out.flush()
    return sent


class StreamFetcher:
    """Reads files from a :func:`send_files` stream, one per call, in the expected order."""

    def __init__(self, stream: BinaryIO, source: str = "sender") -> None:
        self.stream = stream
        self.source = source
        self.bytes = 0
        with contextlib.suppress(OSError, AttributeError, io.UnsupportedOperation):
            widen_pipe(stream.fileno())

    def _header(self) -> dict[str, object]:
        line = self.stream.readline(MAX_HEADER)
        if not line.endswith(b"\n"):
            raise XdataError(f"the stream from {self.source} ended early (no file header)")
        try:
            header = json.loads(line)
        except ValueError:
            raise XdataError(f"the stream from {self.source} is garbled: {line[:80]!r}") from None
        if not isinstance(header, dict):
            raise XdataError(f"the stream from {self.source} is garbled: {line[:80]!r}")
        return header

    def __call__(self, entry: FileEntry, target: Path) -> str:
        """Write the next file of the stream to ``target``; returns its sha256."""
        header = self._header()
        if header.get("path") != entry.path or header.get("size") != entry.size:
            raise XdataError(f"{self.source} sent {header.get('path')!r} ({header.get('size')} "
                             f"bytes), expected {entry.path!r} ({entry.size} bytes)")
        left = entry.size
        hasher = _Hasher()
        try:
            with target.open("wb", buffering=0) as f:
                while left:
                    chunk = self.stream.read(min(CHUNK, left))
                    if not chunk:
                        raise XdataError(f"the stream from {self.source} ended in the middle "
                                         f"of {entry.path} ({entry.size - left} of "
                                         f"{entry.size} bytes)")
                    hasher.add(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[f.write(view):]
                    left -= len(chunk)
        finally:
            digest = hasher.finish()
        self.bytes += entry.size
        return digest

    def finish(self) -> None:
        """Check the stream ends where it should (after the last expected file)."""
        if self._header() != {"end": True}:
            raise XdataError(f"{self.source} sent more files than were asked for")
