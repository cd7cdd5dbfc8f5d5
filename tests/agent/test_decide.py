"""Table-driven tests of decide(): states in, actions and the one sentence out."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from mxone_agent.decide import (
    FLAP_WINDOW,
    HOLD_DOWN_BASE,
    HOLD_DOWN_CAP,
    Decision,
    Failure,
    HoldDown,
    LocalState,
    decide,
    explain_down,
    fallback_blocker,
    hold_down,
    judge_fallback_order,
    record_appearance,
)
from mxone_agent.model import Mode
from mxone_agent.peers import Liveness, PeerView

from tests.agent.builders import (
    NOW,
    STANDBY,
    Case,
    active,
    alive,
    case_config,
    cluster_config,
    dead,
    failed,
    fenced,
    heartbeat,
    local,
    passive,
    peers,
    unknown,
)

ON_SB = AlarmCode.LIM_ON_STANDBY
OOO = AlarmCode.STANDBY_OUT_OF_ORDER
PRE = Mode.PRELOADED


def raise_on_sb(lim: int) -> RaiseAlarm:
    return RaiseAlarm(ON_SB, lim, f"LIM is running on standby server: LIM {lim} runs on sb")


RAISE_OOO = RaiseAlarm(OOO, None, "Standby server is out of order: sb is not heard")


ALL_ALIVE = peers(alive("lim2"), alive("lim3"), alive("lim4"))


def regs(lim2: PeerView | None = None, lim3: PeerView | None = None,
         lim4: PeerView | None = None) -> dict[str, PeerView]:
    """The three regular servers as the standby sees them; alive unless given."""
    return peers(lim2 or alive("lim2"), lim3 or alive("lim3"), lim4 or alive("lim4"))


STANDBY_CASES = [
    Case("idle", STANDBY, ALL_ALIVE, local(), (),
         ("sb runs no LIM; all 3 regular servers are alive.",)),
    Case("takeover", STANDBY, regs(lim2=dead("lim2")), local(),
         (StartLim(2),),
         ("lim2 missed 3 heartbeats (3.5 s); sb takes over LIM 2 (priority 1).",)),
    Case("takeover-never-heard", STANDBY, regs(lim3=dead("lim3", silent=None)), local(),
         (StartLim(3),),
         ("lim3 has not been heard since this agent started; sb takes over LIM 3",)),
    Case("two-dead-priority-wins", STANDBY, regs(lim2=dead("lim2"), lim3=dead("lim3")), local(),
         (StartLim(2),),
         ("sb takes over LIM 2 (priority 1); LIM 3 (priority 2) stays down",)),
    Case("three-dead-priority-wins", STANDBY,
         regs(lim2=dead("lim2"), lim3=dead("lim3"), lim4=dead("lim4")), local(),
         (StartLim(2),),
         ("sb takes over LIM 2 (priority 1); LIM 3 (priority 2), LIM 4 (priority 2) stay down",)),
    Case("two-dead-tie-lower-lim-number", STANDBY, regs(lim3=dead("lim3"), lim4=dead("lim4")),
         local(), (StartLim(3),),
         ("takes over LIM 3 (priority 2); LIM 4 (priority 2) stays down",)),
    Case("tie-running-lim-keeps-standby", STANDBY, regs(lim3=dead("lim3"), lim4=dead("lim4")),
         local(active(4), standby=True), (),
         ("sb runs LIM 4 for lim4, which is down.",)),
    Case("higher-priority-replaces", STANDBY, regs(lim2=dead("lim2"), lim3=dead("lim3")),
         local(active(3), standby=True),
         (StopLim(3), StartLim(2)),
         ("lim2 missed 3 heartbeats (3.5 s); sb replaces LIM 3 (priority 2) with LIM 2 "
          "(priority 1).",)),
    Case("locked-to-standby-not-replaced", STANDBY, regs(lim2=dead("lim2"), lim3=dead("lim3")),
         local(active(3), standby=True), (),
         ("keeps LIM 3, which is locked to the standby, over LIM 2 (priority 1)",),
         config={"locks": {3: "standby"}}),
    Case("locked-to-regular-no-takeover", STANDBY, regs(lim2=dead("lim2")), local(), (),
         ("lim2 missed 3 heartbeats (3.5 s) but LIM 2 is locked to its regular server; sb does "
          "not take it over.",), config={"locks": {2: "regular"}}),
    Case("locked-to-regular-next-one-served", STANDBY, regs(lim2=dead("lim2"), lim3=dead("lim3")),
         local(), (StartLim(3),), ("sb takes over LIM 3 (priority 2)",),
         config={"locks": {2: "regular"}}),
    Case("locked-to-regular-while-on-standby-stays", STANDBY, regs(lim2=dead("lim2")),
         local(active(2), standby=True), (), ("sb runs LIM 2 for lim2, which is down",),
         config={"locks": {2: "regular"}}),
    Case("locked-to-standby-running-nowhere-is-taken", STANDBY, ALL_ALIVE, local(),
         (StartLim(3),),
         ("LIM 3 is locked to the standby and lim3 does not run it; sb takes over LIM 3 "
          "(priority 2).",), config={"locks": {3: "standby"}}),
    Case("locked-to-standby-running-on-regular-stays", STANDBY,
         regs(lim3=alive("lim3", [active(3)])), local(), (),
         ("sb runs no LIM; all 3 regular servers are alive.",), config={"locks": {3: "standby"}}),
    Case("locked-to-standby-unknown-regular-waits", STANDBY, regs(lim3=unknown("lim3")), local(),
         (), ("waiting to hear lim3",), config={"locks": {3: "standby"}}),
    Case("never-two-lims", STANDBY, regs(lim2=dead("lim2"), lim3=dead("lim3")),
         local(active(2), active(3), standby=True), (StopLim(3),),
         ("sb runs 2 LIMs but may run one; it keeps LIM 2 (priority 1) and stops LIM 3",)),
    Case("standby-loading-takes-nothing", STANDBY, regs(lim2=dead("lim2")), local(ready=False),
         (), ("sb is still loading and takes over nothing yet",)),
    Case("boot-waits-for-peers", STANDBY,
         peers(unknown("lim2"), alive("lim3"), alive("lim4")), local(), (),
         ("sb runs no LIM; waiting to hear lim2 (a peer counts as dead only after 3.0 s of "
          "silence).",)),
    Case("unknown-home-keeps-lim", STANDBY, regs(lim2=unknown("lim2")),
         local(active(2), standby=True), (), ("sb runs LIM 2 for lim2, which is not heard yet.",)),
]

FALLBACK_CASES = [
    Case("auto-fallback", STANDBY, ALL_ALIVE, local(active(2), standby=True),
         (StopLim(2),),
         ("lim2 is back and ready; automatic fallback: sb stops LIM 2 so that lim2 can start "
          "it.",)),
    Case("auto-fallback-waits-for-ready", STANDBY, regs(lim2=alive("lim2", ready=False)),
         local(active(2), standby=True), (), ("lim2 is back but still loading; sb keeps LIM 2",)),
    Case("auto-fallback-held-down", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, appearances={2: (NOW - 100, NOW - 10)}), (),
         ("lim2 came back 2 times within 15 min; automatic fallback of LIM 2 is held down for "
          "30 s (20 s left).",)),
    Case("auto-fallback-after-hold-down", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, appearances={2: (NOW - 100, NOW - 31)}),
         (StopLim(2),), ("automatic fallback: sb stops LIM 2",)),
    Case("manual-waits", STANDBY, ALL_ALIVE, local(active(2), standby=True), (),
         ("lim2 is back; LIM 2 stays on sb until a manual fallback is ordered.",),
         config={"fallback": "manual"}),
    Case("manual-ordered", STANDBY, ALL_ALIVE, local(active(2), standby=True, requests=[2]),
         (StopLim(2),),
         ("manual fallback of LIM 2 ordered and lim2 is ready: sb stops it so that lim2 can "
          "start it.",),
         config={"fallback": "manual"}),
    Case("manual-ordered-regular-not-heard", STANDBY, regs(lim2=dead("lim2")),
         local(active(2), standby=True, requests=[2]), (),
         ("the ordered fallback of LIM 2 waits for lim2 to be ready: lim2 missed 3 heartbeats "
          "(3.5 s).",), config={"fallback": "manual"}),
    Case("locked-to-standby-no-auto-fallback", STANDBY, ALL_ALIVE,
         local(active(2), standby=True), (),
         ("LIM 2 is locked to the standby; sb keeps it although lim2 is back.",),
         config={"locks": {2: "standby"}}),
    Case("locked-to-standby-refuses-manual", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, requests=[2]), (),
         ("manual fallback of LIM 2 refused: it is locked to the standby.",),
         config={"fallback": "manual", "locks": {2: "standby"}}),
    Case("unlocked-auto-falls-back", STANDBY, ALL_ALIVE, local(active(2), standby=True),
         (StopLim(2),), ("automatic fallback",),
         config={"locks": {2: "none"}}),
    Case("locked-to-regular-follows-fallback-type", STANDBY, ALL_ALIVE,
         local(active(2), standby=True), (), ("until a manual fallback is ordered",),
         config={"fallback": "manual", "locks": {2: "regular"}}),
    Case("released-lim-does-not-crowd-out-a-dead-one", STANDBY, regs(lim4=dead("lim4")),
         local(active(2), active(4), standby=True), (StopLim(2),),
         ("automatic fallback: sb stops LIM 2 so that lim2 can start it; sb runs LIM 4 for "
          "lim4, which is down.",), config={"lims": ((2, 0), (3, 0), (4, 0))}),
    Case("fallback-frees-standby-for-next-dead", STANDBY, regs(lim3=dead("lim3")),
         local(active(2), standby=True), (StopLim(2), StartLim(3)),
         ("automatic fallback: sb stops LIM 2 so that lim2 can start it; lim3 missed 3 "
          "heartbeats (3.5 s); sb takes over LIM 3 (priority 2).",)),
]

SPLIT_BRAIN_CASES = [
    Case("standby-waits-for-regular-to-stop", STANDBY, regs(lim2=alive("lim2", [active(2)])),
         local(active(2), standby=True), (),
         ("lim2 and sb both run LIM 2 (split brain); lim2 is the side that stops, because "
          "split_brain_stop is regular.",)),
    Case("standby-stops-when-configured", STANDBY, regs(lim2=alive("lim2", [active(2)])),
         local(active(2), standby=True), (StopLim(2),),
         ("sb stops it because split_brain_stop is standby",),
         config={"split_brain_stop": "standby"}),
    Case("lock-to-regular-overrides-split-side", STANDBY, regs(lim2=alive("lim2", [active(2)])),
         local(active(2), standby=True), (StopLim(2),),
         ("sb stops it because the LIM is locked to its regular server",),
         config={"locks": {2: "regular"}}),
    Case("regular-stops", "lim2", peers(alive(STANDBY, [active(2)]), alive("lim3"), alive("lim4")),
         local(active(2)), (StopLim(2),),
         ("lim2 and sb both run LIM 2 (split brain); lim2 stops it because split_brain_stop is "
          "regular; automatic fallback follows.",)),
    Case("regular-keeps-when-standby-stops", "lim2",
         peers(alive(STANDBY, [active(2)]), alive("lim3"), alive("lim4")), local(active(2)), (),
         ("sb is the side that stops, because split_brain_stop is standby",),
         config={"split_brain_stop": "standby"}),
    Case("regular-keeps-when-locked-to-it", "lim2",
         peers(alive(STANDBY, [active(2)]), alive("lim3"), alive("lim4")), local(active(2)), (),
         ("sb is the side that stops, because the LIM is locked to its regular server",),
         config={"locks": {2: "regular"}}),
    Case("regular-stops-when-locked-to-standby", "lim2",
         peers(alive(STANDBY, [active(2, loading=True)]), alive("lim3"), alive("lim4")),
         local(active(2)), (StopLim(2),),
         ("lim2 stops it because the LIM is locked to the standby; it stays on the standby "
          "while locked.",),
         config={"split_brain_stop": "standby", "locks": {2: "standby"}}),
]

REGULAR_CASES = [
    Case("starts-when-standby-does-not-run-it", "lim2",
         peers(alive(STANDBY), alive("lim3"), alive("lim4")), local(), (StartLim(2),),
         ("sb does not run LIM 2; lim2 starts LIM 2.",)),
    Case("boot-waits-to-hear-standby", "lim2", peers(unknown(STANDBY)), local(), (),
         ("lim2 waits to hear sb before it runs LIM 2 actively (at most 3.0 s).",)),
    Case("boot-standby-silent-for-detection", "lim2",
         peers(dead(STANDBY, silent=None), alive("lim3"), alive("lim4")), local(),
         (StartLim(2), RAISE_OOO),
         ("sb has not been heard since this agent started; lim2 starts LIM 2; lim2 raises the "
          "alarm 'Standby server is out of order'.",)),
    Case("standby-runs-it-auto", "lim2", peers(alive(STANDBY, [active(2)])), local(), (),
         ("sb runs LIM 2; lim2 waits for the automatic fallback.",)),
    Case("standby-runs-it-manual", "lim2", peers(alive(STANDBY, [active(2)])), local(), (),
         ("sb runs LIM 2; lim2 waits for a manual fallback to be ordered.",),
         config={"fallback": "manual"}),
    Case("standby-runs-another-lim", "lim2", peers(alive(STANDBY, [active(3)])), local(),
         (StartLim(2),), ("sb does not run LIM 2; lim2 starts LIM 2.",)),
    Case("loading-starts-nothing", "lim2", peers(alive(STANDBY)), local(ready=False), (),
         ("lim2 is still loading; it starts nothing yet.",)),
    Case("locked-to-standby-not-started", "lim2",
         peers(alive(STANDBY), alive("lim3"), alive("lim4")), local(), (),
         ("LIM 2 is locked to the standby; lim2 does not run it actively.",),
         config={"locks": {2: "standby"}}),
    Case("locked-to-standby-running-stays", "lim2",
         peers(alive(STANDBY), alive("lim3"), alive("lim4")), local(active(2)), (),
         ("lim2 runs LIM 2.",), config={"locks": {2: "standby"}}),
    Case("runs-standby-unknown", "lim2", peers(unknown(STANDBY)), local(active(2)), (),
         ("lim2 runs LIM 2; sb is not heard yet.",)),
]

ALARM_CASES = [
    Case("lowest-live-regular-raises", "lim2",
         peers(dead(STANDBY), alive("lim3"), alive("lim4")), local(active(2)), (RAISE_OOO,),
         ("lim2 runs LIM 2; sb missed 3 heartbeats (3.5 s); lim2 raises the alarm 'Standby "
          "server is out of order'.",)),
    Case("higher-regular-does-not-raise", "lim3",
         peers(dead(STANDBY), alive("lim2"), alive("lim4")), local(active(3)), (),
         ("lim3 runs LIM 3; sb missed 3 heartbeats (3.5 s).",)),
    Case("higher-regular-raises-when-lower-dead", "lim3",
         peers(dead(STANDBY), dead("lim2"), alive("lim4")), local(active(3)), (RAISE_OOO,),
         ("lim3 raises the alarm",)),
    Case("cleared-when-standby-back", "lim2", peers(alive(STANDBY), alive("lim3")),
         local(active(2), alarms=[(OOO, None)]), (ClearAlarm(OOO, None),),
         ("lim2 runs LIM 2; lim2 clears the alarm 'Standby server is out of order' (sb is heard "
          "again).",)),
    Case("handed-to-lower-regular", "lim3", peers(dead(STANDBY), alive("lim2")),
         local(active(3), alarms=[(OOO, None)]), (ClearAlarm(OOO, None),),
         ("a regular server with a lower LIM number holds it",)),
    Case("unknown-standby-changes-nothing", "lim2", peers(unknown(STANDBY)),
         local(active(2), alarms=[(OOO, None)]), (), ("lim2 runs LIM 2; sb is not heard yet.",)),
    Case("already-raised-not-again", "lim2", peers(dead(STANDBY)),
         local(active(2), alarms=[(OOO, None)]), (), ("lim2 runs LIM 2; sb missed",)),
    Case("standby-clears-stale-alarm", STANDBY, ALL_ALIVE, local(alarms=[(ON_SB, 3)]),
         (ClearAlarm(ON_SB, 3),),
         ("sb runs no LIM; all 3 regular servers are alive; sb clears the alarm 'LIM is running "
          "on standby server' for LIM 3.",)),
    Case("standby-raises-missing-alarm", STANDBY, regs(lim2=dead("lim2")),
         local(active(2), alarms=[]), (raise_on_sb(2),),
         ("sb raises the alarm 'LIM is running on standby server' for LIM 2",)),
]

PRELOADED_CASES = [
    Case("standby-preloads", STANDBY, peers(alive("lim2", [active(2)])), local(),
         (StartLim(2, PRE),), ("sb preloads LIM 2 (passive) for lim2.",), preloaded=True),
    Case("standby-holds-passive", STANDBY, peers(alive("lim2", [active(2)])), local(passive(2)),
         (), ("sb holds LIM 2 preloaded while lim2 runs it.",), preloaded=True),
    Case("failover-activates", STANDBY, peers(dead("lim2", silent=30.5)), local(passive(2)),
         (ActivateLim(2),),
         ("lim2 missed 30 heartbeats (30.5 s); sb activates preloaded LIM 2.",), preloaded=True),
    Case("failover-to-loading", STANDBY, peers(dead("lim2")), local(passive(2, loading=True)),
         (ActivateLim(2),),
         ("sb activates preloaded LIM 2, which is still loading (recovery takes longer).",),
         preloaded=True),
    Case("failover-not-preloaded", STANDBY, peers(dead("lim2")), local(),
         (StartLim(2),),
         ("sb takes over LIM 2, which was not preloaded here and starts loading now",),
         preloaded=True),
    Case("failover-locked-to-regular", STANDBY, peers(dead("lim2")), local(passive(2)), (),
         ("but LIM 2 is locked to its regular server; sb keeps it passive.",), preloaded=True,
         config={"locks": {2: "regular"}}),
    Case("fallback-deactivates", STANDBY, peers(alive("lim2", [passive(2)])),
         local(active(2), standby=True), (DeactivateLim(2),),
         ("automatic fallback: sb deactivates LIM 2 so that lim2 can activate it.",),
         preloaded=True),
    Case("fallback-to-loading-regular", STANDBY, peers(alive("lim2", [passive(2, loading=True)])),
         local(active(2), standby=True), (DeactivateLim(2),),
         ("(its LIM 2 is still loading: recovery takes longer).",), preloaded=True),
    Case("manual-fallback-preloaded", STANDBY, peers(alive("lim2", [passive(2)])),
         local(active(2), standby=True, requests=[2]), (DeactivateLim(2),),
         ("manual fallback of LIM 2 ordered and lim2 is ready: sb deactivates it so that lim2 "
          "can activate it.",),
         preloaded=True, config={"fallback": "manual"}),
    Case("regular-activates-after-fallback", "lim2", peers(alive(STANDBY, [passive(2)])),
         local(passive(2)), (ActivateLim(2),),
         ("sb does not run LIM 2; lim2 activates LIM 2.",), preloaded=True),
    Case("regular-activates-while-loading", "lim2", peers(dead(STANDBY)),
         local(passive(2, loading=True)), (ActivateLim(2), RAISE_OOO),
         ("lim2 activates LIM 2, which is still loading (recovery takes longer)",),
         preloaded=True),
    Case("regular-stays-passive", "lim2", peers(alive(STANDBY, [active(2)])), local(passive(2)),
         (), ("sb runs LIM 2; lim2 waits for the automatic fallback.",), preloaded=True),
    Case("regular-boot-preloads-while-waiting", "lim2", peers(unknown(STANDBY)), local(),
         (StartLim(2, PRE),),
         ("lim2 waits to hear sb before it runs LIM 2 actively (at most 3.0 s); it preloads LIM "
          "2 (passive) meanwhile.",), preloaded=True),
    Case("regular-preloads-beside-standby", "lim2", peers(alive(STANDBY, [active(2)])), local(),
         (StartLim(2, PRE),), ("it preloads LIM 2 (passive) meanwhile",), preloaded=True),
    Case("regular-starts-active-directly", "lim2", peers(alive(STANDBY, [passive(2)])), local(),
         (StartLim(2),), ("sb does not run LIM 2; lim2 starts LIM 2.",), preloaded=True),
    Case("regular-deactivates-on-split-brain", "lim2", peers(alive(STANDBY, [active(2)])),
         local(active(2)), (DeactivateLim(2),),
         ("lim2 deactivates it because split_brain_stop is regular",), preloaded=True),
    Case("standby-activates-lim-locked-to-it", STANDBY, peers(alive("lim2", [passive(2)])),
         local(passive(2)), (ActivateLim(2),),
         ("LIM 2 is locked to the standby and lim2 does not run it; sb activates preloaded LIM "
          "2.",), preloaded=True, config={"locks": {2: "standby"}}),
    Case("regular-locked-to-standby-stays-passive", "lim2", peers(dead(STANDBY)),
         local(passive(2)), (RAISE_OOO,), ("LIM 2 is locked to the standby",), preloaded=True,
         config={"locks": {2: "standby"}}),
]

LAPSED = "lease lapsed while this agent was not running"

FENCED_CASES = [
    Case("fenced-regular-waits-for-unknown-standby", "lim2", peers(unknown(STANDBY)),
         local(fenced(2)), (),
         (f"LIM 2's {LAPSED}; lim2 waits to hear sb before it answers for it again (at most "
          "3.0 s).",)),
    Case("fenced-regular-takes-it-again", "lim2", peers(alive(STANDBY), alive("lim3")),
         local(fenced(2)), (ActivateLim(2),),
         (f"sb does not run LIM 2; LIM 2's {LAPSED}, and lim2 takes it again.",)),
    Case("fenced-regular-standby-dead", "lim2", peers(dead(STANDBY), alive("lim3")),
         local(fenced(2)), (ActivateLim(2), RAISE_OOO), ("lim2 takes it again",)),
    Case("fenced-regular-standby-runs-it-stops", "lim2", peers(alive(STANDBY, [active(2)])),
         local(fenced(2)), (StopLim(2),),
         (f"sb runs LIM 2 and LIM 2's {LAPSED}; lim2 stops its service.",)),
    Case("fenced-regular-locked-to-standby-stops", "lim2", peers(alive(STANDBY)),
         local(fenced(2)), (StopLim(2),), ("LIM 2 is locked to the standby and LIM 2's",),
         config={"locks": {2: "standby"}}),
    Case("fenced-regular-preloaded-goes-passive", "lim2", peers(alive(STANDBY, [active(2)])),
         local(fenced(2)), (DeactivateLim(2),), ("lim2 keeps it passive",), preloaded=True),
    Case("fenced-standby-home-dead-takes-it-again", STANDBY, regs(lim2=dead("lim2")),
         local(fenced(2), standby=True), (ActivateLim(2),),
         (f"sb runs LIM 2 for lim2, which is down; its {LAPSED}, and sb takes it again.",)),
    Case("fenced-standby-home-runs-it", STANDBY, regs(lim2=alive("lim2", [active(2)])),
         local(fenced(2), standby=True), (StopLim(2),),
         (f"lim2 runs LIM 2; sb stops its copy, whose {LAPSED}.",)),
    Case("fenced-standby-manual-keeps-it", STANDBY, ALL_ALIVE, local(fenced(2), standby=True),
         (ActivateLim(2),), ("LIM 2 stays on sb until a manual fallback is ordered; its",),
         config={"fallback": "manual"}),
    Case("fenced-standby-automatic-falls-back", STANDBY, ALL_ALIVE,
         local(fenced(2), standby=True), (StopLim(2),), ("automatic fallback: sb stops LIM 2",)),
    Case("fenced-standby-replaced-by-higher-priority", STANDBY,
         regs(lim2=dead("lim2"), lim3=dead("lim3")), local(fenced(3), standby=True),
         (StopLim(3), StartLim(2)), ("sb replaces LIM 3 (priority 2) with LIM 2 (priority 1)",)),
    Case("fenced-standby-priority-before-answering", STANDBY,
         regs(lim2=dead("lim2"), lim3=dead("lim3")),
         local(fenced(2), active(3), standby=True), (StopLim(3), ActivateLim(2)),
         ("it keeps LIM 2 (priority 1) and stops LIM 3; sb runs LIM 2 for lim2, which is down; "
          "its lease lapsed",)),
    Case("fenced-standby-answering-one-kept-over-fenced-equal", STANDBY,
         regs(lim3=dead("lim3"), lim4=dead("lim4")),
         local(fenced(3), active(4), standby=True), (StopLim(3),),
         ("it keeps LIM 4 (priority 2) and stops LIM 3",)),
    Case("fenced-standby-preloaded-activates", STANDBY, peers(dead("lim2")),
         local(fenced(2), standby=True), (ActivateLim(2),), ("sb takes it again",),
         preloaded=True),
    Case("fenced-standby-preloaded-home-runs-it", STANDBY, peers(alive("lim2", [active(2)])),
         local(fenced(2), standby=True), (DeactivateLim(2),), ("sb deactivates its copy",),
         preloaded=True),
]


FAILURE_CASES = [
    Case("failed-takeover-waits", STANDBY, regs(lim2=dead("lim2")), local(failures=failed(2)),
         (), ("LIM 2 (priority 1) waits: LIM 2: the service did not start; sb tries LIM 2 "
              "again in 4 s.",)),
    Case("failed-takeover-next-candidate-served", STANDBY,
         regs(lim2=dead("lim2"), lim3=dead("lim3")), local(failures=failed(2)), (StartLim(3),),
         ("sb takes over LIM 3 (priority 2); LIM 2 (priority 1) waits: LIM 2: the service",)),
    Case("failed-takeover-retried-when-due", STANDBY, regs(lim2=dead("lim2")),
         local(failures=failed(2, left=-1)), (StartLim(2),), ("sb takes over LIM 2",)),
    Case("failed-lim-does-not-preempt", STANDBY, regs(lim2=dead("lim2"), lim3=dead("lim3")),
         local(active(3), standby=True, failures=failed(2, left=-1)), (),
         ("sb runs LIM 3 for lim3, which is down.",)),
    Case("failed-stop-waits", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, failures=failed(2, why="cannot remove the alias")), (),
         ("LIM 2: cannot remove the alias; sb tries LIM 2 again in 4 s.",)),
    Case("regular-failed-start-waits", "lim2", peers(alive(STANDBY)), local(failures=failed(2)),
         (), ("LIM 2: the service did not start; lim2 tries LIM 2 again in 4 s.",)),
    Case("preloaded-failed-activation-waits", STANDBY, peers(dead("lim2")),
         local(passive(2), failures=failed(2)), (), ("sb tries LIM 2 again in 4 s",),
         preloaded=True),
]

# A LIM that is not this node's (any more): stopped for good, first, whatever else happens.
RETIRE_CASES = [
    Case("unknown-lim-on-standby-retired", STANDBY, ALL_ALIVE, local(active(9), standby=True),
         (RetireLim(9),),
         ("LIM 9 runs on sb but the config of cluster cluster1 (generation 1) does not name it; "
          "sb stops it for good and removes its alias; sb runs no LIM; all 3 regular servers "
          "are alive.",)),
    Case("unknown-lim-retired-before-a-takeover", STANDBY, regs(lim2=dead("lim2")),
         local(active(9), standby=True), (RetireLim(9), StartLim(2)),
         ("sb stops it for good and removes its alias; lim2 missed 3 heartbeats (3.5 s); sb "
          "takes over LIM 2 (priority 1)",)),
    Case("retiring-lim-stopped-not-taken-over", STANDBY, regs(lim2=dead("lim2")),
         local(active(2), standby=True, retiring=[2]), (RetireLim(2),),
         ("LIM 2 is leaving cluster cluster1; sb stops it for good and removes its alias; sb "
          "runs no LIM; LIM 2 is leaving cluster cluster1, so it takes none over.",)),
    Case("retiring-lim-never-claimed", STANDBY, regs(lim2=dead("lim2")),
         local(retiring=[2]), (), ("LIM 2 is leaving cluster cluster1, so it takes none over",)),
    Case("retiring-lim-others-still-fail-over", STANDBY,
         regs(lim2=dead("lim2"), lim3=dead("lim3")), local(retiring=[2]), (StartLim(3),),
         ("sb takes over LIM 3 (priority 2)",)),
    Case("retiring-preloaded-lim-stopped", STANDBY, peers(alive("lim2", [active(2)])),
         local(passive(2), retiring=[2]), (RetireLim(2),),
         ("LIM 2 is leaving cluster cluster1; sb stops it for good",), preloaded=True),
    Case("retiring-preloaded-lim-not-loaded-again", STANDBY, peers(dead("lim2")),
         local(retiring=[2]), (),
         ("LIM 2 is leaving cluster cluster1; sb neither preloads nor takes it over.",),
         preloaded=True),
    Case("unknown-lim-on-regular-retired", "lim2", peers(alive(STANDBY)),
         local(active(2), active(9)), (RetireLim(9),),
         ("LIM 9 runs on lim2 but the config of cluster cluster1 (generation 1) does not name "
          "it; lim2 stops it for good and removes its alias; lim2 runs LIM 2.",)),
    Case("unknown-lim-held-by-a-failure-waits", STANDBY, ALL_ALIVE,
         local(active(9), standby=True, failures=failed(9, why="the stop command hung")), (),
         ("LIM 9 runs on sb but the config of cluster cluster1 (generation 1) does not name it; "
          "LIM 9: the stop command hung; sb tries LIM 9 again in 4 s",)),
]

# Operators' orders (manual fallback): carried out only once the regular server is ready.
ORDER_CASES = [
    Case("ordered-waits-out-the-hold-down", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, requests=[2], appearances={2: (NOW - 100, NOW - 10)}),
         (), ("the ordered fallback of LIM 2 waits for lim2 to be ready: lim2 came back 2 times "
              "within 15 min, so it is held down for 30 s (20 s left).",),
         config={"fallback": "manual"}),
    Case("ordered-waits-for-a-server-just-back", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, requests=[2], appearances={2: (NOW - 1,)}), (),
         ("waits for lim2 to be ready: lim2 came back 1.0 s ago and must run 3.0 s without a "
          "restart first.",), config={"fallback": "manual"}),
    Case("ordered-after-the-server-settled", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, requests=[2], appearances={2: (NOW - 3,)}),
         (StopLim(2),), ("manual fallback of LIM 2 ordered and lim2 is ready",),
         config={"fallback": "manual"}),
    Case("ordered-waits-for-a-loading-agent", STANDBY, regs(lim2=alive("lim2", ready=False)),
         local(active(2), standby=True, requests=[2]), (),
         ("waits for lim2 to be ready: lim2 is alive but its agent is still loading.",),
         config={"fallback": "manual"}),
    Case("ordered-waits-for-the-failure-hold", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, requests=[2], failures=failed(2, left=-1)),
         (StopLim(2),), ("manual fallback of LIM 2 ordered and lim2 is ready",),
         config={"fallback": "manual"}),
    Case("ordered-preloaded-waits-until-loaded", STANDBY,
         peers(alive("lim2", [passive(2, loading=True)])),
         local(active(2), standby=True, requests=[2]), (),
         ("waits for lim2 to be ready: lim2 is still loading LIM 2.",), preloaded=True,
         config={"fallback": "manual"}),
    Case("ordered-preloaded-waits-for-the-copy", STANDBY, peers(alive("lim2")),
         local(active(2), standby=True, requests=[2]), (),
         ("waits for lim2 to be ready: lim2 has not loaded LIM 2 yet.",), preloaded=True,
         config={"fallback": "manual"}),
    Case("order-in-automatic-cluster-keeps-the-hold-down", STANDBY, ALL_ALIVE,
         local(active(2), standby=True, requests=[2], appearances={2: (NOW - 100, NOW - 10)}),
         (), ("automatic fallback of LIM 2 is held down for 30 s (20 s left).",)),
]

ALL_CASES = (STANDBY_CASES + FALLBACK_CASES + SPLIT_BRAIN_CASES + REGULAR_CASES + ALARM_CASES
             + PRELOADED_CASES + FENCED_CASES + FAILURE_CASES + RETIRE_CASES + ORDER_CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_decide(case: Case) -> None:
    d = decide(case_config(case), case.peers, case.local, NOW)
    assert d.actions == case.actions, d.reason
    for fragment in case.says:
        assert fragment in d.reason


def test_split_brain_travels_as_a_field() -> None:
    cases = {c.id: c for c in ALL_CASES}
    for cid, lims in (("regular-stops", {2}), ("standby-stops-when-configured", {2}),
                      ("regular-deactivates-on-split-brain", {2}), ("auto-fallback", set()),
                      ("fenced-standby-home-runs-it", set())):
        case = cases[cid]
        assert decide(case_config(case), case.peers, case.local, NOW).split_brain == lims, cid


def own(*views: PeerView) -> dict[str, PeerView]:
    """The regular servers running their own LIMs, except those given."""
    out = {f"lim{n}": alive(f"lim{n}", [active(n)]) for n in (2, 3, 4)}
    return {**out, **{v.name: v for v in views}}


@pytest.mark.parametrize("node, views, state, config, expected", [
    (STANDBY, own(dead("lim2"), dead("lim3")), local(active(2), standby=True), {},
     {3: "lim3 is down and sb runs LIM 2 (priority 1), which LIM 3 (priority 2) does not "
         "replace: the standby runs one LIM"}),
    (STANDBY, own(dead("lim2")), local(), {"locks": {2: "regular"}},
     {2: "lim2 is down and LIM 2 is locked to its regular server"}),
    (STANDBY, own(dead("lim2")), local(failures=failed(2)), {},
     {2: "LIM 2: the service did not start; tried again in 4 s"}),
    (STANDBY, own(unknown("lim3")), local(), {},
     {3: "lim3 is not heard yet (it counts as dead only after 3.0 s of silence)"}),
    (STANDBY, own(dead("lim2")), local(fenced(2), standby=True), {},
     {2: "Lease lapsed while this agent was not running on sb; sb answers for it again once "
         "its decision says it owns it"}),
    (STANDBY, ALL_ALIVE, local(), {}, {2: "lim2 is back and about to run LIM 2",
                                      3: "lim3 is back and about to run LIM 3",
                                      4: "lim4 is back and about to run LIM 4"}),
    ("lim2", peers(unknown(STANDBY)), local(fenced(2)), {},
     {2: "sb is not heard yet (it counts as dead only after 3.0 s of silence)"}),
    ("lim2", peers(alive(STANDBY, [active(2)])), local(), {}, {}),
    ("lim2", peers(alive(STANDBY)), local(active(2)), {}, {}),
])
def test_explain_down(node, views, state, config, expected) -> None:
    assert explain_down(cluster_config(node, **config), views, state, NOW) == expected


def test_case_ids_are_unique() -> None:
    assert len({c.id for c in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_reason_is_one_sentence(case: Case) -> None:
    reason = decide(case_config(case), case.peers, case.local, NOW).reason
    assert reason.endswith(".") and ". " not in reason and "\n" not in reason
    assert not reason.endswith("..")


def settles(cfg, views, state: LocalState) -> tuple[Decision, Decision]:
    """Decide, apply, decide again, apply, decide a third time: the second decision holds
    at most alarms (about what now runs here), the third nothing. Returns the first two."""
    d = decide(cfg, views, state, NOW)
    state = state.applied(d.actions, NOW)
    again = decide(cfg, views, state, NOW)
    assert all(isinstance(a, RaiseAlarm | ClearAlarm) for a in again.actions), again.reason
    third = decide(cfg, views, state.applied(again.actions, NOW), NOW)
    assert third.actions == (), (d.reason, again.reason, third.reason)
    return d, again


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_applied_decision_settles(case: Case) -> None:
    """Deciding again after the actions were carried out asks for at most the alarms that
    follow from them, and then for nothing more."""
    settles(case_config(case), case.peers, case.local)


def test_alarm_follows_a_takeover_once_the_lim_runs() -> None:
    """A takeover raises nothing by itself; once the LIM runs the next decision raises
    "LIM is running on standby server", and once it stops, clears it."""
    cfg = cluster_config()
    first, second = settles(cfg, regs(lim2=dead("lim2")), local())
    assert first.actions == (StartLim(2),)
    assert second.actions == (raise_on_sb(2),)
    assert "sb raises the alarm 'LIM is running on standby server' for LIM 2" in second.reason
    running = local(active(2), standby=True)
    stop, cleared = settles(cfg, ALL_ALIVE, running)
    assert stop.actions == (StopLim(2),) and cleared.actions == (ClearAlarm(ON_SB, 2),)


def test_hold_down_is_exposed_in_decision() -> None:
    d = decide(cluster_config(), ALL_ALIVE,
               local(active(2), standby=True, appearances={2: (NOW - 200, NOW - 100, NOW - 10)}),
               NOW)
    assert d.actions == ()
    assert d.hold_downs == (HoldDown(lim=2, appearances=3, seconds=60.0, remaining=50.0),)
    assert "held down for 60 s (50 s left)" in d.reason


def test_no_hold_down_shown_for_manual_fallback() -> None:
    d = decide(cluster_config(fallback="manual"), ALL_ALIVE,
               local(active(2), standby=True, appearances={2: (NOW - 20, NOW - 10)}), NOW)
    assert d.hold_downs == ()


@pytest.mark.parametrize("times, seconds", [
    ((), 0.0),
    ((NOW - 5,), 0.0),
    ((NOW - 10, NOW - 5), HOLD_DOWN_BASE),
    ((NOW - 15, NOW - 10, NOW - 5), 2 * HOLD_DOWN_BASE),
    ((NOW - 20, NOW - 15, NOW - 10, NOW - 5), 4 * HOLD_DOWN_BASE),
    (tuple(NOW - i for i in range(1, 20)), HOLD_DOWN_CAP),
    ((NOW - FLAP_WINDOW - 1, NOW - 5), 0.0),  # the older one is forgotten
])
def test_hold_down_doubles_and_is_capped(times: tuple[float, ...], seconds: float) -> None:
    assert hold_down(2, times, NOW, detection=3.0).seconds == seconds


def test_hold_down_is_at_least_one_detection_period() -> None:
    assert hold_down(2, (NOW - 10, NOW - 5), NOW, detection=60.0).seconds == 60.0


def test_hold_down_remaining_counts_from_latest_appearance() -> None:
    hd = hold_down(2, (NOW - 50, NOW - 5), NOW, detection=3.0)
    assert (hd.seconds, hd.remaining) == (HOLD_DOWN_BASE, HOLD_DOWN_BASE - 5)


def test_record_appearance_prunes_old_records() -> None:
    history = {2: (NOW - FLAP_WINDOW - 10, NOW - 100), 3: (NOW - FLAP_WINDOW - 1,)}
    assert record_appearance(history, 2, NOW) == {2: (NOW - 100, NOW)}


def test_missing_peer_counts_as_unknown() -> None:
    d = decide(cluster_config(), {}, local(), NOW)
    assert d.actions == ()
    assert "waiting to hear lim2, lim3, lim4" in d.reason


def test_dead_peer_heartbeat_content_is_ignored() -> None:
    """A dead regular's last heartbeat said it ran its LIM; that is no split brain."""
    d = decide(cluster_config(), regs(lim2=dead("lim2", runs=[active(2)])),
               local(active(2), standby=True), NOW)
    assert d.actions == ()
    assert "split brain" not in d.reason


