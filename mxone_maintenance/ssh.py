"""SSH to the servers of the system: one connection per server, commands over many at once.

Fabric is the model. :class:`Pool` connects once per server and reuses the connection for
every later command and file transfer; :meth:`Pool.run_all` runs a command on many servers
in parallel and returns a per-server result map (:class:`GroupResult`); one server's
failure never stops the others, and :class:`GroupError` wraps the map when a caller wants
an exception (both in :mod:`mxone_maintenance.sshresult`).

Every server's host key is checked against the tool's own pinned keys
(:mod:`mxone_maintenance.knownhosts`) before the login: a key not pinned yet is refused
with :class:`UnknownHostKey` unless the pool was told to accept new keys (then it is
pinned, or accepted later with :meth:`Pool.accept` once the operator compared its
fingerprint); a changed key is always refused with :class:`ChangedHostKey`. An alias
address moves with its LIM, so another pinned server's key there means "not here".

Every wait is bounded: TCP connect, SSH handshake, authentication, each command.

What a server costs LIM 1 is kept small, since a 124-LIM system has 137 servers: up to
:data:`MAX_WORKERS` servers are reached at once, the login key is read once per pool, the
pinned keys are parsed once per change of their file, and a command's output is waited for
(woken by paramiko when it arrives), never polled. How a connection goes on the wire (its
algorithms, its socket's options, a command without waiting for the request's answer) is
:mod:`mxone_maintenance.sshwire`.

This module is the one name callers use (``from mxone_maintenance import ssh``): it also
gives the names of the results and of the host-key modules.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

# paramiko imports invoke (~45 ms of every start) only to run ssh_config's "Match exec",
# which this tool never reads (every connection is set up here): hidden while paramiko is
# imported, paramiko notes the ImportError and goes on; importable again afterwards.
_hide_invoke = "invoke" not in sys.modules
if _hide_invoke:
    sys.modules["invoke"] = None  # type: ignore[assignment]
try:
    import paramiko  # type: ignore[import-untyped]
    from paramiko import sftp as sftp_const
finally:
    if _hide_invoke:
        del sys.modules["invoke"]

from mxone_maintenance import sshwire
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.knownhosts import (
    ChangedHostKey,
    HostKeyError,
    KnownHosts,
    UnknownHostKey,
    fingerprint,
)
from mxone_maintenance.sshresult import GroupError, GroupResult, Result, SshError

__all__ = [
    "COMMAND_TIMEOUT", "CONNECT_TIMEOUT", "DEFAULT_KNOWN_HOSTS", "DEFAULT_USER_KEY", "MAX_WORKERS",
    "ChangedHostKey", "GroupError", "GroupResult", "HostKeyError", "KnownHosts", "Pool",
    "Result", "SshError", "Target", "UnknownHostKey", "fingerprint", "load_user_key",
    "user_key_default",
]

# paramiko logs handshake failures with tracebacks; the operator gets our one-line reason.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

DEFAULT_KNOWN_HOSTS = Path("/etc/mxone/known_hosts")
DEFAULT_USER_KEY = Path("/root/.ssh/id_ed25519")
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 60.0
MAX_WORKERS = 64
"""Servers reached at once: a 124-LIM system's 137 servers in three waves, each server's
connection mostly waiting on the network and the server, not on LIM 1's CPU."""


@dataclass(frozen=True)
class Target:
    """A server to reach: its name and the addresses to try, in order.

    Several addresses because a server's base address changes when it joins or leaves a
    cluster; the first one that answers is remembered for the session.
    """

    name: str
    addresses: tuple[str, ...]
    port: int = 22
    aliases: tuple[str, ...] = ()
    """Alias addresses, tried last: an alias may be held by the standby (the LIM failed
    over), so another server's key there means "not here", not a changed key."""

    def candidates(self) -> tuple[tuple[str, bool], ...]:
        """(address, is an alias) in the order they are tried: addresses, then aliases."""
        return tuple((a, False) for a in self.addresses) + tuple(
            (a, True) for a in self.aliases if a not in self.addresses)


@dataclass
class _Connection:
    transport: sshwire.Transport
    address: str
    sftp: paramiko.SFTPClient | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_user_key(path: Path) -> paramiko.PKey:
    """The private key to log in with (ed25519, ECDSA or RSA, no passphrase)."""
    errors = []
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key_file(str(path))
        except FileNotFoundError:
            raise SshError(f"SSH key {path}: no such file (give another with --ssh-key)") from None
        except PermissionError:
            raise SshError(f"SSH key {path}: permission denied (run as root)") from None
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(str(exc))
    raise SshError(f"SSH key {path}: not a usable private key without passphrase "
                   f"({errors[-1] if errors else 'unknown format'})")


