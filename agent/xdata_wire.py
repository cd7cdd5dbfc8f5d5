"""Exchange-data files over one byte stream (an SSH channel's stdin/stdout).

The sender writes, for each requested file in the order asked, one header line of JSON
``{"path": ..., "size": N}`` followed by exactly N bytes; then a line ``{"end": true}``.
The receiver (:class:`StreamFetcher`) is a ``fetch`` callable for
:func:`mxone_agent.xdata.receive`: it reads the next file from the stream and checks that it
is the one expected, so a confused or truncated stream fails loudly, never silently.

Standard library only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from mxone_agent.xdata import FileEntry, XdataError, _safe_relpath

CHUNK = 1 << 20
MAX_HEADER = 4096


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
        digest = hashlib.sha256()
        with target.open("wb") as f:
            while left:
                chunk = self.stream.read(min(CHUNK, left))
                if not chunk:
                    raise XdataError(f"the stream from {self.source} ended in the middle of "
                                     f"{entry.path} ({entry.size - left} of {entry.size} bytes)")
                digest.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        self.bytes += entry.size
        return digest.hexdigest()

    def finish(self) -> None:
        """Check the stream ends where it should (after the last expected file)."""
        if self._header() != {"end": True}:
            raise XdataError(f"{self.source} sent more files than were asked for")