def test_a_lim_the_config_does_not_know_is_retired_and_its_alarm_cleared_once_stopped(
        ) -> None:
    """The standby ran LIM 9 when a config without it arrived: it stops it (no crash, no
    KeyError), keeps the alarm while the LIM still runs, clears it once it is down."""
    first, second = settles(cluster_config(), ALL_ALIVE, local(active(9), standby=True))
    assert first.actions == (RetireLim(9),)
    assert second.actions == (ClearAlarm(ON_SB, 9),)


def test_explain_down_of_a_retiring_lim() -> None:
    assert explain_down(cluster_config(), regs(lim2=dead("lim2")), local(retiring=[2]), NOW)[2] \
        == "LIM 2 is leaving cluster cluster1: sb does not run it"


def test_applied_tracks_runs_start_times_and_alarms() -> None:
    state = local(passive(2), ready=True)
    after = state.applied([ActivateLim(2), StartLim(3), raise_on_sb(3)], NOW)
    assert after.run(2) == active(2) and after.run(3) == active(3, loading=True)
    assert after.started_at[3] == NOW and (ON_SB, 3) in after.alarms
    after = after.applied([StopLim(3), DeactivateLim(2), ClearAlarm(ON_SB, 3)], NOW + 1)
    assert after.runs == (passive(2),) and after.alarms == frozenset() and 3 not in after.started_at


