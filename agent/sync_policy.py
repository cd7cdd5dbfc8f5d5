"""When this node syncs a LIM's exchange data, with whom, and what it remembers: pure rules.

No I/O, no clocks of its own: callers pass ``now`` (monotonic seconds) and ``wall``
(``time.time()``). :mod:`mxone_agent.sync_worker` runs these rules on a thread of its own.

Who initiates (so that exactly one side starts a sync, and promptly):

* a regular server, for its own LIM: after each data backup, periodically, when ordered,
  and before it starts its LIM again (fallback, boot);
* the standby, for a LIM whose data backup happened on the standby (the LIM runs there),
  as soon as that LIM's regular server is alive: the newer data must reach the regular
  server without waiting for its next periodic sync (direction by modification time does
  the rest). A preloaded cluster whose active side is the standby depends on this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mxone_agent.config import NodeConfig, Server, Sync
from mxone_agent.model import Role

STARTUP_DELAY_S = 5.0
"""A regular server's first sync after its agent starts (heartbeats first say who is up)."""
SCAN_INTERVAL_S = 5.0
"""How often the sync worker looks for a new local version (a backup nobody announced)."""

TRIGGER_ORDER = "ordered"
TRIGGER_BACKUP = "data backup"
TRIGGER_NEW_VERSION = "new local version"
TRIGGER_PERIODIC = "periodic"
TRIGGER_RETRY = "retry"
TRIGGER_BEFORE_START = "before start"
TRIGGER_PEER_BACK = "peer back"


def backoff_delay(failures: int, retry_min: float, retry_max: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: ``retry_min`` doubling
    each time, never more than ``retry_max`` (``failures`` < 1 counts as 1)."""
    exponent = max(0, failures - 1)
    if exponent > 60:  # 2**60 * anything positive is beyond any retry_max
        return retry_max
    return min(retry_max, retry_min * 2.0 ** exponent)


def initiated_lims(config: NodeConfig) -> tuple[int, ...]:
    """The LIMs this node syncs on its own schedule: a regular server's own LIM; none on
    the standby (it initiates only after its own data backups, see :func:`may_initiate`)."""
    if config.role is Role.STANDBY:
        return ()
    own = config.lim_of(config.node)
    return (own.lim,) if own is not None else ()


def peer_of(config: NodeConfig, lim: int) -> Server:
    """The server at the other end of ``lim``'s sync: the standby for a regular server,
    the LIM's regular server for the standby. KeyError for a LIM not in the cluster."""
    if config.role is Role.STANDBY:
        return config.server(config.lim(lim).server)
    return config.standby


def may_initiate(config: NodeConfig, lim: int, peer_alive: bool) -> str | None:
    """None when this node may start a sync of ``lim`` now, else the sentence why not."""
    try:
        entry = config.lim(lim)
    except KeyError:
        return f"LIM {lim} is not in cluster {config.cluster}"
    if config.role is Role.REGULAR and entry.server != config.node:
        return (f"LIM {lim} belongs to {entry.server}; {config.node} syncs only its own LIM "
                f"{', '.join(str(n) for n in initiated_lims(config)) or '(none)'}")
    if config.role is Role.STANDBY and not peer_alive:
        return (f"{entry.server}, the regular server of LIM {lim}, is not alive; it pulls the "
                f"newer data itself before it starts LIM {lim} again")
    return None


@dataclass(frozen=True)
class LimSync:
    """What the sync worker remembers of one LIM (monotonic times for scheduling, wall
    times for operators)."""

    lim: int
    next_at: float | None = None  # the next periodic sync or retry; None: none scheduled
    failures: int = 0  # failures in a row
    seen_version: str | None = None  # newest local version when last looked at
    last_ok_wall: float | None = None
    last_version: str | None = None
    last_direction: str | None = None
    last_error: str | None = None
    last_error_wall: float | None = None
    alarm: bool = False
    pending_push: bool = False  # standby: a backup here waits for the regular server

    @classmethod
    def empty(cls, lim: int) -> LimSync:
        return cls(lim)


def first_state(lim: int, now: float, periodic: bool, seen_version: str | None) -> LimSync:
    """The state of a LIM when the worker starts: a first sync soon if it is ours."""
    return LimSync(lim, next_at=now + STARTUP_DELAY_S if periodic else None,
                   seen_version=seen_version)


def due_trigger(state: LimSync, now: float, newest_local: str | None) -> str | None:
    """Why ``state``'s LIM should be synced now (a TRIGGER_* word), or None.

    A local version newer than the one last seen wins (a backup nobody announced); then a
    retry or periodic sync whose time has come.
    """
    if newest_local is not None and newest_local != state.seen_version:
        return TRIGGER_NEW_VERSION
    if state.next_at is not None and now >= state.next_at:
        return TRIGGER_RETRY if state.failures else TRIGGER_PERIODIC
    return None


def after_success(state: LimSync, settings: Sync, now: float, wall: float, direction: str,
                  version: str | None, newest_local: str | None, periodic: bool) -> LimSync:
    """The state after a successful sync: error and alarm gone, next periodic sync set."""
    return dataclasses.replace(
        state, next_at=now + settings.interval if periodic else None, failures=0,
        seen_version=newest_local, last_ok_wall=wall, last_version=version,
        last_direction=direction, last_error=None, last_error_wall=None, alarm=False,
        pending_push=False)


def after_failure(state: LimSync, settings: Sync, now: float, wall: float, error: str,
                  newest_local: str | None) -> LimSync:
    """The state after a failed sync: one more failure, a retry after the backoff delay,
    the alarm on."""
    failures = state.failures + 1
    delay = backoff_delay(failures, settings.retry_min, settings.retry_max)
    return dataclasses.replace(state, next_at=now + delay, failures=failures,
                               seen_version=newest_local, last_error=error,
                               last_error_wall=wall, alarm=True)


def seconds_until(states: list[LimSync], now: float, cap: float,
                  looked_at: float | None = None) -> float:
    """How long the worker may sleep: until the earliest scheduled sync, at most ``cap``.

    ``looked_at``: when the worker last went through the due syncs. One that was due then
    and is still scheduled no later was not started (sync is off, the peer is not alive,
    this node may not initiate it): it is looked at again after ``cap``, never at once - a
    worker that cannot act on it must not spin on it.
    """
    times = [s.next_at for s in states
             if s.next_at is not None and (looked_at is None or s.next_at > looked_at)]
    return max(0.0, min([cap, *(t - now for t in times)]))