class Pool:
    """SSH connections to the servers, one per server, reused; parallel calls over many.

    ``accept_new``: pin a key never seen before instead of refusing it (the callback, when
    given, is called with the UnknownHostKey so the caller can tell the operator what was
    accepted). A changed key is always refused.
    """

    def __init__(self, known_hosts: Path = DEFAULT_KNOWN_HOSTS, user_key: Path = DEFAULT_USER_KEY,
                 *, user: str = "root", connect_timeout: float = CONNECT_TIMEOUT,
                 command_timeout: float = COMMAND_TIMEOUT, max_workers: int = MAX_WORKERS,
                 accept_new: bool = False,
                 on_accept: Callable[[UnknownHostKey], None] | None = None) -> None:
        self.known_hosts = KnownHosts(known_hosts)
        self.user_key_path = user_key
        self.user = user
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.max_workers = max_workers
        self.accept_new = accept_new
        self.on_accept = on_accept
        self.connects = 0  # TCP+SSH sessions opened, for tests and figures
        self.connect_seconds: dict[str, float] = {}
        # per server: seconds of TCP connect, key exchange + host key check, login
        self.connect_phases: dict[str, tuple[float, float, float]] = {}
        self.key_loads = 0  # times the login key was read, for tests
        self._key: paramiko.PKey | None = None
        self._key_lock = threading.Lock()
        self._conns: dict[str, _Connection] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # ---- connections --------------------------------------------------------------------

    def _user_key(self) -> paramiko.PKey:
        # Once per pool, however many servers log in at the same moment.
        with self._key_lock:
            if self._key is None:
                self._key = load_user_key(self.user_key_path)
                self.key_loads += 1
            return self._key

    def _host_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._host_locks.setdefault(name, threading.Lock())

    def connection(self, target: Target) -> _Connection:
        """The live connection to the server, opened on first use. Raises SshError."""
        with self._host_lock(target.name):
            conn = self._conns.get(target.name)
            if conn is not None and conn.transport.is_active():
                return conn
            conn = self._open(target)
            self._conns[target.name] = conn
            return conn

    def _open(self, target: Target) -> _Connection:
        problems = []
        for address, alias in target.candidates():
            started = time.monotonic()
            try:
                sock = sshwire.connect(address, target.port, self.connect_timeout)
            except OSError as exc:
                problems.append(f"{address}: {sshwire.socket_reason(exc)}")
                continue
            connected = time.monotonic()
            transport = sshwire.transport(sock, self.known_hosts.pinned_types(
                target.name, address if not alias else ""))
            try:
                transport.banner_timeout = self.connect_timeout
                transport.handshake_timeout = self.connect_timeout
                transport.start_client(timeout=self.connect_timeout)
                key = transport.get_remote_server_key()
                try:
                    self.known_hosts.check(target.name, address if not alias else "", key)
                except (ChangedHostKey, UnknownHostKey) as wrong:
                    # An alias moves with its LIM: another pinned server there (the standby
                    # running the LIM) means "not here", not a forged key.
                    other = self.known_hosts.holder(key) if alias else None
                    if other is not None and other != target.name:
                        transport.close()
                        problems.append(f"alias {address}: held by {other} (the LIM runs there)")
                        continue
                    if isinstance(wrong, ChangedHostKey) or not self.accept_new:
                        raise
                    unknown = wrong
                    self.known_hosts.add(target.name, address if not alias else "", key)
                    if self.on_accept:
                        self.on_accept(unknown)
                user_key = self._user_key()
                verified = time.monotonic()
                transport.auth_timeout = self.connect_timeout
                transport.auth_publickey(self.user, user_key)
            except HostKeyError:
                transport.close()
                raise
            except paramiko.AuthenticationException:
                transport.close()
                raise SshError(f"server {target.name} ({address}): {self.user} login refused with "
                               f"key {self.user_key_path} (is its public key in "
                               f"/root/.ssh/authorized_keys there?)") from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                transport.close()
                problems.append(f"{address}: SSH handshake failed: {exc or type(exc).__name__}")
                continue
            done = time.monotonic()
            with self._lock:
                self.connects += 1
                self.connect_seconds[target.name] = done - started
                self.connect_phases[target.name] = (connected - started, verified - connected,
                                                    done - verified)
            return _Connection(transport, address)
        raise SshError(f"server {target.name} unreachable: " + "; ".join(problems))

    def address_of(self, name: str) -> str | None:
        """The address the open connection to the server uses (None if not connected)."""
        conn = self._conns.get(name)
        return conn.address if conn else None

    def accept(self, unknown: UnknownHostKey) -> None:
        """Pin the key of an UnknownHostKey (after the operator compared the fingerprint)."""
        self.known_hosts.add(unknown.server, unknown.address, unknown.key)

    def close(self) -> None:
        """Close every connection (and its SFTP session); the pool may connect again."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            if conn.sftp is not None:
                conn.sftp.close()
            conn.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one server ---------------------------------------------------------------------

    def run(self, target: Target, command: str | Sequence[str], *, input: bytes | str | None = None,
            timeout: float | None = None) -> Result:
        """Run a command on one server; never raises for the server's sake (see Result)."""
        started = time.monotonic()
        if not isinstance(command, str):
            command = shlex.join(command)
        try:
            conn = self.connection(target)
            return self._exec(target.name, conn, command, input, timeout or self.command_timeout,
                              started)
        except SshError as exc:
            return Result(target.name, False, error=str(exc), seconds=time.monotonic() - started)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            return Result(target.name, False, error=f"server {target.name}: SSH session failed: "
                          f"{exc or type(exc).__name__}", seconds=time.monotonic() - started)

    def _exec(self, name: str, conn: _Connection, command: str, input: bytes | str | None,
              timeout: float, started: float) -> Result:
        chan = conn.transport.open_session(timeout=self.connect_timeout)
        try:
            chan.settimeout(timeout)
            conn.transport.exec_nowait(chan, command)
            if input is not None:
                chan.sendall(input.encode() if isinstance(input, str) else input)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = started + timeout
            # Set by paramiko's thread when output arrives or ends, cleared by a read that
            # empties a buffer; both buffers are read before each wait: nothing is missed.
            arrived = threading.Event()
            chan.in_buffer.set_event(arrived)
            chan.in_stderr_buffer.set_event(arrived)
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                # The exit status may arrive before the last output: done only once the
                # server has also ended the output (EOF, or the channel closed) and all of
                # it has been read.
                if (chan.exit_status_ready() and (chan.eof_received or chan.closed)
                        and not chan.recv_ready() and not chan.recv_stderr_ready()):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return Result(name, False, out.decode(errors="replace"),
                                  err.decode(errors="replace"), None,
                                  f"server {name}: command did not finish within {timeout:g} s",
                                  time.monotonic() - started)
                if not (chan.recv_ready() or chan.recv_stderr_ready()):
                    # Once the output has ended, only the exit status is still to come.
                    (chan.status_event if chan.eof_received or chan.closed else arrived).wait(left)
            status = chan.recv_exit_status()
        finally:
            chan.close()
        # No status, closed before the output's end: refused (a killed one ran: error '').
        refused = status == -1 and not chan.eof_received
        why = f"server {name}: the server refused the command" if refused else ""
        return Result(name, status == 0, out.decode(errors="replace"), err.decode(errors="replace"),
                      status, why, time.monotonic() - started)

    def put(self, target: Target, path: str, data: bytes | Iterable[bytes],
            mode: int = 0o644) -> Result:
        """Create ``path`` on the server over SFTP and write ``data`` (bytes, or chunks of
        bytes written one after the other) into it.

        The file is created by the SFTP OPEN request itself with ``mode`` (OpenSSH's
        sftp-server creates it with that mode, narrowed by its umask), so a secret is
        private from its first byte; and exclusively (O_EXCL): a file or symlink already
        there is refused, never written through. Once written it gets exactly ``mode``.
        Not atomic: write to a fresh temp name and rename it on the server for that.
        """
        started = time.monotonic()
        try:
            conn = self.connection(target)
            with conn.lock:
                if conn.sftp is None:
                    conn.sftp = paramiko.SFTPClient.from_transport(conn.transport)
                    conn.sftp.get_channel().settimeout(self.command_timeout)
                sftp = conn.sftp
            with _create(sftp, path, mode) as f:
                f.set_pipelined(True)
                for chunk in [data] if isinstance(data, bytes | bytearray) else data:
                    f.write(chunk)
            sftp.chmod(path, mode)
        except SshError as exc:
            return Result(target.name, False, error=str(exc), seconds=time.monotonic() - started)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if why in ("Failure", ""):  # SFTP's generic status: ask the server why
                why = self._why_unwritable(target, path) or why
            return Result(target.name, False, error=f"server {target.name}: cannot write {path}: "
                          f"{why}", seconds=time.monotonic() - started)
        except (paramiko.SSHException, EOFError) as exc:
            return Result(target.name, False, error=f"server {target.name}: SFTP to {path} failed: "
                          f"{exc or type(exc).__name__}", seconds=time.monotonic() - started)
        return Result(target.name, True, exit_status=0, seconds=time.monotonic() - started)

    def _why_unwritable(self, target: Target, path: str) -> str:
        probe = (f"import os, sys\nif os.path.lexists({path!r}):\n"
                 f"    print('it exists already (a new file is never written through one)')\n"
                 f"    sys.exit()\n"
                 f"try:\n    fd = os.open({path!r} + '.probe', os.O_WRONLY | os.O_CREAT)\n"
                 f"    os.close(fd); os.unlink({path!r} + '.probe')\n"
                 f"except OSError as e:\n    print(e.strerror)\n")
        r = self.run(target, ["python3", "-c", probe], timeout=10)
        return r.stdout.strip()

    # ---- many servers -------------------------------------------------------------------

    def each(self, targets: Iterable[Target], work: Callable[[Target], Result]) -> GroupResult:
        """``work(target)`` for every target in parallel; the per-server result map.

        An exception escaping ``work`` becomes that server's failed Result.
        """
        targets = list(targets)
        results = GroupResult()
        if not targets:
            return results

        def guarded(t: Target) -> Result:
            started = time.monotonic()
            try:
                return work(t)
            except MxoneError as exc:
                return Result(t.name, False, error=str(exc), seconds=time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001 - one server's bug must not stop the others
                return Result(t.name, False, error=f"server {t.name}: {type(exc).__name__}: {exc}",
                              seconds=time.monotonic() - started)

        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(targets))) as ex:
            for t, r in zip(targets, ex.map(guarded, targets), strict=True):
                results[t.name] = r
        return results

    def run_all(self, targets: Iterable[Target], command: str | Sequence[str] |
                Mapping[str, str | Sequence[str]], *, timeout: float | None = None) -> GroupResult:
        """Run a command (or, with a mapping, each server's own command) on many servers."""
        def work(t: Target) -> Result:
            cmd = command[t.name] if isinstance(command, Mapping) else command
            return self.run(t, cmd, timeout=timeout)

        return self.each(targets, work)

    def connect_all(self, targets: Iterable[Target]) -> dict[str, SshError]:
        """Connect to every target in parallel; server -> error for those that failed."""
        errors: dict[str, SshError] = {}

        def work(t: Target) -> Result:
            try:
                self.connection(t)
            except SshError as exc:
                errors[t.name] = exc
                return Result(t.name, False, error=str(exc))
            return Result(t.name, True)

        self.each(targets, work)
        return errors


def _create(sftp: paramiko.SFTPClient, path: str, mode: int) -> paramiko.SFTPFile:
    """``sftp.open(path, "xb")`` with ``mode`` in the OPEN request's attributes.

    paramiko's ``open`` always sends empty attributes (the server then creates the file
    0666 less its umask) and leaves ``chmod`` for later; a secret would be readable by
    anyone until then. This sends the same request with the permissions set, as
    OpenSSH's ``sftp`` client does with every upload.
    """
    attrs = paramiko.SFTPAttributes()
    attrs.st_mode = mode & 0o7777
    flags = sftp_const.SFTP_FLAG_WRITE | sftp_const.SFTP_FLAG_CREATE | sftp_const.SFTP_FLAG_EXCL
    kind, msg = sftp._request(sftp_const.CMD_OPEN, sftp._adjust_cwd(path), flags, attrs)
    if kind != sftp_const.CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    return paramiko.SFTPFile(sftp, msg.get_binary(), "wb")


def user_key_default() -> Path:
    """The key to log in with: ``$MXONE_SSH_KEY``, else :data:`DEFAULT_USER_KEY`."""
    return Path(os.environ.get("MXONE_SSH_KEY") or DEFAULT_USER_KEY)