def test_local_state_is_immutable() -> None:
    state = local(active(2), appearances={2: (1.0,)})
    with pytest.raises(TypeError):
        state.started_at[2] = 5.0  # type: ignore[index]
    assert LocalState.empty().runs == () and not LocalState.empty().ready


def test_decision_is_deterministic() -> None:
    args = (cluster_config(), regs(lim2=dead("lim2"), lim3=dead("lim3")), local(), NOW)
    assert decide(*args) == decide(*args)
    assert isinstance(decide(*args), Decision)


# ---- properties over random states -------------------------------------------------------

LIMS = (2, 3, 4)


@st.composite
def standby_situations(draw: st.DrawFn):
    locks = {n: draw(st.sampled_from(["none", "regular", "standby"])) for n in LIMS}
    prios = [(n, draw(st.integers(0, 2))) for n in LIMS]
    cfg = cluster_config(lims=prios, locks=locks,
                         fallback=draw(st.sampled_from(["manual", "automatic"])),
                         split_brain_stop=draw(st.sampled_from(["regular", "standby"])))
    views = {}
    for n in LIMS:
        kind = draw(st.sampled_from(["alive", "alive-running", "dead", "unknown", "loading"]))
        name = f"lim{n}"
        views[name] = {"alive": alive(name), "alive-running": alive(name, [active(n)]),
                       "dead": dead(name), "unknown": unknown(name),
                       "loading": alive(name, ready=False)}[kind]
    running = draw(st.lists(st.sampled_from(LIMS), max_size=2, unique=True))
    state = local(*[active(n) for n in running], standby=True, ready=draw(st.booleans()),
                  requests=draw(st.sets(st.sampled_from(LIMS))))
    return cfg, views, state


