"""Words shared by the wire format and the decision: LIM run states, transition kinds (and
the node config's :class:`~mxone_agent.contract.Role`, re-exported)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mxone_agent.contract import Role as Role  # re-exported: the contract's word


class Mode(StrEnum):
    """How a LIM runs on a server.

    ``ACTIVE``: the alias IP is live and the LIM serves traffic. ``PRELOADED``: the LIM is
    loaded with its alias up but blocked in the kernel (the passive side of a preloaded
    cluster); activating it only unblocks the alias.
    """

    ACTIVE = "active"
    PRELOADED = "preloaded"


class TransitionKind(StrEnum):
    """What kind of move an action on a LIM is, as status shows it (``transitions[].kind``).

    ``decide`` names the kind of each LIM action it takes (``Decision.kinds``); the daemon
    adds RELOAD, a preloaded service restarted for new exchange data. CLEANUP clears what
    a service that died here left behind; status lists no transition for it.
    """

    FAILOVER = "failover"  # the standby takes a LIM over
    FALLBACK = "fallback"  # a LIM goes back to its regular server (either side of the move)
    SPLIT_BRAIN = "split-brain"  # this side stops a LIM both sides ran
    STOP = "stop"  # a regular server stops (or deactivates) its own LIM
    START = "start"  # a regular server starts its LIM with no standby alive to take it from
    PRELOAD = "preload"  # a passive copy is loaded
    RETIRE = "retire"  # a LIM that is not this node's any more is stopped for good
    LEASE_RETAKEN = "lease retaken"  # a fenced LIM answers again
    CLEANUP = "cleanup"  # the leftovers of a service that died here are cleared
    RELOAD = "reload"  # a preloaded service restarts to load new data


class Readiness(StrEnum):
    """Whether a node can run a LIM: ``LOADING`` while its agent is still starting up."""

    LOADING = "loading"
    READY = "ready"


@dataclass(frozen=True)
class LimRun:
    """One LIM whose service runs on a server.

    ``loading`` is true from the start of the service until it reports up; a LIM that is
    loading in ``ACTIVE`` mode already holds its alias, so it counts as running actively.
    ``fenced``: an ``ACTIVE`` LIM whose self-fencing lease lapsed (the agent was not
    running for a while): its service runs and its alias is configured, but the kernel
    lets nothing through until a decision grants the lease again (:mod:`mxone_agent.lease`).
    """

    lim: int
    mode: Mode = Mode.ACTIVE
    loading: bool = False
    fenced: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lim, bool) or not isinstance(self.lim, int) or not (
                1 <= self.lim <= 0xFFFF):
            raise ValueError(f"LIM number {self.lim!r} is not a whole number from 1 to 65535")
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.fenced and self.mode is not Mode.ACTIVE:
            raise ValueError(f"LIM {self.lim}: only an active LIM can be fenced")

    @property
    def active(self) -> bool:
        """True when the LIM's alias answers here (active and not fenced; loading or not)."""
        return self.mode is Mode.ACTIVE and not self.fenced

    def describe(self) -> str:
        """``active``, ``preloaded``, ``fenced``, with ``(loading)`` while loading, for status."""
        word = "fenced" if self.fenced else str(self.mode)
        return f"{word} (loading)" if self.loading else word
