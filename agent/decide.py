"""The agent's brain: ``decide(config, peers, local, now) -> Decision``.

The same pure function runs on every node of a cluster, regular or standby; each node
decides only its own actions, from its own view of its peers. A Decision is a tuple of
actions plus ONE sentence that explains them (also when there is nothing to do).

The rules, as a node applies them
---------------------------------
Takeover (standby). The standby takes over the LIM of a *dead* regular server (and a LIM
locked to the standby that runs nowhere, see Locks). With several dead, the LIM with the
highest priority (lowest value) wins; on a tie the lower LIM number.
A LIM already running on the standby keeps it against an equal or lower priority; a strictly
higher one replaces it (StopLim of the running one, then StartLim of the other, in that
order). The standby never runs two LIMs.

Fallback handshake (through heartbeats, no extra messages). A regular server starts its LIM
only when it hears that the standby does *not* run it (or the standby has been silent for a
full detection period). So a fallback is: the standby stops the LIM (regular cluster) or
deactivates it (preloaded), and says so in its next heartbeat; the regular, hearing that,
starts (activates) it. The standby releases a LIM only when its regular server is alive,
says it is ready, and - automatic fallback - the hold-down is over, or - manual fallback -
an operator's request for that LIM is pending in ``LocalState.fallback_requests``.

Flapping regular (automatic fallback). Every reappearance of a regular server (see
``peers.reappeared``) is recorded. The first one in FLAP_WINDOW falls back at once, as the
vendor describes; each further one doubles a hold-down (HOLD_DOWN_BASE, at least one
detection period, doubling up to HOLD_DOWN_CAP) counted from the latest reappearance.
``Decision.hold_downs`` shows it.

Split brain. When a regular server and the standby hear each other and both run a LIM
actively, one side stops (deactivates, in a preloaded cluster): the side named by the
config's ``split_brain_stop`` (default: the regular), unless the LIM is locked, in which
case the side it is *not* locked to; but when the two advertise different config
generations, the side with the older one stops (see "A node that is behind"). Fallback then
follows the fallback type.

Boot. A regular server starts its LIM only once it knows the standby's state: the standby
is alive (heard, so its heartbeat says whether it runs the LIM) or dead (silent for a full
detection period of local running time). An unknown standby means wait. Passive preloading
claims no address, so it does not wait.

Locks. A lock stops the cluster from *moving* a LIM; no rule ever stops or deactivates a LIM
on the server it is locked to, nor starts or activates it on the other one.

* Locked to the regular: no failover. The standby never takes it over, even when the regular
  server is dead (an operator's planned reboot). If the LIM already runs on the standby when
  it is locked, it stays there until the fallback its type allows (locking does not force
  a fallback); after that it stays on the regular server.
* Locked to the standby: no fallback. The standby keeps it whatever the fallback type or a
  manual request says. If the LIM runs on its regular server when it is locked, it stays
  there (locking does not force a failover: that would drop calls) until that server fails
  or the LIM stops there. The regular server never starts it (nor activates it) while it is
  locked. A LIM locked to the standby that runs nowhere is what the operator asked for on
  the standby, so the standby takes it over as soon as it hears that its regular server
  does not run it - the same as for a dead regular, by priority. If the standby is busy
  with a LIM of equal or higher priority, the locked LIM stays down until the standby is
  free or it is unlocked: the operator said "not on the regular server", and the agent does
  not second-guess that.
* Unlocking changes nothing by itself; the next decisions follow the fallback type:
  automatic falls back if the regular server is alive and ready, manual waits for a request.

Alarms. The standby raises "LIM is running on standby server" for each LIM it runs
actively and clears it when it stops. "Standby server is out of order" is raised by exactly
one regular server - the one with the lowest LIM number among the regular servers it sees
alive (itself included) - while the standby is dead, and cleared when the standby is heard
again or a lower-numbered regular server is alive to hold it. Nothing changes on account
of a peer whose liveness is unknown. ``LocalState.alarms`` holds the alarms this node has
raised, so a decision raises or clears each one once.

LIMs that are not this node's to run. A LIM whose service runs here although the config
does not give it to this node (the config was reloaded without it: the LIM left the
cluster, or the cluster is being deleted), or that the maintenance tool is removing from
the cluster (``LocalState.retiring``), is stopped for good: RetireLim, before anything else
in the decision, and a retiring LIM is never taken over. A node never crashes on, nor
keeps, a LIM its config does not know.

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

Manual fallback orders (:func:`judge_fallback_order`). An operator's order is refused when
it cannot be carried out (not the standby, the LIM does not run here, it is locked to the
standby, it is leaving the cluster), and says why. Otherwise it is carried out only once
the regular server is *ready for it* (:func:`fallback_blocker`): alive, its agent ready,
past its hold-down, running its current agent for at least one detection period without a
restart, no failure holding the LIM back here and - preloaded - its copy of the LIM loaded.
In a manual cluster an order for a regular server that is alive but not ready yet waits
(pending, with an expiry the daemon keeps, and can be cancelled); one for a server that is
not heard is refused unless the operator asked it to wait. In an automatic cluster an order
is carried out when the automatic fallback may happen now, and refused with the reason
otherwise (the hold-down's remaining time, say): the automatic fallback follows by itself.
The daemon drops an order once the LIM no longer runs actively on the standby, when it
expires, or when it is cancelled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from mxone_agent.actions import (
    ALARM_TITLE,
    Action,
    ActivateLim,
    AlarmCode,
    AlarmKey,
    ClearAlarm,
    DeactivateLim,
    RaiseAlarm,
    RetireLim,
    StartLim,
    StopLim,
)
from mxone_agent.config import FallbackType, LimConfig, Lock, NodeConfig
from mxone_agent.model import LimRun, Mode, Readiness, Role, TransitionKind
from mxone_agent.peers import PeerView

FLAP_WINDOW = 900.0
"""Seconds a regular server's reappearance is remembered for the fallback hold-down."""
HOLD_DOWN_BASE = 30.0
"""Hold-down after the second reappearance within FLAP_WINDOW (at least one detection period)."""
HOLD_DOWN_CAP = 480.0
"""The hold-down doubles with each further reappearance, up to this many seconds."""
ORDER_WAIT_DEFAULT = 600.0
"""Seconds a manual fallback order waits for its regular server to be ready, unless the
operator gives another wait."""
ORDER_WAIT_MAX = 86400.0
"""The longest wait an operator may give a fallback order."""


