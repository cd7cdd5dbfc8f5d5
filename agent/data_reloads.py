"""New exchange data for a preloaded (passive) LIM: its service restarts in place to load
it, one LIM at a time, between decisions, on the action worker; status shows it loading,
then preloaded. A restart for new data is no failure of the service
(:attr:`DataReloads.reloading`: the status polls leave those LIMs alone meanwhile).

:class:`DataReloads` keeps what is to reload; the loop asks it for the next one
(:meth:`DataReloads.start_next`) whenever no decision is being applied.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from mxone_agent.alarms import iso_now
from mxone_agent.config import NodeConfig
from mxone_agent.decide import LocalState
from mxone_agent.executor import Executor, Outcome
from mxone_agent.model import LimRun, Mode, TransitionKind
from mxone_agent.outcomes import Transition

log = logging.getLogger("mxone_agent")


class DataReloads:
    """``pending``: LIM -> the new version to load; ``reloading``: LIMs restarting now."""

    def __init__(self) -> None:
        self.pending: dict[int, str] = {}
        self.reloading: set[int] = set()

    def arrived(self, local: LocalState, lim: int, version: str | None) -> str:
        """New data of ``lim`` is here: a preloaded service of it reloads it. The sentence
        that says what comes of it."""
        run = local.run(lim)
        if run is None or run.mode is not Mode.PRELOADED:
            return "new data noted; no preloaded service of it runs here"
        self.pending[lim] = version or "?"
        return f"the preloaded service reloads to load {version}"

    def start_next(self, local: LocalState, cfg: NodeConfig, ex: Executor,
                   submit: Callable[[str, Callable[[], Any]], None]) -> LocalState | None:
        """Hand the action worker the next reload, if any and none runs; ``local`` with that
        LIM loading (None: nothing started)."""
        if not self.pending or self.reloading:
            return None
        lim, version = self.pending.popitem()
        runs = {r.lim: r for r in local.runs}
        run = runs.get(lim)
        if run is None or run.mode is not Mode.PRELOADED:
            return None
        runs[lim] = LimRun(lim, Mode.PRELOADED, loading=True)
        self.reloading.add(lim)
        decided = time.time()
        log.info("%s: LIM %d's preloaded service reloads to load the new data %s",
                 cfg.node, lim, version)
        submit("reload", lambda: (lim, version, decided, ex.reload_service(cfg, cfg.lim(lim))))
        return dataclasses.replace(local, runs=tuple(runs.values()))

    def reloaded(self, node: str, lim: int, version: str, decided: float,
                 outcome: Outcome) -> Transition:
        """A reload is done: its transition, for status (a failure is logged)."""
        self.reloading.discard(lim)
        at = {k: iso_now(v) for k, v in outcome.steps.items()}
        if not outcome.ok:
            log.warning("%s: %s", node, outcome.error)
        return Transition(
            lim=lim, kind=str(TransitionKind.RELOAD), reason=f"New data {version} of LIM {lim} "
            "arrived: its preloaded service reloads to load it.", detected=iso_now(decided),
            decided=iso_now(decided), service_up=at.get("service_up"), ok=outcome.ok,
            error=outcome.error)
