"""Host keys met by the menus: shown to the operator, pinned only when accepted.

The SSH layer (:mod:`mxone_maintenance.ssh`) checks every server's host key against the
tool's known-hosts file. The menus replace the pool's :class:`~mxone_maintenance.ssh.KnownHosts`
with :class:`AskingKnownHosts`, which asks the operator (through the app, from the worker
thread that met the key) before a new key is pinned. A changed key is never asked about.
The menus give the question (a screen); everything about keys stays here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mxone_maintenance import ssh


class HostKeyRefused(ssh.HostKeyError):
    """The operator refused a host key the tool had never seen: nothing was pinned."""

    def __init__(self, unknown: ssh.UnknownHostKey, asked: bool = True) -> None:
        self.unknown = unknown
        how = ("refused by the operator" if asked
               else "not accepted (another host key was refused in this action)")
        super().__init__(f"server {unknown.server} ({unknown.address}): host key "
                         f"{unknown.key_type} {unknown.fingerprint} {how}; the key was not "
                         f"pinned and the action was cancelled")


HostKeyQuestion = Callable[[ssh.UnknownHostKey], bool]


class AskingKnownHosts(ssh.KnownHosts):
    """The tool's known-hosts file, asking the operator before a new key is pinned.

    ``ask(unknown) -> bool`` is called from the worker thread that met the key (it may
    block until the operator answers); one question at a time. Accept pins the key (by
    server name and address) and the connection goes on; Refuse raises
    :class:`HostKeyRefused` (a HostKeyError, so the pool reports it and changes nothing).
    A changed key is never asked about: ChangedHostKey goes through unchanged. A key met
    on an alias address is not asked about either: an alias moves with its LIM, so the
    pool decides there (another pinned server's key means "the LIM runs there").
    ``refuse_all`` set: every new key is refused without asking (after one refusal in an
    action, the rest of that action is not asked about).

    Why here and not in ``ssh.Pool``: the pool's ``on_accept`` is told after the key is
    already pinned, so a Refuse could not leave the file unchanged.
    """

    def __init__(self, path: Path, ask: HostKeyQuestion | None = None) -> None:
        super().__init__(path)
        self.ask = ask
        self.refuse_all = False
        self._asking = threading.Lock()

    def check(self, server: str, address: str, key: Any) -> None:
        try:
            super().check(server, address, key)
            return
        except ssh.UnknownHostKey as unknown:
            if not address or self.ask is None:
                raise
            first = unknown
        with self._asking:
            try:  # another worker may have had it accepted meanwhile
                super().check(server, address, key)
                return
            except ssh.UnknownHostKey:
                pass
            if self.refuse_all:
                raise HostKeyRefused(first, asked=False)
            if not self.ask(first):
                self.refuse_all = True
                raise HostKeyRefused(first)
            self.add(server, address, key)


def ask_before_pinning(pool: Any) -> AskingKnownHosts:
    """Make ``pool`` ask (through the returned object's ``ask``) before pinning a new key."""
    asking = AskingKnownHosts(pool.known_hosts.path)
    pool.known_hosts = asking
    pool.accept_new = False  # a new key is asked about in check(), never pinned silently
    return asking
