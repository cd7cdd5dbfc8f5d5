"""Table-driven tests of decide()'s inputs that once were the daemon's to handle - a service
found dead here (``LocalState.died``), a LIM held back to retry after a failure
(``LocalState.failures``) - and of the transition kind it names for each action
(``Decision.kinds``): states in, actions, kinds and the one sentence out."""

from __future__ import annotations

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
from mxone_agent.decide import decide
from mxone_agent.model import Mode
from mxone_agent.model import TransitionKind as K

from tests.agent.builders import (
    NOW,
    STANDBY,
    Case,
    active,
    alive,
    case_config,
    dead,
    failed,
    fenced,
    local,
    passive,
    peers,
)

ON_SB = AlarmCode.LIM_ON_STANDBY
PRE = Mode.PRELOADED
ALL_ALIVE = peers(alive("lim2"), alive("lim3"), alive("lim4"))
LIM2_DEAD = peers(dead("lim2"), alive("lim3"), alive("lim4"))
RAISE_OOO = RaiseAlarm(AlarmCode.STANDBY_OUT_OF_ORDER, None,
                       "Standby server is out of order: sb is not heard")


# A LIM's service was found dead here: what it left (lease, alias) is cleared first, and
# the rules go on as for a LIM that does not run here.
DIED_CASES = [
    Case("standby-service-died-regular-dead-taken-again", STANDBY, LIM2_DEAD,
         local(died=[2], alarms=[(ON_SB, 2)]), (StopLim(2), StartLim(2), ClearAlarm(ON_SB, 2)),
         ("the service of LIM 2 is no longer running on sb; sb clears its lease and alias; lim2 "
          "missed 3 heartbeats (3.5 s); sb takes over LIM 2 (priority 1); sb clears the alarm "
          "'LIM is running on standby server' for LIM 2.",), kinds=(K.CLEANUP, K.FAILOVER)),
    Case("standby-service-died-regular-alive", STANDBY, ALL_ALIVE,
         local(died=[2], alarms=[(ON_SB, 2)]), (StopLim(2), ClearAlarm(ON_SB, 2)),
         ("the service of LIM 2 is no longer running on sb; sb clears its lease and alias; sb "
          "runs no LIM; all 3 regular servers are alive; sb clears the alarm 'LIM is running "
          "on standby server' for LIM 2.",), kinds=(K.CLEANUP,)),
    Case("regular-service-died-restarts-standby-alive", "lim2", peers(alive(STANDBY)),
         local(died=[2]), (StopLim(2), StartLim(2)),
         ("the service of LIM 2 is no longer running on lim2; lim2 clears its lease and alias; "
          "sb does not run LIM 2; lim2 starts LIM 2.",), kinds=(K.CLEANUP, K.FALLBACK)),
    Case("regular-service-died-restarts-standby-dead", "lim2", peers(dead(STANDBY)),
         local(died=[2]), (StopLim(2), StartLim(2), RAISE_OOO),
         ("the service of LIM 2 is no longer running on lim2; lim2 clears its lease and alias; "
          "sb missed 3 heartbeats (3.5 s); lim2 starts LIM 2; lim2 raises the alarm 'Standby "
          "server is out of order'.",), kinds=(K.CLEANUP, K.START)),
    Case("service-of-an-unknown-lim-died-retired", STANDBY, ALL_ALIVE, local(died=[9]),
         (RetireLim(9),),
         ("the service of LIM 9 is no longer running on sb; sb clears its lease and alias for "
          "good; sb runs no LIM; all 3 regular servers are alive.",), kinds=(K.CLEANUP,)),
    Case("service-died-cleared-despite-a-failure-hold", "lim2", peers(alive(STANDBY)),
         local(died=[2], failures=failed(2)), (StopLim(2),),
         ("the service of LIM 2 is no longer running on lim2; lim2 clears its lease and alias; "
          "LIM 2: the service did not start; lim2 tries LIM 2 again in 4 s.",), kinds=(K.CLEANUP,)),
    Case("service-of-a-retiring-lim-died-not-taken-over", STANDBY, LIM2_DEAD,
         local(died=[2], retiring=[2]), (StopLim(2),),
         ("the service of LIM 2 is no longer running on sb; sb clears its lease and alias; sb "
          "runs no LIM; LIM 2 is leaving cluster cluster1, so it takes none over.",),
         kinds=(K.CLEANUP,)),
    Case("preloaded-standby-service-died-loads-again", STANDBY, peers(dead("lim2")),
         local(died=[2]), (StopLim(2), StartLim(2)),
         ("the service of LIM 2 is no longer running on sb; sb clears its lease and alias; lim2 "
          "missed 3 heartbeats (3.5 s); sb takes over LIM 2, which was not preloaded here and "
          "starts loading now (recovery takes longer).",),
         kinds=(K.CLEANUP, K.FAILOVER), preloaded=True),
    Case("two-services-died-cleared-in-lim-order", STANDBY, ALL_ALIVE, local(died=[4, 3]),
         (StopLim(3), StopLim(4)),
         ("the service of LIM 3 is no longer running on sb; sb clears its lease and alias; the "
          "service of LIM 4 is no longer running on sb; sb clears its lease and alias; sb runs "
          "no LIM; all 3 regular servers are alive.",), kinds=(K.CLEANUP, K.CLEANUP)),
]

