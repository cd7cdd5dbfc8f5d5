"""The actions a Decision holds, and the alarm codes.

Actions are at the telephony level. The executor does the network part as part of them:
StartLim in active mode and ActivateLim put the alias IP up (unblocked) and send gratuitous
ARP; StartLim in preloaded mode puts the alias up but blocked; DeactivateLim blocks it
again; StopLim removes it; RetireLim stops a LIM that leaves this node's cluster (or that
the config no longer names) and stops guarding its alias. The executor applies a
Decision's actions in order.

Alarm severities follow the usual scale: 4 critical, 3 major, 2 minor, 1 warning,
0 cleared (SEVERITY_CLEARED). An alarm is identified by ``(code, lim)``; ``lim`` is None for
alarms about a server rather than a LIM.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mxone_agent.model import Mode


class AlarmCode(StrEnum):
    # Raised by the standby while it runs a regular server's LIM: the service is up but that
    # regular server is faulty and the LIM has no redundancy left.
    LIM_ON_STANDBY = "lim-running-on-standby"
    # Raised by one regular server (the live one with the lowest LIM number) while the
    # standby is dead: service is unaffected, but there is no redundancy in the cluster.
    STANDBY_OUT_OF_ORDER = "standby-out-of-order"
    # Raised by the data synchronisation job (not by decide) when copying reload and
    # database data to the standby failed: a later failover would run on stale data.
    STANDBY_SYNC_FAILED = "standby-sync-failed"


SEVERITY_CLEARED = 0
ALARM_SEVERITY: dict[AlarmCode, int] = {
    AlarmCode.LIM_ON_STANDBY: 3,
    AlarmCode.STANDBY_OUT_OF_ORDER: 2,
    AlarmCode.STANDBY_SYNC_FAILED: 2,
}
ALARM_TITLE: dict[AlarmCode, str] = {
    AlarmCode.LIM_ON_STANDBY: "LIM is running on standby server",
    AlarmCode.STANDBY_OUT_OF_ORDER: "Standby server is out of order",
    AlarmCode.STANDBY_SYNC_FAILED: "Standby cluster has failed to synchronize data",
}


@dataclass(frozen=True)
class StartLim:
    """Start ``lim``'s service here, in active mode (alias live) or preloaded (alias blocked)."""

    lim: int
    mode: Mode = Mode.ACTIVE


@dataclass(frozen=True)
class StopLim:
    """Stop ``lim``'s service here and remove its alias."""

    lim: int


@dataclass(frozen=True)
class RetireLim:
    """Stop ``lim`` here for good: it is not this node's to run any more (its config no
    longer names it, or the maintenance tool is removing it from the cluster). The service
    is stopped, the alias and any block removed, the lease ended, and - once the config no
    longer names the LIM - its alias is no longer guarded here."""

    lim: int


@dataclass(frozen=True)
class ActivateLim:
    """Make a preloaded (passive) ``lim`` active here: unblock its alias, announce it."""

    lim: int


@dataclass(frozen=True)
class DeactivateLim:
    """Make an active ``lim`` passive again here: block its alias, keep the service loaded."""

    lim: int


@dataclass(frozen=True)
class RaiseAlarm:
    code: AlarmCode
    lim: int | None
    text: str

    @property
    def severity(self) -> int:
        return ALARM_SEVERITY[self.code]


@dataclass(frozen=True)
class ClearAlarm:
    code: AlarmCode
    lim: int | None

    @property
    def severity(self) -> int:
        return SEVERITY_CLEARED


Action = StartLim | StopLim | RetireLim | ActivateLim | DeactivateLim | RaiseAlarm | ClearAlarm
LimAction = StartLim | StopLim | RetireLim | ActivateLim | DeactivateLim
AlarmKey = tuple[AlarmCode, "int | None"]
