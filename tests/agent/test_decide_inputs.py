"""Table-driven tests of decide()'s inputs that once were the daemon's to handle - a service
found dead here (``LocalState.died``), a LIM held back to retry after a failure
(``LocalState.failures``) - and of the transition kind it names for each action
(``Decision.kinds``): states in, actions, kinds and the one sentence out."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from mxone_agent.actions import (
    ActivateLim,
    AlarmCode,
    ClearAlarm,
    DeactivateLim,
    RaiseAlarm,
    RetireLim,
    StartLim,
    StopLim,
)
from mxone_agent.decide import Failure, LocalState, decide
from mxone_agent.model import LimRun, Mode
from mxone_agent.model import TransitionKind as K
from mxone_agent.peers import PeerView

from tests.agent.builders import (
    NOW,
    STANDBY,
    active,
    alive,
    cluster_config,
    dead,
    fenced,
    local,
    passive,
    peers,
    preloaded_config,
)

ON_SB = AlarmCode.LIM_ON_STANDBY
PRE = Mode.PRELOADED
ALL_ALIVE = peers(alive("lim2"), alive("lim3"), alive("lim4"))
LIM2_DEAD = peers(dead("lim2"), alive("lim3"), alive("lim4"))
RAISE_OOO = RaiseAlarm(AlarmCode.STANDBY_OUT_OF_ORDER, None,
                       "Standby server is out of order: sb is not heard")


def state(*runs: LimRun, died: Iterable[int] = (), **kw: Any) -> LocalState:
    return dataclasses.replace(local(*runs, **kw), died=frozenset(died))


def failed(lim: int, left: float = 4.0, why: str = "the service did not start") -> dict:
    return {lim: Failure(f"LIM {lim}: {why}", NOW + left)}


@dataclass(frozen=True)
class Case:
    id: str
    node: str
    peers: dict[str, PeerView]
    local: LocalState
    actions: tuple[Any, ...]
    kinds: tuple[K, ...]  # the kind of each LIM action, in order
    says: str  # the whole sentence
    config: dict[str, Any] = field(default_factory=dict)
    preloaded: bool = False


# A LIM's service was found dead here: what it left (lease, alias) is cleared first, and
# the rules go on as for a LIM that does not run here.
DIED_CASES = [
    Case("standby-service-died-regular-dead-taken-again", STANDBY, LIM2_DEAD,
         state(died=[2], alarms=[(ON_SB, 2)]), (StopLim(2), StartLim(2), ClearAlarm(ON_SB, 2)),
         (K.CLEANUP, K.FAILOVER),
         "the service of LIM 2 is no longer running on sb; sb clears its lease and alias; lim2 "
         "missed 3 heartbeats (3.5 s); sb takes over LIM 2 (priority 1); sb clears the alarm "
         "'LIM is running on standby server' for LIM 2."),
    Case("standby-service-died-regular-alive", STANDBY, ALL_ALIVE,
         state(died=[2], alarms=[(ON_SB, 2)]), (StopLim(2), ClearAlarm(ON_SB, 2)), (K.CLEANUP,),
         "the service of LIM 2 is no longer running on sb; sb clears its lease and alias; sb "
         "runs no LIM; all 3 regular servers are alive; sb clears the alarm 'LIM is running "
         "on standby server' for LIM 2."),
    Case("regular-service-died-restarts-standby-alive", "lim2", peers(alive(STANDBY)),
         state(died=[2]), (StopLim(2), StartLim(2)), (K.CLEANUP, K.FALLBACK),
         "the service of LIM 2 is no longer running on lim2; lim2 clears its lease and alias; "
         "sb does not run LIM 2; lim2 starts LIM 2."),
    Case("regular-service-died-restarts-standby-dead", "lim2", peers(dead(STANDBY)),
         state(died=[2]), (StopLim(2), StartLim(2), RAISE_OOO), (K.CLEANUP, K.START),
         "the service of LIM 2 is no longer running on lim2; lim2 clears its lease and alias; "
         "sb missed 3 heartbeats (3.5 s); lim2 starts LIM 2; lim2 raises the alarm 'Standby "
         "server is out of order'."),
    Case("service-of-an-unknown-lim-died-retired", STANDBY, ALL_ALIVE, state(died=[9]),
         (RetireLim(9),), (K.CLEANUP,),
         "the service of LIM 9 is no longer running on sb; sb clears its lease and alias for "
         "good; sb runs no LIM; all 3 regular servers are alive."),
    Case("service-died-cleared-despite-a-failure-hold", "lim2", peers(alive(STANDBY)),
         state(died=[2], failures=failed(2)), (StopLim(2),), (K.CLEANUP,),
         "the service of LIM 2 is no longer running on lim2; lim2 clears its lease and alias; "
         "LIM 2: the service did not start; lim2 tries LIM 2 again in 4 s."),
    Case("service-of-a-retiring-lim-died-not-taken-over", STANDBY, LIM2_DEAD,
         state(died=[2], retiring=[2]), (StopLim(2),), (K.CLEANUP,),
         "the service of LIM 2 is no longer running on sb; sb clears its lease and alias; sb "
         "runs no LIM; LIM 2 is leaving cluster cluster1, so it takes none over."),
    Case("preloaded-standby-service-died-loads-again", STANDBY, peers(dead("lim2")),
         state(died=[2]), (StopLim(2), StartLim(2)), (K.CLEANUP, K.FAILOVER),
         "the service of LIM 2 is no longer running on sb; sb clears its lease and alias; lim2 "
         "missed 3 heartbeats (3.5 s); sb takes over LIM 2, which was not preloaded here and "
         "starts loading now (recovery takes longer).", preloaded=True),
    Case("two-services-died-cleared-in-lim-order", STANDBY, ALL_ALIVE, state(died=[4, 3]),
         (StopLim(3), StopLim(4)), (K.CLEANUP, K.CLEANUP),
         "the service of LIM 3 is no longer running on sb; sb clears its lease and alias; the "
         "service of LIM 4 is no longer running on sb; sb clears its lease and alias; sb runs "
         "no LIM; all 3 regular servers are alive."),
]

# A failed action holds its LIM back until its retry time; then the LIM is acted on again.
RETRY_CASES = [
    Case("standby-takeover-held", STANDBY, LIM2_DEAD, state(failures=failed(2)), (), (),
         "LIM 2 (priority 1) waits: LIM 2: the service did not start; sb tries LIM 2 again "
         "in 4 s."),
    Case("standby-takeover-retried-when-due", STANDBY, LIM2_DEAD,
         state(failures=failed(2, left=0)), (StartLim(2),), (K.FAILOVER,),
         "lim2 missed 3 heartbeats (3.5 s); sb takes over LIM 2 (priority 1)."),
    Case("standby-fallback-held", STANDBY, ALL_ALIVE,
         state(active(2), standby=True, failures=failed(2, why="cannot stop the service")),
         (), (), "LIM 2: cannot stop the service; sb tries LIM 2 again in 4 s."),
    Case("standby-fallback-retried-when-due", STANDBY, ALL_ALIVE,
         state(active(2), standby=True, failures=failed(2, left=-0.5)), (StopLim(2),),
         (K.FALLBACK,),
         "lim2 is back and ready; automatic fallback: sb stops LIM 2 so that lim2 can start "
         "it."),
    Case("regular-start-held-rounds-the-wait", "lim2", peers(alive(STANDBY)),
         state(failures=failed(2, left=2.6)), (), (),
         "LIM 2: the service did not start; lim2 tries LIM 2 again in 3 s."),
    Case("regular-start-retried-when-due", "lim2", peers(alive(STANDBY)),
         state(failures=failed(2, left=-1)), (StartLim(2),), (K.FALLBACK,),
         "sb does not run LIM 2; lim2 starts LIM 2."),
    Case("held-lim-does-not-block-the-next-candidate", STANDBY,
         peers(dead("lim2"), dead("lim3"), alive("lim4")), state(failures=failed(2)),
         (StartLim(3),), (K.FAILOVER,),
         "lim3 missed 3 heartbeats (3.5 s); sb takes over LIM 3 (priority 2); LIM 2 (priority "
         "1) waits: LIM 2: the service did not start; sb tries LIM 2 again in 4 s."),
]

# The kind of each transition travels as a field of the Decision, never as a word.
KIND_CASES = [
    Case("kind-split-brain-regular", "lim2", peers(alive(STANDBY, [active(2)])),
         state(active(2)), (StopLim(2),), (K.SPLIT_BRAIN,),
         "lim2 and sb both run LIM 2 (split brain); lim2 stops it because split_brain_stop is "
         "regular; automatic fallback follows."),
    Case("kind-split-brain-standby", STANDBY, peers(alive("lim2", [active(2)])),
         state(active(2), standby=True), (StopLim(2),), (K.SPLIT_BRAIN,),
         "lim2 and sb both run LIM 2 (split brain); sb stops it because split_brain_stop is "
         "standby.",
         config={"split_brain_stop": "standby", "lims": ((2, 1),)}),
    Case("kind-regular-stops-its-fenced-copy", "lim2", peers(alive(STANDBY, [active(2)])),
         state(fenced(2)), (StopLim(2),), (K.STOP,),
         "sb runs LIM 2 and LIM 2's lease lapsed while this agent was not running; lim2 stops "
         "its service."),
    Case("kind-regular-preloads", "lim2", peers(alive(STANDBY, [active(2)])), state(),
         (StartLim(2, PRE),), (K.PRELOAD,),
         "sb runs LIM 2; lim2 waits for the automatic fallback; it preloads LIM 2 (passive) "
         "meanwhile.", preloaded=True),
    Case("kind-regular-activates-on-fallback", "lim2", peers(alive(STANDBY, [passive(2)])),
         state(passive(2)), (ActivateLim(2),), (K.FALLBACK,),
         "sb does not run LIM 2; lim2 activates LIM 2.", preloaded=True),
    Case("kind-regular-retakes-its-lease", "lim2", peers(alive(STANDBY)), state(fenced(2)),
         (ActivateLim(2),), (K.LEASE_RETAKEN,),
         "sb does not run LIM 2; LIM 2's lease lapsed while this agent was not running, and "
         "lim2 takes it again."),
    Case("kind-standby-deactivates-on-fallback", STANDBY,
         peers(alive("lim2", [passive(2)])), state(active(2), standby=True),
         (DeactivateLim(2),), (K.FALLBACK,),
         "lim2 is back and ready; automatic fallback: sb deactivates LIM 2 so that lim2 can "
         "activate it.",
         preloaded=True),
    Case("kind-retire", STANDBY, ALL_ALIVE, state(active(9)), (RetireLim(9),), (K.RETIRE,),
         "LIM 9 runs on sb but the config of cluster cluster1 (generation 1) does not name it; "
         "sb stops it for good and removes its alias; sb runs no LIM; all 3 regular servers "
         "are alive."),
]

ALL = DIED_CASES + RETRY_CASES + KIND_CASES


def config_of(case: Case):
    builder = preloaded_config if case.preloaded else cluster_config
    return builder(case.node, **case.config)


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_decide_inputs(case: Case) -> None:
    d = decide(config_of(case), case.peers, case.local, NOW)
    assert d.actions == case.actions, d.reason
    assert d.reason == case.says
    lim_actions = [a for a in d.actions if not isinstance(a, RaiseAlarm | ClearAlarm)]
    assert tuple(d.kind(a) for a in lim_actions) == case.kinds
    assert all(d.kind(a) is None for a in d.actions if isinstance(a, RaiseAlarm | ClearAlarm))


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in ALL}) == len(ALL)


@pytest.mark.parametrize("case", DIED_CASES, ids=[c.id for c in DIED_CASES])
def test_a_dead_service_is_cleared_once(case: Case) -> None:
    """Once its cleanup is applied the LIM is no longer among the dead: the next decision
    clears nothing again (it holds at most the alarms that follow), then nothing."""
    cfg = config_of(case)
    d = decide(cfg, case.peers, case.local, NOW)
    after = case.local.applied(d.actions, NOW)
    assert after.died == frozenset()
    again = decide(cfg, case.peers, after, NOW)
    assert all(isinstance(a, RaiseAlarm | ClearAlarm) for a in again.actions), again.reason
    assert "no longer running" not in again.reason


def test_the_sentence_never_carries_the_kind_for_the_daemon() -> None:
    """A split brain is named in the field even when the sentence changes its words."""
    case = next(c for c in KIND_CASES if c.id == "kind-split-brain-regular")
    d = decide(config_of(case), case.peers, case.local, NOW)
    assert d.split_brain == {2} and d.kind(StopLim(2)) is K.SPLIT_BRAIN