# A failed action holds its LIM back until its retry time; then the LIM is acted on again.
RETRY_CASES = [
    Case("standby-takeover-held", STANDBY, LIM2_DEAD, local(failures=failed(2)), (),
         ("LIM 2 (priority 1) waits: LIM 2: the service did not start; sb tries LIM 2 again "
          "in 4 s.",), kinds=()),
    Case("standby-takeover-retried-when-due", STANDBY, LIM2_DEAD,
         local(failures=failed(2, left=0)), (StartLim(2),),
         ("lim2 missed 3 heartbeats (3.5 s); sb takes over LIM 2 (priority 1).",),
         kinds=(K.FAILOVER,)),
    Case("standby-fallback-held", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, failures=failed(2, why="cannot stop the service")),
         (),
         ("LIM 2: cannot stop the service; sb tries LIM 2 again in 4 s.",), kinds=()),
    Case("standby-fallback-retried-when-due", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, failures=failed(2, left=-0.5)), (StopLim(2),),
         ("lim2 is back and ready; automatic fallback: sb stops LIM 2 so that lim2 can start "
          "it.",), kinds=(K.FALLBACK,)),
    Case("regular-start-held-rounds-the-wait", "lim2", peers(alive(STANDBY)),
         local(failures=failed(2, left=2.6)), (),
         ("LIM 2: the service did not start; lim2 tries LIM 2 again in 3 s.",), kinds=()),
    Case("regular-start-retried-when-due", "lim2", peers(alive(STANDBY)),
         local(failures=failed(2, left=-1)), (StartLim(2),),
         ("sb does not run LIM 2; lim2 starts LIM 2.",), kinds=(K.FALLBACK,)),
    Case("held-lim-does-not-block-the-next-candidate", STANDBY,
         peers(dead("lim2"), dead("lim3"), alive("lim4")), local(failures=failed(2)),
         (StartLim(3),),
         ("lim3 missed 3 heartbeats (3.5 s); sb takes over LIM 3 (priority 2); LIM 2 (priority "
          "1) waits: LIM 2: the service did not start; sb tries LIM 2 again in 4 s.",),
         kinds=(K.FAILOVER,)),
]

