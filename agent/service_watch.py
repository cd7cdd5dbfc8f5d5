"""The watch the loop keeps over what runs here, between decisions, on the action worker:
the status command of every LIM service here (every HEALTH_POLL s, and every LOADING_POLL s
while one is loading), the MACs of the cluster's servers in the neighbour table (every
MAC_REFRESH s: the executor's ARP probe tells them from a foreign host on an alias), and
the gratuitous ARP bursts that are due - also at once for a LIM kept here when another
server's possible copy of it (a split brain, a regular server cut off) is gone.

What a poll finds is an input of the next decision (:meth:`ServiceWatch.found`): a LIM done
loading, or a service no longer running - no longer in ``LocalState.runs`` but in
``LocalState.died``, so that the decision clears what it left.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from mxone_agent import journal, service_node
from mxone_agent.config import LimConfig, NodeConfig
from mxone_agent.decide import LocalState
from mxone_agent.executor import Executor
from mxone_agent.model import LimRun
from mxone_agent.peers import PeerView

log = logging.getLogger("mxone_agent")

LOADING_POLL = 0.25
HEALTH_POLL = 2.0
MAC_REFRESH = 5.0


def contested(config: NodeConfig, peers: Mapping[str, PeerView],
              local: LocalState) -> frozenset[int]:
    """The LIMs answering here that another server may answer for too: one a heard peer
    holds live, or one whose own (regular) server is not heard - cut off, it may still run
    its copy, and its refresh or ARP replies point neighbours at itself."""
    homes = {x.lim: x.server for x in config.lims}
    out = set()
    for r in local.runs:
        if not r.active:
            continue
        home = peers.get(homes.get(r.lim, ""))
        if (home is not None and not home.alive) or any(
                p.runs_active(r.lim) for p in peers.values()):
            out.add(r.lim)
    return frozenset(out)


class ServiceWatch:
    """Schedules the polls (:meth:`due`) and reads their results (:meth:`found`,
    :meth:`merge_macs`). ``macs``: base IP -> MAC of the cluster servers seen."""

    def __init__(self, config: Callable[[], NodeConfig], run_dir: str,
                 lim_config: Callable[[int], LimConfig | None],
                 submit: Callable[[str, Callable[[], Any]], None]) -> None:
        self._config = config
        self._run_dir = run_dir
        self._lim_config = lim_config
        self._submit = submit
        self.executor: Executor | None = None  # set at start
        self.macs: dict[str, str] = {}
        self._next_loading_poll = 0.0
        self._next_health_poll = 0.0
        self._next_mac_refresh = 0.0
        self._contested: frozenset[int] = frozenset()

    def poll_soon(self) -> None:
        """Poll the loading LIMs at the next turn (a service was just started)."""
        self._next_loading_poll = 0.0

    def due(self, now: float, local: LocalState,
            disputed: frozenset[int] = frozenset()) -> None:
        """Hand the action worker the jobs due at ``now``. ``disputed``: what
        :func:`contested` gives now. A LIM that was and no longer is, and still answers
        here, has its alias announced again at once: the other copy is gone."""
        ex = self.executor
        assert ex is not None
        here = {r.lim for r in local.runs if r.active}
        ended = (self._contested & here) - disputed
        self._contested = disputed
        if ended:
            log.info("%s: LIM %s no longer claimed elsewhere (the other copy is gone): its "
                     "alias is announced again here", self._config().node,
                     ", ".join(str(n) for n in sorted(ended)), extra=journal.about(ended))
            self._submit("announce", lambda: ex.claims_ended(self._config(), ended))
        nxt = ex.next_announce()
        if nxt is not None and now >= nxt:
            self._submit("announce", lambda: ex.announce_due(self._config()))
        loading = [r.lim for r in local.runs if r.loading]
        if (loading and now >= self._next_loading_poll) or now >= self._next_health_poll:
            self._next_loading_poll = now + LOADING_POLL
            if now >= self._next_health_poll:
                self._next_health_poll = now + HEALTH_POLL
                lims = [r.lim for r in local.runs]
            else:
                lims = loading
            known = {n: x for n in lims if (x := self._lim_config(n)) is not None}
            self._submit("status", lambda: {n: self._status(x) for n, x in known.items()})
        if now >= self._next_mac_refresh:
            self._next_mac_refresh = now + MAC_REFRESH
            self._submit("macs", self.neighbour_macs)

    def _status(self, lim: LimConfig) -> int:
        if lim.service is None:  # the reference Service Node: no need for a subprocess
            return service_node.status(self._run_dir, lim.lim)
        assert self.executor is not None
        return self.executor.service_status(lim)

    def neighbour_macs(self) -> dict[str, str]:
        assert self.executor is not None
        return self.executor.network.neighbour_macs(self._config().local.interface)

    def merge_macs(self, table: Mapping[str, str], servers: Collection[str]) -> None:
        """Keep the MACs ``table`` gives for the base IPs of ``servers``."""
        for ip, mac in table.items():
            if ip in servers and mac != "00:00:00:00:00:00":
                self.macs[ip] = mac

    def found(self, codes: Mapping[int, int], local: LocalState,
              reloading: Collection[int]) -> LocalState | None:
        """``local`` as the status codes of a poll show it (None: nothing changed). A LIM
        restarting for new data (``reloading``) is left alone: its outcome comes apart."""
        runs = {r.lim: r for r in local.runs}
        died = set(local.died)
        changed = False
        for n, code in codes.items():
            r = runs.get(n)
            if r is None or n in reloading:
                continue  # a reload's restart is no failure; its outcome comes separately
            if code == 0 and r.loading:
                runs[n] = LimRun(n, r.mode, loading=False, fenced=r.fenced)
                changed = True
            elif code not in (0, service_node.STATUS_LOADING):
                log.warning("%s: the service of LIM %d is no longer running; it counts as "
                            "stopped here", self._config().node, n, extra=journal.about(n))
                runs.pop(n)
                died.add(n)
                changed = True
        if not changed:
            return None
        started = {k: v for k, v in local.started_at.items() if k in runs}
        return dataclasses.replace(local, runs=tuple(runs.values()), started_at=started,
                                   died=frozenset(died))
