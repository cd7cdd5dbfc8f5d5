"""The agent's control socket, served without ever blocking the agent's loop.

Protocol (:mod:`mxone_agent.control_request`): a client connects to the unix socket
(:mod:`mxone_agent.control_socket`), sends ONE JSON object terminated by ``"\\n"`` and
receives ONE JSON object terminated by ``"\\n"``; then the server closes the connection.

Why the limits: the same single-threaded loop that serves this socket sends the UDP
heartbeats, and a heartbeat that goes out late looks, to the peers, like a dead server -
a stall of the loop is a false failover. So the loop never waits on a client: every socket
is non-blocking, each :meth:`ControlServer.handle` call does a bounded amount of work, and
every client has a deadline.

* ``deadline`` (2.0 s): a request must be complete this long after the connection was
  accepted (a silent client or a slow sender - "slowloris" - is answered with an error and
  closed), and a reply must be taken by the client this long after it was ready (a client
  that never reads is dropped). A deferred request has no deadline while its reply is
  awaited, but is dropped as soon as its client hangs up.
* ``max_request`` (65536 bytes before the newline): requests are a few dozen bytes; the
  bound keeps memory and parse time small.
* ``max_connections`` (16 open at once, waiting ones included): further clients get an
  immediate ``busy`` reply, without being read, and are closed.
* At most ``ACCEPTS_PER_CALL`` connections are accepted, and at most ``max_request + 1``
  bytes are read from one connection, per :meth:`ControlServer.handle` call.

The server is driven by its owner's selector loop (the daemon's)::

    server = ControlServer(path, handler)
    server.open()                     # raises ControlError
    server.register(selector)
    while running:
        wake = min(other_deadlines, server.next_deadline() or inf)
        for key, mask in selector.select(max(0.0, wake - time.monotonic())):
            if server.handle(key, mask):
                continue
            ...                        # the loop's own sockets
        server.expire(time.monotonic())
    server.close()
"""

from __future__ import annotations

import enum
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable

from mxone_agent import control_socket
from mxone_agent.control_request import (
    BadRequest,
    Deferred,
    Handler,
    Reply,
    encode_error,
    encode_reply,
    lim_number,
    parse_request,
)
from mxone_agent.control_socket import BACKLOG, ControlError

__all__ = [
    "ACCEPTS_PER_CALL", "ACCEPT_PAUSE", "BACKLOG", "DEADLINE", "HANGUP_POLL",
    "MAX_CONNECTIONS", "MAX_REQUEST", "BadRequest", "ControlError", "ControlServer",
    "Deferred", "Handler", "Reply", "lim_number", "parse_request",
]

MAX_REQUEST = 65536
"""Bytes a request may have before its newline."""

DEADLINE = 2.0
"""Seconds a client has to send its request, and to take its reply."""

MAX_CONNECTIONS = 16
"""Control connections open at once (those awaiting a deferred reply included)."""

ACCEPTS_PER_CALL = 4
"""Connections accepted per :meth:`ControlServer.handle` call (the loop comes back for more)."""

ACCEPT_PAUSE = 0.5
"""Seconds the server stops accepting after accept() failed (out of file descriptors):
the listening socket stays readable, and retrying at once would spin the loop and the log."""

HANGUP_POLL = 1.0
"""Seconds between checks whether a half-closed client awaiting a deferred reply is gone."""


class _Phase(enum.Enum):
    READING = "reading"    # the request is coming; deadline runs
    HANDLING = "handling"  # the handler runs (synchronously, inside handle())
    WAITING = "waiting"    # deferred: no deadline, dropped when the client hangs up
    WRITING = "writing"    # the reply is going out; deadline runs
    CLOSED = "closed"