@settings(max_examples=300, deadline=None)
@given(standby_situations())
def test_standby_never_ends_with_two_lims(situation) -> None:
    cfg, views, state = situation
    d = decide(cfg, views, state, NOW)
    assert len(state.applied(d.actions, NOW).active_lims()) <= 1
    assert d.reason.endswith(".")


@settings(max_examples=300, deadline=None)
@given(standby_situations())
def test_standby_respects_locks_and_takes_only_lims_that_run_nowhere(situation) -> None:
    cfg, views, state = situation
    d = decide(cfg, views, state, NOW)
    for a in d.actions:
        lim = cfg.lim(a.lim) if isinstance(a, StartLim | StopLim) else None
        if isinstance(a, StartLim):
            home = views[lim.server]
            assert lim.lock.value != "regular"
            assert home.liveness is Liveness.DEAD or (
                lim.lock.value == "standby" and home.alive and not home.runs_active(lim.lim))
        if isinstance(a, StopLim):
            assert lim.lock.value != "standby" or len(state.active_lims()) > 1


@settings(max_examples=300, deadline=None)
@given(standby_situations())
def test_standby_decision_settles_once_applied(situation) -> None:
    cfg, views, state = situation
    settles(cfg, views, state)


def test_heartbeat_fixture_is_consistent() -> None:
    hb = heartbeat("lim2", [active(2)])
    assert hb.runs_active(2) and not hb.runs_active(3)


