"""One decision, from ``decide`` to what came of it: the Decision handed to the action
worker (:meth:`DecisionCycle.take`), applied by the executor - a dead service's leftovers
cleared first, then, before a regular server starts its own LIM, newer data pulled from the
standby for at most PULL_BEFORE_START_S (the transition's reason says what came of it) -
and its outcomes read back (:meth:`DecisionCycle.applied`).

While a Decision is being applied no new one is taken (:attr:`DecisionCycle.busy`), and the
heartbeats list the LIMs of both the state before and the state after it
(:meth:`DecisionCycle.advertised`): a LIM is claimed until it is really gone, and from the
moment it starts.

The transitions made (:attr:`DecisionCycle.transitions`, a :class:`~mxone_agent.timeline.Timeline`)
are written to the state dir once the actions are done, and read back at start: status
shows them across a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from mxone_agent import journal
from mxone_agent.actions import Action, ClearAlarm, RaiseAlarm, StartLim
from mxone_agent.config import LimConfig, NodeConfig
from mxone_agent.decide import Decision, HoldDown, LocalState, decide
from mxone_agent.executor import Executor, Outcome
from mxone_agent.model import LimRun, Role, TransitionKind
from mxone_agent.outcomes import cleaned_up, read_outcomes
from mxone_agent.peers import PeerView
from mxone_agent.sync_worker import SyncWorker
from mxone_agent.timeline import Timeline

log = logging.getLogger("mxone_agent")

PULL_BEFORE_START_S = 30.0
"""At most this long a regular server waits for newer data from the standby before it
starts its own LIM (fallback, boot); then it starts with the data it has."""

Applied = tuple[Decision, float, NodeConfig, str, list[Outcome]]


class DecisionCycle:
    """The decisions of one node: the one being applied (``busy``: the Decision, the runs
    before and after it), the last sentence (``last_decision``), the hold-downs in force,
    the transitions made (kept in ``state_dir``, loaded here; None: in memory only) and the
    foreign hosts found on aliases (for status)."""

    def __init__(self, submit: Callable[[str, Callable[[], Any]], None],
                 sync: SyncWorker, state_dir: str | None = None) -> None:
        self._submit = submit
        self._sync = sync
        self.busy: tuple[Decision, tuple[LimRun, ...], tuple[LimRun, ...]] | None = None
        self.last_decision = ""
        self.hold_downs: tuple[HoldDown, ...] = ()
        self.transitions = Timeline(state_dir)
        self.transitions.load()
        self.foreign_mac: dict[int, str] = {}

    def advertised(self, local: LocalState) -> tuple[LimRun, ...]:
        """What this node says it runs: ``local``'s runs, and while a decision is applied
        those of the states before and after it (peers never see a gap)."""
        runs = {r.lim: r for r in local.runs}
        if self.busy is not None:
            _, before, after = self.busy
            for r in (*before, *after):
                cur = runs.get(r.lim)
                if cur is None or (r.active and not cur.active):
                    runs[r.lim] = r
        return tuple(runs.values())

    def in_hand(self) -> set[int]:
        """The LIMs of the decision being applied (before and after it)."""
        if self.busy is None:
            return set()
        return {r.lim for r in (*self.busy[1], *self.busy[2])}

    def take(self, cfg: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
             now: float, ex: Executor, macs: set[str],
             retired: Mapping[int, LimConfig]) -> None:
        """Decide at ``now`` and hand a non-empty Decision to the action worker (``macs``:
        the cluster servers' MACs; ``retired``: the LimConfig of LIMs the config no longer
        names)."""
        decision = decide(cfg, peers, local, now)
        actions = decision.actions
        self.hold_downs = decision.hold_downs
        self.last_decision = decision.reason
        if not actions:
            return
        after = local.applied(actions, now)
        self.busy = (decision, local.runs, after.runs)
        decided = time.time()
        pull = self._pull_before_start(cfg, peers, actions)
        retired = dict(retired)
        # What a dead service left behind is cleared before anything else, also before a
        # regular server waits for newer data to start its LIM again.
        cleanup = [a for a in actions if decision.kind(a) is TransitionKind.CLEANUP]
        rest = [a for a in actions if decision.kind(a) is not TransitionKind.CLEANUP]
        claimed = self._claim(cfg, ex, macs, cleanup, rest)

        def apply() -> Applied:
            cleared = ex.apply(cfg, cleanup, macs, retired) if cleanup else []
            pulled = pull()
            return decision, decided, cfg, pulled, cleared + ex.apply(cfg, rest, macs, retired,
                                                                      claimed)

        self._submit("apply", apply)
        # Logged once the actions are on their way: the worker does not wait for the log.
        log.info("%s", decision.reason,
                 extra=journal.about(a.lim for a in actions if a.lim is not None))

    @staticmethod
    def _claim(cfg: NodeConfig, ex: Executor, macs: set[str], cleanup: Sequence[Action],
               rest: Sequence[Action]) -> dict[Action, Outcome]:
        """A takeover's alias, up on this thread (:meth:`Executor.claim`): only the first
        LIM action of the decision, and only when nothing is cleared for its LIM first (the
        worker keeps the decision's order for everything else). An unexpected error here
        leaves the whole action to the worker."""
        first = next((a for a in rest if a.lim is not None
                      and not isinstance(a, RaiseAlarm | ClearAlarm)), None)
        if first is None or any(a.lim == first.lim for a in cleanup):
            return {}
        try:
            o = ex.claim(cfg, first, macs)
        except Exception:  # noqa: BLE001 - the worker does it then, and logs what fails
            log.exception("taking LIM %s's alias on the loop failed; the worker does it",
                          first.lim)
            return {}
        return {} if o is None else {first: o}

    def _pull_before_start(self, cfg: NodeConfig, peers: Mapping[str, PeerView],
                           actions: Sequence[Action]) -> Callable[[], str]:
        """What the action worker does before a regular server starts its own LIM: pull
        newer data from the standby (bounded), unless the standby is known dead. Returns
        a callable giving the sentence for the transition's reason."""
        starts = [a.lim for a in actions if isinstance(a, StartLim)]
        if cfg.role is not Role.REGULAR or not starts:
            return lambda: ""
        if self._sync.disabled_reason(cfg) is not None:
            return lambda: ""
        sb = cfg.standby.name
        if peers.get(sb, PeerView.unknown(sb)).dead:
            note = f"{sb} is not alive: LIM {starts[0]} starts with the data it has here."
            return lambda: note
        sync = self._sync
        return lambda: " ".join(sync.pull_before_start(n, PULL_BEFORE_START_S) for n in starts)

    def applied(self, local: LocalState, result: Applied, detected: float,
                lim_config: Callable[[int], LimConfig | None]) -> LocalState:
        """``local`` after the decision: what runs here now, the dead services cleared and
        the failures (inputs of the next decisions) brought up to date; the transitions are
        kept for status. ``detected``: wall clock of the last change heard."""
        decision, decided, cfg, pulled, outcomes = result
        now = time.monotonic()
        local = local.applied([o.action for o in outcomes if o.ok], now)
        self.busy = None
        failures = dict(local.failures)
        self.transitions.extend(read_outcomes(
            decision, cfg, outcomes, pulled, decided, min(detected, decided), now, failures,
            self.foreign_mac, lim_config))
        return dataclasses.replace(local, failures=failures,
                                   died=local.died - cleaned_up(decision, outcomes))


def forget_answered(local: LocalState, peers: Collection[PeerView]) -> LocalState:
    """``local`` without the failures of LIMs that now answer here or on a peer (such a
    failure no longer says anything of them)."""
    if not local.failures:
        return local
    answering = set(local.active_lims()) | {
        n for v in peers for n in local.failures if v.runs_active(n)}
    failures = {n: f for n, f in local.failures.items() if n not in answering}
    if len(failures) == len(local.failures):
        return local
    return dataclasses.replace(local, failures=failures)
