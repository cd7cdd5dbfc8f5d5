"""What came of a decision, as the executor reports it (:class:`executor.Outcome` per
action): the transitions status lists, and the failures that are inputs of the next
decisions (``LocalState.failures``: the LIM waits RETRY_AFTER before it is tried again).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable

from mxone_agent import journal
from mxone_agent.actions import ActivateLim, RetireLim, StartLim
from mxone_agent.alarms import iso_now
from mxone_agent.config import LimConfig, NodeConfig
from mxone_agent.decide import Decision, Failure
from mxone_agent.executor import Outcome
from mxone_agent.model import TransitionKind

log = logging.getLogger("mxone_agent")

RETRY_AFTER = 5.0
"""Seconds before a LIM action that failed (or found a foreign host on the alias) is tried
again; meanwhile decisions leave that LIM alone, so a failure is logged once per retry."""


@dataclasses.dataclass
class Transition:
    """One LIM transition made here, for status: its kind (``model.TransitionKind``), the
    decision's sentence, and when each step happened (wall clock, ISO)."""

    lim: int
    kind: str
    reason: str
    detected: str
    decided: str
    probed: str | None = None
    alias_up: str | None = None
    first_garp: str | None = None
    service_up: str | None = None
    ok: bool = True
    error: str | None = None


def cleaned_up(decision: Decision, outcomes: Iterable[Outcome]) -> set[int]:
    """The LIMs whose dead service's leftovers this decision cleared (or tried to: a
    cleanup is tried once; what it could not clear, the next start clears)."""
    return {o.action.lim for o in outcomes if o.action.lim is not None
            and decision.kind(o.action) is TransitionKind.CLEANUP}


def read_outcomes(decision: Decision, cfg: NodeConfig, outcomes: Iterable[Outcome], pulled: str,
                  decided: float, detected: float, now: float, failures: dict[int, Failure],
                  foreign_mac: dict[int, str],
                  lim_config: Callable[[int], LimConfig | None]) -> list[Transition]:
    """The transitions of a decision's LIM actions (``pulled``: what the pull before a start
    said; ``decided`` and ``detected``: wall clock), with ``failures`` and ``foreign_mac``
    brought up to date: a success forgets the LIM's failure, a failure is logged once and
    holds the LIM back until ``now`` + RETRY_AFTER."""
    out = []
    for o in outcomes:
        a, lim = o.action, o.action.lim
        kind = decision.kind(a)
        if kind is None or kind is TransitionKind.CLEANUP or lim is None:
            continue
        if o.ok:
            failures.pop(lim, None)
            if isinstance(a, StartLim | ActivateLim):
                foreign_mac.pop(lim, None)
            if isinstance(a, RetireLim):
                log.info("%s: LIM %d is stopped for good here; its alias no longer answers "
                         "on this node", cfg.node, lim, extra=journal.about(lim))
        else:
            if o.foreign_mac:
                foreign_mac[lim] = o.foreign_mac
                x = lim_config(lim)
                why = (f"{kind} of LIM {lim} failed: its alias "
                       f"{x.alias_ip if x else '?'} is answered by {o.foreign_mac}, a host "
                       "outside the cluster")
            else:
                why = f"{kind} of LIM {lim} failed: {o.error}"
            failures[lim] = Failure(why, now + RETRY_AFTER)
            log.warning("%s: %s; LIM %d runs nowhere here and is tried again in %.0f s",
                        cfg.node, why, lim, RETRY_AFTER, extra=journal.about(lim))
        at = {k: iso_now(v) for k, v in o.steps.items()}
        out.append(Transition(
            lim=lim, kind=str(kind), reason=f"{decision.reason} {pulled}".strip(),
            detected=iso_now(detected), decided=iso_now(decided),
            probed=at.get("probed"), alias_up=at.get("alias_up"),
            first_garp=at.get("first_garp"),
            service_up=at.get("service_up"), ok=o.ok, error=o.error))
    return out
