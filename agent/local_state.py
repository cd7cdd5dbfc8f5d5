"""What a node knows of itself when it decides (:class:`LocalState`), and the fallback
hold-down of a regular server that keeps coming back (:func:`hold_down`).

Flapping regular (automatic fallback). Every reappearance of a regular server (see
``peers.reappeared``) is recorded. The first one in FLAP_WINDOW falls back at once, as the
vendor describes; each further one doubles a hold-down (HOLD_DOWN_BASE, at least one
detection period, doubling up to HOLD_DOWN_CAP) counted from the latest reappearance.
``Decision.hold_downs`` shows it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from mxone_agent.actions import (
    Action,
    ActivateLim,
    AlarmKey,
    ClearAlarm,
    DeactivateLim,
    RaiseAlarm,
    RetireLim,
    StartLim,
    StopLim,
)
from mxone_agent.model import LimRun, Mode, Readiness

FLAP_WINDOW = 900.0
"""Seconds a regular server's reappearance is remembered for the fallback hold-down."""
HOLD_DOWN_BASE = 30.0
"""Hold-down after the second reappearance within FLAP_WINDOW (at least one detection period)."""
HOLD_DOWN_CAP = 480.0
"""The hold-down doubles with each further reappearance, up to this many seconds."""


K = TypeVar("K")
V = TypeVar("V")


def frozen_map(m: Mapping[K, V]) -> Mapping[K, V]:
    """A read-only copy of ``m`` (the fields of the frozen states below)."""
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
        object.__setattr__(self, "started_at", frozen_map(self.started_at))
        object.__setattr__(self, "fallback_requests", frozenset(self.fallback_requests))
        object.__setattr__(self, "appearances",
                           frozen_map({k: tuple(v) for k, v in self.appearances.items()}))
        object.__setattr__(self, "alarms", frozenset(self.alarms))
        object.__setattr__(self, "failures", frozen_map(self.failures))
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

    def alias_lims(self) -> tuple[int, ...]:
        """The LIMs whose alias is up here: answering, or fenced (its lease lapsed while
        the loop stalled; a decision takes it again or lets it go)."""
        return tuple(r.lim for r in self.runs if r.mode is Mode.ACTIVE)

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
