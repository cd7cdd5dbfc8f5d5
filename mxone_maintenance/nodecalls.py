"""Reaching a node and running one node operation on it over SSH: ``mxone-agent node OP``
with its JSON request and answer.

Every operation runs the program of the release the tool deploys, unpacked on the node
beforehand and not yet ``current`` (:meth:`NodeCalls.ensure_release`, done before a
server's first operation): the node side is always the tool's own version, and a node
needs nothing but python3 and sshd - the unpacking runs as
:mod:`mxone_agent.node.release`'s source under ``python3 -c``, the artefact carries
pyroute2.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shlex
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mxone_agent import paths
from mxone_agent.node import release as node_release
from mxone_maintenance import ssh
from mxone_maintenance.artefact import Artefact
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.model import System

INSTALL_TIMEOUT = 120.0


def targets(system: System, *others: System) -> dict[str, ssh.Target]:
    """Server name -> how to reach it: its base address in each system, then its aliases.

    A server's base address changes when it joins or leaves a cluster (the old base becomes
    the LIM's alias), so every system's base address is tried, the first given first; the
    alias comes last since it may be held by the standby.
    """
    bases: dict[str, list[str]] = {}
    aliases: dict[str, list[str]] = {}
    for sysm in (system, *others):
        lim_alias = {cl.lim: cl.alias_ip for c in sysm.clusters for cl in c.lims}
        for s in sysm.servers:
            addrs = bases.setdefault(s.name, [])
            al = aliases.setdefault(s.name, [])
            try:
                ip = s.address
            except ValueError:
                continue
            if ip not in addrs:
                addrs.append(ip)
            if s.role == "lim" and s.lim in lim_alias and lim_alias[s.lim] not in al:
                al.append(lim_alias[s.lim])
    return {name: ssh.Target(name, tuple(addrs), aliases=tuple(aliases[name]))
            for name, addrs in bases.items()}


def parse(r: ssh.Result, op: str) -> ssh.Result:
    """``r`` failed unless it printed a JSON object whose ``ok`` is true (its ``error``,
    or the last line the command wrote to stderr, becomes ``r.error``)."""
    if r.ok:
        try:
            answer = json.loads(r.stdout)
        except json.JSONDecodeError:
            return dataclasses.replace(r, ok=False, error=f"server {r.server}: {op}: "
                                       f"unexpected answer {r.stdout[-200:]!r}")
        if not answer.get("ok", False):
            return dataclasses.replace(r, ok=False, error=answer.get("error") or
                                       f"{op} failed: {answer}")
    elif not r.error:
        tail = (r.stderr.strip().splitlines() or [f"exit status {r.exit_status}"])[-1]
        r = dataclasses.replace(r, error=f"{op}: {tail}")
    return r


def answer(r: ssh.Result) -> dict[str, Any]:
    """The JSON answer of a successful call (see :func:`parse`)."""
    data = json.loads(r.stdout)
    return data if isinstance(data, dict) else {}


class NodeCalls:
    """The node operations of one apply (or catch-up, or repair), over ``pool``.

    ``artefact``: the release to deploy (built once, when first needed).
    """

    def __init__(self, pool: ssh.Pool, artefact: Callable[[], Artefact]) -> None:
        self.pool = pool
        self._artefact = artefact
        self._lock = threading.Lock()
        self._release: dict[str, str] = {}  # server -> "found" / "uploaded"
        # server -> the directories its probe created: the release was not there, this
        # change puts it there (taken back if the change does not go through)
        self._unpacking: dict[str, list[str]] = {}

    def artefact(self) -> Artefact:
        return self._artefact()

    def command(self, op: str) -> str:
        """The shell command of node operation ``op`` (its program: the tool's release)."""
        return shlex.join([paths.release_bin(self.artefact().release), "node", op])

    def call(self, target: ssh.Target, op: str, request: Mapping[str, Any],
             timeout: float | None = None) -> ssh.Result:
        """Run ``op`` on ``target``; failed unless it answered ``ok`` (see :func:`parse`)."""
        r = self.ensure_release(target)
        if not r.ok:
            return r
        r = self.pool.run(target, self.command(op), input=json.dumps(request), timeout=timeout)
        return parse(r, op)

    def uploaded(self, target: ssh.Target) -> bool:
        """True when this run uploaded the release to ``target`` (it was not there)."""
        return self._release.get(target.name) == "uploaded"

    def keep_unpacked(self) -> None:
        """The change succeeded: the releases it unpacked stay (they are ``current`` now)."""
        with self._lock:
            self._unpacking.clear()
            self._release = {k: "found" for k in self._release}

    def remove_unpacked(self, targets: Iterable[ssh.Target]) -> ssh.GroupResult:
        """The change was refused or rolled back: remove again the release this change
        unpacked on those of ``targets`` that did not have it, and the directories made for
        it, by the bootstrap's ``remove`` (which never removes the release ``current``
        points to). A server it fails on keeps that release: unused, harmless, and found
        by the next change of the same release."""
        with self._lock:
            mine = [t for t in targets if t.name in self._unpacking]

        def remove(t: ssh.Target) -> ssh.Result:
            art = self.artefact()
            req = {"releases": paths.RELEASES, "release": art.release, "sha256": art.sha256,
                   "remove": True, "dirs": self._unpacking[t.name]}
            r = parse(self.pool.run(t, node_release.bootstrap_command(), input=json.dumps(req)),
                      "remove release")
            if r.ok:
                with self._lock:
                    del self._unpacking[t.name]
                    self._release.pop(t.name, None)
            return r

        return self.pool.each(mine, remove)

    def ensure_release(self, target: ssh.Target) -> ssh.Result:
        """The tool's release unpacked on ``target`` beside the others (never ``current``
        here): uploaded only when missing, its checksum verified on the node before it is
        unpacked. Done once per server; one unpacked here (it was not there) is taken back
        by :meth:`remove_unpacked` when the change is refused or rolled back."""
        with self._lock:
            if target.name in self._release:
                return ssh.Result(target.name, True, exit_status=0)
        try:
            art = self.artefact()
        except MxoneError as exc:
            return ssh.Result(target.name, False, error=f"no agent to deploy: {exc}")
        req = {"releases": paths.RELEASES, "release": art.release, "sha256": art.sha256}
        bootstrap = node_release.bootstrap_command()
        r = parse(self.pool.run(target, bootstrap, input=json.dumps(req)), "release")
        if not r.ok:
            return r
        found = bool(answer(r).get("has"))
        if not found:
            with self._lock:
                self._unpacking[target.name] = [str(d) for d in answer(r).get("created", [])]
            upload = f"{paths.RELEASES}/.upload-{art.release}-{secrets.token_hex(4)}"
            r = self.pool.put(target, upload, art.path.read_bytes(), 0o600)
            if r.ok:
                install = json.dumps({**req, "upload": upload})
                r = parse(self.pool.run(target, bootstrap, input=install, timeout=max(
                    INSTALL_TIMEOUT, self.pool.command_timeout)), "install")
            if not r.ok:
                return dataclasses.replace(r, error=f"agent release {art.release} not installed: "
                                           f"{r.describe()}")
        with self._lock:
            self._release[target.name] = "found" if found else "uploaded"
        return r
