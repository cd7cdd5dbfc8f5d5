"""One node's part in a change: what is known of it and done to it (:class:`Node`), and the
change itself - new base address, network configuration, keys and node config written,
release switched, agent started or reloaded and verified (:class:`NodeChanger`)."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mxone_agent import config as agent_config
from mxone_agent import paths
from mxone_agent.node import service as node_service
from mxone_maintenance import keys, ssh, synckeys
from mxone_maintenance.artefact import Artefact
from mxone_maintenance.service import Progress


class Call(Protocol):
    """One node operation (:meth:`mxone_maintenance.nodecalls.NodeCalls.call`)."""

    def __call__(self, target: ssh.Target, op: str, request: Mapping[str, Any],
                 timeout: float | None = None) -> ssh.Result: ...


@dataclass
class Node:
    """One server's part in an apply: its snapshot, what was done, how it ended."""

    target: ssh.Target
    config: agent_config.NodeConfig | None  # None: the server leaves every cluster
    key: str | None
    sync: synckeys.SyncKey | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    switched: bool = False
    agent_changed: bool = False  # the agent (re)loaded the new config
    add_base: dict[str, Any] | None = None  # the new base address to configure, if missing
    added_base: bool = False
    net_request: dict[str, Any] | None = None  # netconfig request: base address persisted/undone
    net: dict[str, Any] = field(default_factory=dict)  # netconfig's inspect answer
    net_touched: bool = False  # its network config files may have been written
    step: str = "not started"
    error: str = ""
    rolled_back: str = ""
    retired_lims: list[int] = field(default_factory=list)  # its agent let these go (ctl retire)
    said: list[str] = field(default_factory=list)  # what leaving its cluster did, warnings


