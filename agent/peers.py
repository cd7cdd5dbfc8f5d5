"""What this node knows of each peer, and whether the peer is alive, dead or unknown.

Pure: times are monotonic seconds handed in by the caller. The daemon's loop is expected to

1. call :func:`resumed_at` with the time of its previous tick, at the top of every tick;
2. call :meth:`PeerView.heard` for every heartbeat it accepted (stamped with receive time);
3. call :meth:`PeerView.judged` on every view before handing them to ``decide``.

A node that was not running (SIGSTOP, a starved loop, a paused VM) has no evidence for the
time it was away, so it must not count that time as silence of its peers. It remembers when
it resumed; silence is measured from the later of "last heard" and "resumed":

* **alive**   heard since the local loop last resumed, and within one detection period;
* **dead**    ``now - max(last_heard, resumed) > detection``;
* **unknown** neither: not heard yet since (re)starting or resuming, but not silent for a full
  detection period of local running time either. ``decide`` takes no action on an unknown
  peer's account: it neither takes over its LIM nor gives one back to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from mxone_agent.config import Timers
from mxone_agent.heartbeat import Heartbeat
from mxone_agent.model import LimRun, Readiness

STALL_FACTOR = 2.0
"""A tick that comes more than this many heartbeat intervals after the previous one means
the local loop was not running in between; the node then counts as just resumed."""


class Liveness(StrEnum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


def resumed_at(previous_tick: float | None, resumed: float, now: float, timers: Timers) -> float:
    """When the local loop last resumed, updated for a tick at ``now``.

    ``previous_tick`` is when the loop last ran (None on the first tick: then ``resumed``,
    the agent's start time, counts as the previous tick, so an agent stopped before its
    first tick also notices). A gap longer than STALL_FACTOR intervals makes ``now`` the new
    resume time; otherwise ``resumed`` is returned unchanged.
    """
    last = resumed if previous_tick is None else previous_tick
    return now if now - last > timers.interval * STALL_FACTOR else resumed


def judge(last_heard: float | None, now: float, timers: Timers, resumed: float) -> Liveness:
    """Liveness of a peer last heard at ``last_heard`` (None: never), judged at ``now``.

    A peer is dead only after one full detection period of local running time without a
    heartbeat from it: ``now - max(last_heard, resumed) > timers.detection``.
    """
    since = resumed if last_heard is None else max(last_heard, resumed)
    if now - since > timers.detection:
        return Liveness.DEAD
    if last_heard is not None and last_heard >= resumed:
        return Liveness.ALIVE
    return Liveness.UNKNOWN


@dataclass(frozen=True)
class PeerView:
    """One peer as this node sees it: when it was last heard, what it said, and liveness.

    ``liveness`` is the verdict of the last :meth:`judged` (or ALIVE right after
    :meth:`heard`). ``heartbeat`` is the last accepted heartbeat, kept even when the peer
    is dead (for status); decisions read it only while the peer is alive. ``lost``: the
    peer was judged dead and has not been heard since - also once a stall of the local
    loop has made it unknown again, so that its return still counts as a reappearance.
    """

    name: str
    liveness: Liveness = Liveness.UNKNOWN
    last_heard: float | None = None
    heartbeat: Heartbeat | None = None
    lost: bool = False

    @classmethod
    def unknown(cls, name: str) -> PeerView:
        """A peer not heard since this agent started."""
        return cls(name=name)

    def heard(self, hb: Heartbeat, now: float) -> PeerView:
        """This view after accepting heartbeat ``hb`` at ``now``."""
        return replace(self, liveness=Liveness.ALIVE, last_heard=now, heartbeat=hb, lost=False)

    def judged(self, now: float, timers: Timers, resumed: float) -> PeerView:
        """This view with its liveness judged at ``now`` (see :func:`judge`)."""
        verdict = judge(self.last_heard, now, timers, resumed)
        lost = self.lost or verdict is Liveness.DEAD
        if verdict is self.liveness and lost == self.lost:
            return self
        return replace(self, liveness=verdict, lost=lost)

    @property
    def alive(self) -> bool:
        return self.liveness is Liveness.ALIVE

    @property
    def dead(self) -> bool:
        return self.liveness is Liveness.DEAD

    @property
    def ready(self) -> bool:
        """Alive and saying it is ready to run a LIM."""
        return self.alive and self.heartbeat is not None and (
            self.heartbeat.readiness is Readiness.READY)

    def runs(self, lim: int) -> LimRun | None:
        """How an alive peer runs ``lim`` (None when it does not, or is not alive)."""
        if not self.alive or self.heartbeat is None:
            return None
        return self.heartbeat.runs(lim)

    def runs_active(self, lim: int) -> bool:
        """True when the peer is alive and holds ``lim``'s alias live."""
        run = self.runs(lim)
        return run is not None and run.active

    def silent_for(self, now: float) -> float | None:
        """Seconds since last heard; None if never heard."""
        return None if self.last_heard is None else now - self.last_heard


def reappeared(before: PeerView | None, after: PeerView) -> bool:
    """True when ``after`` shows a peer coming back: alive again after being judged dead
    (even if a stall of the local loop has made it unknown since: ``lost``), or alive with
    a new incarnation (its agent restarted, perhaps faster than detection).

    The daemon records such moments per LIM (``decide.record_appearance``); they drive the
    hold-down of automatic fallback towards a flapping regular server. A peer heard for the
    first time since this agent started is not a reappearance.
    """
    if before is None or not after.alive:
        return False
    if before.dead or before.lost:
        return True
    old, new = before.heartbeat, after.heartbeat
    return old is not None and new is not None and old.incarnation != new.incarnation