RUN_KINDS = ["none", "active", "active-loading", "passive", "passive-loading", "fenced"]


def _run(lim: int, kind: str):
    return {"none": None, "active": active(lim), "active-loading": active(lim, loading=True),
            "passive": passive(lim), "passive-loading": passive(lim, loading=True),
            "fenced": fenced(lim)}[kind]


@st.composite
def any_situations(draw: st.DrawFn):
    """Any node of a regular or preloaded cluster, with peers in any state."""
    preloaded = draw(st.booleans())
    numbers = (2,) if preloaded else LIMS
    node = draw(st.sampled_from([STANDBY] + [f"lim{n}" for n in numbers]))
    kw = dict(lims=[(n, draw(st.integers(0, 2))) for n in numbers],
              locks={n: draw(st.sampled_from(["none", "regular", "standby"])) for n in numbers},
              fallback=draw(st.sampled_from(["manual", "automatic"])),
              split_brain_stop=draw(st.sampled_from(["regular", "standby"])),
              failover="preloaded" if preloaded else "regular")
    cfg = cluster_config(node, **kw)
    views = {}
    for name in [STANDBY] + [f"lim{n}" for n in numbers]:
        if name == node:
            continue
        liveness = draw(st.sampled_from(["alive", "dead", "unknown"]))
        runs = [r for r in (_run(n, draw(st.sampled_from(RUN_KINDS))) for n in numbers)
                if r is not None] if name == STANDBY else (
            [r] if (r := _run(int(name[3:]), draw(st.sampled_from(RUN_KINDS)))) else [])
        views[name] = {"alive": alive(name, runs, ready=draw(st.booleans())),
                       "dead": dead(name, runs=runs), "unknown": unknown(name)}[liveness]
    mine = numbers if node == STANDBY else (int(node[3:]),)
    runs = [r for r in (_run(n, draw(st.sampled_from(RUN_KINDS))) for n in mine) if r]
    if node == STANDBY and not preloaded:
        runs = [r for r in runs if r.mode is Mode.ACTIVE][:2]
    held = draw(st.sets(st.sampled_from([(ON_SB, n) for n in numbers] + [(OOO, None)])))
    failures = {n: Failure("it failed", NOW + draw(st.sampled_from([-1.0, 4.0])))
                for n in draw(st.sets(st.sampled_from(numbers)))}
    state = local(*runs, ready=draw(st.booleans()), requests=draw(st.sets(st.sampled_from(mine))),
                  alarms=held, failures=failures,
                  appearances={n: tuple(NOW - t for t in draw(st.lists(st.integers(0, 1000),
                                                                         max_size=4)))
                               for n in numbers})
    return cfg, views, state


