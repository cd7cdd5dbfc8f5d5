"""The control socket's OS side: its file, listened on privately and never taken from a
live agent, and the two non-blocking looks the server takes at a client's socket.

A unix stream socket at a path (by default ``/run/mxone/agent.sock``), mode 0600 from the
moment it can be reached there. A stale socket file (no one listening) is replaced; another
process listening there, or anything that is not a socket, is refused with
:class:`ControlError`. On close only our own socket file is removed: a newer agent's socket
at the same path is left alone.
"""

from __future__ import annotations

import os
import select
import socket
import stat
import tempfile
from pathlib import Path

from mxone_agent.errors import AgentError

BACKLOG = 64
"""Connections the kernel queues for us; past it a client's connect() waits, not the loop."""

_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL

Inode = tuple[int, int]
"""(st_dev, st_ino) of a socket file: which socket it is, whatever its path."""


class ControlError(AgentError):
    """The control socket cannot be opened (path in use, not a socket, not writable, ...)."""


def listen(where: str) -> tuple[socket.socket, Inode]:
    """A non-blocking socket listening at ``where`` (the parent dir is created), and the
    inode of its file. Raises ControlError when another process listens there, when
    something that is not a socket is there, or when the path cannot be bound."""
    path = Path(where)
    if len(os.fsencode(where)) > _UNIX_PATH_MAX:
        raise ControlError(f"control socket path {where} has "
                           f"{len(os.fsencode(where))} bytes; a unix socket path has "
                           f"at most {_UNIX_PATH_MAX}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ControlError(f"cannot create {path.parent} for the control socket: "
                           f"{e.strerror}") from e
    _remove_stale(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _bind_private(listener, path)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        st = os.stat(path)
    except OSError as e:
        listener.close()
        raise ControlError(f"cannot listen on {path}: {e.strerror or e}") from e
    return listener, (st.st_dev, st.st_ino)


def remove_if_ours(where: str, inode: Inode) -> None:
    """Remove the socket file at ``where`` if it is still the one of ``inode``."""
    try:
        st = os.lstat(where)
        if (st.st_dev, st.st_ino) == inode:
            os.unlink(where)
    except OSError:
        pass  # already gone


def send_once(sock: socket.socket, data: bytes) -> None:
    """Best effort: what the socket takes now (a fresh socket takes a short error whole)."""
    try:
        sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
    except OSError:
        pass  # the client is gone or not reading; it is being closed anyway


def hung_up(sock: socket.socket) -> bool:
    """True when the client closed its socket (not merely its sending side)."""
    poller = select.poll()
    poller.register(sock, 0)  # POLLHUP and POLLERR are always reported
    try:
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _, ev in poller.poll(0))
    except OSError:
        return True


def _remove_stale(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket; remove it or choose "
                           "another control path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a full backlog answers EAGAIN instead of making us wait
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)  # stale: its process is gone
        return
    except FileNotFoundError:
        return
    except BlockingIOError:
        pass  # someone listens, with a full backlog
    except OSError as e:
        raise ControlError(f"cannot tell whether another process listens on {path}: "
                           f"{e.strerror}") from e
    finally:
        probe.close()
    raise ControlError(f"another process already listens on {path}; is an agent "
                       "already running?")


def _bind_private(listener: socket.socket, path: Path) -> None:
    # Bound in a private 0700 dir, made 0600, then renamed into place: the socket is
    # 0600 from the moment it can be reached at ``path``, without changing the
    # process-wide umask under the feet of other threads.
    private = tempfile.mkdtemp(prefix=".c", dir=path.parent)
    try:
        inner = os.path.join(private, "s")
        listener.bind(inner)
        os.chmod(inner, 0o600)
        os.rename(inner, path)
    finally:
        try:
            os.unlink(os.path.join(private, "s"))
        except FileNotFoundError:
            pass
        os.rmdir(private)
