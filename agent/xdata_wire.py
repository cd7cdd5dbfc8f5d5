"""Exchange-data files over one byte stream (an SSH channel's stdin/stdout).

The sender writes, for each requested file in the order asked, one header line of JSON
``{"path": ..., "size": N}`` followed by exactly N bytes; then a line ``{"end": true}``.
The receiver (:class:`StreamFetcher`) is a ``fetch`` callable for
:func:`mxone_agent.xdata_transfer.receive`: it reads the next file from the stream and
checks that it is the one expected, so a confused or truncated stream fails loudly, never
silently. Neither side follows a symbolic link: the sender opens each file below its
version directory with :func:`~mxone_agent.xdata_beneath.open_beneath`, the receiver
creates each file new (mode 0600) and never opens one that already exists.

The sender plans what to stream against the receiver's newest version as it was when it
asked; by the time the stream arrives the receiver may hold more (the same version, or a
newer base, brought meanwhile by another sync) and want fewer files. A fetcher that knows
the version's manifest therefore reads and discards a file it does not want, provided it
is one the sender could have planned: a file of the manifest, in the manifest's order,
not seen before, with exactly the manifest's size (so at most the manifest's total is
ever read). Anything else is refused, naming what was sent.

Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import mmap
import os
import queue
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from mxone_agent.xdata_beneath import FILE_MODE, open_beneath
from mxone_agent.xdata_manifest import FileEntry, Manifest, XdataError, shown

CHUNK = 1 << 20
MAX_HEADER = 4096
PIPE_SIZE = 1 << 20  # a larger pipe to/from ssh: fewer, larger reads and writes
HASH_QUEUE = 8  # chunks waiting for the hashing thread (bounds memory: 8 MiB)
_RETRY = "; the sender planned against other data here, the next sync sends it"


def widen_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Make ``fd``'s pipe buffer ``size`` bytes if it is a pipe (best-effort)."""
    with contextlib.suppress(OSError, AttributeError):
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