@settings(max_examples=500, deadline=None)
@given(any_situations())
def test_any_decision_settles_once_applied(situation) -> None:
    cfg, views, state = situation
    settles(cfg, views, state)


@settings(max_examples=500, deadline=None)
@given(any_situations())
def test_any_decision_keeps_to_its_own_lims_and_locks(situation) -> None:
    cfg, views, state = situation
    d = decide(cfg, views, state, NOW)
    assert d.reason.endswith(".") and ". " not in d.reason
    for a in d.actions:
        if isinstance(a, RaiseAlarm | ClearAlarm):
            continue
        lim = cfg.lim(a.lim)
        if cfg.role.value == "regular":
            assert lim.server == cfg.node, "a regular server touches only its own LIM"
        run = state.run(a.lim)
        # Taking a fenced LIM again where it runs moves nothing: no claim.
        claims = (isinstance(a, ActivateLim) and not (run is not None and run.fenced)) or (
            isinstance(a, StartLim) and a.mode is Mode.ACTIVE)
        releases = isinstance(a, StopLim | DeactivateLim)
        if lim.lock.value != "none":
            assert not (claims and lim.lock.value != cfg.role.value), d.reason
            assert not (releases and lim.lock.value == cfg.role.value
                        and len([r for r in state.runs if r.mode is Mode.ACTIVE]) < 2
                        and not (run is not None and run.fenced)), d.reason
    after = state.applied(d.actions, NOW)
    if cfg.role.value == "standby":
        assert len(after.active_lims()) <= 1


