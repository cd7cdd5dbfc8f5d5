"""The agent's side of its control socket: every verb of ``mxone-agent ctl`` (and of the
data commands) checked and dispatched to the agent (:class:`Commands`); the socket itself is
served without ever blocking the loop by :mod:`mxone_agent.control`.

Verbs: ``status``; ``metrics`` (``{"ok": true, "text": ...}``: the Prometheus text of
:mod:`mxone_agent.metrics`); ``reload`` (config and secret); ``backup`` / ``received`` (new
exchange data here); ``retire LIM [cancel]``; ``fallback LIM [wait] [cancel]``; ``lock LIM
regular|standby`` / ``unlock LIM``; ``sync [LIM]``, answered once the sync is done, by the
sync worker through the loop (the loop never waits for a sync). After an order (any verb but
``status`` and ``metrics``) the status file shows its effect before the answer goes out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from mxone_agent import control, sync_policy
from mxone_agent.config import Lock, NodeConfig
from mxone_agent.decide import LocalState
from mxone_agent.heartbeat_link import HeartbeatLink
from mxone_agent.metrics import AgentMetrics
from mxone_agent.orders import Orders
from mxone_agent.sync_worker import SyncWorker

log = logging.getLogger("mxone_agent")

Reply = dict[str, Any]


class Commands(Protocol):
    """What the control verbs need of the agent (its loop's thread calls them)."""

    config: NodeConfig
    local: LocalState
    link: HeartbeatLink
    orders: Orders
    sync: SyncWorker
    metrics: AgentMetrics

    def status(self) -> Reply: ...

    def reload(self) -> Reply: ...

    def data_arrived(self, lim: int, version: str | None) -> str: ...

    def judge(self, now: float) -> None:
        """Judge the peers at ``now``."""

    def post(self, fn: Callable[[], None]) -> None: ...

    def publish_status(self) -> None: ...

    def changed(self) -> None:
        """The inputs of the next decision changed: decide soon."""


class ControlService:
    """Answers the requests the control server reads (``server``, open at start)."""

    def __init__(self, path: str, commands: Commands) -> None:
        self._commands = commands
        self.server = control.ControlServer(path, self.request, log=log)

    def request(self, req: Reply, ticket: control.Deferred) -> Reply | control.Deferred:
        """Answer one control request (``{"cmd": ...}``, already parsed and checked by the
        control server); ``sync`` is answered later, by the sync worker through the loop."""
        if req.get("cmd") == "sync":
            return self._order_sync(req, ticket)
        reply = self.handle(req)
        if req.get("cmd") not in ("status", "metrics"):
            # an order: the status file shows it before the answer goes out
            self._commands.publish_status()
        return reply

    def lim_arg(self, raw: object) -> int | str:
        """The LIM named by a request's ``lim``, or the refusal sentence."""
        cfg = self._commands.config
        lim = control.lim_number(raw)
        if lim is None or not any(x.lim == lim for x in cfg.lims):
            return f"LIM {str(raw)[:40]} is not in cluster {cfg.cluster}"
        return lim

    def _order_sync(self, req: Reply, ticket: control.Deferred) -> Reply | control.Deferred:
        """``ctl sync [LIM]``: a refusal now, or the ticket - the sync worker's answer is
        handed to the loop, which replies on the waiting connection."""
        cfg = self._commands.config
        raw = req.get("lim")
        if raw is None:
            lims = list(sync_policy.initiated_lims(cfg))
            if not lims:
                return {"ok": False, "results": [], "error": (
                    f"{cfg.node} is the {cfg.role} server of cluster {cfg.cluster} and regular "
                    "for no LIM; order the sync on a regular server, or name the LIM")}
        else:
            lim = self.lim_arg(raw)
            if isinstance(lim, str):
                return {"ok": False, "results": [], "error": lim}
            lims = [lim]

        def answer(results: list[Reply]) -> None:  # on the sync thread
            reply = {"ok": all(r["ok"] for r in results), "results": results}
            self._commands.post(lambda: self.server.reply(ticket, reply))

        self._commands.sync.order(lims, sync_policy.TRIGGER_ORDER, answer)
        return ticket

    def handle(self, req: Reply) -> Reply:
        """Answer one control request (``{"cmd": ...}``); see main's ``ctl`` for the verbs."""
        agent = self._commands
        cmd = req.get("cmd")
        if cmd == "status":
            return {"ok": True, **agent.status()}
        if cmd == "metrics":
            return {"ok": True, "text": agent.metrics.text()}
        if cmd == "reload":
            return agent.reload()
        if cmd in ("backup", "received"):
            checked, version = self.lim_arg(req.get("lim")), req.get("version")
            if isinstance(checked, str):
                return {"ok": False, "error": checked}
            if version is not None and not (isinstance(version, str)
                                            and 0 < len(version) <= 200):
                return {"ok": False, "error": "version must be a version name (a short string)"}
            return self._data_news(cmd == "backup", checked, version)
        if cmd == "retire":
            reply, changed = agent.orders.order_retire(agent.config, agent.local, req)
            return self._orders_changed(reply, changed)
        lim = 0
        if cmd in ("fallback", "lock", "unlock"):
            checked = self.lim_arg(req.get("lim"))
            if isinstance(checked, str):
                return {"ok": False, "error": checked}
            lim = checked
        if cmd == "fallback":
            now = time.monotonic()
            agent.judge(now)
            reply, changed = agent.orders.order_fallback(agent.config, agent.link.peers,
                                                         agent.local, lim, req, now)
            return self._orders_changed(reply, changed)
        if cmd in ("lock", "unlock"):
            to = Lock.NONE if cmd == "unlock" else req.get("to")
            if not isinstance(to, str) or to not in (Lock.REGULAR, Lock.STANDBY, Lock.NONE):
                return {"ok": False, "error": f"lock target {str(to)[:40]!r} is not regular or "
                        "standby"}
            agent.config = agent.config.with_lock(lim, Lock(to))
            agent.changed()
            log.info("%s: LIM %d %s by the operator", agent.config.node, lim,
                     "unlocked" if to == Lock.NONE else f"locked to the {to} server")
            return {"ok": True, "lim": lim, "lock": str(Lock(to))}
        return {"ok": False, "error": f"unknown command {str(cmd)[:40]!r}"}

    def _orders_changed(self, reply: Reply, changed: bool) -> Reply:
        agent = self._commands
        agent.local = agent.orders.into(agent.local)
        if changed:
            agent.changed()
        return reply

    def _data_news(self, backup: bool, lim: int, version: str | None) -> Reply:
        """``backup``: a data backup was written here (sync it); else a peer sent a new
        version here (a preloaded passive service reloads it)."""
        agent = self._commands
        if backup:
            said = agent.sync.backup_happened(lim, version)
            log.info("%s: data backup %s of LIM %d; %s", agent.config.node, version, lim, said)
            return {"ok": True, "lim": lim, "result": said}
        if version is not None:
            agent.sync.version_arrived(lim, version)
        return {"ok": True, "lim": lim, "result": agent.data_arrived(lim, version)}