# ---- inputs -------------------------------------------------------------------------------

def _frozen_map(m: Mapping) -> Mapping:
    return MappingProxyType(dict(m))


@dataclass(frozen=True)
class Failure:
    """An action on a LIM that failed here: why (a sentence for the log and status), and
    the monotonic time before which no action on that LIM is tried again."""

    reason: str
    retry_at: float


@dataclass(frozen=True)
class LocalState:
    """What this node knows of itself at the moment of a decision.

    * ``runs``: the LIMs whose service runs here and how (active / preloaded, loading).
    * ``readiness``: READY once this node can run a LIM; a LOADING node starts nothing.
    * ``started_at``: monotonic time each running LIM was started here.
    * ``fallback_requests``: LIMs an operator ordered back to their regular server (manual
      fallback), not yet carried out.
    * ``appearances``: per LIM, the times its regular server reappeared (recent first or
      not - order does not matter); see :func:`record_appearance`.
    * ``alarms``: the alarms this node has raised and not cleared, as ``(code, lim)``.
    * ``failures``: per LIM, the last action on it here that failed and when it may be
      tried again (:class:`Failure`); the daemon records them from the executor's outcomes
      and drops them once an action on that LIM succeeds.
    * ``retiring``: LIMs the maintenance tool is removing from the cluster: stopped here if
      they run, never taken over (until the new config arrives or the order is cancelled).
    * ``died``: LIMs whose service was found no longer running here (the daemon's status
      poll; they are no longer in ``runs``) and whose leftovers - lease, alias, block,
      companions - are not cleared yet. A decision clears them first (see ``decide``).
    """

    runs: tuple[LimRun, ...] = ()
    readiness: Readiness = Readiness.LOADING
    started_at: Mapping[int, float] = field(default_factory=dict)
    fallback_requests: frozenset[int] = frozenset()
    appearances: Mapping[int, tuple[float, ...]] = field(default_factory=dict)
    alarms: frozenset[AlarmKey] = frozenset()
    failures: Mapping[int, Failure] = field(default_factory=dict)
    retiring: frozenset[int] = frozenset()
    died: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(sorted(self.runs, key=lambda r: r.lim)))
        object.__setattr__(self, "readiness", Readiness(self.readiness))
        object.__setattr__(self, "started_at", _frozen_map(self.started_at))
        object.__setattr__(self, "fallback_requests", frozenset(self.fallback_requests))
        object.__setattr__(self, "appearances",
                           _frozen_map({k: tuple(v) for k, v in self.appearances.items()}))
        object.__setattr__(self, "alarms", frozenset(self.alarms))
        object.__setattr__(self, "failures", _frozen_map(self.failures))
        object.__setattr__(self, "retiring", frozenset(self.retiring))
        object.__setattr__(self, "died", frozenset(self.died))

    @classmethod
    def empty(cls) -> LocalState:
        """A node whose agent has just started: nothing runs, still loading."""
        return cls()

    @property
    def ready(self) -> bool:
        return self.readiness is Readiness.READY

    def run(self, lim: int) -> LimRun | None:
        return next((r for r in self.runs if r.lim == lim), None)

    def active_lims(self) -> tuple[int, ...]:
        """The LIMs whose alias answers here."""
        return tuple(r.lim for r in self.runs if r.active)

    def held(self, lim: int, now: float) -> Failure | None:
        """The failure that holds LIM ``lim`` back at ``now`` (None: it may be acted on)."""
        f = self.failures.get(lim)
        return f if f is not None and now < f.retry_at else None

    def applied(self, actions: Iterable[Action], now: float) -> LocalState:
        """The state after ``actions`` all succeeded at ``now``.

        A started LIM is loading until the daemon learns otherwise; the executor (or a
        test's simulated node) uses this for its optimistic view. Activating a fenced LIM
        grants its lease again: it is no longer fenced. Stopping a LIM whose service died
        clears it from ``died``.
        """
        runs = {r.lim: r for r in self.runs}
        started = dict(self.started_at)
        alarms = set(self.alarms)
        died = set(self.died)
        for a in actions:
            if isinstance(a, StopLim | RetireLim):
                died.discard(a.lim)
            if isinstance(a, StartLim):
                runs[a.lim] = LimRun(a.lim, a.mode, loading=True)
                started[a.lim] = now
            elif isinstance(a, StopLim | RetireLim):
                runs.pop(a.lim, None)
                started.pop(a.lim, None)
            elif isinstance(a, ActivateLim | DeactivateLim):
                old = runs.get(a.lim, LimRun(a.lim, loading=True))
                mode = Mode.ACTIVE if isinstance(a, ActivateLim) else Mode.PRELOADED
                runs[a.lim] = LimRun(a.lim, mode, old.loading)
                started.setdefault(a.lim, now)
            elif isinstance(a, RaiseAlarm):
                alarms.add((a.code, a.lim))
            elif isinstance(a, ClearAlarm):
                alarms.discard((a.code, a.lim))
        return LocalState(runs=tuple(runs.values()), readiness=self.readiness,
                          started_at=started, fallback_requests=self.fallback_requests,
                          appearances=self.appearances, alarms=frozenset(alarms),
                          failures=self.failures, retiring=self.retiring,
                          died=frozenset(died))


def record_appearance(appearances: Mapping[int, Sequence[float]], lim: int,
                      now: float) -> dict[int, tuple[float, ...]]:
    """``appearances`` with a reappearance of ``lim``'s regular server at ``now`` added,
    and every record older than FLAP_WINDOW dropped."""
    out = {k: tuple(t for t in v if now - t <= FLAP_WINDOW) for k, v in appearances.items()}
    out[lim] = (*out.get(lim, ()), now)
    return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class HoldDown:
    """The automatic-fallback hold-down of one LIM: how long, and how much of it is left."""

    lim: int
    appearances: int  # reappearances of the regular server within FLAP_WINDOW
    seconds: float  # the current hold-down, counted from the latest reappearance
    remaining: float  # seconds until automatic fallback may happen (0: it may)


