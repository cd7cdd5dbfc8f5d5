"""What the menus ask of the running agents, behind one small interface.

Show status, manual fallback, sync of exchange data and telling the agents about a lock
happen on the nodes, not in the config file. The app receives an :class:`Operations`
object: :class:`AgentOperations` reaches the node agents over SSH (the real one);
:class:`NoOperations` refuses every call with NotImplementedError, and the menus then show
"not available yet" instead of crashing.
Calls run in a worker thread, never in the UI loop, so they may block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

SyncProgress = Callable[[int, int, str], None]
"""``progress(done, total, line)``: called (from a worker thread) as each LIM finishes."""


class Operations(Protocol):
    """Agent-side operations. Each returns lines to show; any may raise NotImplementedError."""

    def status(self) -> Sequence[str]:
        """The status of every cluster, one line per server."""
        ...

    def fallback(self, cluster: str, lim: int, wait: float | None = None,
                 cancel: bool = False) -> Sequence[str]:
        """Move a LIM that runs on the standby back to its regular server (manual fallback):
        carried out, pending (for at most ``wait`` seconds) or refused, as the answer says;
        ``cancel`` withdraws a pending order."""
        ...

    def sync(self, cluster: str, progress: SyncProgress | None = None) -> Sequence[str]:
        """Order a sync of exchange data between the cluster's regular servers and its
        standby; one line per LIM (OK or FAILED), ``progress`` told as each LIM finishes."""
        ...

    def lock(self, cluster: str, lim: int, lock: str) -> Sequence[str]:
        """Tell the cluster's agents a LIM's new lock (none, regular, standby) now."""
        ...


class NoOperations:
    """The stand-in while the agent protocol does not exist: every call refuses."""

    def status(self) -> Sequence[str]:
        raise NotImplementedError("cluster status comes from the node agents, which the "
                                  "maintenance tool cannot reach yet")

    def fallback(self, cluster: str, lim: int, wait: float | None = None,
                 cancel: bool = False) -> Sequence[str]:
        raise NotImplementedError(f"manual fallback of LIM {lim} in cluster {cluster} is ordered "
                                  "through the node agents, which the maintenance tool cannot reach yet")

    def sync(self, cluster: str, progress: SyncProgress | None = None) -> Sequence[str]:
        raise NotImplementedError(f"sync of exchange data in cluster {cluster} is ordered through "
                                  "the node agents, which the maintenance tool cannot reach yet")

    def lock(self, cluster: str, lim: int, lock: str) -> Sequence[str]:
        raise NotImplementedError(f"the agents of cluster {cluster} learn the lock of LIM {lim} "
                                  "at their next config reload (live notification is not built yet)")


class AgentOperations:
    """The real backend: the node agents over SSH, through mxone_maintenance.operations.

    Lines only: the typed results and every rule stay in the core.
    """

    def __init__(self, maintenance: Any, operations: Any) -> None:
        self.maintenance = maintenance
        self.operations = operations

    def _system(self) -> Any:
        return self.maintenance.system().validated()

    def status(self) -> Sequence[str]:
        """Servers marked behind that answer now are brought current first (a status
        refresh is one of the times the tool reaches them); those still behind are named."""
        from mxone_maintenance import operations

        system = self._system()
        applier = getattr(self.maintenance, "applier", None)
        caught, behind = [], {}
        if hasattr(applier, "catch_up"):
            from mxone_maintenance import orchestrate

            caught = applier.catch_up(system)
            behind = applier.behind()
            lines = orchestrate.behind_lines(behind, system.generation)
        else:
            lines = []
        return [*(f"{o.server}: {o.message}" for o in caught),
                *operations.render(self.operations.status(system)), *lines]

    def fallback(self, cluster: str, lim: int, wait: float | None = None,
                 cancel: bool = False) -> Sequence[str]:
        from mxone_maintenance import operations

        how: dict[str, Any] = {}
        if wait is not None:
            how["wait"] = wait
        if cancel:
            how["cancel"] = True
        return operations.answer_lines([self.operations.fallback(self._system(), cluster, lim,
                                                                 **how)])

    def sync(self, cluster: str, progress: SyncProgress | None = None) -> Sequence[str]:
        from mxone_maintenance import operations

        system = self._system()
        answers = (self.operations.sync(system, cluster) if progress is None
                   else self.operations.sync(system, cluster, progress=progress))
        answers = list(answers)
        good = sum(1 for a in answers if a.ok)
        return [f"Sync of exchange data in cluster {cluster}: {good} of {len(answers)} "
                f"LIM(s) OK.", "", *operations.answer_lines(answers)]

    def lock(self, cluster: str, lim: int, lock: str) -> Sequence[str]:
        from mxone_maintenance import operations

        applier = getattr(self.maintenance, "applier", None)
        skip = set(applier.behind()) if hasattr(applier, "behind") else set()
        how = {"skip": skip} if skip else {}
        return operations.answer_lines(self.operations.tell_lock(self._system(), cluster, lim,
                                                                 lock, **how))
