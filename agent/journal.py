"""The agent's log in the systemd journal, spoken natively: no python-systemd, no libsystemd.

journald's native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL): one datagram per entry
on the AF_UNIX/SOCK_DGRAM socket :data:`SOCKET`, holding the entry's fields one after the
other - ``KEY=value\\n`` for a value without a newline, else ``KEY\\n``, the value's length
as a 64-bit little-endian integer, the value and ``\\n``. A field may repeat (an entry about
two LIMs carries ``MXONE_LIM`` twice; ``journalctl MXONE_LIM=2`` finds it).

Each entry carries the sentence (MESSAGE), its syslog PRIORITY (:func:`priority`),
SYSLOG_IDENTIFIER=mxone-agent, where in the code it was logged, and the fields an
administrator filters on: MXONE_CLUSTER and MXONE_NODE on every entry of a running agent
(:meth:`JournalHandler.set_context`), MXONE_LIM on every sentence about a LIM - a log call
says so with ``extra=journal.about(lim)``: every ``mxone_*`` attribute of a log record
becomes the journal field of the same name in capitals.

Logging never holds up the agent: the socket does not block, and an entry journald cannot
take now (its queue full, journald restarting) is counted and the count said in the next
entry that gets through. An entry is capped at :data:`MAX_MESSAGE` bytes of text, so it
always fits in one datagram (no memfd).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence

SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "mxone-agent"
MAX_MESSAGE = 16 * 1024
"""Bytes of MESSAGE at most (a longer one is cut, and says so): far below the datagram
limit of an AF_UNIX socket, so no entry ever needs the memfd form."""
FIELD_PREFIX = "mxone_"
"""Log record attributes named so become journal fields (``mxone_lim`` -> ``MXONE_LIM``)."""

Field = tuple[str, str]


def priority(levelno: int) -> int:
    """The syslog priority of a logging level: critical 2, error 3, warning 4, info 6,
    debug 7 (a level between two takes the more severe one's priority)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def valid_name(name: str) -> bool:
    """A field name journald keeps: capitals, digits and ``_``, not starting with ``_`` or a
    digit, at most 64 characters."""
    return (0 < len(name) <= 64 and name[0] != "_" and not name[0].isdigit()
            and all(c.isascii() and (c.isupper() or c.isdigit() or c == "_") for c in name))


def encode(fields: Sequence[Field]) -> bytes:
    """One journal entry in the native protocol's bytes. Field names must be valid
    (:func:`valid_name`); a value holding a newline is sent in the binary form."""
    out = bytearray()
    for name, value in fields:
        if not valid_name(name):
            raise ValueError(f"journal field name {name!r}: capitals, digits and _ only")
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += name.encode("ascii") + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode("ascii") + b"=" + data + b"\n"
    return bytes(out)


def about(lim: int | Iterable[int] | None = None, cluster: str | None = None
          ) -> dict[str, object]:
    """``extra=`` for a log call whose sentence is about a LIM (or several) or a cluster:
    the entry then carries MXONE_LIM / MXONE_CLUSTER."""
    out: dict[str, object] = {}
    if lim is not None:
        out["mxone_lim"] = lim if isinstance(lim, int) else tuple(sorted(set(lim)))
    if cluster is not None:
        out["mxone_cluster"] = cluster
    return out


def _values(value: object) -> list[str]:
    if isinstance(value, list | tuple | set | frozenset):
        return [str(v) for v in value]
    return [str(value)]


def record_fields(record: logging.LogRecord, message: str,
                  context: Mapping[str, str]) -> list[Field]:
    """The fields of one log record's entry: MESSAGE (capped at MAX_MESSAGE bytes),
    PRIORITY, SYSLOG_IDENTIFIER, CODE_*, then ``context`` (fields on every entry) unless the
    record names the same field itself (``mxone_*`` attributes)."""
    data = message.encode("utf-8", "replace")
    if len(data) > MAX_MESSAGE:
        message = data[:MAX_MESSAGE].decode("utf-8", "ignore") + " [cut: the whole entry " \
            f"was {len(data)} bytes]"
    fields: list[Field] = [
        ("MESSAGE", message), ("PRIORITY", str(priority(record.levelno))),
        ("SYSLOG_IDENTIFIER", IDENTIFIER), ("CODE_FILE", record.pathname),
        ("CODE_LINE", str(record.lineno)), ("CODE_FUNC", record.funcName),
        ("LOGGER", record.name)]
    own: list[Field] = []
    for key, value in vars(record).items():
        name = key.upper()
        if key.startswith(FIELD_PREFIX) and value is not None and valid_name(name):
            own += [(name, v) for v in _values(value)]
    named = {n for n, _ in own}
    return fields + [(n, v) for n, v in context.items() if n not in named] + own


def under_systemd(environ: Mapping[str, str], socket_path: str = SOCKET) -> bool:
    """True when systemd started this process (JOURNAL_STREAM, NOTIFY_SOCKET or
    INVOCATION_ID set) and journald listens on ``socket_path``."""
    started = any(environ.get(k) for k in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "INVOCATION_ID"))
    return started and os.path.exists(socket_path)


class JournalHandler(logging.Handler):
    """A logging handler writing each record as one journal entry (never blocking)."""

    def __init__(self, socket_path: str = SOCKET, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.socket_path = socket_path
        self.context: dict[str, str] = {}
        self.dropped = 0  # entries journald could not take, not yet said
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)

    def set_context(self, **fields: str) -> None:
        """Fields on every entry from now on (``cluster=`` -> MXONE_CLUSTER, ...)."""
        for key, value in fields.items():
            self.context[(FIELD_PREFIX + key).upper()] = value

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if self.dropped:
                message += f" ({self.dropped} earlier log entries were lost: journald did " \
                    "not take them)"
            datagram = encode(record_fields(record, message, self.context))
        except Exception:
            self.handleError(record)
            return
        try:
            # Unconnected: a restarted journald's new socket is found at the next entry.
            self._sock.sendto(datagram, self.socket_path)
        except OSError:
            self.dropped += 1
        else:
            self.dropped = 0

    def close(self) -> None:
        self._sock.close()
        super().close()