def hold_down(lim: int, appearances: Sequence[float], now: float, detection: float) -> HoldDown:
    """The hold-down for a regular server that reappeared at the given times.

    None or one reappearance within FLAP_WINDOW: no hold-down. The n-th (n >= 2):
    ``max(HOLD_DOWN_BASE, detection) * 2 ** (n - 2)``, at most HOLD_DOWN_CAP.
    """
    recent = sorted(t for t in appearances if now - t <= FLAP_WINDOW)
    n = len(recent)
    seconds = 0.0 if n <= 1 else min(max(HOLD_DOWN_BASE, detection) * 2 ** (n - 2),
                                      HOLD_DOWN_CAP)
    remaining = max(0.0, recent[-1] + seconds - now) if n else 0.0
    return HoldDown(lim=lim, appearances=n, seconds=seconds, remaining=remaining)


# ---- output -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """What this node does now, and why.

    ``actions`` are applied in order by the executor. ``reason`` is one sentence, logged
    once per decision. ``hold_downs`` lists the fallback hold-downs in force on this node
    (for status). ``split_brain``: the LIMs this decision stops (or deactivates) because
    this node and a peer both ran them. ``kinds``: the transition kind of each LIM action
    (start, stop, activate, deactivate, retire) of ``actions``; see :meth:`kind`.
    """

    actions: tuple[Action, ...]
    reason: str
    hold_downs: tuple[HoldDown, ...] = ()
    split_brain: frozenset[int] = frozenset()
    kinds: Mapping[Action, TransitionKind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", _frozen_map(self.kinds))

    def kind(self, action: Action) -> TransitionKind | None:
        """The transition kind of one of this decision's LIM actions (None: an alarm)."""
        return self.kinds.get(action)


@dataclass(frozen=True)
class Behind:
    """This node is behind: ``peers`` (alive, of its cluster) hold config generation
    ``current``, higher than this node's ``generation``."""

    generation: int
    current: int
    peers: tuple[str, ...]

    def as_status(self) -> dict:
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


# ---- the decision -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ctx:
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
        return f"{view.name} missed {missed} heartbeats ({silent:.1f} s)"


_Step = tuple[list[Action], list[str]]


def decide(config: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
           now: float) -> Decision:
    """This node's actions at ``now``, and the one sentence that explains them.

    ``peers`` maps server names to views judged at ``now`` (a missing peer counts as
    unknown). Pure and deterministic: no I/O, no clock; the same inputs give the same
    Decision. Converges: once the actions are applied (``local.applied``), deciding again
    with unchanged peers gives at most the alarms that follow from what now runs here
    (an alarm about a LIM is raised only once the LIM runs), and then nothing.
    """
    c = _Ctx(config, peers, local, now)
    cleanup, clauses = _cleanup(c)
    more, said = _retire(c)
    actions = cleanup + more
    clauses += said
    if c.behind is not None:
        clauses.append(c.behind_clause())
    if config.role is Role.STANDBY:
        more, said = (_standby_preloaded(c) if config.preloaded else _standby_regular(c))
    else:
        more, said = _regular(c)
    actions += more
    clauses += said
    alarm_actions, alarm_clauses = _alarms(c, actions)
    clauses += alarm_clauses
    return Decision(actions=tuple(actions + alarm_actions),
                    reason="; ".join(clauses) + ".", hold_downs=_hold_downs(c),
                    split_brain=frozenset(c.split_brain), kinds=_kinds(c, actions, cleanup))


_LIM_ACTIONS = (StartLim, StopLim, RetireLim, ActivateLim, DeactivateLim)


def _kinds(c: _Ctx, actions: Sequence[Action],
           cleanup: Sequence[Action]) -> dict[Action, TransitionKind]:
    """The transition kind of each LIM action: ``cleanup`` clears what a dead service left;
    the others are named by what this node is and does."""
    cfg = c.config
    standby_alive = cfg.role is Role.REGULAR and c.peer(cfg.standby.name).alive
    fenced = {r.lim for r in c.local.runs if r.fenced}
    out: dict[Action, TransitionKind] = {}
    for a in actions:
        if not isinstance(a, _LIM_ACTIONS):
            continue
        split = a.lim in c.split_brain
        if a in cleanup:
            kind = TransitionKind.CLEANUP
        elif isinstance(a, RetireLim):
            kind = TransitionKind.RETIRE
        elif isinstance(a, ActivateLim) and a.lim in fenced:
            kind = TransitionKind.LEASE_RETAKEN
        elif cfg.role is Role.STANDBY:
            kind = (TransitionKind.FAILOVER if isinstance(a, StartLim | ActivateLim)
                    else TransitionKind.SPLIT_BRAIN if split else TransitionKind.FALLBACK)
        elif isinstance(a, StopLim | DeactivateLim):
            kind = TransitionKind.SPLIT_BRAIN if split else TransitionKind.STOP
        elif isinstance(a, StartLim) and a.mode is Mode.PRELOADED:
            kind = TransitionKind.PRELOAD
        else:
            kind = TransitionKind.FALLBACK if standby_alive else TransitionKind.START
        out[a] = kind
    return out


def _cleanup(c: _Ctx) -> _Step:
    """Clear what the service of a LIM that died here left behind (its lease, alias and
    block), before anything else: StopLim for a LIM this node may hold (it may start it
    again in the same decision), RetireLim for one it may not. A failure hold does not
    delay this: nothing answers for the LIM here any more."""
    actions: list[Action] = []
    clauses: list[str] = []
    for n in sorted(c.local.died):
        dead = f"the service of LIM {n} is no longer running on {c.me}"
        if c.may_hold(n):
            actions.append(StopLim(n))
            clauses.append(f"{dead}; {c.me} clears its lease and alias")
        else:
            actions.append(RetireLim(n))
            clauses.append(f"{dead}; {c.me} clears its lease and alias for good")
    return actions, clauses


