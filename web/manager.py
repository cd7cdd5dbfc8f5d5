"""The ``mxone_manager`` account of both servers: its password, its silent login, and the
management package on the peer.

The master sets ``mxone_manager``'s password here (``chpasswd``) and on the standby, where
it logs in as an administrator and runs the change through ``sudo -S`` with that account's
password (:class:`Sudo`: the password is proven first, so a wrong one is refused before
anything is changed on either server). Each server then gets an ed25519 key pair for
``mxone_manager`` (private key 0600 from its first byte), authorized on the other server
by logging in there as ``mxone_manager`` with its password - the silent login the seed
sets up with ssh-keygen and ssh-copy-id, with the peer's host key pinned
(:mod:`mxone_web.remote`) and written to ``mxone_manager``'s own known_hosts.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paramiko  # type: ignore[import-untyped]
from mxone_agent.files import atomic_write
from mxone_web import remote
from mxone_web.errors import Refused, WebError
from mxone_web.remote import Ran, Shell
from mxone_web.stack.api import PairServer

from mxone_maintenance.knownhosts import fingerprint
from mxone_maintenance.synckeys import SyncKey

MANAGER = "mxone_manager"
PACKAGE = "mxone-snm"
APP_VERSION_FILES = ("/opt/mxone_snm/VERSION", "/opt/mxone/snm/VERSION")
"""The application's version file: as packaged, and as the stack installs the reference
application (:mod:`mxone_web.stack`); either one means the application is there."""
KEY_NAME = "id_ed25519"

_ENSURE_USER = (f"id -u {MANAGER} >/dev/null 2>&1 || "
                f"useradd --create-home --shell /bin/bash {MANAGER}")


class Sudo:
    """Commands as root on the peer through ``sudo -S``, with the admin's password.

    :meth:`prove` runs ``sudo -k -S true`` with the password alone on stdin first, so a
    wrong password is refused before any command (sudo would otherwise read the command's
    own input as its next password attempt). An account that needs no password for sudo
    (root, NOPASSWD) gets none.
    """

    def __init__(self, shell: Shell, user: str, password: str) -> None:
        self.shell, self.user, self.password = shell, user, password
        self.where = shell.where
        self._needs_password: bool | None = None

    def prove(self) -> None:
        if self.shell.run("sudo -n true").ok:
            self._needs_password = False
            return
        ran = self.shell.run("sudo -k -S -p '' true", self.password + "\n")
        if not ran.ok:
            raise Refused(f"sudo password of {self.user} on {self.where}: refused by sudo "
                          f"({ran.why()}); nothing was changed")
        self._needs_password = True

    def run(self, command: str, stdin: str = "") -> Ran:
        if self._needs_password is None:
            self.prove()
        if self._needs_password:
            return self.shell.run(f"sudo -k -S -p '' sh -c {remote.quote([command])}",
                                  self.password + "\n" + stdin)
        return self.shell.run(f"sudo -n sh -c {remote.quote([command])}", stdin)


def _checked(ran: Ran, where: str, what: str) -> Ran:
    if not ran.ok:
        raise WebError(f"{where}: {what} failed: {ran.why()}")
    return ran


def set_password(root: Shell, password: str) -> str:
    """Set ``mxone_manager``'s password on the server of ``root`` (created when missing)."""
    _checked(root.run(f"{_ENSURE_USER} && chpasswd", f"{MANAGER}:{password}\n"), root.where,
             f"setting the password of {MANAGER}")
    return f"password of {MANAGER} set on {root.where}"


# ---- the key pair and the silent login -----------------------------------------------------

@dataclass(frozen=True)
class Account:
    """Where ``mxone_manager``'s SSH files are on this server, and who owns them."""

    home: Path
    owner: tuple[int, int] | None

    @classmethod
    def local(cls) -> Account:
        try:
            pw = pwd.getpwnam(MANAGER)
        except KeyError:
            raise WebError(f"user {MANAGER} does not exist on this server") from None
        return cls(Path(pw.pw_dir), (pw.pw_uid, pw.pw_gid))

    @property
    def ssh_dir(self) -> Path:
        return self.home / ".ssh"

    @property
    def private_key(self) -> Path:
        return self.ssh_dir / KEY_NAME


def key_pair(account: Account) -> paramiko.Ed25519Key:
    """``mxone_manager``'s ed25519 key here: the one it has, or a new one (private key
    written 0600 from its first byte, public key beside it)."""
    path = account.private_key
    if path.exists():
        try:
            return paramiko.Ed25519Key.from_private_key_file(str(path))
        except (paramiko.SSHException, OSError, ValueError):
            pass  # not a usable ed25519 key: replaced below
    account.ssh_dir.mkdir(mode=0o700, exist_ok=True)
    if account.owner is not None:
        os.chown(account.ssh_dir, *account.owner)
    pair = SyncKey.generate()  # the same OpenSSH ed25519 pair the clusters' sync keys use
    atomic_write(path, pair.private.encode(), 0o600, owner=account.owner)
    atomic_write(path.with_name(KEY_NAME + ".pub"), f"{pair.public} {MANAGER}\n".encode(),
                 0o644, owner=account.owner)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def public_line(key: paramiko.PKey, comment: str) -> str:
    return f"{key.get_name()} {key.get_base64()} {comment}"


