"""Putting a node back as it was: the undo plan of each node a failed change touched, the
undo itself (files byte for byte, the release link, the agent), and the journal on LIM 1
of rollbacks that could not reach their server (``pending-rollback/<server>.json`` beside
the config), finished before any later change touches that server, or by ``cluster
repair``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mxone_maintenance import nodechange, ssh, store

Undo = Callable[[ssh.Target, Mapping[str, Any]], ssh.Result]


def undo_plan(node: nodechange.Node, generation: int) -> dict[str, Any]:
    """What putting ``node`` back to generation ``generation`` takes (kept in the journal
    when the server cannot be reached for it)."""
    return {"generation": generation, "snapshot": node.snapshot, "switched": node.switched,
            "retired": node.config is None, "agent_changed": node.agent_changed,
            "unretire": list(node.retired_lims),
            "remove_base": node.add_base if node.added_base else None,
            "network": ({"files": node.net.get("files") or {}, "dirs": node.net.get("dirs") or {}}
                        if node.net_touched else None)}


def undo(call: nodechange.Call, t: ssh.Target, plan: Mapping[str, Any]) -> ssh.Result:
    """Put one node back to its snapshot: files byte for byte, release link, agent."""
    snap = plan["snapshot"]
    if not snap.get("running"):
        # It ran no agent before: stop the one started now, and remove its fence while
        # that agent's release is still installed (its aliases answer freely again).
        r = call(t, "stop", {"release": True})
        if not r.ok:
            return r
    if plan.get("network"):  # before the agent files: /etc/mxone may go with them
        r = call(t, "net-restore", plan["network"])
        if not r.ok:
            return r
    r = call(t, "restore", {"files": snap["files"], "dirs": snap["dirs"]})
    if not r.ok:
        return r
    if plan.get("remove_base"):
        r = call(t, "del-base", plan["remove_base"])
        if not r.ok:
            return r
    if plan.get("unretire") and snap.get("running") and not plan["retired"]:
        # The LIMs that were to leave stay: the agent may take them over again (best
        # effort: its retire order ends on its own after a while in any case).
        call(t, "unretire", {"lims": plan["unretire"]})
    if plan["switched"]:
        r = call(t, "switch", {"target": snap.get("current")})
        if not r.ok:
            return r
    if not snap.get("running"):
        return r
    if plan["switched"] or plan["retired"]:
        return call(t, "restart", {})
    if plan["agent_changed"]:
        return call(t, "reload", {})
    return r  # the agent never took the new config: nothing to undo there


class Journal:
    """The rollbacks that could not reach their server, kept beside ``config_path``."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    @property
    def dir(self) -> Path:
        return self.config_path.parent / "pending-rollback"

    def keep(self, server: str, plan: Mapping[str, Any]) -> None:
        """Keep the rollback of ``server`` that could not reach it."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store.atomic_write(self.dir / f"{server}.json",
                           json.dumps(plan, indent=1).encode(), mode=0o600)

    def pending(self) -> dict[str, dict[str, Any]]:
        """Server -> the rollback that could not reach it (kept on LIM 1 until finished)."""
        out = {}
        if self.dir.is_dir():
            for f in sorted(self.dir.glob("*.json")):
                try:
                    out[f.stem] = json.loads(f.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
        return out

    def finish(self, pool: ssh.Pool, undo: Undo, reach: Mapping[str, ssh.Target],
               only: set[str] | None = None) -> ssh.GroupResult:
        """Finish every pending rollback (of the servers in ``only``); journal removed on success."""
        pending = {k: v for k, v in self.pending().items()
                   if (only is None or k in only) and k in reach}

        def work(t: ssh.Target) -> ssh.Result:
            r = undo(t, pending[t.name])
            if r.ok:
                (self.dir / f"{t.name}.json").unlink(missing_ok=True)
            return r

        result = pool.each([reach[n] for n in pending], work)
        if self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()
        return result
