"""New exchange data for a preloaded (passive) LIM: its service restarts in place to load
it, one LIM at a time, between decisions, on the action worker; status shows it loading,
then preloaded. A restart for new data is no failure of the service
(:attr:`DataReloads.reloading`: the status polls leave those LIMs alone meanwhile).

:class:`DataReloads` keeps what is to reload; the loop asks it for the next one
(:meth:`DataReloads.next`) whenever no decision is being applied.
"""

from __future__ import annotations

import dataclasses

from mxone_agent.decide import LocalState
from mxone_agent.model import LimRun, Mode


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

    def next(self, local: LocalState) -> tuple[int, str, LocalState] | None:
        """The next reload to start, if any and none runs: the LIM, its version, and
        ``local`` with that LIM loading."""
        if not self.pending or self.reloading:
            return None
        lim, version = self.pending.popitem()
        runs = {r.lim: r for r in local.runs}
        run = runs.get(lim)
        if run is None or run.mode is not Mode.PRELOADED:
            return None
        runs[lim] = LimRun(lim, Mode.PRELOADED, loading=True)
        self.reloading.add(lim)
        return lim, version, dataclasses.replace(local, runs=tuple(runs.values()))
