"""SSH to the servers of the system: one connection per server, commands over many at once.

Fabric is the model. :class:`Pool` connects once per server and reuses the connection for
every later command and file transfer; :meth:`Pool.run_all` runs a command on many servers
in parallel and returns a per-server result map (:class:`GroupResult`); one server's
failure never stops the others, and :class:`GroupError` wraps the map when a caller wants
an exception.

Host keys are pinned in the tool's own known-hosts file (default ``/etc/mxone/known_hosts``),
never in the operator's ``~/.ssh``. A server whose key is not pinned yet is refused with
:class:`UnknownHostKey` (naming the key type and SHA256 fingerprint, so that the operator can
compare it with the server's console before accepting it with :meth:`Pool.accept`); a server
whose key differs from the pinned one is refused with :class:`ChangedHostKey`, and there is
no option that overrides it: the operator must find out why the key changed, then remove the
old line from the known-hosts file.

Every wait is bounded: TCP connect, SSH handshake, authentication, each command.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import paramiko  # type: ignore[import-untyped]
from paramiko import sftp as sftp_const  # type: ignore[import-untyped]

from mxone_maintenance.errors import MxoneError

# paramiko logs handshake failures with tracebacks; the operator gets our one-line reason.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

DEFAULT_KNOWN_HOSTS = Path("/etc/mxone/known_hosts")
DEFAULT_USER_KEY = Path("/root/.ssh/id_ed25519")
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 60.0


class SshError(MxoneError):
    """A server could not be reached, authenticated or commanded."""


class HostKeyError(SshError):
    """The server's host key is not the pinned one (base of unknown and changed)."""


class UnknownHostKey(HostKeyError):
    """The server offered a host key that is not pinned yet: show it, ask, then accept."""

    def __init__(self, server: str, address: str, key: paramiko.PKey) -> None:
        self.server, self.address, self.key = server, address, key
        self.key_type = key.get_name()
        self.fingerprint = fingerprint(key)
        super().__init__(
            f"server {server} ({address}): host key not known yet: {self.key_type} "
            f"{self.fingerprint}; compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` "
            f"on the server's console, then accept it (--accept-new-host-key)")


class ChangedHostKey(HostKeyError):
    """The server offered a different key than the pinned one: refused, never overridden."""

    def __init__(self, server: str, address: str, old: str, new: paramiko.PKey,
                 known_hosts: Path) -> None:
        self.server, self.address, self.old_fingerprint = server, address, old
        self.new_fingerprint = fingerprint(new)
        super().__init__(
            f"server {server} ({address}): HOST KEY CHANGED: pinned {old}, offered "
            f"{self.new_fingerprint} ({new.get_name()}); refused. Someone may be intercepting "
            f"the connection, or the server was reinstalled. Check the key on the server's "
            f"console; if the change is expected, remove the line for {server} from "
            f"{known_hosts} and connect again to accept the new key")


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ssh-keygen -l prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


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
        return tuple((a, False) for a in self.addresses) + tuple(
            (a, True) for a in self.aliases if a not in self.addresses)


@dataclass(frozen=True)
class Result:
    """One command (or transfer) on one server.

    ``ok``: connected and the command exited 0. ``error``: why the command could not run
    or finish ('' when it ran; then ``exit_status`` says how it ended).
    """

    server: str
    ok: bool
    stdout: str = ""
    stderr: str = ""
    exit_status: int | None = None
    error: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        """One line saying why it failed ('' when ok)."""
        if self.ok:
            return ""
        if self.error:
            return self.error
        tail = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return f"exit status {self.exit_status}" + (f": {tail[-1]}" if tail else "")


class GroupResult(dict[str, Result]):
    """Server name -> Result, for a call over many servers."""

    @property
    def succeeded(self) -> dict[str, Result]:
        return {k: v for k, v in self.items() if v.ok}

    @property
    def failed(self) -> dict[str, Result]:
        return {k: v for k, v in self.items() if not v.ok}

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.values())


class GroupError(SshError):
    """Some servers of a group call failed; ``result`` holds every server's Result."""

    def __init__(self, result: GroupResult) -> None:
        self.result = result
        super().__init__("; ".join(f"{name}: {r.describe()}" for name, r in result.failed.items()))


