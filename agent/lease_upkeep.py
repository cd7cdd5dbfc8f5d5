"""The lease upkeep of the loop: at every tick, before the heartbeats go out, the lease of
every alias this node answers for is renewed (:mod:`mxone_agent.lease`); a lease found
lapsed - the loop did not run for longer than the lease - fences its LIM until a decision
says this node owns it again (:meth:`LeaseUpkeep.fenced_runs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from mxone_agent import journal
from mxone_agent.config import NodeConfig
from mxone_agent.lease import Fence, LeaseError, LeaseKernel, lease_seconds
from mxone_agent.model import LimRun, Mode
from mxone_agent.node_files import StartupError

log = logging.getLogger("mxone_agent")


class LeaseUpkeep:
    """Renews the leases of ``fence`` (set at start) and counts those found lapsed."""

    def __init__(self, config: Callable[[], NodeConfig]) -> None:
        self._config = config
        self.fence: Fence | None = None
        self.lapses = 0  # leases found lapsed since start (each is logged)
        self._error = ""

    def set_up(self, kernel: LeaseKernel, aliases: list[Any]) -> bool:
        """Build the fence over ``aliases`` (the LIMs this node may hold); whether it was
        there already (False: the node's first start since it booted or joined).
        StartupError when it cannot be set up."""
        self.fence = Fence(kernel, lease_seconds(self._config().timers))
        try:
            return self.fence.setup(aliases)
        except LeaseError as e:
            raise StartupError(f"cannot set up the self-fencing leases: {e}") from e

    def first_join(self, runs: Sequence[LimRun], retired: Collection[int]) -> tuple[LimRun, ...]:
        """``runs`` at this node's first start in its cluster: until the fence was set up a
        moment ago, its addresses answered unfenced, as any server's do before it joins a
        cluster, and no peer can have run its LIM. A LIM running here (not a ``retired``
        one) keeps answering - it is granted its lease at once - instead of going silent
        until the standby is heard."""
        assert self.fence is not None
        cfg = self._config()
        out = []
        for r in runs:
            if r.fenced and r.lim not in retired:
                alias = cfg.lim(r.lim).alias_ip
                self.fence.grant(alias)
                log.info("%s: LIM %d ran here before this node joined cluster %s; it keeps "
                         "answering on %s", cfg.node, r.lim, cfg.cluster, alias,
                         extra=journal.about(r.lim))
                r = LimRun(r.lim, r.mode, r.loading)
            out.append(r)
        return tuple(out)

    def renew(self) -> bool:
        """Renew every lease; True when one was found lapsed (then the runs' fences are to
        be brought up to date: :meth:`fenced_runs`). An error is logged once, not at every
        tick."""
        assert self.fence is not None
        cfg = self._config()
        try:
            lapses = self.fence.renew_all()
        except LeaseError as e:
            if str(e) != self._error:  # say it once, not at every tick
                log.error("%s cannot renew its leases: %s", cfg.node, e)
                self._error = str(e)
            return False
        self._error = ""
        if not lapses:
            return False
        by_alias = {str(x.alias_ip): x.lim for x in cfg.lims}
        for lapse in lapses:
            self.lapses += 1
            log.warning("%s: the lease of alias %s (LIM %s) lapsed: it was not renewed for "
                        "%.3f s (lease %.3f s); the alias is silent until this node knows it "
                        "owns the LIM", cfg.node, lapse.alias,
                        by_alias.get(lapse.alias, "?"), lapse.unrenewed_for, self.fence.lease,
                        extra=journal.about(by_alias.get(lapse.alias)))
        return True

    def fenced_runs(self, runs: Sequence[LimRun]) -> tuple[LimRun, ...] | None:
        """``runs`` with every active LIM whose alias holds no lease marked fenced (and the
        others not); None when nothing changes."""
        assert self.fence is not None
        lims = {x.lim: x for x in self._config().lims}
        out = []
        changed = False
        for r in runs:
            x = lims.get(r.lim)
            if x is not None and r.mode is Mode.ACTIVE:
                fenced = not self.fence.holds(x.alias_ip)
                if fenced != r.fenced:
                    r = LimRun(r.lim, r.mode, r.loading, fenced)
                    changed = True
            out.append(r)
        return tuple(out) if changed else None