def _retire(c: _Ctx) -> _Step:
    """Stop for good every LIM that runs here but is not this node's to run (see the module
    docstring): one RetireLim each, before any other action of the decision."""
    actions: list[Action] = []
    clauses: list[str] = []
    for r in c.local.runs:
        n = r.lim
        if c.mine(n):
            continue
        if n in c.local.retiring:
            why = f"LIM {n} is leaving cluster {c.config.cluster}"
        elif c.known(n):
            why = f"LIM {n} belongs to {c.config.lim(n).server}, not to {c.me}"
        else:
            why = (f"LIM {n} runs on {c.me} but the config of cluster {c.config.cluster} "
                   f"(generation {c.config.generation}) does not name it")
        if c.held(n):
            clauses.append(f"{why}; {c.waits(n)}")
            continue
        actions.append(RetireLim(n))
        clauses.append(f"{why}; {c.me} stops it for good and removes its alias")
    return actions, clauses


def _split_brain_stopper(c: _Ctx, lim: LimConfig, other: PeerView) -> tuple[Role, str]:
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


_LAPSED = "its lease lapsed while this agent was not running"


def _release(c: _Ctx, lim: LimConfig, fenced: bool = False) -> tuple[bool, str]:
    """Whether the standby gives ``lim`` (running here, actively or fenced) back now, and
    why. A fenced LIM that is kept is made to answer again by the caller."""
    me, n, home = c.me, lim.lim, c.home(lim)
    verb = "deactivates" if c.config.preloaded else "stops"
    start = "activate" if c.config.preloaded else "start"
    if fenced and home.runs_active(n):
        return True, f"{home.name} runs LIM {n}; {me} {verb} its copy, whose {_LAPSED[4:]}"
    if home.runs_active(n):
        side, why = _split_brain_stopper(c, lim, home)
        both = f"{home.name} and {me} both run LIM {n} (split brain)"
        if side is Role.STANDBY:
            c.split_brain.add(n)
            return True, f"{both}; {me} {verb} it because {why}"
        return False, f"{both}; {home.name} is the side that stops, because {why}"
    if c.behind is not None:
        return False, f"{me} keeps LIM {n}"
    requested = n in c.local.fallback_requests
    if requested and c.config.fallback is FallbackType.MANUAL and lim.lock is not Lock.STANDBY:
        why = _blocker(c, lim)
        if why is not None:
            return False, (f"the ordered fallback of LIM {n} waits for {home.name} to be "
                           f"ready: {why}")
        return True, (f"manual fallback of LIM {n} ordered and {home.name} is ready: {me} "
                      f"{verb} it so that {home.name} can {start} it")
    if not home.alive:
        state = "down" if home.dead else "not heard yet"
        return False, f"{me} runs LIM {n} for {home.name}, which is {state}"
    if not home.ready:
        return False, f"{home.name} is back but still loading; {me} keeps LIM {n}"
    if c.lags(home):
        return False, (f"{c.lag_clause(home)}; {me} keeps LIM {n} until the maintenance tool "
                       f"brings {home.name} to generation {c.config.generation}")
    if lim.lock is Lock.STANDBY:
        if requested:
            return False, f"manual fallback of LIM {n} refused: it is locked to the standby"
        return False, (f"LIM {n} is locked to the standby; {me} keeps it although "
                       f"{home.name} is back")
    loading = ""
    if c.config.preloaded:
        run = home.runs(n)
        if run is None:
            loading = f" (it has not loaded LIM {n} yet: recovery takes longer)"
        elif run.loading:
            loading = f" (its LIM {n} is still loading: recovery takes longer)"
    if c.config.fallback is FallbackType.AUTOMATIC:
        hd = c.hold_down(lim)
        if hd.remaining > 0:
            return False, (f"{home.name} came back {hd.appearances} times within "
                           f"{FLAP_WINDOW / 60:.0f} min; automatic fallback of LIM {n} is held "
                           f"down for {hd.seconds:.0f} s ({hd.remaining:.0f} s left)")
        return True, (f"{home.name} is back and ready; automatic fallback: {me} {verb} LIM {n} "
                      f"so that {home.name} can {start} it{loading}")
    return False, f"{home.name} is back; LIM {n} stays on {me} until a manual fallback is ordered"


def _blocker(c: _Ctx, lim: LimConfig) -> str | None:
    """Why ``lim``'s regular server is not ready to be handed the LIM by an operator's
    order now (None: it is). See :func:`fallback_blocker`."""
    n, home = lim.lim, c.home(lim)
    if not home.alive:
        return c.silence(home) if home.dead else f"{home.name} is not heard yet"
    if not home.ready:
        return f"{home.name} is alive but its agent is still loading"
    if c.behind is not None:
        return c.behind_clause()
    if c.lags(home):
        return (f"{c.lag_clause(home)}, and a server that is behind starts nothing until the "
                "maintenance tool brings it to the current generation")
    if c.held(n):
        return c.waits(n)
    hd = c.hold_down(lim)
    if hd.remaining > 0:
        return (f"{home.name} came back {hd.appearances} times within "
                f"{FLAP_WINDOW / 60:.0f} min, so it is held down for {hd.seconds:.0f} s "
                f"({hd.remaining:.0f} s left)")
    latest = max(c.local.appearances.get(n, ()), default=None)
    settle = c.config.detection
    if latest is not None and c.now - latest < settle:
        return (f"{home.name} came back {c.now - latest:.1f} s ago and must run "
                f"{settle:.1f} s without a restart first")
    if c.config.preloaded:
        run = home.runs(n)
        if run is None:
            return f"{home.name} has not loaded LIM {n} yet"
        if run.loading:
            return f"{home.name} is still loading LIM {n}"
    return None


def fallback_blocker(config: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
                     lim: int, now: float) -> str | None:
    """Why the regular server of ``lim`` may not be handed it by an operator's order now,
    one clause; None when it may.

    Ready means: alive; its agent ready; no failure holding ``lim`` back on this node; past
    its hold-down (a flapping server gets none of its LIM, whatever the fallback type);
    running for at least one detection period since it last came back (a restart is a
    reappearance); and, in a preloaded cluster, its copy of the LIM loaded. Pure.
    """
    return _blocker(_Ctx(config, peers, local, now), config.lim(lim))


@dataclass(frozen=True)
class OrderVerdict:
    """The answer to an operator's fallback order.

    ``accepted`` false: refused, ``text`` says why and what to do. Accepted and not
    ``pending``: the fallback happens now. ``pending``: it waits for the regular server to
    be ready (``text`` says for what) for at most ``wait`` seconds.
    """

    accepted: bool
    text: str
    pending: bool = False
    wait: float | None = None