class _Connection:
    """One client, from accept() to close(); only the server touches it."""

    def __init__(self, owner: ControlServer, sock: socket.socket, number: int,
                 deadline: float) -> None:
        self.owner = owner
        self.sock = sock
        self.ticket = Deferred(number)
        self.phase = _Phase.READING
        self.deadline: float | None = deadline
        self.buffer = bytearray()
        self.scanned = 0            # buffer[:scanned] holds no newline
        self.out = memoryview(b"")  # what remains to be written
        self.early: Reply | None = None  # reply() arrived while the handler still ran
        self.discarded = 0          # bytes sent after the request, while waiting
        self.half_closed = False    # the client shut down its sending side
        self.events = selectors.EVENT_READ  # 0 when not registered


class ControlServer:
    """The control socket at ``path``, answering requests with ``handler``.

    Everything runs on the loop thread: :meth:`handle`, :meth:`expire` and :meth:`reply`
    never block and never raise because of a client; a handler's exception becomes an
    ``internal error`` reply. ``clock`` must be the clock the loop passes to :meth:`expire`.
    """

    def __init__(self, path: str, handler: Handler, *, max_request: int = MAX_REQUEST,
                 deadline: float = DEADLINE, max_connections: int = MAX_CONNECTIONS,
                 clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger | None = None) -> None:
        if max_request < 1 or deadline <= 0 or max_connections < 1:
            raise ValueError(f"max_request {max_request}, deadline {deadline} and "
                             f"max_connections {max_connections} must all be positive")
        self.path = path
        self.handler = handler
        self.max_request = max_request
        self.deadline = deadline
        self.max_connections = max_connections
        self._clock = clock
        self._log = log if log is not None else logging.getLogger("mxone_agent.control")
        self._listener: socket.socket | None = None
        self._inode: control_socket.Inode | None = None  # of our socket file
        self._sel: selectors.BaseSelector | None = None
        self._loop_thread: int | None = None
        self._conns: set[_Connection] = set()
        self._tickets: dict[Deferred, _Connection] = {}
        self._serial = 0
        self._paused_until: float | None = None
        self._full_logged = False

    @property
    def open_connections(self) -> int:
        """Connections open now, in any state (awaiting a deferred reply included)."""
        return len(self._conns)

    # ---- life --------------------------------------------------------------------------------

    def open(self) -> None:
        """Listen on ``path`` (mode 0600 from its creation on; the parent dir is created).

        A stale socket file (no one listening) is replaced. Raises ControlError when another
        process listens there, when something that is not a socket is there, or when the
        path cannot be bound.
        """
        if self._listener is not None:
            raise ControlError(f"the control socket {self.path} is already open")
        self._listener, self._inode = control_socket.listen(self.path)

    def register(self, sel: selectors.BaseSelector) -> None:
        """Watch the listening socket (and, later, each connection) with ``sel``.

        Call it on the loop thread, after :meth:`open`; :meth:`reply` must be called on the
        same thread.
        """
        if self._listener is None:
            raise ControlError(f"the control socket {self.path} is not open")
        self._sel = sel
        self._loop_thread = threading.get_ident()
        sel.register(self._listener, selectors.EVENT_READ, self)

    def close(self) -> None:
        """Close every connection and the listening socket; remove the socket file if it is
        still ours (a newer agent's socket at the same path is left alone). Idempotent."""
        for conn in list(self._conns):
            self._close(conn)
        if self._listener is not None:
            self._unwatch(self._listener)
            self._listener.close()
            self._listener = None
        if self._inode is not None:
            control_socket.remove_if_ours(self.path, self._inode)
            self._inode = None

    # ---- the loop's calls ----------------------------------------------------------------------

    def handle(self, key: selectors.SelectorKey, mask: int) -> bool:
        """Serve one selector event; True if it was one of this server's (then it is done).

        Bounded work: at most ACCEPTS_PER_CALL accepts, one read of at most
        ``max_request + 1`` bytes, or the writes the socket takes without blocking.
        """
        data = key.data
        if data is self:
            self._accept_some()
            return True
        if not isinstance(data, _Connection) or data.owner is not self:
            return False
        if data.phase is _Phase.CLOSED:
            return True  # closed earlier in the same batch of events
        try:
            if mask & selectors.EVENT_READ and data.phase in (_Phase.READING, _Phase.WAITING):
                self._read(data)
            if mask & selectors.EVENT_WRITE and data.phase is _Phase.WRITING:
                self._write(data)
        except Exception:  # noqa: BLE001 - a bug here must cost one client, not the agent
            self._log.exception("control connection %d failed; dropping it", data.ticket.number)
            self._close(data)
        return True

    def next_deadline(self) -> float | None:
        """The earliest time (on ``clock``) at which :meth:`expire` has work; None if none."""
        times = [c.deadline for c in self._conns if c.deadline is not None]
        if self._paused_until is not None:
            times.append(self._paused_until)
        if any(c.phase is _Phase.WAITING and c.half_closed for c in self._conns):
            times.append(self._clock() + HANGUP_POLL)
        return min(times, default=None)

    def expire(self, now: float) -> None:
        """Close the connections past their deadline (one still sending its request gets a
        best-effort error reply first); drop half-closed waiting clients that hung up; resume
        accepting after a pause. Cheap; call it after every select()."""
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            if self._listener is not None and self._sel is not None:
                self._sel.register(self._listener, selectors.EVENT_READ, self)
        for conn in list(self._conns):
            if conn.deadline is not None and now >= conn.deadline:
                if conn.phase is _Phase.READING:
                    self._log.debug("control connection %d: no complete request within %s s",
                                    conn.ticket.number, self.deadline)
                    control_socket.send_once(conn.sock, encode_error(
                        f"request not complete within {self.deadline} s"))
                else:
                    self._log.debug("control connection %d: reply not taken within %s s",
                                    conn.ticket.number, self.deadline)
                self._close(conn)
            elif (conn.phase is _Phase.WAITING and conn.half_closed
                  and control_socket.hung_up(conn.sock)):
                self._close(conn)

    def reply(self, ticket: Deferred, reply: Reply) -> None:
        """Send ``reply`` on the connection of ``ticket`` (non-blocking; closed once sent).

        A no-op when that client has gone or was answered already. Must be called on the
        loop thread (from a worker, post it to the loop); raises RuntimeError otherwise.
        """
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            raise RuntimeError("ControlServer.reply() called off the loop thread; post it to "
                               "the loop")
        conn = self._tickets.get(ticket)
        if conn is None:
            return
        if conn.phase is _Phase.HANDLING:
            conn.early = reply  # the handler answered through the ticket before returning it
        elif conn.phase is _Phase.WAITING:
            self._respond(conn, reply)

    # ---- inside ----------------------------------------------------------------------------

    def _accept_some(self) -> None:
        assert self._listener is not None
        for _ in range(ACCEPTS_PER_CALL):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                self._log.warning("control socket %s: cannot accept a connection (%s); not "
                                  "accepting for %s s", self.path,
                                  e.strerror or e,
                                  ACCEPT_PAUSE)
                self._unwatch(self._listener)
                self._paused_until = self._clock() + ACCEPT_PAUSE
                return
            sock.setblocking(False)
            if len(self._conns) >= self.max_connections:
                if not self._full_logged:
                    self._log.warning("control socket %s: %d connections are open; refusing "
                                      "new ones until one closes", self.path, len(self._conns))
                    self._full_logged = True
                control_socket.send_once(sock, encode_error(f"busy: {self.max_connections} control "
                                               "connections are open; try again"))
                sock.close()
                continue
            self._serial += 1
            conn = _Connection(self, sock, self._serial, self._clock() + self.deadline)
            self._conns.add(conn)
            assert self._sel is not None
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Connection) -> None:
        if conn.phase is _Phase.WAITING:
            self._read_while_waiting(conn)
            return
        try:
            chunk = conn.sock.recv(self.max_request + 1 - len(conn.buffer))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not chunk:
            if not conn.buffer:
                self._close(conn)  # connected and left without a word: nothing to answer
                return
            conn.half_closed = True  # the end of the request is the end of the stream
            self._answer(conn, bytes(conn.buffer))
            return
        conn.buffer += chunk
        newline = conn.buffer.find(b"\n", conn.scanned)
        if newline >= 0:  # at most max_request bytes precede it: the buffer is bounded
            self._answer(conn, bytes(conn.buffer[:newline]))
        elif len(conn.buffer) > self.max_request:
            self._respond(conn, {"ok": False,
                                 "error": f"request larger than {self.max_request} bytes"})
        else:
            conn.scanned = len(conn.buffer)

    def _read_while_waiting(self, conn: _Connection) -> None:
        try:
            chunk = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if chunk:
            # Nothing more is expected; bytes are discarded, but not without end.
            conn.discarded += len(chunk)
            if conn.discarded > self.max_request:
                self._close(conn)
        elif control_socket.hung_up(conn.sock):
            self._close(conn)
        else:
            # Half-closed: its end of stream would report readable forever, so stop
            # watching it; expire() polls it for a hang-up instead.
            conn.half_closed = True
            self._set_events(conn, 0)

    def _answer(self, conn: _Connection, line: bytes) -> None:
        conn.buffer = bytearray()
        conn.phase = _Phase.HANDLING
        try:
            request = parse_request(line)
        except BadRequest as e:
            self._respond(conn, {"ok": False, "error": f"bad request: {e}"})
            return
        self._tickets[conn.ticket] = conn
        try:
            result: object = self.handler(request, conn.ticket)
        except Exception as e:  # noqa: BLE001 - a handler bug must not end the agent
            self._log.exception("control command %.40r failed", request["cmd"])
            result = {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
        if conn.phase is _Phase.CLOSED:
            return  # the handler closed the server
        if result is conn.ticket:
            if conn.early is not None:
                self._respond(conn, conn.early)
            else:
                conn.phase = _Phase.WAITING
                conn.deadline = None
                if conn.half_closed:
                    self._set_events(conn, 0)  # see _read_while_waiting
            return
        if isinstance(result, Deferred):
            self._log.error("control command %.40r returned the ticket of another connection",
                            request["cmd"])
            result = {"ok": False, "error": "internal error: the handler returned the ticket "
                      "of another connection"}
        self._respond(conn, result)

    def _respond(self, conn: _Connection, reply: object) -> None:
        self._tickets.pop(conn.ticket, None)
        try:
            if not isinstance(reply, dict):
                raise TypeError(f"a reply is a dict, not {type(reply).__name__}")
            data = encode_reply(reply)
        except Exception as e:  # noqa: BLE001 - a handler's unserializable reply
            self._log.exception("control connection %d: the reply cannot be sent",
                                conn.ticket.number)
            data = encode_error(f"internal error: {type(e).__name__}: {e}")
        conn.out = memoryview(data)
        conn.phase = _Phase.WRITING
        conn.deadline = self._clock() + self.deadline
        self._write(conn)  # most replies fit in the socket buffer: done at once
        if conn.phase is _Phase.WRITING:
            self._set_events(conn, selectors.EVENT_WRITE)

    def _write(self, conn: _Connection) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                break  # the client has gone
            conn.out = conn.out[sent:]
        self._close(conn)

    def _set_events(self, conn: _Connection, events: int) -> None:
        if events == conn.events or self._sel is None:
            return
        if conn.events and events:
            self._sel.modify(conn.sock, events, conn)
        elif events:
            self._sel.register(conn.sock, events, conn)
        else:
            self._sel.unregister(conn.sock)
        conn.events = events

    def _unwatch(self, sock: socket.socket) -> None:
        if self._sel is not None:
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError):
                pass  # not registered (paused listener, or a closed selector)

    def _close(self, conn: _Connection) -> None:
        if conn.phase is _Phase.CLOSED:
            return
        conn.phase = _Phase.CLOSED
        if conn.events:
            self._unwatch(conn.sock)
            conn.events = 0
        conn.sock.close()
        conn.out = memoryview(b"")
        self._conns.discard(conn)
        self._tickets.pop(conn.ticket, None)
        if len(self._conns) <= self.max_connections // 2:
            self._full_logged = False  # hysteresis: one warning per flood, not per slot
