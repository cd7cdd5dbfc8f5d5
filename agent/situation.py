"""The situation one decision is taken in (:class:`Situation`: config, peers, local state,
time, and the questions every rule asks of them), and whether this node is behind.

A node that is behind (:func:`behind`). Every heartbeat carries its sender's config
generation. A node that hears an alive peer of its cluster advertise a higher generation
than its own config is *behind*: its locks, priorities, fallback type and even its list of
LIMs may be stale (the maintenance tool changed them while this node was down, and brings
it to the current generation the next time it reaches it). So it acts on none of them:

* It starts nothing new: no takeover, no preload, no activation, no retake of a fenced LIM.
  One exception keeps a LIM from running nowhere without risking a second owner: a regular
  server runs its *own* LIM (starts it, or takes its fenced copy again) while the standby is
  dead - silent for a full detection period, so its lease has lapsed and no other server
  can answer for that alias, whatever the newer generation says - unless its config locks
  it to the standby.
* It gives nothing away on its config's say: no fallback (automatic or ordered), no
  priority replacement, no stop because of a lock. It keeps running what it runs.
* It keeps every safety rule that does not read the changed fields: a fenced copy whose
  peer runs the LIM stops, the standby runs one LIM, the lease fences its aliases, and in a
  split brain the side with the *older generation* stops (on equal generations the
  config's rule above), so both sides agree on who stops whatever their configs say.

The other side plays along: a standby never hands a LIM back to a regular server that is
behind (it would not start it): the fallback waits, and an order waits or is refused.

Why this keeps at most one owner per alias: a LIM's alias answers only on its own regular
server or on the standby, whatever the generation. A standby that is behind claims nothing,
so it cannot be a second owner; a regular server that is behind claims its LIM only while
the standby is dead, which is exactly when a current regular server would, and the split
brain rule settles the rest the same way on both sides. The price: a LIM that runs nowhere
while its regular server is behind and the standby is alive stays down (the reason says
so) until the tool brings either server to the current generation; the standby does not
take it over from an alive regular server, because that server's last heartbeat may
predate a start it is doing right now, and the two would answer together.

A peer holds the cluster secret, so it is trusted this far: one that advertises a higher
generation than exists can only make this node more conservative (it starts nothing, gives
nothing back, and yields in a split brain - the alias it could take by ARP anyway).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from mxone_agent.actions import Action
from mxone_agent.config import LimConfig, Lock, NodeConfig
from mxone_agent.contract import seconds
from mxone_agent.local_state import Failure, HoldDown, LocalState, hold_down
from mxone_agent.model import Role
from mxone_agent.peers import PeerView


@dataclass(frozen=True)
class Behind:
    """This node is behind: ``peers`` (alive, of its cluster) hold config generation
    ``current``, higher than this node's ``generation``."""

    generation: int
    current: int
    peers: tuple[str, ...]

    def as_status(self) -> dict[str, object]:
        return {"generation": self.generation, "current": self.current,
                "peers": list(self.peers)}


def behind(config: NodeConfig, peers: Mapping[str, PeerView]) -> Behind | None:
    """Whether this node is behind (see the module docstring): the highest generation an
    alive peer advertises, if it is higher than this node's, and the peers that hold it."""
    seen = {name: v.heartbeat.generation for name, v in peers.items()
            if name != config.node and v.alive and v.heartbeat is not None
            and v.heartbeat.cluster == config.cluster}
    top = max(seen.values(), default=0)
    if top <= config.generation:
        return None
    return Behind(config.generation, top, tuple(sorted(n for n, g in seen.items() if g == top)))