class _Hasher:
    """sha256 of a file in a thread of its own: hashlib releases the GIL, so the hashing
    overlaps with receiving the stream. It is given the file's bytes in order, either as
    chunks or as regions (offset, length) of the file already written to ``fd`` (data that
    was spliced there never passed through this process: it is hashed from the page cache)."""

    def __init__(self, fd: int | None = None) -> None:
        self.digest = hashlib.sha256()
        self._fd = fd
        self._chunks: queue.Queue[bytes | tuple[int, int] | None] = queue.Queue(maxsize=HASH_QUEUE)
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="xdata-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if isinstance(chunk, bytes):
                self.digest.update(chunk)
            elif self._error is None:
                try:
                    self._hash_region(*chunk)
                except OSError as exc:
                    self._error = exc

    def _hash_region(self, offset: int, length: int) -> None:
        assert self._fd is not None
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(self._fd, length + offset - start, offset=start,
                       access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
            self.digest.update(view[offset - start:])

    def add(self, chunk: bytes | tuple[int, int]) -> None:
        self._chunks.put(chunk)

    def finish(self) -> str:
        """Wait for the chunks given so far; the hex digest."""
        self._chunks.put(None)
        self._thread.join()
        if self._error is not None:
            raise XdataError(f"cannot read back a received file to hash it: {self._error}")
        return self.digest.hexdigest()


def send_files(version_dir: Path, paths: Sequence[str], out: BinaryIO) -> int:
    """Write the named files of a version to ``out``; returns the bytes of file data sent.

    Each path must be plain (:func:`~mxone_agent.xdata_manifest.path_problem`) and name a
    regular file reached without a symbolic link (XdataError otherwise, before its header
    is written). File
    bodies go with sendfile(2) when ``out`` is a real file descriptor (a pipe to ssh):
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
        path = version_dir / rel
        with open(open_beneath(version_dir, rel, os.O_RDONLY), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise XdataError(f"{path} is not a regular file")
            size = st.st_size
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
    """Reads files from a :func:`send_files` stream, one per call, in the expected order.

    Without ``manifest`` the stream must hold exactly the files asked for, in the order
    asked. With it (the manifest of the version being received, whose files the sender
    streams a selection of, in the manifest's order) a file this side no longer wants is
    read and discarded when it is a file of the manifest, after the last one read, not
    sent before, of exactly the manifest's size; :attr:`discarded_files` and
    :attr:`discarded_bytes` count those.
    """

    def __init__(self, stream: BinaryIO, source: str = "sender",
                 manifest: Manifest | None = None) -> None:
        self.stream = stream
        self.source = source
        self.bytes = 0
        self.discarded_files = 0
        self.discarded_bytes = 0
        self._manifest = manifest
        self._order = ({f.path: (i, f) for i, f in enumerate(manifest.files)}
                       if manifest is not None else None)
        self._seen: set[str] = set()
        self._last: str | None = None  # the last file read from the stream, kept or not
        with contextlib.suppress(OSError, AttributeError, io.UnsupportedOperation):
            widen_pipe(stream.fileno())

    def _header(self) -> dict[str, object]:
        line = self.stream.readline(MAX_HEADER)
        if not line.endswith(b"\n"):
            raise XdataError(f"the stream from {self.source} ended early (no file header)")
        try:
            header = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            raise XdataError(f"the stream from {self.source} is garbled: {line[:80]!r}") from None
        if not isinstance(header, dict):
            raise XdataError(f"the stream from {self.source} is garbled: {line[:80]!r}")
        return header

    def _advance(self, want: FileEntry | None) -> None:
        """Read headers until the one of ``want`` (its body is next), or, ``want`` None,
        until the end marker; files the sender may send but this side does not want are
        discarded on the way (with a manifest only)."""
        while True:
            header = self._header()
            if header == {"end": True}:
                if want is None:
                    return
                raise XdataError(f"{self.source} did not send {want.path!r} ({want.size} "
                                 f"bytes), which this side needs: its stream ended{_RETRY}")
            path, size = header.get("path"), header.get("size")
            # the size must be the very integer expected: true or 3.0 is a confused sender
            if want is not None and path == want.path and type(size) is int \
                    and size == want.size and path not in self._seen:
                self._note_read(want.path)
                return
            self._discard(self._unwanted(path, size, want))

    def _note_read(self, path: str) -> None:
        self._seen.add(path)
        self._last = path

    def _unwanted(self, path: object, size: object, want: FileEntry | None) -> FileEntry:
        """The manifest's entry of a file sent that this side does not want, when it may be
        discarded; XdataError naming the file and the rule it breaks otherwise."""
        order = self._order
        if order is None or not isinstance(path, str) or path not in order \
                or (want is not None and path == want.path and path not in self._seen):
            if want is not None:
                raise XdataError(f"{self.source} sent {shown(path)} ({shown(size)} bytes), "
                                 f"expected {want.path!r} ({want.size} bytes)")
            if order is None:
                raise XdataError(f"{self.source} sent more files than were asked for")
            assert self._manifest is not None
            raise XdataError(f"{self.source} sent {shown(path)} ({shown(size)} bytes), which "
                             f"is not a file of version {self._manifest.version}")
        index, listed = order[path]
        if path in self._seen:
            raise XdataError(f"{self.source} sent {path!r} twice")
        if self._last is not None and index < order[self._last][0]:
            raise XdataError(f"{self.source} sent {path!r} after {self._last!r}, out of the "
                             "manifest's order")
        if want is not None and want.path in order and index > order[want.path][0]:
            raise XdataError(f"{self.source} sent {path!r} ({shown(size)} bytes), expected "
                             f"{want.path!r} ({want.size} bytes), which this side needs and "
                             f"which the manifest lists before it: it was not sent{_RETRY}")
        if type(size) is not int or size != listed.size:
            raise XdataError(f"{self.source} sent {path!r} with {shown(size)} bytes, the "
                             f"manifest lists it with {listed.size} bytes")
        return listed

    def _discard(self, entry: FileEntry) -> None:
        """Read ``entry``'s body (its manifest size, no more) from the stream and drop it."""
        self._note_read(entry.path)
        left = entry.size
        while left:
            chunk = self.stream.read(min(CHUNK, left))
            if not chunk:
                raise self._short(entry, left)
            left -= len(chunk)
        self.discarded_files += 1
        self.discarded_bytes += entry.size

    def __call__(self, entry: FileEntry, target: Path) -> str:
        """Write the next wanted file of the stream to ``target``; returns its sha256."""
        self._advance(entry)
        # new, 0600 from its first byte, never through a symbolic link; read too: spliced
        # data is hashed back
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     FILE_MODE)
        with open(fd, "r+b", buffering=0) as f:
            hasher = _Hasher(f.fileno())
            try:
                self._body(entry, f, hasher)
            finally:
                digest = hasher.finish()
        self.bytes += entry.size
        return digest

    def _short(self, entry: FileEntry, left: int) -> XdataError:
        return XdataError(f"the stream from {self.source} ended in the middle of {entry.path} "
                          f"({entry.size - left} of {entry.size} bytes)")

    def _body(self, entry: FileEntry, f: io.FileIO, hasher: _Hasher) -> None:
        """Copy the file's body from the stream to ``f``. What the stream's buffer already
        holds is written from here; the rest goes with splice(2) straight from the pipe to
        the file (no copy through this process) when the stream is a pipe, else by reads."""
        left = entry.size
        with contextlib.suppress(AttributeError, io.UnsupportedOperation):
            buffered = self.stream.peek(1)[:left]  # type: ignore[attr-defined]
            if buffered:
                left -= self._write(f, hasher, self.stream.read(len(buffered)))
        if left and self._splice(entry, f, hasher, left):
            return
        while left:
            chunk = self.stream.read(min(CHUNK, left))
            if not chunk:
                raise self._short(entry, left)
            left -= self._write(f, hasher, chunk)

    @staticmethod
    def _write(f: io.FileIO, hasher: _Hasher, chunk: bytes) -> int:
        hasher.add(chunk)
        view = memoryview(chunk)
        while view:
            view = view[f.write(view):]
        return len(chunk)

    def _splice(self, entry: FileEntry, f: io.FileIO, hasher: _Hasher, left: int) -> bool:
        """Move ``left`` bytes from the stream (a pipe) to ``f`` with splice(2); False when
        splice cannot be used here (nothing was moved then)."""
        try:
            src = self.stream.fileno()
        except (AttributeError, io.UnsupportedOperation, OSError):
            return False
        dst, pos = f.fileno(), f.tell()
        region = pos
        first = True
        while left:
            try:
                n = os.splice(src, dst, min(CHUNK, left))
            except OSError as exc:
                if first and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EBADF):
                    return False  # not a pipe (or no splice here): read instead
                raise
            first = False
            if n == 0:
                raise self._short(entry, left)
            pos += n
            left -= n
            if pos - region >= CHUNK or not left:
                hasher.add((region, pos - region))
                region = pos
        return True

    def finish(self) -> None:
        """Check the stream ends where it should: after the last expected file, or, with a
        manifest, after files this side did not want (discarded as in a call)."""
        self._advance(None)