def judge_fallback_order(config: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
                         lim: int, now: float, wait: float | None = None) -> OrderVerdict:
    """Whether an operator's order to hand LIM ``lim`` back to its regular server is refused,
    carried out now or left pending, and the sentence that says so (see the module
    docstring). ``wait``: seconds the operator lets it wait (None: the default in a manual
    cluster for a server that is alive, a refusal for one that is not heard). Pure."""
    c = _Ctx(config, peers, local, now)
    me = config.node
    if config.role is not Role.STANDBY:
        return OrderVerdict(False, f"{me} is a regular server; order a fallback on the standby")
    if not c.known(lim):
        return OrderVerdict(False, f"LIM {lim} is not in cluster {config.cluster}")
    x = config.lim(lim)
    home = c.home(x)
    if lim in local.retiring:
        return OrderVerdict(False, f"LIM {lim} is leaving cluster {config.cluster}; it runs on "
                            f"{home.name} once it has left")
    if lim not in local.active_lims():
        return OrderVerdict(False, f"LIM {lim} does not run on {me}: there is nothing to hand "
                            f"back to {home.name}")
    if x.lock is Lock.STANDBY:
        return OrderVerdict(False, f"LIM {lim} is locked to the standby; unlock it before "
                            "ordering a fallback")
    if config.fallback is FallbackType.AUTOMATIC:
        hd = c.hold_down(x)
        if not home.alive or not home.ready:
            state = "not heard" if not home.alive else "alive but its agent is still loading"
            return OrderVerdict(False, f"fallback of LIM {lim} refused: {home.name} is {state}; "
                                f"the automatic fallback hands LIM {lim} back once {home.name} "
                                "is ready")
        if (why := _blocker(c, x)) is not None and (c.behind is not None or c.lags(home)):
            return OrderVerdict(False, f"fallback of LIM {lim} refused: {why}; the automatic "
                                f"fallback hands LIM {lim} back once both are at the current "
                                "generation")
        if hd.remaining > 0:
            return OrderVerdict(False, f"fallback of LIM {lim} refused: {home.name} came back "
                                f"{hd.appearances} times within {FLAP_WINDOW / 60:.0f} min and "
                                f"is held down for {hd.seconds:.0f} s; {hd.remaining:.0f} s are "
                                f"left, then the automatic fallback hands LIM {lim} back")
        return OrderVerdict(True, f"fallback of LIM {lim} ordered: {home.name} is ready and "
                            f"{me} hands LIM {lim} back to it now")
    why = _blocker(c, x)
    if why is None:
        return OrderVerdict(True, f"fallback of LIM {lim} ordered: {home.name} is ready and {me} "
                            f"hands LIM {lim} back to it now")
    if not home.alive and wait is None:
        return OrderVerdict(False, f"fallback of LIM {lim} refused: {why}; LIM {lim} stays on "
                            f"{me}. Order it again once {home.name} is back, or order it with "
                            f"a wait to have it carried out as soon as {home.name} is ready")
    seconds = ORDER_WAIT_DEFAULT if wait is None else wait
    hd = c.hold_down(x)
    if hd.remaining > seconds:
        return OrderVerdict(False, f"fallback of LIM {lim} refused: {why}, which is more than "
                            f"the order's wait of {seconds:.0f} s; order it again with a longer "
                            "wait or after the hold-down")
    return OrderVerdict(True, f"fallback of LIM {lim} waits for {home.name} to be ready: {why}; "
                        f"it is carried out once {home.name} is ready, or dropped after "
                        f"{seconds:.0f} s", pending=True, wait=seconds)


def _standby_may_claim(c: _Ctx, lim: LimConfig) -> bool:
    """Whether the standby may take ``lim`` over: its regular server is dead, or the LIM is
    locked to the standby and its (alive) regular server does not run it. Never a LIM
    locked to its regular server.

    "Does not run it" is believed only from a heartbeat of the lock's generation or later:
    a regular server that has the lock never starts the LIM, but one on an older config may
    have started it just after its last heartbeat was sent (a new lock deployed at that very
    moment) - then both would answer. So the standby waits for a heartbeat of its own
    generation."""
    if lim.lock is Lock.REGULAR or not c.mine(lim.lim) or c.behind is not None:
        return False
    home = c.home(lim)
    return home.dead or (lim.lock is Lock.STANDBY and home.alive and not c.lags(home)
                         and not home.runs_active(lim.lim))


def _why_claim(c: _Ctx, lim: LimConfig) -> str:
    home = c.home(lim)
    if home.dead:
        return c.silence(home)
    return f"LIM {lim.lim} is locked to the standby and {home.name} does not run it"


def _candidates(c: _Ctx, exclude: Iterable[int] = ()) -> list[LimConfig]:
    """LIMs the standby may take over now, best first: highest priority, then lowest
    number. A LIM held back by a recent failure here is not one of them."""
    skip = set(exclude)
    found = [x for x in c.config.lims
             if x.lim not in skip and _standby_may_claim(c, x) and c.held(x.lim) is None]
    return sorted(found, key=lambda x: (x.priority, x.lim))


def _take(c: _Ctx, lim: LimConfig) -> Action:
    """The action that makes ``lim`` answer here: start it, or - its service still runs
    here, fenced - grant its lease again."""
    run = c.local.run(lim.lim)
    return ActivateLim(lim.lim) if run is not None and run.fenced else StartLim(lim.lim)


