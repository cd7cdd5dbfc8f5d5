"""The running agent: one process, one selector loop, one worker thread for side effects.

The loop (main thread) owns every piece of state. At each heartbeat interval it

1. notices when it was not running (a stall longer than ``peers.STALL_FACTOR`` intervals:
   SIGSTOP, a paused VM) - then datagrams queued meanwhile are of unknown age and are
   discarded, and peers are judged from the resume time on (the late-wakeup rule);
2. renews the lease of every alias it answers for; a lease found lapsed fences its LIM
   until a decision takes it again (:mod:`~mxone_agent.lease_upkeep`);
3. sends a heartbeat to every peer (:mod:`~mxone_agent.heartbeat_link`);
4. judges every peer, calls ``decide`` and hands a non-empty Decision to the action worker
   (:mod:`~mxone_agent.decision_cycle`).

:class:`Agent` wires its collaborators and runs the loop. It decides nothing itself: it
gathers the inputs of ``decide`` - the peers; what runs here, as the status polls
(:mod:`~mxone_agent.service_watch`: a dead service is ``LocalState.died``) and the
executor's outcomes (:mod:`~mxone_agent.outcomes`: a failure is a retry hold) tell; the
orders (:mod:`~mxone_agent.orders`) - and records what came of each decision, which the
notify hooks hear of (:mod:`~mxone_agent.notify_hooks`, on a thread of their own). The
control socket (:mod:`~mxone_agent.control_service`), the status file
(:mod:`~mxone_agent.status_report`) and the metrics (:mod:`~mxone_agent.metrics`) are served
in the loop without ever blocking it; the slow work runs on the action worker
(:mod:`~mxone_agent.action_worker`), exchange-data syncs on a thread of their own
(:mod:`~mxone_agent.sync_worker`), so no sync ever delays a failover; systemd's watchdog is
pinged on a clock of its own.

Signals only set flags. SIGTERM/SIGINT: the agent stops and leaves every service as it is,
so an agent restart or upgrade causes no outage *if it is back within the lease*
(detection - interval/2): a restarted agent learns what runs from the services' status
commands, takes over the leases still running, and goes on. After a longer absence its
aliases are silent (fenced) and the standby may take over once the detection time has
passed; the restarted agent then stops its fenced service, or takes it again if no peer
runs it (with the "fastest" preset, practically every restart is a short outage; restart
agents with "fast" or slower timers, or lock the LIM to its regular server first).
SIGHUP: reload (:mod:`~mxone_agent.config_reload`).

LIMs that leave. A LIM a new config no longer gives this node is kept with its last
LimConfig (:class:`~mxone_agent.node_files.HeldLims`, also across restarts) until
``decide`` has stopped it for good. No LIM is ever looked up in the config without a
fallback: an unknown LIM never stops the loop, the status polls or the other LIMs' crash
detection.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import selectors
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mxone_agent import (
    control,
    control_client,
    metrics,
    node_files,
    notify_hooks,
    paths,
    priority,
    sdnotify,
    service_node,
    sync_worker,
)
from mxone_agent import peers as peers_mod
from mxone_agent.action_worker import CALL, ActionWorker
from mxone_agent.actions import AlarmCode
from mxone_agent.alarms import AlarmBook
from mxone_agent.config import LimConfig
from mxone_agent.config_reload import load_new
from mxone_agent.control_service import ControlService, Reply
from mxone_agent.data_reloads import DataReloads
from mxone_agent.decide import LocalState
from mxone_agent.decision_cycle import Applied, DecisionCycle, forget_answered
from mxone_agent.early_probe import close_all
from mxone_agent.errors import AgentError
from mxone_agent.executor import REFERENCE_PREFIX, Executor, Outcome, command_env
from mxone_agent.heartbeat_link import HEARTBEAT_COPIES, HeartbeatLink
from mxone_agent.lease_upkeep import LeaseUpkeep
from mxone_agent.local_state import record_appearance
from mxone_agent.model import Readiness, Role
from mxone_agent.network import NetworkBackend
from mxone_agent.orders import Orders
from mxone_agent.peers import PeerView, resumed_at
from mxone_agent.service_watch import ServiceWatch, contested
from mxone_agent.status_report import STATUS_FILE_AT_LEAST, StatusFile, node_status
from mxone_agent.warm_start import WarmStarter

log = logging.getLogger("mxone_agent")

DECIDED_ALARMS = frozenset({AlarmCode.LIM_ON_STANDBY, AlarmCode.STANDBY_OUT_OF_ORDER})
"""The alarms decisions raise and clear (the sync alarm is the sync worker's)."""
SWITCH_INTERVAL = 0.001
"""Seconds a thread holds the interpreter before another may take it (Python's default: 5 ms)."""
DEFAULT_CONFIG = paths.NODE_JSON
DEFAULT_SECRET = paths.CLUSTER_KEY
DEFAULT_STATE_DIR = paths.STATE_DIR
DEFAULT_CONTROL = control_client.DEFAULT_CONTROL


class Agent:
    """One node's agent. Build, then :meth:`start` (sockets, local state), then :meth:`run`."""

    def __init__(self, config_path: str, secret_path: str, state_dir: str,
                 control_path: str, network_factory: Callable[[], NetworkBackend],
                 run_dir: str = service_node.DEFAULT_RUN_DIR,
                 alarm_file: str | None = paths.ALARMS_LOG,
                 notify_dir: str | None = paths.NOTIFY_DIR,
                 metrics_file: str | None = paths.METRICS_TEXTFILE) -> None:
        self.config_path = config_path
        self.secret_path = secret_path
        self.state_dir = state_dir
        self.control_path = control_path
        self.config = node_files.read_config(config_path)
        self.secret = node_files.read_secret(secret_path)
        self.incarnation = 0  # set by start(), persisted and rising across restarts
        self.alarms = AlarmBook(state_dir, alarm_file)
        self._network_factory = network_factory
        self._run_dir = run_dir
        self.executor: Executor | None = None
        self.local = LocalState.empty()
        self.tick_late_max = 0.0  # the longest a tick came after its time, since start
        self.own_mac = ""
        self.started = time.monotonic()
        self.prev_tick: float | None = None
        self.last_change_wall = time.time()
        self.stop_flag = False
        self.reload_flag = False
        self._sel = selectors.DefaultSelector()
        self._watchdog = sdnotify.Watchdog()
        self._dirty = True
        self._early_due = float("inf")
        self.link = HeartbeatLink(lambda: self.config, lambda: self.secret, self._news,
                                  self._reappeared)
        self.leases = LeaseUpkeep(lambda: self.config)
        self.held = node_files.HeldLims(state_dir)
        self.orders = Orders()
        self.reloads = DataReloads()
        self.worker = ActionWorker()
        self.watch = ServiceWatch(lambda: self.config, run_dir, self._lim_config,
                                  self.worker.submit)
        self.control = ControlService(control_path, self)
        self.sync = sync_worker.SyncWorker(
            lambda: self.config, self.alarms, self.link.alive,
            lambda: set(self.local.active_lims()), self._pulled)
        self.status_file = StatusFile(control_path, self.status)
        self.cycle = DecisionCycle(self.worker.submit, self.sync, state_dir)
        self.hooks = notify_hooks.Notifier(lambda: self.config, self._lim_config, notify_dir)
        self.alarms.on_change = self.hooks.alarm
        self.metrics = metrics.AgentMetrics(self, metrics_file)

    @property
    def peers(self) -> dict[str, PeerView]:
        return self.link.peers

    @property
    def retired(self) -> dict[int, LimConfig]:
        return self.held.retired

    # ---- setup ----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the sockets, set up the fence, learn what runs here, become ready. Raises
        StartupError."""
        cfg = self.config
        Path(self.state_dir).mkdir(parents=True, exist_ok=True)
        self.incarnation = self.link.incarnation = node_files.next_incarnation(self.state_dir)
        self._sel.register(self.link.open(), selectors.EVENT_READ, "udp")
        try:
            self.control.server.open()
        except control.ControlError as e:
            raise node_files.StartupError(str(e)) from e
        self._sel.register(self.worker.wake_fd, selectors.EVENT_READ, "wake")
        network = self._network_factory()
        self.held.load(cfg)
        existed = self.leases.set_up(network.lease_kernel(), self.held.aliases(cfg))
        fence = self.leases.fence
        assert fence is not None
        self.executor = self.watch.executor = Executor(network, self.alarms, fence,
                                                       run_dir=self._run_dir)
        self.executor.xdata_root = cfg.sync_settings.xdata_root
        self.own_mac = self.executor.network.mac_of(cfg.local.interface)
        self.executor.early.dispose_with(
            lambda probes: self.worker.submit("close", lambda: close_all(probes)))
        if cfg.role is Role.STANDBY and any(x.service is None for x in cfg.lims):
            self.executor.warm = WarmStarter(REFERENCE_PREFIX, command_env)
            self.executor.warm.prepare()  # a regular failover starts no Python
        for iface in {self.executor.interface(cfg, x) for x in self.executor.guarded(cfg)}:
            network.prepare(iface)  # a takeover opens nothing
        runs = self.executor.learn_local(cfg, self.retired)
        self.held.forget(cfg, {r.lim for r in runs}, force=True)
        if not existed and not node_files.joined(self.state_dir, cfg.cluster):
            runs = self.leases.first_join(runs, self.retired)
        node_files.record_joined(self.state_dir, cfg.cluster)
        now = time.monotonic()
        self.local = dataclasses.replace(
            self.local, runs=runs, readiness=Readiness.READY,
            started_at={r.lim: now for r in runs},
            alarms=frozenset((AlarmCode(c), n) for c, n in self.alarms.active_keys()
                             if c in DECIDED_ALARMS))
        for r in runs:
            if r.lim in self.retired:
                log.warning("%s: LIM %d runs here but the config of cluster %s (generation %d) "
                            "no longer gives it to this node; it is stopped", cfg.node, r.lim,
                            cfg.cluster, cfg.generation)
            elif r.fenced:
                log.warning("%s: LIM %d runs here but the lease of its alias %s lapsed while "
                            "no agent ran; it stays silent until this node knows it owns it",
                            cfg.node, r.lim, cfg.lim(r.lim).alias_ip)
        try:
            self.watch.merge_macs(self.watch.neighbour_macs(), self.link.by_ip)
        except AgentError:
            pass
        self.worker.start()
        self.sync.start()
        self.hooks.start()
        here = ", ".join(f"LIM {r.lim} {r.describe()}" for r in runs) or "no LIM"
        log.info("%s (%s) of cluster %s started, generation %d, detection %.1f s, lease "
                 "%.2f s, incarnation %d; runs %s here", cfg.node, cfg.role, cfg.cluster,
                 cfg.generation, cfg.detection, fence.lease, self.incarnation, here)

    def close(self) -> None:
        self.sync.stop()
        self.hooks.stop()
        self.metrics.stop()
        self.worker.close()
        self.link.close()
        self.control.server.close()
        if self.leases.fence is not None:
            self.leases.fence.close()  # the leases run out on their own: see mxone_agent.lease
        if self.executor is not None:
            if self.executor.warm is not None:
                self.executor.warm.close()
            self.executor.early.close()
            self.executor.network.close()
        self.status_file.remove()

    # ---- the loop --------------------------------------------------------------------------

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``stop_flag``). ``on_ready`` is called once."""
        interval = self.config.timers.interval
        next_tick = time.monotonic()
        # Silence is counted from now: start-up (imports, status commands) is no evidence.
        self.started = self.link.resumed = next_tick
        self.control.server.register(self._sel)  # on the loop's thread: replies are given there
        log.info("%s: %s", self.config.node, priority.apply(interval))
        # The worker starts a takeover's service the moment the loop hands it over: it need
        # not wait 5 ms (the default) for the loop to let go of the interpreter.
        sys.setswitchinterval(SWITCH_INTERVAL)
        gc.freeze()  # what start-up made is never collected: shorter collections
        if on_ready is not None:
            on_ready()
        sdnotify.notify("READY=1")
        while not self.stop_flag:
            wake = min(next_tick, self.link.next_death(), self._early_due, self._watchdog.next,
                       self.status_file.written + STATUS_FILE_AT_LEAST,
                       self.control.server.next_deadline() or float("inf"))
            timeout = max(0.0, wake - time.monotonic())
            events = self._sel.select(timeout)
            now = time.monotonic()
            self._watchdog.keep(now, healthy=self.worker.alive())
            last = self.prev_tick if self.prev_tick is not None else self.started
            if now - last > interval * peers_mod.STALL_FACTOR:
                self.link.stalled(now)  # queued datagrams are of unknown age
                self.prev_tick = now
            for key, mask in events:
                if self.control.server.handle(key, mask):
                    continue
                if key.data == "udp":
                    self.link.receive(now)
                elif key.data == "wake":
                    self._collect()
            self.control.server.expire(time.monotonic())
            if self.reload_flag:
                self.reload_flag = False
                self.reload()
                self.status_file.force()
            now = time.monotonic()
            if now >= self._early_due:
                self._early_due = self._probe_early(now)
            if now >= self.link.next_death():
                self._dirty = True  # a peer's detection period just ran out: judge it now
            if now >= next_tick:
                interval = self.config.timers.interval
                # How late the loop gets to its tick: the heartbeats (and the leases) wait
                # for it, so this is what peers see of this node's load.
                self.tick_late_max = max(self.tick_late_max, now - next_tick)
                self._tick(now)
                next_tick = max(next_tick + interval, now + interval / 4)
                if next_tick < now:
                    next_tick = now + interval
            elif self._dirty:
                self._decide(now)
            self.status_file.publish(time.monotonic())
            self.metrics.publish(time.monotonic())
        log.info("%s stops; LIM services are left as they are", self.config.node)

    def _tick(self, now: float) -> None:
        self.link.resumed = resumed_at(self.prev_tick, self.link.resumed, now,
                                       self.config.timers)
        self.prev_tick = now
        # Leases first, then the heartbeats: a lease then never outlives, by more than its
        # length, the last heartbeat this node sent (see mxone_agent.lease).
        if self.leases.renew():
            self._sync_fences()
        lims = self.cycle.advertised(self.local)
        for _ in range(HEARTBEAT_COPIES):
            self.link.send(lims, self.local.readiness)
        self._early_due = self._probe_early(now)
        self._decide(now)
        if self.cycle.busy is None:
            self._start_reloads()
            self.watch.due(now, self.local, contested(self.config, self.peers, self.local))

    def _probe_early(self, now: float) -> float:
        """Open the takeover probes now due, close the stale ones (:mod:`~mxone_agent.
        early_probe`); returns when the next falls due."""
        ex, cfg = self.executor, self.config
        assert ex is not None
        return ex.early.upkeep(now, cfg, self.peers, self.link.resumed, ex.guarded(cfg),
                               lambda x: ex.interface(cfg, x),
                               {r.lim for r in self.local.runs if r.active})

    def _sync_fences(self) -> None:
        """Mark as fenced every active LIM here whose alias holds no lease."""
        runs = self.leases.fenced_runs(self.local.runs)
        if runs is not None:
            self.local = dataclasses.replace(self.local, runs=runs)
            self._dirty = True

    def _news(self) -> None:
        """A heartbeat changed what a peer runs or says, or brought it back: decide now."""
        self._dirty = True
        self.last_change_wall = time.time()

    def _reappeared(self, peer: str, now: float) -> None:
        lim = self.config.lim_of(peer)
        if lim is not None and self.config.role is Role.STANDBY:
            self.local = dataclasses.replace(self.local, appearances=record_appearance(
                self.local.appearances, lim.lim, now))

    # ---- deciding --------------------------------------------------------------------------

    def _decide(self, now: float) -> None:
        self.judge(now)
        self._dirty = False
        if self.cycle.busy is not None:
            self.link.flush_log()
            return
        self._drop_done_requests()
        assert self.executor is not None
        macs = {*self.watch.macs.values(), self.own_mac}
        self.cycle.take(self.config, self.peers, self.local, now, self.executor, macs,
                        self.retired)
        self.link.flush_log()

    def _liveness_changed(self) -> None:
        self.last_change_wall = time.time()

    def _drop_done_requests(self) -> None:
        """End the orders that are done (:meth:`Orders.drop_done`); forget failures of LIMs
        that now answer somewhere (the failure no longer says anything about them)."""
        if self.orders.drop_done(self.config, self.peers, self.local, time.monotonic()):
            self._dirty = True
        self.local = self.orders.into(self.local)
        self.local = forget_answered(self.local, self.peers.values())

    def _collect(self) -> None:
        for kind, result in self.worker.results():
            if isinstance(result, Exception):
                if kind == "apply":
                    self.cycle.busy = None
                elif kind == "reload":
                    self.reloads.reloading.clear()
                continue
            if kind == CALL:
                try:
                    result()
                except Exception:  # a bug in a posted call must not end the loop
                    log.exception("a call posted to the loop failed")
            elif kind == "apply":
                self._applied(result)
                self._start_reloads()
            elif kind == "reload":
                self._reloaded(*result)
            elif kind == "status":
                self._statuses(result)
            elif kind == "macs":
                self.watch.merge_macs(result, self.link.by_ip)

    def _lim_config(self, lim: int) -> LimConfig | None:
        return self.held.lim_config(self.config, lim)

    def _applied(self, result: Applied) -> None:
        with self.hooks.watching(self.cycle.transitions):
            self.local = self.cycle.applied(self.local, result, self.last_change_wall,
                                            self._lim_config)
        self.watch.poll_soon()  # learn soon whether started services are up
        if self.retired:
            self.held.forget(self.config, {r.lim for r in self.local.runs})
        self._sync_fences()
        self._dirty = True

    def _statuses(self, codes: dict[int, int]) -> None:
        local = self.watch.found(codes, self.local, self.reloads.reloading)
        if local is not None:
            self.local = local
            self._dirty = True  # the next decision clears what a dead service left
            if self.retired:
                self.held.forget(self.config, {r.lim for r in local.runs} | local.died)

    # ---- what the control verbs ask (control_service.Commands) -----------------------------

    def handle(self, req: Reply) -> Reply:
        """Answer one control request (``{"cmd": ...}``); see main's ``ctl`` for the verbs."""
        return self.control.handle(req)

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop (from another thread): the loop owns every state."""
        self.worker.post(fn)

    def publish_status(self) -> None:
        self.status_file.force()
        self.status_file.publish(time.monotonic())

    def changed(self) -> None:
        self._dirty = True

    def judge(self, now: float) -> None:
        self.link.judge(now, self._liveness_changed)

    # ---- new data for a preloaded LIM ------------------------------------------------------

    def _pulled(self, lim: int, version: str) -> None:
        """The sync worker brought a newer version here (called on its thread)."""
        self.post(lambda: log.info("%s: LIM %d: %s", self.config.node, lim,
                                   self.data_arrived(lim, version)))

    def data_arrived(self, lim: int, version: str | None) -> str:
        said = self.reloads.arrived(self.local, lim, version)
        if self.cycle.busy is None:
            self._start_reloads()
        return said

    def _start_reloads(self) -> None:
        """Restart a preloaded service that has new data (one at a time, between
        decisions, on the action worker)."""
        assert self.executor is not None
        local = self.reloads.start_next(self.local, self.config, self.executor,
                                        self.worker.submit)
        if local is not None:
            self.local = local

    def _reloaded(self, lim: int, version: str, decided: float, outcome: Outcome) -> None:
        self.watch.poll_soon()  # learn soon when it has loaded
        with self.hooks.watching(self.cycle.transitions):
            self.cycle.transitions.append(
                self.reloads.reloaded(self.config.node, lim, version, decided, outcome))
        self._start_reloads()
        self._dirty = True

    # ---- config reload ---------------------------------------------------------------------

    def reload(self) -> Reply:
        """Load the config and secret again (SIGHUP, ``ctl reload``): see
        :mod:`mxone_agent.config_reload`."""
        old = self.config
        present = {r.lim for r in self.local.runs} | self.local.died
        present |= self.cycle.in_hand()
        new = load_new(old, self.config_path, self.secret_path, self.held, present,
                       self.leases.fence)
        if isinstance(new, str):
            return {"ok": False, "error": new}
        cfg = self.config = new.config
        self.held.retired, self.held.docs = new.retired, new.docs
        self.orders.reloaded(cfg)
        self.local = self.orders.into(self.local)
        self.held.write(cfg)
        self.secret = new.secret
        if self.executor is not None:
            self.executor.xdata_root = cfg.sync_settings.xdata_root
        self.link.reset_peers()
        self._dirty = True
        log.info("%s loads config generation %d (was %d); %s", cfg.node, cfg.generation,
                 old.generation, priority.apply(cfg.timers.interval))
        return {"ok": True, "generation": cfg.generation,
                "previous_generation": old.generation}

    # ---- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return node_status(self.config, incarnation=self.incarnation, local=self.local,
                           link=self.link, cycle=self.cycle, leases=self.leases,
                           orders=self.orders, held=self.held, alarms=self.alarms,
                           sync=self.sync, tick_late_max=self.tick_late_max)