# ---- operators' fallback orders ------------------------------------------------------------

def manual(node: str = STANDBY, **kw: Any):
    return cluster_config(node, fallback="manual", **kw)


ON_STANDBY = local(active(2), standby=True)


@pytest.mark.parametrize("cfg, views, state, wait, accepted, pending, says", [
    (manual(), ALL_ALIVE, ON_STANDBY, None, True, False,
     "fallback of LIM 2 ordered: lim2 is ready and sb hands LIM 2 back to it now"),
    (manual(), regs(lim2=dead("lim2")), ON_STANDBY, None, False, False,
     "fallback of LIM 2 refused: lim2 missed 3 heartbeats (3.5 s); LIM 2 stays on sb. Order "
     "it again once lim2 is back, or order it with a wait to have it carried out as soon as "
     "lim2 is ready"),
    (manual(), regs(lim2=dead("lim2")), ON_STANDBY, 60.0, True, True,
     "fallback of LIM 2 waits for lim2 to be ready: lim2 missed 3 heartbeats (3.5 s); it is "
     "carried out once lim2 is ready, or dropped after 60 s"),
    (manual(), regs(lim2=unknown("lim2")), ON_STANDBY, None, False, False,
     "fallback of LIM 2 refused: lim2 is not heard yet"),
    (manual(), regs(lim2=alive("lim2", ready=False)), ON_STANDBY, None, True, True,
     "waits for lim2 to be ready: lim2 is alive but its agent is still loading; it is carried "
     "out once lim2 is ready, or dropped after 600 s"),
    (manual(), ALL_ALIVE, local(active(2), standby=True, appearances={2: (NOW - 100, NOW - 10)}),
     None, True, True, "lim2 came back 2 times within 15 min, so it is held down for 30 s "
     "(20 s left)"),
    (manual(), ALL_ALIVE, local(active(2), standby=True, appearances={2: (NOW - 100, NOW - 10)}),
     10.0, False, False, "held down for 30 s (20 s left), which is more than the order's wait "
     "of 10 s"),
    (cluster_config(), ALL_ALIVE,
     local(active(2), standby=True, appearances={2: (NOW - 100, NOW - 10)}), None, False, False,
     "fallback of LIM 2 refused: lim2 came back 2 times within 15 min and is held down for "
     "30 s; 20 s are left, then the automatic fallback hands LIM 2 back"),
    (cluster_config(), regs(lim2=dead("lim2")), ON_STANDBY, 60.0, False, False,
     "fallback of LIM 2 refused: lim2 is not heard; the automatic fallback hands LIM 2 back "
     "once lim2 is ready"),
    (cluster_config(), ALL_ALIVE, ON_STANDBY, None, True, False,
     "fallback of LIM 2 ordered: lim2 is ready"),
    (manual("lim2"), peers(alive(STANDBY)), local(active(2)), None, False, False,
     "lim2 is a regular server; order a fallback on the standby"),
    (manual(), ALL_ALIVE, local(active(3), standby=True), None, False, False,
     "LIM 2 does not run on sb: there is nothing to hand back to lim2"),
    (manual(), regs(lim2=alive("lim2", ready=False)), local(fenced(2), standby=True), None,
     True, True, "waits for lim2 to be ready: lim2 is alive but its agent is still loading"),
    (manual(lims=((3, 1), (4, 1))), peers(alive("lim3"), alive("lim4")), ON_STANDBY, None,
     False, False, "LIM 2 is not in cluster cluster1"),
    (manual(locks={2: "standby"}), ALL_ALIVE, ON_STANDBY, None, False, False,
     "LIM 2 is locked to the standby; unlock it before ordering a fallback"),
    (manual(), ALL_ALIVE, local(active(2), standby=True, retiring=[2]), None, False, False,
     "LIM 2 is leaving cluster cluster1; it runs on lim2 once it has left"),
], ids=["ready", "down-refused", "down-waits", "unknown-refused", "loading-pending",
        "hold-down-pending", "hold-down-longer-than-wait", "automatic-hold-down-refused",
        "automatic-down-refused", "automatic-ready", "on-a-regular", "not-running-here",
        "fenced-here", "unknown-lim", "locked-to-standby", "leaving"])