@dataclass(frozen=True)
class Situation:
    config: NodeConfig
    peers: Mapping[str, PeerView]
    local: LocalState
    now: float
    split_brain: set[int] = field(default_factory=set)  # filled while deciding

    @property
    def me(self) -> str:
        return self.config.node

    def peer(self, name: str) -> PeerView:
        return self.peers.get(name) or PeerView.unknown(name)

    @property
    def behind(self) -> Behind | None:
        return behind(self.config, self.peers)

    def lags(self, view: PeerView) -> bool:
        """True when ``view`` is an alive peer that advertises an older generation than
        this node's config (the peer is behind)."""
        return view.alive and view.heartbeat is not None and (
            view.heartbeat.generation < self.config.generation)

    def lag_clause(self, view: PeerView) -> str:
        assert view.heartbeat is not None
        return (f"{view.name} is at generation {view.heartbeat.generation}, behind "
                f"{self.me}'s {self.config.generation}")

    def behind_clause(self) -> str:
        """The sentence of a node that is behind."""
        b = self.behind
        assert b is not None
        who = ", ".join(b.peers)
        verb = "holds" if len(b.peers) == 1 else "hold"
        head = f"{who} {verb} generation {b.current} and {self.me} is at {b.generation} (behind)"
        until = f"until the maintenance tool brings it to generation {b.current}"
        if self.config.role is Role.STANDBY:
            return f"{head}: {self.me} starts nothing and hands nothing back {until}"
        return (f"{head}: {self.me} starts nothing but its own LIM while "
                f"{self.config.standby.name} is dead, {until}")

    def known(self, lim: int) -> bool:
        return any(x.lim == lim for x in self.config.lims)

    def may_hold(self, lim: int) -> bool:
        """True when this node may hold ``lim``'s alias under its config: any LIM of the
        cluster on the standby, its own on a regular server (also while it is retiring)."""
        if self.config.role is Role.STANDBY:
            return self.known(lim)
        own = self.config.lim_of(self.me)
        return own is not None and own.lim == lim

    def mine(self, lim: int) -> bool:
        """True when this node may run ``lim``: any LIM of the cluster on the standby, its
        own on a regular server - and not one the maintenance tool is removing."""
        return lim not in self.local.retiring and self.may_hold(lim)

    def home(self, lim: LimConfig) -> PeerView:
        return self.peer(lim.server)

    def hold_down(self, lim: LimConfig) -> HoldDown:
        return hold_down(lim.lim, self.local.appearances.get(lim.lim, ()), self.now,
                         self.config.detection)

    def held(self, lim: int) -> Failure | None:
        return self.local.held(lim, self.now)

    def waits(self, lim: int) -> str:
        """Why ``lim`` is left alone here now (it is held by a failure)."""
        f = self.held(lim)
        assert f is not None
        return (f"{f.reason}; {self.me} tries LIM {lim} again in "
                f"{max(0.0, f.retry_at - self.now):.0f} s")

    def silence(self, view: PeerView) -> str:
        """Why a dead peer is dead, e.g. "lim2 missed 3 heartbeats (3.0 s)"."""
        silent = view.silent_for(self.now)
        if silent is None:
            return f"{view.name} has not been heard since this agent started"
        missed = math.floor(round(silent / self.config.timers.interval, 6))
        return f"{view.name} missed {missed} heartbeats ({seconds(silent, self.config.detection)} s)"


Step = tuple[list[Action], list[str]]
"""A rule's part of a decision: its actions and its clauses of the sentence."""

LAPSED = "its lease lapsed while this agent was not running"


def split_brain_stopper(c: Situation, lim: LimConfig, other: PeerView) -> tuple[Role, str]:
    """Which side stops when this node and ``other`` (alive) both run ``lim``, and why (for
    the sentence): the side with the older generation, else the config's rule."""
    config = c.config
    theirs = other.heartbeat.generation if other.heartbeat is not None else config.generation
    if theirs != config.generation:
        mine = config.role
        older = mine if config.generation < theirs else (
            Role.REGULAR if mine is Role.STANDBY else Role.STANDBY)
        who = c.me if older is mine else other.name
        return older, (f"{who} holds the older config generation ({config.generation} here, "
                       f"{theirs} on {other.name})")
    if lim.lock is Lock.REGULAR:
        return Role.STANDBY, "the LIM is locked to its regular server"
    if lim.lock is Lock.STANDBY:
        return Role.REGULAR, "the LIM is locked to the standby"
    return config.split_brain_stop, f"split_brain_stop is {config.split_brain_stop}"
