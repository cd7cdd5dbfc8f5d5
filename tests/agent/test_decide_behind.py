"""A node that is behind: an alive peer advertises a newer config generation than its own.

It starts nothing (but a regular server's own LIM while the standby is dead), gives nothing
back on its stale config's say, keeps what it runs, and yields in a split brain; a current
standby hands nothing back to a regular server that is behind. Each case is paired with the
same state at equal generations, so the generation is what makes the difference.
"""

from __future__ import annotations

from mxone_agent.actions import (
    ActivateLim,
    DeactivateLim,
    StartLim,
    StopLim,
)
from mxone_agent.decide import (
    Behind,
    behind,
    decide,
    explain_down,
    fallback_blocker,
    judge_fallback_order,
)
from mxone_agent.model import Mode

from .builders import (
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

OLD, NEW = 6, 7


def lim_actions(decision) -> list:
    """The actions on LIMs (alarms left out)."""
    return [a for a in decision.actions
            if isinstance(a, StartLim | StopLim | ActivateLim | DeactivateLim)]


# ---- who is behind --------------------------------------------------------------------------

def test_behind_names_the_highest_generation_and_who_holds_it() -> None:
    cfg = cluster_config(STANDBY, generation=OLD)
    views = peers(alive("lim2", generation=NEW), alive("lim3", generation=NEW),
                  dead("lim4", generation=9))
    b = behind(cfg, views)
    assert b == Behind(generation=OLD, current=NEW, peers=("lim2", "lim3"))
    assert b.as_status() == {"generation": OLD, "current": NEW, "peers": ["lim2", "lim3"]}


def test_a_dead_or_older_peer_does_not_make_a_node_behind() -> None:
    cfg = cluster_config(STANDBY, generation=NEW)
    assert behind(cfg, peers(dead("lim2", generation=NEW + 5), alive("lim3", generation=OLD),
                             alive("lim4", generation=NEW))) is None


# ---- a standby that is behind ---------------------------------------------------------------

def test_behind_standby_does_not_take_over_a_dead_regulars_lim() -> None:
    views = peers(dead("lim2", generation=NEW), alive("lim3", generation=NEW),
                  alive("lim4", generation=NEW))
    current = decide(cluster_config(STANDBY, generation=NEW), views, local(), NOW)
    assert lim_actions(current) == [StartLim(2)]
    d = decide(cluster_config(STANDBY, generation=OLD), views, local(), NOW)
    assert lim_actions(d) == []
    assert ("lim3, lim4 hold generation 7 and sb is at 6 (behind): sb starts nothing and hands "
            "nothing back until the maintenance tool brings it to generation 7") in d.reason


def test_a_peer_that_lies_about_its_generation_only_holds_the_standby_back() -> None:
    """lim3 claims generation 99, which does not exist: the standby only does less."""
    views = peers(dead("lim2"), alive("lim3", generation=99), alive("lim4"))
    d = decide(cluster_config(STANDBY, generation=1), views, local(), NOW)
    assert lim_actions(d) == []
    assert "lim3 holds generation 99 and sb is at 1 (behind)" in d.reason


def test_behind_standby_keeps_its_lim_instead_of_automatic_fallback() -> None:
    views = peers(alive("lim2", generation=NEW), alive("lim3", generation=NEW),
                  alive("lim4", generation=NEW))
    state = local(active(2), standby=True)
    assert lim_actions(decide(cluster_config(STANDBY, generation=NEW), views, state, NOW)) == [
        StopLim(2)]
    d = decide(cluster_config(STANDBY, generation=OLD), views, state, NOW)
    assert lim_actions(d) == []
    assert "sb keeps LIM 2" in d.reason
    assert d.actions == ()  # its alarm stays raised: LIM 2 still runs here


def test_behind_standby_ignores_an_ordered_manual_fallback() -> None:
    views = peers(alive("lim2", generation=NEW), alive("lim3", generation=NEW),
                  alive("lim4", generation=NEW))
    state = local(active(2), standby=True, requests=[2])
    assert lim_actions(decide(cluster_config(STANDBY, fallback="manual", generation=NEW), views,
                              state, NOW)) == [StopLim(2)]
    cfg = cluster_config(STANDBY, fallback="manual", generation=OLD)
    assert lim_actions(decide(cfg, views, state, NOW)) == []
    assert fallback_blocker(cfg, views, state, 2, NOW).startswith(
        "lim2, lim3, lim4 hold generation 7 and sb is at 6 (behind)")


def test_behind_standby_does_not_replace_its_lim_by_priority() -> None:
    views = peers(dead("lim2", generation=NEW), dead("lim3", generation=NEW),
                  alive("lim4", generation=NEW))
    state = local(active(3), standby=True)
    assert lim_actions(decide(cluster_config(STANDBY, generation=NEW), views, state, NOW)) == [
        StopLim(3), StartLim(2)]
    # lim4 is at NEW and alive: the standby at OLD keeps LIM 3.
    assert lim_actions(decide(cluster_config(STANDBY, generation=OLD), views, state, NOW)) == []


def test_behind_standby_keeps_a_lim_its_stale_config_locks_to_the_regular() -> None:
    """A stale lock to the regular would not stop it anyway; nor does a stale unlock stop a
    LIM locked to the standby in the new generation (automatic fallback waits)."""
    views = peers(alive("lim2", generation=NEW), alive("lim3", generation=NEW),
                  alive("lim4", generation=NEW))
    state = local(active(2), standby=True)
    for locks in ({2: "regular"}, {}):
        cfg = cluster_config(STANDBY, locks=locks, generation=OLD)
        assert lim_actions(decide(cfg, views, state, NOW)) == []


def test_behind_standby_does_not_take_a_fenced_lim_again() -> None:
    views = peers(dead("lim2", generation=NEW), alive("lim3", generation=NEW),
                  alive("lim4", generation=NEW))
    state = local(fenced(2), standby=True)
    assert lim_actions(decide(cluster_config(STANDBY, generation=NEW), views, state, NOW)) == [
        ActivateLim(2)]
    d = decide(cluster_config(STANDBY, generation=OLD), views, state, NOW)
    assert lim_actions(d) == []
    assert "does not answer for it again while behind" in d.reason


def test_behind_standby_lets_go_of_a_fenced_copy_its_regular_runs() -> None:
    views = peers(alive("lim2", [active(2)], generation=NEW), alive("lim3", generation=NEW),
                  alive("lim4", generation=NEW))
    d = decide(cluster_config(STANDBY, generation=OLD), views, local(fenced(2), standby=True),
               NOW)
    assert lim_actions(d) == [StopLim(2)]


def test_behind_preloaded_standby_neither_preloads_nor_activates() -> None:
    up = peers(alive("lim2", [active(2)], generation=NEW))
    assert lim_actions(decide(preloaded_config(generation=NEW), up, local(), NOW)) == [
        StartLim(2, Mode.PRELOADED)]
    d = decide(preloaded_config(generation=OLD), up, local(), NOW)
    assert lim_actions(d) == [] and "sb does not preload LIM 2 while behind" in d.reason


def test_behind_preloaded_standby_keeps_passive_when_the_regular_dies() -> None:
    """The regular went silent after it was heard at the newer generation: the heartbeat
    that made the standby behind is no longer alive, so the standby is current again and
    takes over. A node is behind only while a peer that says so is alive."""
    views = peers(dead("lim2", generation=NEW))
    d = decide(preloaded_config(generation=OLD), views, local(passive(2)), NOW)
    assert lim_actions(d) == [ActivateLim(2)]


# ---- split brain between generations --------------------------------------------------------

def test_split_brain_the_older_generation_stops_whatever_the_configs_say() -> None:
    # The standby is behind; its stale config locks LIM 2 to the standby (the regular stops,
    # it would say), and the regular's current one names the regular: both agree on the
    # standby.
    sb_cfg = cluster_config(STANDBY, locks={2: "standby"}, generation=OLD)
    reg_cfg = cluster_config("lim2", split_brain_stop="regular", generation=NEW)
    sb_view = peers(alive("lim2", [active(2)], generation=NEW), alive("lim3", generation=NEW),
                    alive("lim4", generation=NEW))
    reg_view = peers(alive(STANDBY, [active(2)], generation=OLD), alive("lim3", generation=NEW),
                     alive("lim4", generation=NEW))
    sb = decide(sb_cfg, sb_view, local(active(2), standby=True), NOW)
    reg = decide(reg_cfg, reg_view, local(active(2)), NOW)
    assert lim_actions(sb) == [StopLim(2)] and sb.split_brain == {2}
    assert "sb holds the older config generation (6 here, 7 on lim2)" in sb.reason
    assert lim_actions(reg) == [] and "sb is the side that stops" in reg.reason


def test_split_brain_a_behind_regular_stops_even_when_its_lim_is_locked_to_it() -> None:
    reg_cfg = cluster_config("lim2", locks={2: "regular"}, generation=OLD)
    sb_cfg = cluster_config(STANDBY, split_brain_stop="standby", generation=NEW)
    reg_view = peers(alive(STANDBY, [active(2)], generation=NEW))
    sb_view = peers(alive("lim2", [active(2)], generation=OLD), alive("lim3", generation=NEW),
                    alive("lim4", generation=NEW))
    reg = decide(reg_cfg, reg_view, local(active(2)), NOW)
    sb = decide(sb_cfg, sb_view, local(active(2), standby=True), NOW)
    assert lim_actions(reg) == [StopLim(2)] and reg.split_brain == {2}
    assert lim_actions(sb) == [] and "lim2 is the side that stops" in sb.reason
    # At equal generations the lock decides: the standby stops.
    same = decide(cluster_config("lim2", locks={2: "regular"}, generation=NEW),
                  reg_view, local(active(2)), NOW)
    assert lim_actions(same) == []


# ---- a regular server that is behind --------------------------------------------------------

def test_behind_regular_does_not_start_its_lim_while_the_standby_is_alive() -> None:
    for fallback in ("automatic", "manual"):
        views = peers(alive(STANDBY, generation=NEW))
        assert lim_actions(decide(cluster_config("lim2", fallback=fallback, generation=NEW),
                                  views, local(), NOW)) == [StartLim(2)]
        d = decide(cluster_config("lim2", fallback=fallback, generation=OLD), views, local(),
                   NOW)
        assert lim_actions(d) == []
        assert ("sb holds generation 7 and lim2 is at 6 (behind): lim2 starts nothing but its "
                "own LIM while sb is dead, until the maintenance tool brings it to generation "
                "7") in d.reason
        assert "sb is alive and does not run LIM 2; lim2 does not run LIM 2 while behind" \
            in d.reason


def test_behind_regular_waits_while_the_standby_runs_its_lim() -> None:
    views = peers(alive(STANDBY, [active(2)], generation=NEW))
    d = decide(cluster_config("lim2", generation=OLD), views, local(), NOW)
    assert lim_actions(d) == [] and "sb runs LIM 2" in d.reason


def test_behind_regular_runs_its_own_lim_while_the_standby_is_dead() -> None:
    views = peers(dead(STANDBY, generation=NEW), alive("lim3", generation=NEW))
    d = decide(cluster_config("lim2", generation=OLD), views, local(), NOW)
    assert lim_actions(d) == [StartLim(2)]
    assert "so no other server can answer for LIM 2; lim2 starts LIM 2" in d.reason
    # Not when its config locks it to the standby: that only holds it back further.
    locked = decide(cluster_config("lim2", locks={2: "standby"}, generation=OLD), views,
                    local(), NOW)
    assert lim_actions(locked) == []


def test_behind_regular_keeps_running_its_lim() -> None:
    views = peers(alive(STANDBY, generation=NEW))
    for locks in ({}, {2: "standby"}):
        d = decide(cluster_config("lim2", locks=locks, generation=OLD), views,
                   local(active(2)), NOW)
        assert lim_actions(d) == []


def test_behind_regular_keeps_a_fenced_lim_silent_and_does_not_stop_it_for_a_lock() -> None:
    views = peers(alive(STANDBY, generation=NEW))
    # Current: a fenced LIM locked to the standby is stopped; unlocked, it is taken again.
    assert lim_actions(decide(cluster_config("lim2", locks={2: "standby"}, generation=NEW),
                              views, local(fenced(2)), NOW)) == [StopLim(2)]
    assert lim_actions(decide(cluster_config("lim2", generation=NEW), views, local(fenced(2)),
                              NOW)) == [ActivateLim(2)]
    for locks in ({}, {2: "standby"}):
        d = decide(cluster_config("lim2", locks=locks, generation=OLD), views,
                   local(fenced(2)), NOW)
        assert lim_actions(d) == []
        assert "lim2 keeps it silent while behind" in d.reason
    # The standby runs it: the fenced copy goes (a rule no config field changes).
    running = peers(alive(STANDBY, [active(2)], generation=NEW))
    assert lim_actions(decide(cluster_config("lim2", generation=OLD), running,
                              local(fenced(2)), NOW)) == [StopLim(2)]


def test_behind_preloaded_regular_does_not_preload() -> None:
    views = peers(alive(STANDBY, [active(2)], generation=NEW))
    cfg_new = preloaded_config("lim2", generation=NEW)
    assert lim_actions(decide(cfg_new, views, local(), NOW)) == [StartLim(2, Mode.PRELOADED)]
    assert lim_actions(decide(preloaded_config("lim2", generation=OLD), views, local(),
                              NOW)) == []


def test_explain_down_says_the_node_is_behind() -> None:
    views = peers(alive(STANDBY, generation=NEW))
    why = explain_down(cluster_config("lim2", generation=OLD), views, local(), NOW)
    assert why[2].startswith("sb holds generation 7 and lim2 is at 6 (behind)")


# ---- a current standby and a regular server that is behind ----------------------------------

def _current_standby(fallback: str = "automatic"):
    cfg = cluster_config(STANDBY, fallback=fallback, generation=NEW)
    views = peers(alive("lim2", generation=OLD), alive("lim3", generation=NEW),
                  alive("lim4", generation=NEW))
    return cfg, views


def test_current_standby_hands_nothing_back_to_a_regular_that_is_behind() -> None:
    cfg, views = _current_standby()
    state = local(active(2), standby=True)
    d = decide(cfg, views, state, NOW)
    assert lim_actions(d) == []
    assert ("lim2 is at generation 6, behind sb's 7; sb keeps LIM 2 until the maintenance tool "
            "brings lim2 to generation 7") in d.reason
    refused = judge_fallback_order(cfg, views, state, 2, NOW)
    assert not refused.accepted and "lim2 is at generation 6, behind sb's 7" in refused.text
    # Once lim2 holds the current generation, the automatic fallback follows.
    views = {**views, "lim2": alive("lim2", generation=NEW)}
    assert lim_actions(decide(cfg, views, state, NOW)) == [StopLim(2)]


def test_current_standby_keeps_a_manual_order_pending_for_a_regular_that_is_behind() -> None:
    cfg, views = _current_standby("manual")
    state = local(active(2), standby=True, requests=[2])
    assert lim_actions(decide(cfg, views, state, NOW)) == []
    v = judge_fallback_order(cfg, views, local(active(2), standby=True), 2, NOW)
    assert v.accepted and v.pending and "lim2 is at generation 6, behind sb's 7" in v.text


def test_current_standby_does_not_take_over_from_an_alive_regular_that_is_behind() -> None:
    """It cannot know that the regular's last heartbeat is not older than a start it is
    doing: it leaves the LIM to the tool's update (and says why in status)."""
    cfg, views = _current_standby()
    assert lim_actions(decide(cfg, views, local(), NOW)) == []
    why = explain_down(cfg, views, local(), NOW)
    assert why[2].startswith("lim2 is at generation 6, behind sb's 7: it starts nothing")


def test_current_preloaded_standby_keeps_its_lim_active_for_a_regular_that_is_behind() -> None:
    state = local(active(2), standby=True)
    up = peers(alive("lim2", [passive(2)], generation=NEW))
    cfg = preloaded_config(generation=NEW)
    assert lim_actions(decide(cfg, up, state, NOW)) == [DeactivateLim(2)]
    d = decide(cfg, peers(alive("lim2", [passive(2)], generation=OLD)), state, NOW)
    assert lim_actions(d) == [] and "lim2 is at generation 6, behind sb's 7" in d.reason


# ---- a new lock to the standby ----------------------------------------------------------------

def test_a_new_lock_to_the_standby_waits_for_the_regulars_heartbeat_of_that_generation() -> None:
    """The regular server's last heartbeat, from its older config, says it runs nothing -
    but it may have started its LIM right after sending it (found by the cluster simulation:
    both answered). Only a heartbeat of the lock's generation proves it never will."""
    cfg = cluster_config(STANDBY, locks={2: "standby"}, generation=NEW)
    stale = decide(cfg, peers(alive("lim2", generation=OLD), alive("lim3", generation=NEW)),
                   local(), NOW)
    assert lim_actions(stale) == []
    current = decide(cfg, peers(alive("lim2", generation=NEW), alive("lim3", generation=NEW)),
                     local(), NOW)
    assert lim_actions(current) == [StartLim(2, Mode.ACTIVE)]
    assert "LIM 2 is locked to the standby and lim2 does not run it" in current.reason
