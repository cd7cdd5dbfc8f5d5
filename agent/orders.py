"""The orders the agent keeps between decisions: operators' manual fallback orders (``ctl
fallback LIM [wait] [cancel]``) and the maintenance tool's retire orders (``ctl retire LIM
[cancel]``).

A fallback order is judged by ``decide.judge_fallback_order``: refused with the reason,
carried out, or kept pending until the regular server is ready, for at most its wait (then
dropped, and logged); status lists them with what each waits for. A retire order makes this
node stop the LIM for good and take it over no more, for RETIRE_HOLD seconds (the tool
deploys the config without the LIM within them, or cancels the order).

:class:`Orders` only keeps them and answers the verbs; decisions see them as
``LocalState.fallback_requests`` and ``LocalState.retiring`` (:meth:`Orders.into`). Each verb
returns its answer and whether the decision inputs changed (the loop then decides again).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from mxone_agent import control, journal
from mxone_agent.alarms import iso_now
from mxone_agent.config import NodeConfig
from mxone_agent.decide import (
    ORDER_WAIT_DEFAULT,
    ORDER_WAIT_MAX,
    LocalState,
    fallback_blocker,
    judge_fallback_order,
)
from mxone_agent.peers import PeerView

log = logging.getLogger("mxone_agent")

RETIRE_HOLD = 600.0
"""Seconds a ``ctl retire`` order holds (the maintenance tool deploys the config without the
LIM within them, or cancels the order on rollback; else the LIM may run here again)."""
ORDERS_ENDED_KEPT = 5

Reply = dict[str, Any]


@dataclasses.dataclass
class FallbackOrder:
    """An operator's manual fallback order, live on the standby until carried out, expired
    or cancelled. ``expires``: monotonic time; ``ordered_at``: wall clock (for status)."""

    lim: int
    ordered_at: float
    expires: float
    wait: float
    pending: bool


class Orders:
    """The live fallback orders (``fallback``), the last ones ended (``ended``, for status)
    and the retire orders (``retiring_until``: LIM -> monotonic end)."""

    def __init__(self) -> None:
        self.fallback: dict[int, FallbackOrder] = {}
        self.ended: deque[dict[str, Any]] = deque(maxlen=ORDERS_ENDED_KEPT)
        self.retiring_until: dict[int, float] = {}

    def into(self, local: LocalState) -> LocalState:
        """``local`` with the orders as a decision sees them."""
        return dataclasses.replace(local, fallback_requests=frozenset(self.fallback),
                                   retiring=frozenset(self.retiring_until))

    # ---- fallback ----------------------------------------------------------------------------

    def order_fallback(self, cfg: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
                       lim: int, req: Reply, now: float) -> tuple[Reply, bool]:
        """``ctl fallback LIM [wait SECONDS] [cancel]`` with ``peers`` judged at ``now``: see
        decide.judge_fallback_order."""
        cancel = req.get("cancel", False)
        if not isinstance(cancel, bool):
            return {"ok": False, "error": "cancel must be true or false"}, False
        if cancel:
            if lim not in self.fallback:
                return {"ok": False, "lim": lim, "error": f"no fallback of LIM {lim} is pending "
                        f"on {cfg.node}: nothing to cancel"}, False
            self.end(cfg, lim, "cancelled by the operator")
            return {"ok": True, "lim": lim, "result": "fallback cancelled",
                    "text": f"fallback of LIM {lim} cancelled; LIM {lim} stays on {cfg.node}"}, True
        raw = req.get("wait")
        wait: float | None = None
        if raw is not None:
            if (isinstance(raw, bool) or not isinstance(raw, int | float)
                    or not 1 <= raw <= ORDER_WAIT_MAX):
                return {"ok": False, "error": f"wait = {str(raw)[:40]}: give the seconds the "
                        f"order may wait, from 1 to {ORDER_WAIT_MAX:.0f}"}, False
            wait = float(raw)
        v = judge_fallback_order(cfg, peers, local, lim, now, wait)
        if not v.accepted:
            log.info("%s: %s", cfg.node, v.text, extra=journal.about(lim))
            return {"ok": False, "lim": lim, "error": v.text}, False
        seconds = v.wait if v.wait is not None else (wait or ORDER_WAIT_DEFAULT)
        renewed = lim in self.fallback
        self.fallback[lim] = FallbackOrder(lim, time.time(), now + seconds, seconds, v.pending)
        log.info("%s: %s (ordered by the operator%s)", cfg.node, v.text,
                 "; it replaces the pending order" if renewed else "", extra=journal.about(lim))
        return {"ok": True, "lim": lim, "pending": v.pending,
                "result": "fallback pending" if v.pending else "fallback ordered",
                "text": v.text, "expires_in_s": round(seconds, 1)}, True

    def end(self, cfg: NodeConfig, lim: int, outcome: str) -> None:
        """End the fallback order of ``lim`` (if any), with its outcome (logged, kept)."""
        order = self.fallback.pop(lim, None)
        if order is None:
            return
        self.ended.append({"lim": lim, "ordered_at": iso_now(order.ordered_at),
                           "ended_at": iso_now(time.time()), "outcome": outcome})
        log.info("%s: fallback order of LIM %d ends: %s", cfg.node, lim, outcome,
                 extra=journal.about(lim))

    def drop_done(self, cfg: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
                  now: float) -> bool:
        """End fallback orders whose LIM no longer holds its alias here (carried out, or
        gone otherwise; a fenced LIM, whose lease lapsed in a stall, still holds it), that
        expired or whose LIM left the config; end retire orders that expired. True when a
        fallback order ended."""
        ended = False
        if self.fallback:
            here = set(local.alias_lims())
            known = {x.lim for x in cfg.lims}
            for n, o in list(self.fallback.items()):
                if n not in known:
                    self.end(cfg, n, f"LIM {n} left the cluster")
                elif n not in here:
                    self.end(cfg, n, f"done: LIM {n} no longer runs on {cfg.node}")
                elif now >= o.expires:
                    why = fallback_blocker(cfg, peers, local, n, now)
                    self.end(cfg, n, f"expired after {o.wait:.0f} s" + (
                        f": {why}" if why else ""))
                else:
                    continue
                ended = True
        for n in [n for n, t in self.retiring_until.items() if now >= t]:
            del self.retiring_until[n]
            log.warning("%s: LIM %d was to leave cluster %s, but no config without it came "
                        "within %.0f s; it may run here again", cfg.node, n, cfg.cluster,
                        RETIRE_HOLD, extra=journal.about(n))
        return ended

    def status(self, cfg: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
               now: float) -> list[dict[str, Any]]:
        """One row per live fallback order, for ``ctl status``."""
        out = []
        for lim, o in sorted(self.fallback.items()):
            home = next((x.server for x in cfg.lims if x.lim == lim), "?")
            why = None
            if home != "?":
                why = fallback_blocker(cfg, peers, local, lim, now)
            left = max(0.0, o.expires - now)
            text = (f"fallback of LIM {lim} waits for {home} to be ready: {why}; it expires in "
                    f"{left:.0f} s" if why is not None else
                    f"fallback of LIM {lim} to {home} is being carried out")
            out.append({"lim": lim, "regular": home, "state": "pending" if why else "ordered",
                        "waits_for": why, "text": text, "ordered_at": iso_now(o.ordered_at),
                        "expires_in_s": round(left, 1)})
        return out

    # ---- retire ------------------------------------------------------------------------------

    def order_retire(self, cfg: NodeConfig, local: LocalState,
                     req: Reply) -> tuple[Reply, bool]:
        """``ctl retire LIM [cancel]``: the maintenance tool is removing LIM from the cluster
        (remove LIM, delete cluster): stop it here for good, and never take it over, until the
        config without it arrives (or RETIRE_HOLD passes, or the order is cancelled)."""
        n = control.lim_number(req.get("lim"))
        if n is None:
            return {"ok": False,
                    "error": f"LIM {str(req.get('lim'))[:40]} is not a LIM number"}, False
        cancel = req.get("cancel", False)
        if not isinstance(cancel, bool):
            return {"ok": False, "error": "cancel must be true or false"}, False
        known = any(x.lim == n for x in cfg.lims)
        if cancel:
            if self.retiring_until.pop(n, None) is None:
                return {"ok": True, "lim": n,
                        "text": f"LIM {n} was not retiring on {cfg.node}"}, False
            log.info("%s: LIM %d stays in cluster %s (the retire order was cancelled)",
                     cfg.node, n, cfg.cluster, extra=journal.about(n))
            return {"ok": True, "lim": n, "text": f"LIM {n} stays in cluster {cfg.cluster}; "
                    f"{cfg.node} may take it over again"}, True
        runs = n in {r.lim for r in local.runs}
        if not known:
            return {"ok": True, "lim": n, "runs_here": runs, "text": (
                f"LIM {n} is not in the config of cluster {cfg.cluster} here; " + (
                    f"{cfg.node} stops it" if runs else f"{cfg.node} does not run it"))}, False
        own = cfg.lim_of(cfg.node)
        if own is not None and own.lim == n:
            return {"ok": False, "lim": n, "error": f"{cfg.node} is LIM {n}'s regular server: "
                    f"it keeps running LIM {n} when the LIM leaves the cluster"}, False
        self.retiring_until[n] = time.monotonic() + RETIRE_HOLD
        if n in self.fallback:
            self.end(cfg, n, f"LIM {n} is leaving the cluster")
        text = (f"LIM {n} is leaving cluster {cfg.cluster}: {cfg.node} "
                + ("stops it for good and removes its alias" if runs else "does not run it")
                + ", and takes it over no more")
        log.info("%s: %s (ordered by the maintenance tool)", cfg.node, text,
                 extra=journal.about(n))
        return {"ok": True, "lim": n, "runs_here": runs, "text": text}, True

    def reloaded(self, cfg: NodeConfig) -> None:
        """A new config: a retire order of a LIM it no longer has is plain retired now."""
        known = {x.lim for x in cfg.lims}
        for n in [k for k in self.retiring_until if k not in known]:
            del self.retiring_until[n]