class Tracker:
    """Turns step counts into (line, fraction) progress calls, from many threads."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        self.lock = threading.Lock()

    def add(self, steps: int, line: str | None = None) -> None:
        with self.lock:
            self.done = min(self.total, self.done + steps)
            if line:
                self.progress(line, self.done / self.total)

    def __call__(self, line: str, fraction: float | None) -> None:
        with self.lock:
            self.progress(line, self.done / self.total if fraction is None else fraction)


def step(node: Node, what: str, tracker: Tracker, r: ssh.Result) -> None:
    """One step of a node's change done: shown; a failed one ends the node's change."""
    tracker.add(1, f"{node.target.name}: {what}" + ("" if r.ok else " FAILED"))
    if not r.ok:
        node.error = f"{what}: {r.describe()}"
        raise NodeFailed(node.error)


def leave_lines(r: ssh.Result) -> list[str]:
    """What leaving its cluster did on a node (its ``retire`` answer)."""
    try:
        said = json.loads(r.stdout).get("leave") if r.ok else None
    except (json.JSONDecodeError, AttributeError):
        return []
    return [str(x) for x in said] if isinstance(said, list) else []


def warnings(r: ssh.Result) -> list[str]:
    """What starting the agent warned about (e.g. a unit file of the administrator's that
    shadows the deployed one)."""
    try:
        said = json.loads(r.stdout).get("warnings") if r.ok else None
    except (json.JSONDecodeError, AttributeError):
        return []
    return [str(x) for x in said] if isinstance(said, list) else []


class NodeFailed(Exception):
    pass


class NodeChanger:
    """Changes nodes through ``call`` (node operations) and ``pool`` (uploads, ``ctl
    status``); ``uploaded``: whether this run uploaded the release to a server."""

    def __init__(self, pool: ssh.Pool, call: Call, uploaded: Callable[[ssh.Target], bool],
                 verify_timeout: float) -> None:
        self.pool, self.call, self.uploaded = pool, call, uploaded
        self.verify_timeout = verify_timeout

    def change(self, node: Node, art: Artefact | None, gen1: int, tracker: Tracker) -> ssh.Result:
        """Bring one node to generation ``gen1`` (or take it out of its cluster); stops at
        the first step that fails, with ``node.error`` saying which."""
        t = node.target
        started = time.monotonic()
        try:
            if node.config is None:
                node.step, node.changed = "retire", True
                r = self.call(t, "retire", {"auth": keys.authorized_keys(node.snapshot, None)})
                node.said = leave_lines(r)
                step(node, "agent stopped, node config and keys removed", tracker, r)
                self.write_network_config(node, tracker)
                tracker.add(4)
                return ssh.Result(t.name, True, seconds=time.monotonic() - started)
            assert art is not None
            node.changed = True  # directories may be created from here on
            step(node, "prepare directories", tracker, self.call(t, "prepare-dirs", {}))
            if node.add_base is not None:
                r = self.call(t, "add-base", node.add_base)
                node.added_base = r.ok
                b = node.add_base
                step(node, f"new base address {b['address']}/{b['prefix']} configured on "
                           f"{b['interface']} (at run time)", tracker, r)
                with contextlib.suppress(ValueError, AttributeError):  # an older node
                    if warning := json.loads(r.stdout).get("warning"):
                        tracker.add(0, f"{t.name}: WARNING {warning}")
            self.write_network_config(node, tracker)
            # Unpacked before the first node operation (NodeCalls.ensure_release).
            if self.uploaded(t):
                tracker.add(1, f"{t.name}: agent release {art.release} uploaded and verified")
            else:
                tracker.add(1, f"{t.name}: agent release {art.release} already there (upload "
                            "skipped)")
            files = []
            assert node.config is not None and node.key is not None and node.sync is not None
            auth = keys.authorized_keys(node.snapshot,
                                        synckeys.authorized_line(node.sync, node.config.cluster))
            assert auth is not None  # a line to write: there is always a file to write
            for name, data, mode in (
                    ("key", node.key.encode() + b"\n", 0o600),
                    ("sync", node.sync.private.encode(), 0o600),
                    ("hosts", keys.peer_host_keys(self.pool.known_hosts, node.config).encode(),
                     0o644),
                    ("auth", bytes.fromhex(auth["data"]), auth["mode"]),
                    ("node", (json.dumps(node.config.to_dict(), indent=2) + "\n").encode(), 0o644)):
                folder = paths.ROOT_SSH if name == "auth" else paths.AGENT_DIR
                tmp = f"{folder}/.{name}.upload-{secrets.token_hex(4)}"
                r = self.pool.put(t, tmp, data, 0o600)
                if not r.ok:
                    step(node, "upload node config", tracker, r)
                files.append({"name": name, "tmp": tmp, "mode": mode})
            step(node, f"node config generation {gen1}, cluster key and sync key written",
                       tracker, self.call(t, "write", {"keep_prev": True, "files": files}))
            release_changed = node.snapshot.get("current") != f"releases/{art.release}"
            if release_changed:
                node.switched = True
                self.call(t, "switch", {"target": f"releases/{art.release}"})
            if node.snapshot.get("running") and not release_changed:
                op, what = "reload", "agent reloaded"
            elif node.snapshot.get("running"):
                op, what = "restart", f"agent restarted on release {art.release}"
            else:
                op, what = "start", "agent started"
            # Whether the agent took the new config is unknown once the order went out (a
            # lost connection says nothing); only a clean refusal means it kept the old one.
            node.agent_changed = True
            r = self.call(t, op, {})
            if not r.ok and r.error.startswith(node_service.REFUSED):
                node.agent_changed = False
            step(node, what, tracker, r)
            for warning in warnings(r):
                node.said.append(f"WARNING: {warning}")
                tracker(f"{t.name}: WARNING: {warning}", None)
            step(node, f"agent reports generation {gen1}", tracker,
                       self.verify(t, gen1))
        except NodeFailed:
            return ssh.Result(t.name, False, error=node.error, seconds=time.monotonic() - started)
        return ssh.Result(t.name, True, seconds=time.monotonic() - started)

    def write_network_config(self, node: Node, tracker: Tracker) -> None:
        """Write what :func:`~mxone_maintenance.phases.inspect_network_configs` found into
        the node's network config (the new base address, or the tool's earlier change
        undone); the old files are kept for the rollback."""
        req, edits = node.net_request, node.net.get("edits") or []
        if req is None or not edits:
            return
        node.net_touched = True
        r = self.call(node.target, "net-apply", {**req, "expect": node.net.get("expect", {})})
        where = ", ".join(e["path"] for e in edits)
        if req.get("revert"):
            what = f"network configuration put back as before the cluster ({where})"
        else:
            what = (f"new base address {req['new']} written to {where}: it comes back after a "
                    f"reboot, and {req['old']} (the alias) comes up only by the agent")
        step(node, what, tracker, r)

    def verify(self, target: ssh.Target, generation: int) -> ssh.Result:
        """Wait until the agent reports ``generation`` (``ctl status``), for the verify timeout."""
        deadline = time.monotonic() + self.verify_timeout
        last = "no answer"
        while True:
            r = self.pool.run(target, [paths.AGENT_BIN, "ctl", "status"],
                              timeout=min(20.0, self.pool.command_timeout))
            if r.ok:
                try:
                    got = json.loads(r.stdout).get("generation")
                except (json.JSONDecodeError, AttributeError):
                    got, last = None, f"ctl status printed no JSON: {r.stdout[-200:]!r}"
                if got == generation:
                    return r
                if got is not None:
                    last = f"agent runs generation {got}, not {generation}"
            else:
                last = r.describe()
            if time.monotonic() > deadline:
                return ssh.Result(target.name, False, error=f"{last} after {self.verify_timeout:g} s")
            time.sleep(0.2)
