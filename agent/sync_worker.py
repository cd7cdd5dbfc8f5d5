"""The agent's exchange-data sync: one thread of its own, beside the action worker.

A sync can take minutes; a failover must never wait for one, so syncs run here and never
on the daemon's loop or action worker. The daemon hands orders in (:meth:`SyncWorker.order`,
:meth:`SyncWorker.backup_happened`, :meth:`SyncWorker.pull_before_start`) and reads
:meth:`SyncWorker.status`; everything else happens on this thread:

* triggers: a data backup here (the backup command tells the agent; a scan of the xdata
  root every :data:`sync_policy.SCAN_INTERVAL_S` finds unannounced versions), the periodic
  ``sync.interval``, a ``ctl sync`` order, and a regular server's start of its own LIM
  (a *pull* first, bounded in time);
* who initiates, and with whom: :mod:`mxone_agent.sync_policy`;
* a failure raises the alarm "Standby cluster has failed to synchronize data" for the LIM
  (its text is the failure), schedules a retry with exponential backoff from
  ``sync.retry_min`` to ``sync.retry_max``, and the next success clears the alarm.

Sync is off (status says why) while the sync key file is absent: no sync is attempted and
the thread only looks every :data:`sync_policy.SCAN_INTERVAL_S` whether the key appeared.

Nothing escapes the thread: whatever a sync raises (a peer's unexpected answer, a bug) is a
failed sync of that LIM, with its alarm and backoff; every order's ``done`` is called
exactly once, with one row per LIM, also when the worker is stopped before it came to it.
A sync that is due but cannot start (sync off, the peer not alive) never makes the thread
spin: it is looked at again after ``SCAN_INTERVAL_S``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mxone_agent import sync_policy, xdata, xdata_sync
from mxone_agent.actions import ALARM_TITLE, AlarmCode
from mxone_agent.alarms import AlarmBook, iso_now
from mxone_agent.config import NodeConfig
from mxone_agent.model import Role
from mxone_agent.sync_policy import LimSync

log = logging.getLogger("mxone_agent")

SyncFunction = Callable[..., xdata_sync.SyncResult]
Reply = Callable[[list[dict[str, Any]]], None]


@dataclass(frozen=True)
class _Order:
    lims: tuple[int, ...]
    trigger: str
    done: Reply | None = None


_STOP = object()


def failed_result(lim: int, error: str, seconds: float = 0.0) -> dict[str, Any]:
    """A ``ctl sync`` result row for a LIM whose sync failed or was refused."""
    return {"lim": lim, "ok": False, "direction": None, "version": None, "fetched_files": 0,
            "fetched_bytes": 0, "reused_files": 0, "seconds": round(seconds, 3), "error": error}


def ok_result(result: xdata_sync.SyncResult) -> dict[str, Any]:
    """A ``ctl sync`` result row for a LIM whose sync succeeded."""
    return {"ok": True, **result.to_dict()}


class SyncWorker:
    """Syncs this node's LIM data on its own thread. Thread-safe entry points only."""

    def __init__(self, config: Callable[[], NodeConfig], alarms: AlarmBook,
                 peer_alive: Callable[[str], bool],
                 active_here: Callable[[], set[int]],
                 on_pulled: Callable[[int, str], None],
                 sync: SyncFunction = xdata_sync.sync_lim,
                 mono: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        """``config`` gives the config in force; ``peer_alive(name)`` the heartbeat verdict;
        ``active_here()`` the LIMs active on this node; ``on_pulled(lim, version)`` is
        called (on this thread) after newer data arrived here."""
        self._config = config
        self._alarms = alarms
        self._peer_alive = peer_alive
        self._active_here = active_here
        self._on_pulled = on_pulled
        self._sync = sync
        self._mono = mono
        self._wall = wall
        self._orders: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._states: dict[int, LimSync] = {}
        self._running: int | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False  # no order is taken any more (under _lock)
        self._last_bug = ""  # the last internal error logged with its traceback

    # ---- entry points (any thread) ----------------------------------------------------

    def start(self) -> None:
        """Schedule the first syncs and start the thread. A sync alarm the alarm book
        restored (raised before the agent restarted) shows in :meth:`status` and is cleared
        by the LIM's next successful sync."""
        now = self._mono()
        cfg = self._config()
        alarmed = {lim for code, lim in self._alarms.active_keys([AlarmCode.STANDBY_SYNC_FAILED])
                   if lim is not None}
        with self._lock:
            for lim in sync_policy.initiated_lims(cfg):
                self._states[lim] = sync_policy.first_state(
                    lim, now, periodic=True, seen_version=self._newest_local(cfg, lim))
            for lim in alarmed:
                self._states[lim] = dataclasses.replace(
                    self._states.get(lim) or LimSync.empty(lim), alarm=True)
        self._thread = threading.Thread(target=self._loop, name="xdata-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end; a transfer under way is not waited for beyond ``timeout``.
        Orders not yet begun are answered with a failed row per LIM."""
        self._orders.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        else:
            self._refuse_waiting_orders()

    def order(self, lims: Sequence[int], trigger: str, done: Reply | None = None) -> None:
        """Sync ``lims`` as soon as the thread is free; ``done(results)`` is called exactly
        once, with one ``ctl sync`` result row per LIM in order (on the sync thread; at once
        on the caller's thread when the worker has stopped)."""
        job = _Order(tuple(lims), trigger, done)
        with self._lock:
            if not self._stopped:
                self._orders.put(job)
                return
        self._answer(job, [], "the sync worker has stopped")

    def backup_happened(self, lim: int, version: str | None) -> str:
        """A data backup of ``lim`` was written here: sync it now if this node initiates,
        else remember it. Returns a sentence for the backup command's caller."""
        cfg = self._config()
        if reason := self.disabled_reason(cfg):
            return f"sync is off: {reason}"
        peer = sync_policy.peer_of(cfg, lim)
        refusal = sync_policy.may_initiate(cfg, lim, self._peer_alive(peer.name))
        if refusal is not None:
            if cfg.role is Role.STANDBY:
                self._update(lim, lambda s: dataclasses.replace(s, pending_push=True))
                return f"sync waits: {refusal}"
            return f"no sync: {refusal}"
        self.order([lim], sync_policy.TRIGGER_BACKUP)
        return f"sync with {peer.name} started"

    def version_arrived(self, lim: int, version: str) -> None:
        """A peer sent ``version`` here: it is no new local backup to sync back."""
        self._update(lim, lambda s: dataclasses.replace(s, seen_version=version), create=False)

    def pull_before_start(self, lim: int, bound_s: float) -> str:
        """Before this regular server starts its own LIM: bring newer data from the standby,
        waiting at most ``bound_s``. Returns the sentence for the transition's reason ("" when
        sync is off). A failure raises the alarm; the caller starts the LIM anyway."""
        cfg = self._config()
        if self.disabled_reason(cfg) is not None or cfg.role is not Role.REGULAR:
            return ""
        peer = sync_policy.peer_of(cfg, lim)
        done = threading.Event()
        rows: list[dict[str, Any]] = []

        def finished(results: list[dict[str, Any]]) -> None:
            rows.extend(results)
            done.set()

        self.order([lim], sync_policy.TRIGGER_BEFORE_START, finished)
        if not done.wait(bound_s):
            error = (f"the pull of LIM {lim}'s data from {peer.name} did not finish within "
                     f"{bound_s:.0f} s")
            self._raise_alarm(lim, error)
            return f"{error}; LIM {lim} starts with the data it has here."
        row = rows[0]
        if not row["ok"]:
            return (f"LIM {lim}'s data could not be pulled from {peer.name} first "
                    f"({row['error']}); LIM {lim} starts with the data it has here.")
        if row["direction"] == "to-regular":
            return f"LIM {lim}'s newer data {row['version']} was pulled from {peer.name} first."
        return f"{peer.name} holds no newer data of LIM {lim}."

    @staticmethod
    def disabled_reason(cfg: NodeConfig) -> str | None:
        """Why sync is off on this node (None: it is on)."""
        key = cfg.sync_settings.key
        if not os.path.exists(key):
            return f"no sync key ({key} is absent)"
        return None

    def status(self) -> dict[str, Any]:
        """The ``sync`` section of ``ctl status``."""
        cfg = self._config()
        now, wall = self._mono(), self._wall()
        reason = self.disabled_reason(cfg)
        with self._lock:
            states = sorted(self._states.values(), key=lambda s: s.lim)
            running = self._running
        rows = []
        for s in states:
            try:
                peer = sync_policy.peer_of(cfg, s.lim).name
            except KeyError:
                peer = None
            rows.append({
                "lim": s.lim, "peer": peer, "running": running == s.lim,
                "last_success": iso_now(s.last_ok_wall) if s.last_ok_wall else None,
                "last_version": s.last_version, "last_direction": s.last_direction,
                "last_error": s.last_error,
                "last_error_at": iso_now(s.last_error_wall) if s.last_error_wall else None,
                "failures": s.failures,
                "next_attempt": None if s.next_at is None or reason else iso_now(
                    wall + max(0.0, s.next_at - now)),
                "alarm": s.alarm, "pending_push": s.pending_push})
        return {"enabled": reason is None, "reason": reason,
                "key": cfg.sync_settings.key, "lims": rows}

    # ---- the thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        looked_at: float | None = None  # when _run_due last went through the due syncs
        while True:
            job = None
            with contextlib.suppress(queue.Empty):
                job = self._orders.get(timeout=self._wait(looked_at))
            if job is _STOP:
                self._refuse_waiting_orders()
                return
            if job is not None:
                self._run_order(job)
            looked_at = self._mono()
            try:
                self._run_due(looked_at)
            except Exception as exc:  # a bug must not end the thread: log it, go on
                self._bug("looking for due syncs", exc)

    def _wait(self, looked_at: float | None) -> float:
        """Seconds the thread may sleep before it looks for due syncs again: never 0 for a
        sync it could not start when it last looked (see :func:`sync_policy.seconds_until`)."""
        try:
            if self.disabled_reason(self._config()) is not None:
                return sync_policy.SCAN_INTERVAL_S  # only to see whether the key appeared
            with self._lock:
                states = list(self._states.values())
            return sync_policy.seconds_until(states, self._mono(), sync_policy.SCAN_INTERVAL_S,
                                             looked_at)
        except Exception as exc:
            self._bug("computing the next sync", exc)
            return sync_policy.SCAN_INTERVAL_S

    def _bug(self, doing: str, exc: BaseException) -> str:
        """Log an internal error (its traceback once, not at every retry); its sentence."""
        error = f"internal error of the sync worker while {doing}: {type(exc).__name__}: {exc}"
        if error != self._last_bug:
            log.exception("%s", error)
            self._last_bug = error
        else:
            log.error("%s", error)
        return error

    def _run_order(self, order: _Order) -> None:
        rows: list[dict[str, Any]] = []
        try:
            for lim in order.lims:
                rows.append(self._sync_one(lim, order.trigger))
        finally:
            self._answer(order, rows, "the sync worker failed before it came to this LIM")

    def _answer(self, order: _Order, rows: list[dict[str, Any]], why_missing: str) -> None:
        """Call ``order.done`` once, with a row for every LIM (``why_missing`` for those
        that have none); an exception of ``done`` is logged, never raised."""
        rows = [*rows, *(failed_result(lim, why_missing) for lim in order.lims[len(rows):])]
        if order.done is None:
            return
        try:
            order.done(rows)
        except Exception:
            log.exception("answering a sync order of LIM %s failed",
                          ", ".join(str(lim) for lim in order.lims))

    def _refuse_waiting_orders(self) -> None:
        """The worker stops: take no more orders, answer those not begun."""
        waiting = []
        with self._lock:
            self._stopped = True
            while True:
                try:
                    job = self._orders.get_nowait()
                except queue.Empty:
                    break
                if isinstance(job, _Order):
                    waiting.append(job)
        for job in waiting:
            self._answer(job, [], "the sync worker has stopped")

    def _run_due(self, now: float) -> None:
        """Syncs due by time or by a new local version, and standby pushes now possible."""
        cfg = self._config()
        if self.disabled_reason(cfg) is not None:
            return
        for lim in self._watched(cfg):
            with self._lock:
                state = self._states.get(lim) or LimSync.empty(lim)
            trigger = sync_policy.due_trigger(state, now, self._newest_local(cfg, lim))
            if trigger is None and state.pending_push and (
                    state.next_at is None or now >= state.next_at):
                alive = self._peer_alive(sync_policy.peer_of(cfg, lim).name)
                trigger = sync_policy.TRIGGER_PEER_BACK if alive else None
            if trigger is not None and (cfg.role is Role.REGULAR or sync_policy.may_initiate(
                    cfg, lim, self._peer_alive(sync_policy.peer_of(cfg, lim).name)) is None):
                self._sync_one(lim, trigger)

    def _watched(self, cfg: NodeConfig) -> list[int]:
        """The LIMs the scan looks at: a regular server's own; on the standby the LIMs
        active here and those with a push waiting."""
        if cfg.role is Role.REGULAR:
            return list(sync_policy.initiated_lims(cfg))
        with self._lock:
            waiting = {s.lim for s in self._states.values() if s.pending_push}
        known = {x.lim for x in cfg.lims}
        return sorted((self._active_here() | waiting) & known)

    def _newest_local(self, cfg: NodeConfig, lim: int) -> str | None:
        try:
            found = xdata.versions(Path(cfg.sync_settings.xdata_root), lim)
        except OSError:  # an unreadable root: the sync itself fails and says why
            return None
        return found[0].name if found else None

    def _update(self, lim: int, change: Callable[[LimSync], LimSync], create: bool = True) -> None:
        with self._lock:
            state = self._states.get(lim)
            if state is None and not create:
                return
            self._states[lim] = change(state or LimSync.empty(lim))

    def _sync_one(self, lim: int, trigger: str) -> dict[str, Any]:
        """One sync of ``lim`` with its peer: state, alarm and log follow its outcome.
        Never raises: an internal error is a failed sync too (row, alarm, backoff)."""
        try:
            return self._attempt(lim, trigger)
        except Exception as exc:
            error = self._bug(f"syncing LIM {lim}", exc)
            try:
                cfg = self._config()
                self._failed(cfg, lim, sync_policy.peer_of(cfg, lim).name, trigger, error)
            except Exception as again:
                self._bug(f"recording the failed sync of LIM {lim}", again)
            return failed_result(lim, error)

    def _attempt(self, lim: int, trigger: str) -> dict[str, Any]:
        cfg = self._config()
        if reason := self.disabled_reason(cfg):
            return failed_result(lim, f"sync is off on {cfg.node}: {reason}")
        try:
            peer = sync_policy.peer_of(cfg, lim)
        except KeyError:
            return failed_result(lim, f"LIM {lim} is not in cluster {cfg.cluster}")
        refusal = sync_policy.may_initiate(cfg, lim, self._peer_alive(peer.name))
        if refusal is not None:
            return failed_result(lim, refusal)
        with self._lock:
            self._running = lim
        started = self._mono()
        try:
            result = self._call_sync(cfg, lim, peer.name, str(peer.base_ip), trigger)
            if not isinstance(result, xdata_sync.SyncResult):
                raise TypeError(f"the sync function returned {xdata.shown(result)}, "
                                "not a SyncResult")
        except Exception as exc:  # whatever the peer answered, nothing escapes the worker
            if isinstance(exc, xdata.XdataError | OSError):
                error = str(exc) or type(exc).__name__
            else:  # the sync code did not expect this: keep its traceback for a bug report
                error = self._bug(f"syncing LIM {lim} with {peer.name}", exc)
            self._failed(cfg, lim, peer.name, trigger, error)
            return failed_result(lim, error, self._mono() - started)
        finally:
            with self._lock:
                self._running = None
        self._succeeded(cfg, lim, peer.name, trigger, result)
        return ok_result(result)

    def _call_sync(self, cfg: NodeConfig, lim: int, peer_name: str, address: str,
                   trigger: str) -> xdata_sync.SyncResult:
        settings = cfg.sync_settings
        regular = cfg.role is Role.REGULAR
        peer = xdata_sync.Peer(peer_name, xdata_sync.ssh_args(
            address, Path(settings.key), Path(settings.known_hosts), settings.user),
            root=Path(settings.xdata_root))
        return self._sync(
            lim, Path(settings.xdata_root), cfg.node, peer, clock_bound_s=settings.clock_bound,
            keep_here=xdata.KEEP_ON_REGULAR if regular else xdata.KEEP_ON_STANDBY,
            timeout_s=settings.timeout, peer_is_standby=regular,
            pull_only=trigger == sync_policy.TRIGGER_BEFORE_START)

    def _succeeded(self, cfg: NodeConfig, lim: int, peer: str, trigger: str,
                   result: xdata_sync.SyncResult) -> None:
        now, wall = self._mono(), self._wall()
        periodic = lim in sync_policy.initiated_lims(cfg)
        newest = self._newest_local(cfg, lim)

        def change(s: LimSync) -> LimSync:
            s = sync_policy.after_success(s, cfg.sync_settings, now, wall, result.direction,
                                          result.version, newest, periodic)
            # a pull-only sync left a push to do: do it right after the start
            return dataclasses.replace(s, next_at=now) if result.push_left else s

        self._update(lim, change)
        if self._alarms.clear(AlarmCode.STANDBY_SYNC_FAILED, lim) is not None:
            log.info("%s: LIM %d data synced with %s again; sync alarm cleared", cfg.node, lim,
                     peer)
        log.info("%s: LIM %d sync with %s (%s): %s, version %s, %d file(s) of %d bytes "
                 "transferred, %d reused, %.1f s%s", cfg.node, lim, peer, trigger,
                 result.direction, result.version or "(no data on either side)",
                 result.fetched_files, result.fetched_bytes, result.reused_files,
                 result.seconds, "".join(f"; {n}" for n in result.notes))
        here = "to-regular" if cfg.role is Role.REGULAR else "to-standby"
        if result.direction == here and result.version:
            try:
                self._on_pulled(lim, result.version)
            except Exception as exc:  # the data is here: the sync stays a success
                self._bug(f"telling the agent LIM {lim}'s data {result.version} arrived", exc)

    def _failed(self, cfg: NodeConfig, lim: int, peer: str, trigger: str, error: str) -> None:
        now, wall = self._mono(), self._wall()
        newest = self._newest_local(cfg, lim)
        standby = cfg.role is Role.STANDBY  # its push is retried once the peer can take it
        self._update(lim, lambda s: dataclasses.replace(sync_policy.after_failure(
            s, cfg.sync_settings, now, wall, error, newest), pending_push=standby))
        with self._lock:
            state = self._states[lim]
        delay = (state.next_at or now) - now
        self._raise_alarm(lim, f"sync of LIM {lim} between {cfg.node} and {peer} failed: {error}")
        log.warning("%s: LIM %d sync with %s (%s) failed: %s; retry in %.0f s", cfg.node, lim,
                    peer, trigger, error, delay)

    def _raise_alarm(self, lim: int, why: str) -> None:
        code = AlarmCode.STANDBY_SYNC_FAILED
        self._alarms.raise_(code, lim, f"{ALARM_TITLE[code]}: {why}")