def _standby_regular(c: _Ctx) -> _Step:
    """The standby of a regular (not preloaded) cluster."""
    me = c.me
    actions: list[Action] = []
    clauses: list[str] = []
    # What runs here with its alias: answering, or fenced (its lease lapsed). A fenced LIM
    # is kept (and answers again) exactly when an answering one would be.
    running = [c.config.lim(r.lim) for r in c.local.runs
               if r.mode is Mode.ACTIVE and c.mine(r.lim)]
    fenced = {r.lim for r in c.local.runs if r.fenced}
    verdicts = {x.lim: ((False, c.waits(x.lim)) if c.held(x.lim) else
                        _release(c, x, fenced=x.lim in fenced)) for x in running}
    # A fenced LIM answers again only once this node knows that its regular server does
    # not run it (heard since this agent resumed, or silent for a detection period).
    unsure = {x.lim for x in running if x.lim in fenced and not c.home(x).alive
              and not c.home(x).dead}
    for x in running:
        release, clause = verdicts[x.lim]
        if release:
            actions.append(StopLim(x.lim))
            clauses.append(clause)
    staying = [x for x in running if not verdicts[x.lim][0]]
    # Only one may stay. Normally there is never more than one; this repairs a state that
    # the executor or an operator left behind. A LIM locked here is the last one let go;
    # then priority; of equals, one that answers goes before one that is fenced.
    staying.sort(key=lambda x: (x.lock is not Lock.STANDBY, x.priority, x.lim in fenced,
                                c.local.started_at.get(x.lim, c.now), x.lim))
    if len(staying) > 1:
        kept, extra = staying[0], staying[1:]
        actions += [StopLim(x.lim) for x in extra]
        clauses.append(f"{me} runs {len(running)} LIMs but may run one; it keeps LIM "
                       f"{kept.lim} (priority {kept.priority}) and stops "
                       + ", ".join(f"LIM {x.lim}" for x in extra))

    if staying:
        kept = staying[0]
        # A LIM that failed here lately never replaces one that runs.
        better = [x for x in _candidates(c, exclude=[x.lim for x in staying])
                  if x.priority < kept.priority and x.lim not in c.local.failures]
        if not better:
            clause = verdicts[kept.lim][1]
            if kept.lim in unsure:
                clause += (f"; {_LAPSED}, and {me} waits to hear {kept.server} before it "
                           "answers for it again")
            elif kept.lim in fenced and c.behind is not None:
                clause += f"; {_LAPSED}, and {me} does not answer for it again while behind"
            elif kept.lim in fenced and c.held(kept.lim) is None:
                actions.append(ActivateLim(kept.lim))
                clause += f"; {_LAPSED}, and {me} takes it again"
            clauses.append(clause)
            return actions, clauses
        best = better[0]
        if kept.lock is Lock.STANDBY:
            clauses.append(f"{_why_claim(c, best)} but {me} keeps LIM {kept.lim}, which is "
                           f"locked to the standby, over LIM {best.lim} (priority "
                           f"{best.priority})")
            if kept.lim in fenced and kept.lim not in unsure:
                actions.append(ActivateLim(kept.lim))
        elif not c.local.ready:
            clauses.append(f"{_why_claim(c, best)}; {me} is loading and does not replace "
                           f"LIM {kept.lim} yet")
        else:
            actions += [StopLim(kept.lim), _take(c, best)]
            clauses.append(f"{_why_claim(c, best)}; {me} replaces LIM {kept.lim} (priority "
                           f"{kept.priority}) with LIM {best.lim} (priority {best.priority})")
        return actions, clauses

    waiting = [f"LIM {x.lim} (priority {x.priority}) waits: {c.waits(x.lim)}"
               for x in c.config.lims if _standby_may_claim(c, x) and c.held(x.lim)]
    candidates = _candidates(c)
    if not candidates:
        if not clauses and not waiting:
            clauses.append(_standby_idle(c))
        return actions, clauses + waiting
    best = candidates[0]
    if not c.local.ready:
        clauses.append(f"{_why_claim(c, best)}; {me} is still loading and takes over "
                       "nothing yet")
        return actions, clauses + waiting
    actions.append(_take(c, best))
    clause = f"{_why_claim(c, best)}; {me} takes over LIM {best.lim} (priority {best.priority})"
    if len(candidates) > 1:
        rest = candidates[1:]
        clause += "; " + ", ".join(f"LIM {x.lim} (priority {x.priority})" for x in rest) + (
            " stays down" if len(rest) == 1 else " stay down")
    clauses.append(clause)
    return actions, clauses + waiting


def _standby_idle(c: _Ctx) -> str:
    """The sentence of a standby that runs no LIM and takes none over."""
    me = c.me
    if c.behind is not None:
        return f"{me} runs no LIM and takes none over"
    regulars = [x.server for x in c.config.lims]
    locked = [x for x in c.config.lims if x.lock is Lock.REGULAR and c.home(x).dead]
    if locked:
        x = locked[0]
        return (f"{c.silence(c.home(x))} but LIM {x.lim} is locked to its regular server; {me} "
                "does not take it over")
    leaving = [x for x in c.config.lims if x.lim in c.local.retiring and not c.home(x).alive]
    if leaving:
        return (f"{me} runs no LIM; " + ", ".join(f"LIM {x.lim}" for x in leaving)
                + f" {'is' if len(leaving) == 1 else 'are'} leaving cluster {c.config.cluster}, "
                "so it takes none over")
    unknown = [r for r in regulars if not c.peer(r).alive and not c.peer(r).dead]
    if unknown:
        return (f"{me} runs no LIM; waiting to hear {', '.join(unknown)} (a peer counts as dead "
                f"only after {c.config.detection:.1f} s of silence)")
    return f"{me} runs no LIM; all {len(regulars)} regular servers are alive"


