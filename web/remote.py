"""The one SSH session of ``webserver_config`` to the other server of the pair.

The peer's host key is PINNED, never added blindly: it is the key the maintenance tool on
LIM 1 already pinned for that server (:data:`HOST_KEY_FILES`: the cluster's host keys the
tool left on every node for the agents, by base address - on the master and on the standby
alike - and on LIM 1 the tool's own known-hosts file, by server name), or, when neither
holds one, a key whose SHA256 fingerprint the operator has compared and confirmed
(:func:`offered_key` shows it). Anything else is refused before a password is sent.

Commands run through :class:`Shell` (here and on the peer alike), so the steps of
:mod:`mxone_web.manager` are tested with a recording shell.
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import paramiko  # type: ignore[import-untyped]
from mxone_agent import paths
from mxone_web.errors import Refused, WebError
from mxone_web.stack.api import PairServer

from mxone_maintenance.knownhosts import fingerprint

HOST_KEY_FILES = (Path(paths.KNOWN_HOSTS), Path("/etc/mxone/known_hosts"))
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 600.0  # a package install may take minutes


@dataclass(frozen=True)
class Ran:
    """A command's exit status and output."""

    rc: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def why(self) -> str:
        return (self.err.strip() or self.out.strip() or f"exit status {self.rc}").splitlines()[-1]


class Shell(Protocol):
    """Runs ``sh -c`` command lines on one server, ``stdin`` fed to the command."""

    where: str

    def run(self, command: str, stdin: str = "") -> Ran: ...


class LocalShell:
    """Commands on this server."""

    def __init__(self, where: str) -> None:
        self.where = where

    def run(self, command: str, stdin: str = "") -> Ran:
        try:
            p = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True,
                               text=True, timeout=COMMAND_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise WebError(f"{self.where}: {command.split()[0]}: {e}") from e
        return Ran(p.returncode, p.stdout, p.stderr)


def quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


# ---- the peer's host key -------------------------------------------------------------------

def pinned_key(server: PairServer, files: Sequence[Path] = HOST_KEY_FILES) -> paramiko.PKey | None:
    """The host key pinned for ``server`` (by base address, then by name), ed25519 first."""
    for path in files:
        if not path.exists():
            continue
        keys = paramiko.HostKeys()
        try:
            keys.load(str(path))
        except (OSError, paramiko.SSHException):
            continue
        for name in (str(server.base_ip), server.name):
            found = keys.lookup(name)
            if found:
                return found.get("ssh-ed25519") or next(iter(found.values()))
    return None


def _transport(address: ipaddress.IPv4Address, port: int) -> paramiko.Transport:
    try:
        sock = socket.create_connection((str(address), port), timeout=CONNECT_TIMEOUT)
    except OSError as e:
        raise WebError(f"{address}:{port}: cannot connect: {e.strerror or e}") from e
    t = paramiko.Transport(sock)
    t.banner_timeout = t.handshake_timeout = t.auth_timeout = CONNECT_TIMEOUT
    try:
        t.start_client(timeout=CONNECT_TIMEOUT)
    except (paramiko.SSHException, OSError, EOFError) as e:
        t.close()
        raise WebError(f"{address}:{port}: SSH handshake failed: {e or type(e).__name__}") from e
    return t


def offered_key(server: PairServer, port: int = 22) -> paramiko.PKey:
    """The host key ``server`` offers now, to show its fingerprint to the operator."""
    t = _transport(server.base_ip, port)
    try:
        return t.get_remote_server_key()
    finally:
        t.close()


# ---- a session on the peer -----------------------------------------------------------------

class Session:
    """One SSH login on the peer as ``user``, its host key checked against ``host_key``.

    ``password`` and/or ``key`` authenticate; a refused login is a :class:`Refused` naming
    the account and the server (nothing was run there).
    """

    def __init__(self, server: PairServer, user: str, host_key: paramiko.PKey, *,
                 password: str | None = None, key: paramiko.PKey | None = None,
                 port: int = 22) -> None:
        self.where = server.name
        self.user = user
        t = _transport(server.base_ip, port)
        offered = t.get_remote_server_key()
        if offered != host_key:
            t.close()
            raise WebError(
                f"server {server.name} ({server.base_ip}): HOST KEY CHANGED: pinned "
                f"{fingerprint(host_key)}, offered {fingerprint(offered)} ({offered.get_name()}); "
                "refused, nothing was sent. Someone may be intercepting the connection, or the "
                "server was reinstalled: check the key on its console")
        try:
            if key is not None:
                try:
                    t.auth_publickey(user, key)
                except paramiko.AuthenticationException:
                    if password is None:
                        raise
            if not t.is_authenticated() and password is not None:
                t.auth_password(user, password)
        except paramiko.AuthenticationException:
            t.close()
            how = "its key" if password is None else "the password given"
            raise Refused(f"login of {user} on {server.name} ({server.base_ip}) refused with "
                          f"{how}; nothing was changed") from None
        except (paramiko.SSHException, EOFError) as e:
            t.close()
            raise WebError(f"{server.name}: SSH login of {user} failed: {e}") from e
        self.transport = t

    def run(self, command: str, stdin: str = "") -> Ran:
        try:
            ch = self.transport.open_session(timeout=CONNECT_TIMEOUT)
            ch.settimeout(COMMAND_TIMEOUT)
            ch.exec_command(command)
            if stdin:
                ch.sendall(stdin.encode("utf-8"))
            ch.shutdown_write()
            out = ch.makefile("rb").read().decode("utf-8", "replace")
            err = ch.makefile_stderr("rb").read().decode("utf-8", "replace")
            rc = ch.recv_exit_status()
            ch.close()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise WebError(f"{self.where}: {command.split()[0]}: SSH failed: {e}") from e
        return Ran(rc, out, err)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