def test_fallback_orders_are_judged(cfg, views, state, wait, accepted, pending, says) -> None:
    v = judge_fallback_order(cfg, views, state, 2, NOW, wait)
    assert (v.accepted, v.pending) == (accepted, pending), v.text
    assert says in v.text
    if pending:
        assert v.wait == (wait or 600.0)


def test_a_pending_order_is_carried_out_once_the_server_is_ready() -> None:
    """Ordered while lim2 was down; lim2 comes back, restarts twice (each a reappearance):
    the LIM stays on the standby through the hold-down, and goes back once it is over."""
    cfg, state = manual(), local(active(2), standby=True, requests=[2])
    assert decide(cfg, regs(lim2=dead("lim2")), state, NOW).actions == ()
    flapping = dataclasses.replace(state, appearances={2: (NOW - 20, NOW - 12, NOW - 4)})
    d = decide(cfg, ALL_ALIVE, flapping, NOW)
    assert d.actions == () and "held down for 60 s (56 s left)" in d.reason
    assert "held down" in fallback_blocker(cfg, ALL_ALIVE, flapping, 2, NOW)
    assert decide(cfg, ALL_ALIVE, flapping, NOW + 56).actions == (StopLim(2),)
    assert fallback_blocker(cfg, ALL_ALIVE, flapping, 2, NOW + 56) is None