def trust_host_key(account: Account, peer: PairServer, host_key: paramiko.PKey) -> None:
    """Pin the peer's host key in ``mxone_manager``'s known_hosts (its old line replaced)."""
    path = account.ssh_dir / "known_hosts"
    try:
        old = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        old = []
    names = {str(peer.base_ip), peer.name}
    kept = [line for line in old if not set(line.split(" ", 1)[0].split(",")) & names]
    kept.append(f"{peer.base_ip},{peer.name} {host_key.get_name()} {host_key.get_base64()}")
    account.ssh_dir.mkdir(mode=0o700, exist_ok=True)
    atomic_write(path, "".join(x + "\n" for x in kept).encode(), 0o644, owner=account.owner)


AUTHORIZE = ("umask 077; mkdir -p ~/.ssh && touch ~/.ssh/authorized_keys && IFS= read -r line "
             "&& { grep -qxF \"$line\" ~/.ssh/authorized_keys || "
             "printf '%s\\n' \"$line\" >> ~/.ssh/authorized_keys; }")


def authorize(as_manager: Shell, line: str) -> None:
    """Add ``line`` to ``mxone_manager``'s authorized_keys on the peer (once)."""
    _checked(as_manager.run(AUTHORIZE, line + "\n"), as_manager.where,
             f"authorizing the key of {MANAGER}")


class Connect(Protocol):
    """Opens a login on the peer (:meth:`mxone_web.context.Web.session`)."""

    def __call__(self, user: str, *, password: str | None = None,
                 key: paramiko.PKey | None = None) -> AbstractContextManager[Shell]: ...


def silent_login(account: Account, local: PairServer, peer: PairServer,
                 host_key: paramiko.PKey, peer_password: str, connect: Connect) -> list[str]:
    """Set up and prove the silent login ``mxone_manager``@here -> ``mxone_manager``@peer
    (``connect`` logs in there, the host key already pinned); what was done, one line each."""
    key = key_pair(account)
    trust_host_key(account, peer, host_key)
    with connect(MANAGER, password=peer_password) as s:
        authorize(s, public_line(key, f"{MANAGER}@{local.name}"))
    with connect(MANAGER, key=key) as s:
        _checked(s.run("true"), peer.name, "the silent login")
    return [f"key pair of {MANAGER} on {local.name}: ed25519 {fingerprint(key)}",
            (f"{peer.name}'s host key pinned for {MANAGER}: {host_key.get_name()} "
             f"{fingerprint(host_key)}"),
            f"silent login {MANAGER}@{local.name} -> {MANAGER}@{peer.name}: works"]


# ---- the management package ----------------------------------------------------------------

@dataclass(frozen=True)
class PackageState:
    """The management package on one server: installed or not, its version."""

    server: str
    installed: bool
    version: str = ""

    @property
    def line(self) -> str:
        if not self.installed:
            return f"{self.server}: {PACKAGE} is NOT installed"
        return f"{self.server}: {PACKAGE}-{self.version}"


def package_state(shell: Shell) -> PackageState:
    """Whether the management application is installed where ``shell`` runs: the Debian
    package :data:`PACKAGE` (dpkg) or an application version file, and its version (the
    version file's when there is one)."""
    files = " || ".join(f"cat {f} 2>/dev/null" for f in APP_VERSION_FILES)
    ran = shell.run(f"dpkg-query -W -f='${{Status}}\\t${{Version}}' {PACKAGE} 2>/dev/null; "
                    f"echo; {files}")
    first, _, rest = ran.out.partition("\n")
    status, _, version = first.partition("\t")
    installed = status.strip().endswith("install ok installed") or bool(rest.strip())
    return PackageState(shell.where, installed, rest.strip() or version.strip())


def tool() -> str:
    """Where ``webserver_config`` is on this server, as an absolute path. The pair's two
    servers have the tool installed at the same place, so this is also the path the
    commands run on the peer (by sudo, whose secure_path need not include it)."""
    found = shutil.which("webserver_config")
    return str(Path(found).absolute()) if found else str(
        Path(sys.executable).with_name("webserver_config"))


def peer_command(words: str, *, sudo: str = "sudo -n") -> str:
    """``webserver_config WORDS`` run as root on the peer (:func:`tool`'s path)."""
    return f"{sudo} {remote.quote([tool()])} {words}"


#: Installs the reference management application with the server's own webserver_config
#: (where the server's apt sources do not carry :data:`PACKAGE`); run through the admin's
#: sudo, which adds its own prefix.
INSTALL_APP_WORDS = "redundancy install-app --here"


def install_package(root: Shell, deb: str | None = None) -> PackageState:
    """Install :data:`PACKAGE`: the .deb at ``deb`` there, else from the server's apt
    sources when they carry it, else the reference application that the server's own
    ``webserver_config`` brings (:data:`INSTALL_APP_WORDS`)."""
    if deb or root.run(f"apt-cache show {PACKAGE} >/dev/null 2>&1").ok:
        what = remote.quote([deb]) if deb else PACKAGE
        _checked(root.run(f"DEBIAN_FRONTEND=noninteractive apt-get install -y {what}"),
                 root.where, f"installing {PACKAGE}")
    else:
        _checked(root.run(peer_command(INSTALL_APP_WORDS, sudo="")), root.where,
                 f"installing {PACKAGE}")
    state = package_state(root)
    if not state.installed:
        raise WebError(f"{root.where}: {PACKAGE} is still not installed")
    return state


def fetch_master_answers(as_manager: Shell, path: str) -> str:
    """The master's answers file, read over the silent login."""
    return _checked(as_manager.run(f"cat {remote.quote([path])}"), as_manager.where,
                    f"reading the master's answers ({path})").out
