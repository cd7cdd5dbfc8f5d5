"""What the menus ask of the running agents, behind one small interface.

Show status, manual fallback, sync of exchange data and telling the agents about a lock
happen on the nodes, not in the config file. The app receives an :class:`Operations`
object: :class:`AgentOperations` runs the registry's commands
(:mod:`mxone_maintenance.commands`) against the node agents over SSH; :class:`NoOperations`
(the menus without SSH, ``python -m mxone_menus``) refuses every call with
NotImplementedError, and the menus then show "not available yet" instead of crashing.
Calls run in a worker thread, never in the UI loop, so they may block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mxone_maintenance.commands import registry
from mxone_maintenance.commands.base import SILENT, Context, Values
from mxone_maintenance.operations import ClusterOperations, answer_lines
from mxone_maintenance.service import Maintenance

Report = Callable[[str, float], None]
"""``report(line, fraction)``: progress of an agent request, from its worker thread."""


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

    def sync(self, cluster: str, progress: Report | None = None) -> Sequence[str]:
        """Order a sync of exchange data between the cluster's regular servers and its
        standby; one line per LIM (OK or FAILED), ``progress`` told as each LIM finishes."""
        ...

    def lock(self, cluster: str, lim: int, lock: str) -> Sequence[str]:
        """Tell the cluster's agents a LIM's new lock (none, regular, standby) now."""
        ...


class NoOperations:
    """The menus without the node agents (no SSH backend): every call refuses."""

    def status(self) -> Sequence[str]:
        raise NotImplementedError("cluster status comes from the node agents, which the "
                                  "maintenance tool cannot reach yet")

    def fallback(self, cluster: str, lim: int, wait: float | None = None,
                 cancel: bool = False) -> Sequence[str]:
        raise NotImplementedError(f"manual fallback of LIM {lim} in cluster {cluster} is ordered "
                                  "through the node agents, which the maintenance tool cannot reach yet")

    def sync(self, cluster: str, progress: Report | None = None) -> Sequence[str]:
        raise NotImplementedError(f"sync of exchange data in cluster {cluster} is ordered through "
                                  "the node agents, which the maintenance tool cannot reach yet")

    def lock(self, cluster: str, lim: int, lock: str) -> Sequence[str]:
        raise NotImplementedError(f"the agents of cluster {cluster} learn the lock of LIM {lim} "
                                  "at their next config reload (live notification is not built yet)")


class AgentOperations:
    """The real backend: the registry's agent commands, run against the node agents.

    Lines only: the typed results and every rule stay in the commands.
    """

    def __init__(self, maintenance: Maintenance, operations: ClusterOperations) -> None:
        self.context = Context(maintenance, operations)

    def _run(self, name: str, values: Values, report: Report = SILENT) -> Sequence[str]:
        command = registry.command(name)
        assert command.run is not None
        return list(command.run(self.context, values, report).shown())

    def status(self) -> Sequence[str]:
        """Servers marked behind that answer now are brought current first (a status
        refresh is one of the times the tool reaches them); those still behind are named."""
        return self._run("cluster.status", {})

    def fallback(self, cluster: str, lim: int, wait: float | None = None,
                 cancel: bool = False) -> Sequence[str]:
        return self._run("cluster.fallback", {"lim": lim, "wait": wait, "cancel": cancel})

    def sync(self, cluster: str, progress: Report | None = None) -> Sequence[str]:
        return self._run("cluster.sync", {"name": cluster}, progress or SILENT)

    def lock(self, cluster: str, lim: int, lock: str) -> Sequence[str]:
        command = registry.command("cluster.lock")
        assert command.tell is not None
        agents = self.context.need_agents()
        return answer_lines(command.tell(agents, self.context.system(), {"lim": lim, "to": lock},
                                         frozenset(self.context.behind())))
