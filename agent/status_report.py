"""What ``ctl status`` and the status file show of a node: the whole report
(:func:`node_status`), one row per LIM (:func:`lim_rows`), and the status file beside the
control socket (:class:`StatusFile`) that a reader needs no process here to read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mxone_agent import bonding
from mxone_agent.alarms import AlarmBook
from mxone_agent.config import NodeConfig
from mxone_agent.decide import HoldDown, LocalState, behind, explain_down, hold_down
from mxone_agent.decision_cycle import DecisionCycle
from mxone_agent.files import atomic_write
from mxone_agent.heartbeat_link import HeartbeatLink
from mxone_agent.lease_upkeep import LeaseUpkeep
from mxone_agent.model import LimRun, Role
from mxone_agent.node_files import HeldLims
from mxone_agent.orders import Orders
from mxone_agent.sync_worker import SyncWorker
from mxone_agent.version import VERSION

log = logging.getLogger("mxone_agent")

STATUS_FILE = "status.json"  # beside the control socket: mxone_agent.paths.STATUS
STATUS_FILE_EVERY = 0.5  # written at most this often ...
STATUS_FILE_AT_LEAST = 2.0  # ... and at least this often, so its age shows the agent lives


def lim_rows(cfg: NodeConfig, link: HeartbeatLink, local: LocalState, here: Mapping[int, LimRun],
             hold_downs: Iterable[HoldDown], leases: Mapping[str, float],
             now: float) -> list[dict[str, Any]]:
    """One row per LIM of the config: who runs it (``owner``: regular, standby, both, none,
    unknown), why it runs nowhere, how it runs here (``here``: what this node advertises),
    its lease, lock, priority and hold-down."""
    holds = {h.lim: h for h in hold_downs}
    down = explain_down(cfg, link.peers, local, now)
    peers = link.peers
    lims = []
    for x in cfg.lims:
        home = x.server == cfg.node
        run = here.get(x.lim)
        regular_runs = (run is not None and run.active) if home else \
            peers[x.server].runs_active(x.lim) if x.server in peers else False
        sb = cfg.standby.name
        standby_runs = (run is not None and run.active) if cfg.role is Role.STANDBY else \
            peers[sb].runs_active(x.lim)
        # A peer not heard since this agent (re)started leaves the owner unknown; a dead
        # one runs nothing as far as the cluster can tell (its lease has lapsed).
        known = (home or not link.unheard(x.server)) and (
            cfg.role is Role.STANDBY or not link.unheard(sb))
        owner = ("both" if regular_runs and standby_runs else "regular" if regular_runs
                 else "standby" if standby_runs else "none" if known else "unknown")
        hd = holds.get(x.lim)
        if hd is None and cfg.role is Role.STANDBY and x.lim in local.appearances:
            hd = hold_down(x.lim, local.appearances[x.lim], now, cfg.detection)
        lims.append({
            "lim": x.lim, "server": x.server, "alias_ip": str(x.alias_ip),
            "owner": owner, "why": down.get(x.lim) if owner == "none" else None,
            "here": None if run is None else (
                "fenced" if run.fenced else "loading" if run.loading else str(run.mode)),
            "lease_renewed_s_ago": None if str(x.alias_ip) not in leases else round(
                leases[str(x.alias_ip)], 3),
            "lock": str(x.lock), "priority": x.priority,
            "hold_down_s": None if hd is None or hd.seconds == 0 else round(hd.seconds, 1),
            "hold_down_left_s": None if hd is None or hd.seconds == 0 else round(
                hd.remaining, 1)})
    return lims


def node_status(cfg: NodeConfig, *, incarnation: int, local: LocalState, link: HeartbeatLink,
                cycle: DecisionCycle, leases: LeaseUpkeep, orders: Orders, held: HeldLims,
                alarms: AlarmBook, sync: SyncWorker, tick_late_max: float) -> dict[str, Any]:
    """The answer to ``ctl status`` (and line 2 of the status file), at this moment."""
    now = time.monotonic()
    here = {r.lim: r for r in cycle.advertised(local)}
    fence = leases.fence
    leased = fence.held() if fence is not None else {}
    active, alarm_log = alarms.status()
    retiring = orders.retiring_until
    out = {
        "node": cfg.node, "cluster": cfg.cluster, "role": str(cfg.role), "version": VERSION,
        "generation": cfg.generation, "incarnation": incarnation,
        "behind": None if (lag := behind(cfg, link.peers)) is None else lag.as_status(),
        "readiness": str(local.readiness), "detection_s": cfg.detection,
        "interval_s": cfg.timers.interval,
        "lease_s": None if fence is None else round(fence.lease, 3),
        "lease_lapses": leases.lapses,
        "tick_late_max_s": round(tick_late_max, 3),
        "lims": lim_rows(cfg, link, local, here, cycle.hold_downs, leased, now),
        "peers": link.status(now), "alarms": active, "alarm_log": alarm_log,
        "drops": {str(k): v for k, v in link.drops.items()},
        "transitions": [dataclasses.asdict(t) for t in cycle.transitions],
        "last_decision": cycle.last_decision,
        "fallback_requests": sorted(local.fallback_requests),
        "fallback_orders": orders.status(cfg, link.peers, local, now),
        "fallback_orders_ended": list(orders.ended),
        "retiring": [{"lim": n, "alias_ip": str(x.alias_ip) if x else None,
                      "here": None if (r := here.get(n)) is None else r.describe(),
                      "why": "leaving the cluster" if n in retiring
                      else "no longer in this node's config"}
                     for n in sorted(set(retiring) | set(held.retired))
                     for x in [held.lim_config(cfg, n)]],
        "sync": sync.status(),
        # The bond (or VLAN over a bond) under the cluster interface: a few sysfs reads.
        "network": bonding.read_network(cfg.local.interface),
        "pid": os.getpid(),
    }
    if cycle.foreign_mac:
        out["foreign_mac"] = {str(k): v for k, v in cycle.foreign_mac.items()}
    return out


class StatusFile:
    """The status file beside the control socket, kept current so that a reader (the
    maintenance tool's Show status, on many servers at once) needs no process here.

    Line 1 is ``<pid> <wall clock when written>``; line 2 is the JSON of ``ctl status``.
    Written atomically when the status changed (at most every STATUS_FILE_EVERY s, at
    once after an order over the control socket: :meth:`force`) and at least every
    STATUS_FILE_AT_LEAST s; a reader treats an older file, or one whose pid is gone, as
    an agent that does not answer. Removed when the agent ends (:meth:`remove`).
    """

    def __init__(self, control_path: str, status: Callable[[], dict[str, Any]]) -> None:
        self.path = Path(control_path).parent / STATUS_FILE
        self._status = status
        self.written = -1e9  # monotonic time of the last write
        self._force = False
        self._body = ""
        self._error = ""

    def force(self) -> None:
        """Write at the next :meth:`publish`, however soon."""
        self._force = True

    def publish(self, now: float) -> None:
        if not self._force and now - self.written < STATUS_FILE_EVERY:
            return
        self._force = False
        body = json.dumps({"ok": True, **self._status()}, sort_keys=True)
        if body == self._body and now - self.written < STATUS_FILE_AT_LEAST:
            return
        try:
            # Rewritten every few seconds and lost with the agent in a crash anyway: the
            # rename is atomic, the directory needs no fsync.
            atomic_write(self.path, f"{os.getpid()} {time.time():.3f}\n{body}\n".encode(),
                         0o600, sync_directory=False)
        except OSError as exc:
            if str(exc) != self._error:  # say it once, not every tick
                log.warning("cannot write the status file %s: %s", self.path, exc)
                self._error = str(exc)
            return
        self._error = ""
        self.written, self._body = now, body

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
