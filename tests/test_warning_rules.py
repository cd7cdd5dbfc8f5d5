"""The warning rules: a value allowed with a warning of what it demands (the bfd preset),
named as a refusal is, never refusing."""

from __future__ import annotations

import pytest

from mxone_agent import contract
from mxone_maintenance import actions, rules, warning_rules
from mxone_maintenance.model import System, Timers
from tests.test_rules import replace_cluster, valid_system

BFD_WARNING = (
    "cluster[north].timers = bfd: preset bfd detects a failed server in 0.15 s (3 missed "
    "heartbeats 0.05 s apart); it demands a dedicated, low-loss LAN between the cluster's "
    "servers, servers that are not overloaded and that let the agent run its loop real-time "
    "(SCHED_FIFO), or a late or lost heartbeat causes a false failover (rule short-detection: a "
    "failure detection time under 0.3 s raises the risk of false failover; allowed, with this "
    "warning)")


def test_bfd_is_fifty_ms_by_three_for_both_failover_behaviours() -> None:
    assert list(contract.TIMER_PRESETS) == ["mxone", "fast", "fastest", "bfd"]
    assert dict(contract.TIMER_PRESETS["bfd"]) == {
        b: contract.Timers(0.05, 3) for b in contract.FailoverBehaviour}


@pytest.mark.parametrize("failover", ["regular", "preloaded"])
def test_bfd_is_allowed_with_a_warning_naming_the_field_and_what_it_demands(failover: str) -> None:
    system = replace_cluster(valid_system(), timers=Timers("bfd"))
    if failover == "preloaded":  # one LIM and its standby
        system = replace_cluster(system, lims=system.clusters[0].lims[:1], failover="preloaded")
    assert rules.check(system) == []
    assert system.validated() is system
    found = system.warnings()
    assert [str(w) for w in found] == [BFD_WARNING]
    w = found[0]
    assert (w.rule, w.field, w.value, w.loc) == (
        "short-detection", "cluster[north].timers", "bfd", ("cluster", 0, "timers"))


@pytest.mark.parametrize("preset", ["mxone", "fast", "fastest"])
@pytest.mark.parametrize("failover", ["regular", "preloaded"])
def test_the_other_presets_bring_no_warning(preset: str, failover: str) -> None:
    system = replace_cluster(valid_system(), timers=Timers(preset))
    if failover == "preloaded":
        system = replace_cluster(system, lims=system.clusters[0].lims[:1], failover="preloaded")
    assert rules.check(system) == [] and system.warnings() == []


@pytest.mark.parametrize("interval, misses, warned", [
    (0.05, 3, True), (0.05, 2, True), (0.1, 2, True),  # as fast as bfd, or faster
    (0.1, 3, False), (0.05, 6, False), (0.06, 5, False), (1.0, 3, False),  # 0.3 s and more
])
def test_explicit_timers_as_fast_are_warned_of_too(interval: float, misses: int,
                                                     warned: bool) -> None:
    system = replace_cluster(valid_system(), timers=Timers.explicit(interval, misses))
    assert rules.check(system) == []
    found = [str(w) for w in system.warnings()]
    assert bool(found) is warned, found
    if warned:
        assert found[0].startswith(
            f"cluster[north].timers = {{ interval = {interval:g}, misses = {misses} }}: these "
            f"timers detect a failed server in {interval * misses:g} s ({misses} missed "
            f"heartbeats {interval:g} s apart); they demand a dedicated, low-loss LAN")


@pytest.mark.parametrize("timers", [Timers("slow"), Timers.explicit(0.01, 3),
                                    Timers.explicit(0.05, 1), Timers.explicit(True, 3),  # type: ignore[arg-type]
                                    Timers(preset=None, interval="0.05", misses=3)])  # type: ignore[arg-type]
def test_timers_the_rules_refuse_are_theirs_alone(timers: Timers) -> None:
    system = replace_cluster(valid_system(), timers=timers)
    assert [v.rule for v in rules.check(system)] == ["timers"]
    assert system.warnings() == []  # one mistake, reported once, by the rule it breaks


def test_a_change_brings_its_own_warnings_only() -> None:
    """A change's warnings are those its system has and the one before had not: creating a
    bfd cluster warns; a later change elsewhere in that system does not repeat it."""
    system = replace_cluster(valid_system(), timers=Timers("bfd"))
    without = replace_cluster(valid_system(), timers=Timers("fast"))
    assert [str(w) for w in system.warnings(since=without)] == [BFD_WARNING]
    assert system.warnings(since=system) == []
    change = actions.change_fallback_or_priority(system, "north", "manual", {})
    assert change.after.warnings() != [] and change.after.warnings(since=change.before) == []


def test_warnings_never_raise_and_never_refuse() -> None:
    assert warning_rules.warnings(System()) == []
    broken = replace_cluster(valid_system(), timers=Timers("bfd"), failover="hot", lims=())
    assert [str(w) for w in warning_rules.warnings(broken)] == [BFD_WARNING]
    assert {w.rule for w in warning_rules.warnings(broken)} <= {r.code for r in warning_rules.WARNINGS}
    assert not set(rules.RULES_BY_CODE) & {r.code for r in warning_rules.WARNINGS}
