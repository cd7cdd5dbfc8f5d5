"""A recording peer, stack and Web for the commands' tests: nothing leaves the process.

:class:`Peer` is the other server: its accounts' passwords, its sudo, its authorized keys,
its management package and the files it holds (the master's answers); every command line
run there is recorded. :func:`web` builds a :class:`~mxone_web.context.Web` on tmp paths
whose sessions log in to the Peer and whose stack records its calls.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from mxone_web import context, manager, settings
from mxone_web.errors import Refused
from mxone_web.remote import Ran

from tests.web.builders import write_node

HOST_KEY = paramiko.Ed25519Key.from_private_key(__import__("io").StringIO(
    __import__("mxone_maintenance.synckeys", fromlist=["SyncKey"]).SyncKey.generate().private))


@dataclass
class Peer:
    name: str = "sb"
    passwords: dict[str, str] = field(default_factory=lambda: {"admin": "Adm1n-Pass"})
    sudo_password: str = "Adm1n-Pass"
    package: str | None = "7.0.0.0.58"
    files: dict[str, str] = field(default_factory=dict)
    authorized: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # user, command, stdin
    sudo_status: bool = True
    rejoined: int = 0

    @contextlib.contextmanager
    def login(self, user: str, password: str | None, key: Any) -> Iterator[Shell]:
        if key is not None and any(key.get_base64() in line for line in self.authorized):
            yield Shell(self, user)
            return
        if password is None or self.passwords.get(user) != password:
            raise Refused(f"login of {user} on {self.name} refused with the password given; "
                          "nothing was changed")
        yield Shell(self, user)


@dataclass
class Shell:
    peer: Peer
    user: str

    @property
    def where(self) -> str:
        return self.peer.name

    def run(self, command: str, stdin: str = "") -> Ran:
        p = self.peer
        p.calls.append((self.user, command, stdin))
        if command == "sudo -n true":
            return Ran(1, "", "sudo: a password is required")
        if command.startswith("sudo -k -S -p '' "):
            given, _, rest = stdin.partition("\n")
            if given != p.sudo_password:
                return Ran(1, "", "Sorry, try again.\nsudo: 1 incorrect password attempt")
            inner = shlex.split(command)[-1] if "sh -c" in command else "true"
            return self.root(inner, rest)
        if command == manager.AUTHORIZE:
            p.authorized.append(stdin.strip())
            return Ran(0, "", "")
        if command.startswith("test -e "):
            return Ran(0 if shlex.split(command)[-1] in p.files else 1, "", "")
        if command.startswith("cat "):
            path = shlex.split(command)[-1]
            return Ran(0, p.files[path], "") if path in p.files else Ran(
                1, "", f"cat: {path}: No such file or directory")
        if command.startswith("dpkg-query"):
            return self.dpkg()
        if command.startswith("sudo -n ") and "redundancy rejoin --here" in command:
            p.rejoined += 1
            return Ran(0, json.dumps({"schema": 1, "ok": True,
                                     "lines": [f"{p.name}: follows lim1"]}), "")
        if command.startswith("sudo -n ") and "redundancy status --here" in command:
            status = {"schema": 1, "server": p.name, "keepalived_running": True,
                      "package": f"mxone_snm-{p.package}", "db_role": "standby",
                      "replication": "streaming", "replication_peer": "lim1",
                      "lag_bytes": 0, "lag_seconds": None, "vip": "10.77.0.50",
                      "holds_vip": False}
            return Ran(0, json.dumps(status), "") if p.sudo_status else Ran(1, "", "denied")
        return Ran(0, "", "")

    def dpkg(self) -> Ran:
        if self.peer.package is None:
            return Ran(0, "\n", "")
        return Ran(0, f"install ok installed\t1.0\n{self.peer.package}\n", "")

    def root(self, command: str, stdin: str) -> Ran:
        if "chpasswd" in command:
            user, _, password = stdin.strip().partition(":")
            self.peer.passwords[user] = password
        if "apt-get install" in command or "install-app" in command:
            self.peer.package = "7.0.0.0.70"
        if command.startswith("dpkg-query"):
            return self.dpkg()
        if command.startswith("test -x "):  # no webserver_config on the fake servers
            return Ran(1, "", "")
        return Ran(0, "", "")


class Stack:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def configure(self, s: Any, say: Any) -> None:
        self.calls.append(("configure", s))
        say(f"{s.local.name}: configured as {s.role}")

    def remove(self, s: Any, say: Any) -> None:
        self.calls.append(("remove", s))
        say(f"{s.local.name}: stand-alone")

    def fallback(self, s: Any, say: Any) -> None:
        self.calls.append(("fallback", s))
        say(f"{s.local.name}: primary again")

    def rejoin(self, s: Any, say: Any) -> None:
        self.calls.append(("rejoin", s))
        say(f"{s.local.name}: follows {s.peer.name}")

    def reconfigure_fallback(self, s: Any, say: Any) -> None:
        self.calls.append(("reconfigure_fallback", s))
        say(f"{s.local.name}: keepalived follows fallback {s.fallback}")

    def install_app(self, say: Any) -> None:
        self.calls.append(("install_app", None))
        say("mxone_snm installed, not started")

    def status(self) -> Mapping[str, object]:
        return {"server": "lim1", "keepalived_running": True, "package": "mxone_snm-7.0.0.0.70",
                "db_role": "primary", "replication": "streaming (sync)",
                "replication_peer": "sb", "lag_bytes": 0, "lag_seconds": 0.0,
                "vip": "10.77.0.50", "holds_vip": True}


class LocalRoot:
    def __init__(self, where: str) -> None:
        self.where = where
        self.calls: list[tuple[str, str]] = []

    def run(self, command: str, stdin: str = "") -> Ran:
        self.calls.append((command, stdin))
        return Ran(1, "", "") if command.startswith("test -x ") else Ran(0, "", "")


class FakeWeb(context.Web):
    peer: Peer
    locals: list[LocalRoot]

    def peer_host_key(self, pair: Any, confirmed: str | None) -> Any:
        return HOST_KEY

    def session(self, pair: Any, user: str, host_key: Any, *, password: str | None = None,
                key: Any = None) -> Any:
        return self.peer.login(user, password, key)


def web(tmp: Path, node: str = "lim1", peer: Peer | None = None,
        answered: Mapping[str, set[str]] | None = None, **node_kw: Any) -> FakeWeb:
    answered = answered or {}
    tmp.mkdir(parents=True, exist_ok=True)
    known = tmp / "known_hosts"
    known.write_text(f"10.77.0.20 ssh-ed25519 {HOST_KEY.get_base64()}\n"
                     f"10.77.0.11 ssh-ed25519 {HOST_KEY.get_base64()}\n")
    w = FakeWeb(node_json=write_node(tmp, node=node, **node_kw),
                system_config=tmp / "no-system.toml",
                settings_path=tmp / "web" / "pair.json",
                answers_path=tmp / "web" / "master-answers.json",
                probe=lambda interface, address: set(answered.get(str(address), set())),
                stack=Stack(), host_key_files=(known,),
                account=lambda: manager.Account(tmp / "home", None))
    (tmp / "home").mkdir(exist_ok=True)
    w.peer = peer or Peer("sb" if node == "lim1" else "lim1")
    w.locals = []

    def local(where: str) -> LocalRoot:
        shell = LocalRoot(where)
        w.locals.append(shell)
        return shell

    w.local_shell = local
    return w


def master_answers_on(peer: Peer, s: Any) -> None:
    peer.files[str(settings.MASTER_ANSWERS)] = json.dumps(settings.master_answers(s))