def _standby_preloaded(c: _Ctx) -> _Step:
    """The standby of a preloaded cluster (one regular server, one LIM)."""
    me = c.me
    lim = c.config.lims[0]
    n, home, run = lim.lim, c.home(lim), c.local.run(lim.lim)
    if not c.mine(n):  # leaving the cluster: _retire stops it
        return [], [] if run is not None else [
            (f"LIM {n} is leaving cluster {c.config.cluster}; {me} neither preloads nor takes "
             "it over")]
    if c.held(n):
        return [], [c.waits(n)]
    if run is not None and run.mode is Mode.ACTIVE:
        release, clause = _release(c, lim, fenced=run.fenced)
        if release:
            return [DeactivateLim(n)], [clause]
        if run.fenced and not home.alive and not home.dead:
            return [], [f"{clause}; {_LAPSED}, and {me} waits to hear {home.name} before it "
                        "answers for it again"]
        if run.fenced and c.behind is not None:
            return [], [f"{clause}; {_LAPSED}, and {me} does not answer for it again while behind"]
        if run.fenced:
            return [ActivateLim(n)], [f"{clause}; {_LAPSED}, and {me} takes it again"]
        return [], [clause]
    takeover = _standby_may_claim(c, lim)
    if takeover and not c.local.ready:
        return [], [f"{_why_claim(c, lim)}; {me} is still loading and takes over nothing yet"]
    if run is None:
        if not c.local.ready:
            return [], [f"{me} is still loading; it does not load LIM {n} yet"]
        if c.behind is not None:
            return [], [f"{me} does not preload LIM {n} while behind"]
        if takeover:
            return [StartLim(n, Mode.ACTIVE)], [(
                f"{_why_claim(c, lim)}; {me} takes over LIM {n}, which was not preloaded here "
                "and starts loading now (recovery takes longer)")]
        return [StartLim(n, Mode.PRELOADED)], [f"{me} preloads LIM {n} (passive) for {home.name}"]
    if takeover:
        still = ", which is still loading (recovery takes longer)" if run.loading else ""
        return [ActivateLim(n)], [f"{_why_claim(c, lim)}; {me} activates preloaded LIM {n}{still}"]
    if home.dead and c.behind is not None:
        return [], [f"{c.silence(home)}; {me} keeps LIM {n} passive while behind"]
    if home.dead:
        return [], [(f"{c.silence(home)} but LIM {n} is locked to its regular server; {me} "
                     "keeps it passive")]
    loading = " and still loading" if run.loading else ""
    if home.runs_active(n):
        return [], [f"{me} holds LIM {n} preloaded{loading} while {home.name} runs it"]
    state = "is not heard yet" if not home.alive else "does not run it actively yet"
    return [], [f"{me} holds LIM {n} preloaded{loading}; {home.name} {state}"]


def _regular(c: _Ctx) -> _Step:
    """A regular server: it only ever runs, stops or waits for its own LIM."""
    me, cfg = c.me, c.config
    lim = cfg.lim_of(me)
    assert lim is not None  # a valid config gives every regular server one LIM
    n, run, sb = lim.lim, c.local.run(lim.lim), c.peer(cfg.standby.name)
    if not c.mine(n):  # never on a regular server (the control socket refuses it)
        return [], [] if run is not None else [f"LIM {n} is leaving cluster {cfg.cluster}"]
    if c.held(n):
        return [], [c.waits(n)]
    standby_runs = sb.runs_active(n)
    # The standby holds the LIM while it has its alias, answering or fenced: a fenced one
    # it may take again, so the regular starts only once the standby has let go of it.
    standby_holds = (r := sb.runs(n)) is not None and r.mode is Mode.ACTIVE
    if run is not None and run.active:
        if standby_runs:
            side, why = _split_brain_stopper(c, lim, sb)
            both = f"{me} and {sb.name} both run LIM {n} (split brain)"
            if side is Role.REGULAR:
                verb, act = ("deactivates", DeactivateLim(n)) if cfg.preloaded else ("stops",
                                                                                     StopLim(n))
                then = ("it stays on the standby while locked" if lim.lock is Lock.STANDBY
                        else f"{cfg.fallback} fallback follows")
                c.split_brain.add(n)
                return [act], [f"{both}; {me} {verb} it because {why}; {then}"]
            return [], [f"{both}; {sb.name} is the side that stops, because {why}"]
        note = {"alive": "", "dead": f"; {c.silence(sb)}"}.get(str(sb.liveness),
                                                                f"; {sb.name} is not heard yet")
        return [], [f"{me} runs LIM {n}{note}"]

    fenced = run is not None and run.fenced
    lag = c.behind
    # Behind, it runs its LIM only while no other server can answer for it: the standby dead.
    may_run = lim.lock is not Lock.STANDBY and (
        sb.dead or (sb.alive and not standby_holds and lag is None))
    if not c.local.ready:
        return [], [f"{me} is still loading; it starts nothing yet"]
    if may_run:
        why = c.silence(sb) if sb.dead else f"{sb.name} does not run LIM {n}"
        if lag is not None:
            why += f", so no other server can answer for LIM {n}"
        if run is None:
            return [StartLim(n, Mode.ACTIVE)], [f"{why}; {me} starts LIM {n}"]
        if fenced:
            return [ActivateLim(n)], [f"{why}; LIM {n}'s {_LAPSED[4:]}, and {me} takes it again"]
        still = ", which is still loading (recovery takes longer)" if run.loading else ""
        return [ActivateLim(n)], [f"{why}; {me} activates LIM {n}{still}"]

    if fenced and not sb.alive and not sb.dead:
        return [], [f"LIM {n}'s {_LAPSED[4:]}; {me} waits to hear {sb.name} before it answers "
                    f"for it again (at most {cfg.detection:.1f} s)"]
    holds_fenced = standby_holds and not standby_runs
    if lag is not None:
        if fenced and standby_runs:
            verb, act = ("keeps it passive", DeactivateLim(n)) if cfg.preloaded else (
                "stops its service", StopLim(n))
            return [act], [f"{sb.name} runs LIM {n} and LIM {n}'s {_LAPSED[4:]}; {me} {verb}"]
        state = (f"{sb.name} runs LIM {n}" if standby_runs else
                 f"{sb.name} holds LIM {n} but its lease there lapsed" if holds_fenced else
                 f"{sb.name} is not heard yet" if not sb.alive else
                 f"LIM {n} is locked to the standby" if lim.lock is Lock.STANDBY else
                 f"{sb.name} is alive and does not run LIM {n}")
        kept = f"LIM {n}'s {_LAPSED[4:]} and {me} keeps it silent" if fenced else \
            f"{me} does not run LIM {n}"
        return [], [f"{state}; {kept} while behind"]
    if fenced and not holds_fenced:
        verb, act = ("keeps it passive", DeactivateLim(n)) if cfg.preloaded else (
            "stops its service", StopLim(n))
        whose = f"{sb.name} runs LIM {n}" if standby_runs else f"LIM {n} is locked to the standby"
        return [act], [f"{whose} and LIM {n}'s {_LAPSED[4:]}; {me} {verb}"]
    if lim.lock is Lock.STANDBY:
        wait = f"LIM {n} is locked to the standby; {me} does not run it actively"
    elif holds_fenced:
        wait = (f"{sb.name} holds LIM {n} but its lease there lapsed; {me} waits for {sb.name} "
                "to take it again or let it go")
    elif not sb.alive:
        wait = (f"{me} waits to hear {sb.name} before it runs LIM {n} actively (at most "
                f"{cfg.detection:.1f} s)")
    elif cfg.fallback is FallbackType.AUTOMATIC:
        wait = f"{sb.name} runs LIM {n}; {me} waits for the automatic fallback"
    else:
        wait = f"{sb.name} runs LIM {n}; {me} waits for a manual fallback to be ordered"
    if run is None and cfg.preloaded:
        return [StartLim(n, Mode.PRELOADED)], [f"{wait}; it preloads LIM {n} (passive) meanwhile"]
    return [], [wait]


