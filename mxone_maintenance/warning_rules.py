"""The rules of a second kind: a value they find is allowed, but it demands more of the
system than the operator may know, and the operator is told what.

Each is a :class:`~mxone_maintenance.rules.Rule` of :data:`WARNINGS`, with a code and its
text like a prerequisite rule; :func:`warnings` runs them all and returns a
:class:`FieldWarning` per field found, worded and placed as a refusal is
(``cluster[north].timers = bfd: ... (rule short-detection: ...)``). A warning never refuses
a change: the faces show it with the change (the CLI's ``[WARNING]`` lines and ``--json``
``"warnings"``, the menus' confirmation screen, ``validate``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mxone_agent import contract

from mxone_maintenance.errors import Loc, Violation
from mxone_maintenance.rules import Rule
from mxone_maintenance.values import NodeFacts, SystemValues, Timers

__all__ = ["SHORT_DETECTION", "WARNINGS", "FieldWarning", "detection_timers", "is_short",
           "warnings"]


@dataclass(frozen=True)
class FieldWarning(Violation):
    """A warning rule's finding at one field: the value is allowed, and what it demands is
    said (``field = value: detail (rule code: text)``, ``loc`` its place in the file)."""


SHORT_DETECTION = 0.3
"""Seconds, the ``fastest`` preset's: a shorter failure detection time (the ``bfd`` preset,
or explicit timers as fast) is allowed only with a warning; the seed: a shorter detection
time raises the risk of false failover and needs high-performance servers and networks."""


def is_short(detection: float) -> bool:
    """Whether a failure detection time (seconds) is under :data:`SHORT_DETECTION`."""
    return round(detection, 6) < SHORT_DETECTION


def detection_timers(timers: Timers, failover: str) -> contract.Timers | None:
    """The interval and miss count a cluster's timers come to (a preset's for the cluster's
    failover behaviour); None when they break rule ``timers`` (it reports them)."""
    if timers.preset is not None:
        per = contract.TIMER_PRESETS.get(timers.preset, {})
        return next((t for b, t in per.items() if b == failover),
                    min(per.values(), key=lambda t: t.detection, default=None))
    interval, misses = timers.interval, timers.misses
    low, high = contract.TIMER_INTERVAL
    if (isinstance(interval, bool) or not isinstance(interval, int | float)
            or not low <= interval <= high or isinstance(misses, bool)
            or not isinstance(misses, int) or misses not in contract.MISSES):
        return None
    return contract.Timers(float(interval), misses)


def _short_detection(system: SystemValues, _f: Mapping[str, NodeFacts]
                     ) -> Iterator[tuple[str, object, str, Loc]]:
    for i, c in enumerate(system.clusters):
        t = c.timers
        timers = detection_timers(t, c.failover)
        if timers is None or not is_short(timers.detection):
            continue
        value = t.preset if t.preset is not None else (
            f"{{ interval = {timers.interval:g}, misses = {timers.misses} }}")
        who = (f"preset {t.preset} detects", "it demands") if t.preset is not None else (
            "these timers detect", "they demand")
        yield f"cluster[{c.name}].timers", value, (
            f"{who[0]} a failed server in {timers.detection:g} s ({timers.misses} missed "
            f"heartbeats {timers.interval:g} s apart); {who[1]} a dedicated, low-loss LAN "
            "between the cluster's servers, servers that are not overloaded and that let the "
            "agent run its loop real-time (SCHED_FIFO), or a late or lost heartbeat causes a "
            "false failover"), ("cluster", i, "timers")


WARNINGS: tuple[Rule, ...] = (
    Rule("short-detection", f"a failure detection time under {SHORT_DETECTION:g} s raises the "
         "risk of false failover; allowed, with this warning", _short_detection),
)


def warnings(system: SystemValues, facts: Mapping[str, NodeFacts] | None = None
             ) -> list[FieldWarning]:
    """Every warning of every warning rule, in rule order then field order. Never raises."""
    return [FieldWarning(rule.code, field, value, detail, rule.text, loc)
            for rule in WARNINGS
            for field, value, detail, loc in rule.check(system, facts or {})]