# The kind of each transition travels as a field of the Decision, never as a word.
KIND_CASES = [
    Case("kind-split-brain-regular", "lim2", peers(alive(STANDBY, [active(2)])),
         local(active(2)), (StopLim(2),),
         ("lim2 and sb both run LIM 2 (split brain); lim2 stops it because split_brain_stop is "
          "regular; automatic fallback follows.",), kinds=(K.SPLIT_BRAIN,)),
    Case("kind-split-brain-standby", STANDBY, peers(alive("lim2", [active(2)])),
         local(active(2), standby=True), (StopLim(2),),
         ("lim2 and sb both run LIM 2 (split brain); sb stops it because split_brain_stop is "
          "standby.",), kinds=(K.SPLIT_BRAIN,),
         config={"split_brain_stop": "standby", "lims": ((2, 1),)}),
    Case("kind-regular-stops-its-fenced-copy", "lim2", peers(alive(STANDBY, [active(2)])),
         local(fenced(2)), (StopLim(2),),
         ("sb runs LIM 2 and LIM 2's lease lapsed while this agent was not running; lim2 stops "
          "its service.",), kinds=(K.STOP,)),
    Case("kind-regular-preloads", "lim2", peers(alive(STANDBY, [active(2)])), local(),
         (StartLim(2, PRE),),
         ("sb runs LIM 2; lim2 waits for the automatic fallback; it preloads LIM 2 (passive) "
          "meanwhile.",), kinds=(K.PRELOAD,), preloaded=True),
    Case("kind-regular-activates-on-fallback", "lim2", peers(alive(STANDBY, [passive(2)])),
         local(passive(2)), (ActivateLim(2),),
         ("sb does not run LIM 2; lim2 activates LIM 2.",), kinds=(K.FALLBACK,), preloaded=True),
    Case("kind-regular-retakes-its-lease", "lim2", peers(alive(STANDBY)), local(fenced(2)),
         (ActivateLim(2),),
         ("sb does not run LIM 2; LIM 2's lease lapsed while this agent was not running, and "
          "lim2 takes it again.",), kinds=(K.LEASE_RETAKEN,)),
    Case("kind-standby-deactivates-on-fallback", STANDBY,
         peers(alive("lim2", [passive(2)])), local(active(2), standby=True),
         (DeactivateLim(2),),
         ("lim2 is back and ready; automatic fallback: sb deactivates LIM 2 so that lim2 can "
          "activate it.",), kinds=(K.FALLBACK,),
         preloaded=True),
    Case("kind-retire", STANDBY, ALL_ALIVE, local(active(9)), (RetireLim(9),),
         ("LIM 9 runs on sb but the config of cluster cluster1 (generation 1) does not name it; "
          "sb stops it for good and removes its alias; sb runs no LIM; all 3 regular servers "
          "are alive.",), kinds=(K.RETIRE,)),
]

ALL = DIED_CASES + RETRY_CASES + KIND_CASES


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_decide_inputs(case: Case) -> None:
    d = decide(case_config(case), case.peers, case.local, NOW)
    assert d.actions == case.actions, d.reason
    assert (d.reason,) == case.says
    lim_actions = [a for a in d.actions if not isinstance(a, RaiseAlarm | ClearAlarm)]
    assert tuple(d.kind(a) for a in lim_actions) == case.kinds
    assert all(d.kind(a) is None for a in d.actions if isinstance(a, RaiseAlarm | ClearAlarm))


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in ALL}) == len(ALL)


@pytest.mark.parametrize("case", DIED_CASES, ids=[c.id for c in DIED_CASES])
def test_a_dead_service_is_cleared_once(case: Case) -> None:
    """Once its cleanup is applied the LIM is no longer among the dead: the next decision
    clears nothing again (it holds at most the alarms that follow), then nothing."""
    cfg = case_config(case)
    d = decide(cfg, case.peers, case.local, NOW)
    after = case.local.applied(d.actions, NOW)
    assert after.died == frozenset()
    again = decide(cfg, case.peers, after, NOW)
    assert all(isinstance(a, RaiseAlarm | ClearAlarm) for a in again.actions), again.reason
    assert "no longer running" not in again.reason


def test_the_sentence_never_carries_the_kind_for_the_daemon() -> None:
    """A split brain is named in the field even when the sentence changes its words."""
    case = next(c for c in KIND_CASES if c.id == "kind-split-brain-regular")
    d = decide(case_config(case), case.peers, case.local, NOW)
    assert d.split_brain == {2} and d.kind(StopLim(2)) is K.SPLIT_BRAIN