def _alarms(c: _Ctx, actions: Sequence[Action]) -> _Step:
    """Raise and clear this node's alarms to match what runs here *now*.

    "LIM is running on standby server" is raised once the LIM runs on the standby (a
    takeover that fails raises nothing) and cleared once it no longer does: alarms follow
    the state the executor reports, never the state a decision hopes for. A fenced LIM
    (its alias silent for a while) keeps an alarm it has, and gets none it had not.
    """
    held = c.local.alarms
    out_of_order = (AlarmCode.STANDBY_OUT_OF_ORDER, None)
    desired: set[AlarmKey] = set()
    clauses: list[str] = []
    sb_name = c.config.standby.name
    if c.config.role is Role.STANDBY:
        # A LIM that is not this node's any more keeps the alarm it has until it has stopped.
        desired = {(AlarmCode.LIM_ON_STANDBY, r.lim) for r in c.local.runs if (
            (AlarmCode.LIM_ON_STANDBY, r.lim) in held and (r.fenced or not c.mine(r.lim)))
            or (c.mine(r.lim) and r.active)}
    else:
        sb = c.peer(sb_name)
        if sb.dead:
            mine = c.config.lim_of(c.me)
            live = [x.lim for x in c.config.lims if x.server != c.me and c.home(x).alive]
            if mine is not None and all(mine.lim < other for other in live):
                desired.add(out_of_order)
        elif not sb.alive and out_of_order in held:
            desired.add(out_of_order)  # unknown: no change

    # No alarm is raised for a LIM this very decision stops.
    stopping = {a.lim for a in actions if isinstance(a, StopLim | RetireLim | DeactivateLim)}
    raise_ = sorted((k for k in desired - held if k[1] not in stopping), key=str)
    clear = sorted(held - desired, key=str)
    actions_out: list[Action] = []
    for code, lim in raise_:
        if code is AlarmCode.STANDBY_OUT_OF_ORDER:
            text = f"{ALARM_TITLE[code]}: {sb_name} is not heard"
            clauses.append(f"{c.me} raises the alarm '{ALARM_TITLE[code]}'")
        else:
            text = f"{ALARM_TITLE[code]}: LIM {lim} runs on {c.me}"
            clauses.append(f"{c.me} raises the alarm '{ALARM_TITLE[code]}' for LIM {lim}")
        actions_out.append(RaiseAlarm(code, lim, text))
    for code, lim in clear:
        actions_out.append(ClearAlarm(code, lim))
        if code is AlarmCode.STANDBY_OUT_OF_ORDER:
            why = f"{sb_name} is heard again" if c.peer(sb_name).alive else \
                "a regular server with a lower LIM number holds it"
            clauses.append(f"{c.me} clears the alarm '{ALARM_TITLE[code]}' ({why})")
        else:
            clauses.append(f"{c.me} clears the alarm '{ALARM_TITLE[code]}' for LIM {lim}")
    return actions_out, clauses


def explain_down(config: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
                 now: float) -> dict[int, str]:
    """Why each LIM that runs nowhere (as far as this node can tell) runs nowhere: one
    sentence per LIM, for status. The standby explains every LIM of the cluster; a
    regular server its own. Pure, like :func:`decide`."""
    c = _Ctx(config, peers, local, now)
    me = c.me
    out: dict[int, str] = {}
    standby = config.role is Role.STANDBY
    for x in config.lims:
        n = x.lim
        here = local.run(n)
        if here is not None and here.active:
            continue
        if not standby and x.server != me:
            continue
        other = c.home(x) if standby else c.peer(config.standby.name)
        if other.runs_active(n):
            continue
        if n in local.retiring:
            out[n] = f"LIM {n} is leaving cluster {config.cluster}: {me} does not run it"
            continue
        if not other.alive and not other.dead:
            out[n] = f"{other.name} is not heard yet (it counts as dead only after " \
                     f"{config.detection:.1f} s of silence)"
        elif (f := local.held(n, now)) is not None:
            out[n] = f"{f.reason}; tried again in {max(0.0, f.retry_at - now):.0f} s"
        elif c.behind is not None:
            out[n] = c.behind_clause()
        elif here is not None and here.fenced:
            out[n] = f"{_LAPSED[4:].capitalize()} on {me}; {me} answers for it again once " \
                     "its decision says it owns it"
        elif standby and c.lags(other):
            out[n] = (f"{c.lag_clause(other)}: it starts nothing while {me} is alive, until the "
                      f"maintenance tool brings it to generation {config.generation}")
        elif not local.ready:
            out[n] = f"{me} is still loading"
        elif not standby:
            out[n] = (f"LIM {n} is locked to the standby, and {other.name} does not run it"
                      if x.lock is Lock.STANDBY else f"{me} is starting LIM {n}")
        elif other.alive:
            out[n] = f"{other.name} is back and about to run LIM {n}"
        elif x.lock is Lock.REGULAR:
            out[n] = f"{other.name} is down and LIM {n} is locked to its regular server"
        else:
            busy = [config.lim(k) for k in local.active_lims() if c.known(k)]
            if busy:
                b = busy[0]
                out[n] = (f"{other.name} is down and {me} runs LIM {b.lim} (priority "
                          f"{b.priority}), which LIM {n} (priority {x.priority}) does not "
                          "replace: the standby runs one LIM")
            else:
                out[n] = f"{other.name} is down; {me} is taking LIM {n} over"
    return out


def _hold_downs(c: _Ctx) -> tuple[HoldDown, ...]:
    if c.config.role is not Role.STANDBY or c.config.fallback is not FallbackType.AUTOMATIC:
        return ()
    out = []
    for n in c.local.active_lims():
        if c.known(n):
            hd = c.hold_down(c.config.lim(n))
            if hd.seconds > 0:
                out.append(hd)
    return tuple(out)
