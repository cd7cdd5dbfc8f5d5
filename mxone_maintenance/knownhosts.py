"""The tool's pinned host keys, and the refusal of a key that is not the pinned one.

Host keys are pinned in the tool's own known-hosts file (default ``/etc/mxone/known_hosts``),
never in the operator's ``~/.ssh``. A server whose key is not pinned yet is refused with
:class:`UnknownHostKey` (naming the key type and SHA256 fingerprint, so that the operator can
compare it with the server's console before it is pinned); a server whose key differs from
the pinned one, or that is pinned under another key type, is refused with
:class:`ChangedHostKey`, and there is no option that overrides it: the operator must find
out why the key changed, then remove the old line from the known-hosts file.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path

import paramiko  # type: ignore[import-untyped]

from mxone_maintenance import store
from mxone_maintenance.sshresult import SshError


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
            f"{self.fingerprint}; compare it with "
            f"`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server's console, then accept it (--accept-new-host-key)")


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



class KnownHosts:
    """The tool's own pinned host keys: an OpenSSH known_hosts file, one line per server
    (``name,address keytype base64``). Thread-safe; writes are atomic."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache: tuple[bytes | None, paramiko.HostKeys] | None = None

    def _load(self) -> paramiko.HostKeys:
        # Read every time, parsed again only when its text changed: one status of N
        # servers checks N keys, and parsing the N lines for each was N^2 on LIM 1.
        try:
            text: bytes | None = self.path.read_bytes()
        except FileNotFoundError:
            text = None
        if self._cache is None or self._cache[0] != text:
            keys = paramiko.HostKeys()
            if text is not None:
                keys.load(str(self.path))
            self._cache = (text, keys)
        return self._cache[1]

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

    def pinned_types(self, server: str, address: str) -> tuple[str, ...]:
        """The key types pinned for the server by name, else by ``address`` ('' for none):
        the types to ask the server for, so it presents the pinned key."""
        with self._lock:
            keys = self._load()
        for name in (server, address):
            pinned = keys.lookup(name) if name else None
            if pinned:
                return tuple(pinned.keys())
        return ()

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
        with self._lock:
            old = self.path.read_bytes() if self.path.exists() else b""
            names = f"{server},{address}" if address else server
            line = f"{names} {key.get_name()} {key.get_base64()}\n".encode()
            if old and not old.endswith(b"\n"):
                old += b"\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            store.atomic_write(self.path, old + line, mode=0o644)
