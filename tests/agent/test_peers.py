"""Peer liveness: alive / dead / unknown, the late-wakeup rule, and reappearances."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxone_agent.config import Timers
from mxone_agent.local_state import HOLD_DOWN_BASE, hold_down, record_appearance
from mxone_agent.peers import STALL_FACTOR, Liveness, PeerView, judge, reappeared, resumed_at

from tests.agent.builders import active, heartbeat

T = Timers(interval=1.0, misses=3)  # dead after 3.0 s
START = 100.0

ALIVE, DEAD, UNKNOWN = Liveness.ALIVE, Liveness.DEAD, Liveness.UNKNOWN


@pytest.mark.parametrize("last_heard, now, expected", [
    (None, START, UNKNOWN),  # just started, nothing heard
    (None, START + 3.0, UNKNOWN),  # exactly one detection period: not yet
    (None, START + 3.01, DEAD),  # a full detection period of silence since start
    (START + 1, START + 1, ALIVE),
    (START + 1, START + 4.0, ALIVE),  # 3 missed heartbeats is the limit, not beyond it
    (START + 1, START + 4.01, DEAD),
    (START + 1, START + 50, DEAD),
])
def test_judge(last_heard: float | None, now: float, expected: Liveness) -> None:
    assert judge(last_heard, now, T, resumed=START) is expected


def test_late_wakeup_does_not_declare_peers_dead() -> None:
    """The loop last ran at 110 and wakes at 140 (it was SIGSTOPped): peers last heard at
    109.5 are not dead at 140, and become dead only after 3 s of running time without a
    heartbeat."""
    last_tick, heard = 110.0, 109.5
    resumed = resumed_at(last_tick, START, now=140.0, timers=T)
    assert resumed == 140.0
    assert judge(heard, 140.0, T, resumed) is UNKNOWN
    assert judge(heard, 142.0, T, resumed) is UNKNOWN
    assert judge(heard, 143.01, T, resumed) is DEAD
    assert judge(140.5, 141.0, T, resumed) is ALIVE  # a fresh heartbeat after resuming


def test_without_the_resume_rule_the_same_peer_would_be_dead() -> None:
    assert judge(109.5, 140.0, T, resumed=START) is DEAD


def test_on_time_ticks_keep_the_resume_time() -> None:
    resumed = START
    for tick in range(1, 30):
        resumed = resumed_at(START + tick - 1, resumed, START + tick, T)
    assert resumed == START


@pytest.mark.parametrize("gap, stalled", [
    (1.0, False), (T.interval * STALL_FACTOR, False), (T.interval * STALL_FACTOR + 0.01, True),
    (T.detection + 1, True),
])
def test_stall_threshold(gap: float, stalled: bool) -> None:
    assert (resumed_at(200.0, START, 200.0 + gap, T) == 200.0 + gap) is stalled


def test_first_tick_keeps_the_start_time() -> None:
    assert resumed_at(None, START, START + 0.2, T) == START


@given(last_heard=st.one_of(st.none(), st.floats(0, 1000)), resumed=st.floats(0, 1000),
       elapsed=st.floats(0, 1000))
def test_never_dead_within_a_detection_period_of_resuming(last_heard, resumed, elapsed) -> None:
    now = resumed + elapsed
    if last_heard is not None and last_heard > now:
        return
    verdict = judge(last_heard, now, T, resumed)
    if now - resumed <= T.detection:
        assert verdict is not DEAD
    if last_heard is not None and now - last_heard <= T.detection and last_heard >= resumed:
        assert verdict is ALIVE


def test_peer_view_life_cycle() -> None:
    view = PeerView.unknown("lim2")
    assert view.liveness is UNKNOWN and view.runs(2) is None and not view.ready
    view = view.heard(heartbeat("lim2", [active(2)]), START + 1)
    assert view.alive and view.ready and view.runs_active(2) and view.silent_for(START + 2) == 1.0
    view = view.judged(START + 5, T, resumed=START)
    assert view.dead and view.runs(2) is None  # a dead peer's old news is not acted on
    assert view.heartbeat is not None  # but kept for status
    assert view.judged(START + 5, T, resumed=START) is view  # no change, same object


def test_not_ready_peer() -> None:
    view = PeerView.unknown("lim2").heard(heartbeat("lim2", ready=False), START)
    assert view.alive and not view.ready


def test_reappearance_after_death() -> None:
    was_dead = PeerView("lim2", DEAD, START, heartbeat("lim2"))
    back = was_dead.heard(heartbeat("lim2", seq=9), START + 10)
    assert reappeared(was_dead, back)


def test_reappearance_by_new_incarnation_without_death() -> None:
    before = PeerView.unknown("lim2").heard(heartbeat("lim2", incarnation=1), START)
    after = before.heard(heartbeat("lim2", incarnation=2), START + 1)
    assert reappeared(before, after)


@pytest.mark.parametrize("before", [
    None,  # first time in this agent's life
    PeerView.unknown("lim2"),  # first heard since this agent started
    PeerView.unknown("lim2").heard(heartbeat("lim2", incarnation=1), START),  # same incarnation
])
def test_not_a_reappearance(before: PeerView | None) -> None:
    after = PeerView.unknown("lim2").heard(heartbeat("lim2", incarnation=1, seq=2), START + 1)
    assert not reappeared(before, after)


def test_a_dead_peer_has_not_reappeared() -> None:
    before = PeerView("lim2", DEAD, START, heartbeat("lim2"))
    assert not reappeared(before, before)


def test_reappearance_after_death_across_a_local_stall() -> None:
    """lim2 is judged dead; then this node's loop stalls, which makes lim2 unknown (no
    evidence for the stalled time); lim2 heard again is still back from the dead. (Seen
    in the lab under load: the standby stalled while lim2 was down, counted no
    reappearance, and gave a flapping lim2 its LIM back with no hold-down.)"""
    view = PeerView.unknown("lim2").heard(heartbeat("lim2", [active(2)]), START + 1)
    view = view.judged(START + 5, T, resumed=START)
    assert view.dead and view.lost
    stalled = resumed_at(START + 5, START, START + 20, T)
    assert stalled == START + 20
    view = view.judged(START + 20, T, resumed=stalled)
    assert view.liveness is UNKNOWN and view.lost  # the late-wakeup rule still holds
    back = view.heard(heartbeat("lim2", seq=9), START + 20.05)
    assert reappeared(view, back) and not back.lost
    assert not reappeared(back, back.heard(heartbeat("lim2", seq=10), START + 20.1))


def test_a_local_stall_alone_is_no_reappearance() -> None:
    view = PeerView.unknown("lim2").heard(heartbeat("lim2"), START + 1)
    view = view.judged(START + 20, T, resumed=START + 20)
    assert view.liveness is UNKNOWN and not view.lost
    assert not reappeared(view, view.heard(heartbeat("lim2", seq=9), START + 20.05))


def test_flapping_with_a_stall_in_between_still_gets_a_hold_down() -> None:
    """Two outages of lim2 seen by the standby, its loop stalling during the second: the
    second return is counted, and the fallback is held down."""
    appearances: dict[int, tuple[float, ...]] = {}
    view = PeerView.unknown("lim2").heard(heartbeat("lim2"), START)
    seq = 1
    for down, stall in ((START + 10, None), (START + 30, START + 34.5)):
        view = view.judged(down + 4, T, resumed=START)  # silent since ``down``: dead
        assert view.dead
        resumed = START
        if stall is not None:
            resumed = stall
            view = view.judged(stall, T, resumed=resumed)
            assert not view.dead
        seq += 1
        back = view.heard(heartbeat("lim2", seq=seq), down + 5)
        if reappeared(view, back):
            appearances = record_appearance(appearances, 2, down + 5)
        view = back
    hd = hold_down(2, appearances.get(2, ()), START + 36, T.detection)
    assert hd.appearances == 2 and hd.seconds == HOLD_DOWN_BASE and hd.remaining > 0