class KnownHosts:
    """The tool's own pinned host keys: an OpenSSH known_hosts file, one line per server
    (``name,address keytype base64``). Thread-safe; writes are atomic."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        if self.path.exists():
            keys.load(str(self.path))
        return keys

    def holder(self, key: paramiko.PKey) -> str | None:
        """The server (first name on its line) this key is pinned for, if any."""
        with self._lock:
            keys = self._load()
        for entry in keys._entries:
            if entry.key == key and entry.hostnames:
                return str(entry.hostnames[0])
        return None

    def pinned(self, server: str) -> paramiko.PKey | None:
        """The key pinned for the server (by name), if any."""
        with self._lock:
            keys = self._load()
        found = keys.lookup(server)
        return next(iter(found.values())) if found else None

    def check(self, server: str, address: str, key: paramiko.PKey) -> None:
        """Return when ``key`` is pinned for the server; raise Unknown/ChangedHostKey.

        ``address`` '' checks by server name only (an alias address, which moves)."""
        with self._lock:
            keys = self._load()
        for name in (server, address):
            pinned = keys.lookup(name) if name else None
            if not pinned:
                continue
            if key.get_name() in pinned:
                if pinned[key.get_name()] == key:
                    return
                raise ChangedHostKey(server, address, fingerprint(pinned[key.get_name()]), key,
                                     self.path)
            # Pinned under another key type: as suspicious as a changed key.
            old = next(iter(pinned.values()))
            raise ChangedHostKey(server, address, f"{fingerprint(old)} ({old.get_name()})", key,
                                 self.path)
        raise UnknownHostKey(server, address, key)

    def add(self, server: str, address: str, key: paramiko.PKey) -> None:
        """Pin ``key`` for the server (by name and address)."""
        from mxone_maintenance import store

        with self._lock:
            old = self.path.read_bytes() if self.path.exists() else b""
            names = f"{server},{address}" if address else server
            line = f"{names} {key.get_name()} {key.get_base64()}\n".encode()
            if old and not old.endswith(b"\n"):
                old += b"\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            store.atomic_write(self.path, old + line, mode=0o644)


@dataclass
class _Connection:
    transport: paramiko.Transport
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
                 command_timeout: float = COMMAND_TIMEOUT, max_workers: int = 16,
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
        self._key: paramiko.PKey | None = None
        self._conns: dict[str, _Connection] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # ---- connections --------------------------------------------------------------------

    def _user_key(self) -> paramiko.PKey:
        if self._key is None:
            self._key = load_user_key(self.user_key_path)
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
                sock = socket.create_connection((address, target.port), timeout=self.connect_timeout)
            except OSError as exc:
                problems.append(f"{address}: {_socket_reason(exc)}")
                continue
            transport = paramiko.Transport(sock)
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
                transport.auth_timeout = self.connect_timeout
                transport.auth_publickey(self.user, self._user_key())
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
            with self._lock:
                self.connects += 1
                self.connect_seconds[target.name] = time.monotonic() - started
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
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            if conn.sftp is not None:
                conn.sftp.close()
            conn.transport.close()

    def __enter__(self) -> Pool:
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
            chan.exec_command(command)
            if input is not None:
                chan.sendall(input.encode() if isinstance(input, str) else input)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = started + timeout
            while True:
                busy = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    busy = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    busy = True
                # The exit status may arrive before the last output: done only once the
                # server has also ended the output (EOF, or the channel closed) and all of
                # it has been read.
                if (chan.exit_status_ready() and (chan.eof_received or chan.closed)
                        and not chan.recv_ready() and not chan.recv_stderr_ready()):
                    break
                if time.monotonic() > deadline:
                    return Result(name, False, out.decode(errors="replace"),
                                  err.decode(errors="replace"), None,
                                  f"server {name}: command did not finish within {timeout:g} s",
                                  time.monotonic() - started)
                if not busy:
                    time.sleep(0.002)
            status = chan.recv_exit_status()
        finally:
            chan.close()
        return Result(name, status == 0, out.decode(errors="replace"), err.decode(errors="replace"),
                      status, "", time.monotonic() - started)

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
            except Exception as exc:  # one server's bug must not stop the others
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


def _socket_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (connect timed out)"
    return exc.strerror or str(exc) or type(exc).__name__


def user_key_default() -> Path:
    return Path(os.environ.get("MXONE_SSH_KEY") or DEFAULT_USER_KEY)
