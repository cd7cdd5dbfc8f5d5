"""The running agent: one process, one selector loop, one worker thread for side effects.

The loop (main thread) owns every piece of state. At each heartbeat interval it

1. notices when it was not running (a stall longer than ``peers.STALL_FACTOR`` intervals:
   SIGSTOP, a paused VM) - then datagrams queued meanwhile are of unknown age and are
   discarded, and peers are judged from the resume time on (the late-wakeup rule);
2. renews the lease of every alias it answers for (:mod:`mxone_agent.lease`); a lease
   found lapsed fences its LIM until a decision takes it again;
3. sends a heartbeat to every peer's base IP, one datagram per peer echoing that peer's
   incarnation: what runs here, generation, readiness;
4. judges every peer, calls ``decide`` and hands a non-empty Decision to the worker.

Heartbeats are received as they come, at most DATAGRAMS_PER_TURN per loop turn (a
heartbeat that changes what a peer runs, or brings a peer back, triggers a decision at
once, not at the next tick). A datagram from an address that is no peer's is refused
before any HMAC is computed. The control socket is served in the same loop without ever
blocking it (:mod:`mxone_agent.control`); systemd's watchdog is pinged from the loop on a
clock of its own.

The worker thread runs the executor (service commands, probes, nftables: things that take
time) so the loop keeps sending heartbeats meanwhile. While a Decision is being applied
no new one is taken, and heartbeats list the LIMs of both the state before and the state
after it (a LIM is claimed until it is really gone, and from the moment it starts).

Exchange-data syncs run on a third thread (:mod:`mxone_agent.sync_worker`), so no sync ever
delays a failover; ``ctl sync`` is answered by that thread once the sync is done, and the
backup command and a peer's ``xdata serve receive`` tell the loop over the control socket
(``backup`` / ``received``). Before a regular server starts its own LIM (fallback, boot) the
action worker waits up to PULL_BEFORE_START_S for newer data from the standby and says in
the transition's reason what came of it; on failure the LIM starts with the data it has and
the sync alarm is raised. New data for a preloaded (passive) LIM restarts its service in
place: status shows it loading, then preloaded.

Signals only set flags. SIGTERM/SIGINT: the agent stops and leaves every service as it is,
so an agent restart or upgrade causes no outage *if it is back within the lease*
(detection - interval/2): a restarted agent learns what runs from the services' status
commands, takes over the leases still running, and goes on. After a longer absence its
aliases are silent (fenced) and the standby may take over once the detection time has
passed; the restarted agent then stops its fenced service, or takes it again if no peer
runs it (with the "fastest" preset, practically every restart is a short outage; restart
agents with "fast" or slower timers, or lock the LIM to its regular server first).
SIGHUP: reload.

LIMs that leave. A reload whose config no longer gives this node a LIM that runs here keeps
that LIM's last LimConfig (``Agent.retired``, also kept across restarts in the state dir's
``held-lims.json``, which records every LIM this node may hold); ``decide`` then stops it
for good (RetireLim) and the executor stops guarding its alias. ``ctl retire LIM`` (the
maintenance tool, before it deploys a config without the LIM) makes the standby stop it
and take it over no more. No LIM is ever looked up in the config without a fallback: an
unknown LIM never stops the loop, the status polls or the other LIMs' crash detection.

Manual fallback orders (``ctl fallback LIM [wait] [cancel]``) are judged by
``decide.judge_fallback_order``: refused with the reason, carried out, or kept pending until
the regular server is ready, for at most their wait (then dropped, and logged); status
lists them with what each waits for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import selectors
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mxone_agent import control, control_client, files, sdnotify, service_node, sync_policy, sync_worker
from mxone_agent import heartbeat as hbmod
from mxone_agent import peers as peers_mod
from mxone_agent.actions import (
    ActivateLim,
    AlarmCode,
    RetireLim,
    StartLim,
)
from mxone_agent.alarms import AlarmBook, iso_now
from mxone_agent.config import ConfigError, LimConfig, Lock, NodeConfig, load_node_config
from mxone_agent.decide import (
    ORDER_WAIT_DEFAULT,
    ORDER_WAIT_MAX,
    Decision,
    Failure,
    LocalState,
    behind,
    decide,
    explain_down,
    fallback_blocker,
    hold_down,
    judge_fallback_order,
    record_appearance,
)
from mxone_agent.errors import AgentError
from mxone_agent.executor import Executor, Outcome
from mxone_agent.lease import Fence, LeaseError, lease_seconds
from mxone_agent.model import LimRun, Mode, Readiness, Role, TransitionKind
from mxone_agent.network import NetworkBackend
from mxone_agent.peers import PeerView, reappeared, resumed_at

log = logging.getLogger("mxone_agent")

HEARTBEAT_COPIES = 5
"""Datagrams sent per heartbeat interval to each peer, back to back (see Agent._tick)."""
DATAGRAMS_PER_TURN = 256
"""At most this many datagrams are read per loop turn: a flood cannot keep the loop from
renewing its leases and sending its own heartbeats (the rest waits in the socket)."""
INCARNATION_FILE = "incarnation"
FENCE_RECORD = "fence-cluster"
"""Names the cluster whose fence this node keeps (removed by ``mxone-agent fence release``
when the node leaves): a fence missing at start is then a reboot, not a first join."""
DECIDED_ALARMS = frozenset({AlarmCode.LIM_ON_STANDBY, AlarmCode.STANDBY_OUT_OF_ORDER})
"""The alarms decisions raise and clear (the sync alarm is the sync worker's)."""
HELD_LIMS = "held-lims.json"
"""Every LIM this node may hold, with the config it came from (format 1): the current
config's and the retired ones still to stop. Read at start, so that a LIM a new config
no longer names is stopped also when the agent restarted in between."""
RETIRE_HOLD = 600.0
"""Seconds a ``ctl retire`` order holds (the maintenance tool deploys the config without the
LIM within them, or cancels the order on rollback; else the LIM may run here again)."""
ORDERS_ENDED_KEPT = 5

DEFAULT_CONFIG = "/etc/mxone/agent/node.json"
DEFAULT_SECRET = "/etc/mxone/agent/cluster.key"
DEFAULT_STATE_DIR = "/var/opt/mxone/agent"
DEFAULT_CONTROL = control_client.DEFAULT_CONTROL
MIN_SECRET_HEX_BYTES = 32
TRANSITIONS_KEPT = 20
LOADING_POLL = 0.25
HEALTH_POLL = 2.0
MAC_REFRESH = 5.0
RETRY_AFTER = 5.0
"""Seconds before a LIM action that failed (or found a foreign host on the alias) is tried
again; meanwhile decisions leave that LIM alone, so a failure is logged once per retry."""
PULL_BEFORE_START_S = 30.0
STATUS_FILE = "status.json"  # beside the control socket: /run/mxone/status.json
STATUS_FILE_EVERY = 0.5  # written at most this often ...
STATUS_FILE_AT_LEAST = 2.0  # ... and at least this often, so its age shows the agent lives
"""At most this long a regular server waits for newer data from the standby before it
starts its own LIM (fallback, boot); then it starts with the data it has."""


class StartupError(AgentError):
    """The agent cannot start (bad config, secret, socket); the message says why."""


# ---- files ----------------------------------------------------------------------------------

def read_config(path: str) -> NodeConfig:
    """Load the node config file; StartupError (or ConfigError) naming every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise StartupError(f"{path}: cannot read the node config: {e.strerror or e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StartupError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column "
                           f"{e.colno}") from e
    return load_node_config(data)


def read_secret(path: str) -> bytes:
    """The cluster secret: hex text of at least 32 bytes in a file of mode 0600."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise StartupError(f"{path}: cannot read the cluster secret: {e.strerror}") from e
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o600:
        raise StartupError(f"{path}: the cluster secret has mode {mode:04o}; it must be 0600 "
                           f"(chmod 600 {path})")
    try:
        text = Path(path).read_text(encoding="ascii").strip()
        secret = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise StartupError(f"{path}: the cluster secret must be hex text ({e})") from e
    if len(secret) < MIN_SECRET_HEX_BYTES:
        raise StartupError(f"{path}: the cluster secret has {len(secret)} bytes; at least "
                           f"{MIN_SECRET_HEX_BYTES} are needed")
    return secret


def read_held(path: Path) -> tuple[dict[int, tuple[LimConfig, dict]], list[str]]:
    """HELD_LIMS: LIM -> (its LimConfig, the config document it came from), and the problems
    met (each a sentence). A missing file holds nothing; a damaged entry is skipped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError) as e:
        return {}, [(f"cannot read {path} ({e}); LIMs an earlier config gave this node are "
                     "not looked for")]
    out: dict[int, tuple[LimConfig, dict]] = {}
    problems = []
    entries = data.get("held") if isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        try:
            doc = entry["config"]
            old = load_node_config(doc)
            for n in entry["lims"]:
                out[int(n)] = (old.lim(int(n)), doc)
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            problems.append(f"{path}: an entry is not usable ({e}); skipped")
    return out, problems


# ---- records for status --------------------------------------------------------------------

@dataclasses.dataclass
class FallbackOrder:
    """An operator's manual fallback order, live on the standby until carried out, expired
    or cancelled. ``expires``: monotonic time; ``ordered_at``: wall clock (for status)."""

    lim: int
    ordered_at: float
    expires: float
    wait: float
    pending: bool

@dataclasses.dataclass
class Transition:
    lim: int
    kind: str
    reason: str
    detected: str
    decided: str
    alias_up: str | None = None
    first_garp: str | None = None
    service_up: str | None = None
    ok: bool = True
    error: str | None = None


# ---- the daemon -----------------------------------------------------------------------------

class Agent:
    """One node's agent. Build, then :meth:`start` (sockets, local state), then :meth:`run`."""

    def __init__(self, config_path: str, secret_path: str, state_dir: str,
                 control_path: str, network_factory: Callable[[], NetworkBackend],
                 run_dir: str = service_node.DEFAULT_RUN_DIR,
                 alarm_file: str | None = "/var/log/mxone/alarms.log") -> None:
        self.config_path = config_path
        self.secret_path = secret_path
        self.state_dir = state_dir
        self.control_path = control_path
        self.config = read_config(config_path)
        self.secret = read_secret(secret_path)
        self.incarnation = 0  # set by start(), persisted and rising across restarts
        self.seq = 0
        self.alarms = AlarmBook(state_dir, alarm_file)
        self._network_factory = network_factory
        self._run_dir = run_dir
        self.executor: Executor | None = None
        self.peers: dict[str, PeerView] = {}
        self.guards: dict[str, hbmod.ReplayGuard] = {}
        self.drops = {r: 0 for r in hbmod.DropReason}
        self.local = LocalState.empty()
        self.transitions: deque[Transition] = deque(maxlen=TRANSITIONS_KEPT)
        self.last_decision = ""
        self.hold_downs: tuple = ()
        self.foreign_mac: dict[int, str] = {}
        self.fence: Fence | None = None
        self.lapses = 0  # leases found lapsed since start (each is logged)
        self.tick_late_max = 0.0  # the longest a tick came after its time, since start
        self._lease_error = ""
        self.longest_silence: dict[str, float] = {}  # peer -> longest gap between heartbeats
        self.macs: dict[str, str] = {}  # base IP -> MAC of cluster servers seen
        self.started = time.monotonic()
        self.resumed = self.started
        self.prev_tick: float | None = None
        self.last_change_wall = time.time()
        self.stop_flag = False
        self.reload_flag = False
        self._sel = selectors.DefaultSelector()
        self._udp: socket.socket | None = None
        self.control = control.ControlServer(control_path, self._request, log=log)
        self._jobs: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._busy: tuple | None = None  # (decision, before runs, after runs) while applying
        self._worker: threading.Thread | None = None
        self._next_loading_poll = 0.0
        self._next_health_poll = 0.0
        self._next_mac_refresh = 0.0
        self._watchdog = sdnotify.watchdog_period()
        self._next_watchdog = 0.0 if self._watchdog else float("inf")
        self._dirty = True
        self._reload_pending: dict[int, str] = {}  # LIM -> new version, preloaded reloads to do
        self._reloading: set[int] = set()
        # LIMs an earlier config gave this node and that may still run here: the LimConfig
        # (to stop them) and the config document it came from (for HELD_LIMS).
        self.retired: dict[int, LimConfig] = {}
        self._retired_docs: dict[int, dict] = {}
        self.orders: dict[int, FallbackOrder] = {}
        self.orders_ended: deque[dict] = deque(maxlen=ORDERS_ENDED_KEPT)
        self._retiring_until: dict[int, float] = {}  # LIM -> monotonic end of a ctl retire
        self.sync = sync_worker.SyncWorker(
            lambda: self.config, self.alarms, self._peer_alive,
            lambda: set(self.local.active_lims()), self._pulled)
        self.status_path = Path(control_path).parent / STATUS_FILE
        self._status_written = -1e9
        self._status_force = False
        self._status_body = ""
        self._status_error = ""
        self._reset_peers()

    # ---- setup ----------------------------------------------------------------------------

    def _reset_peers(self) -> None:
        names = [s.name for s in self.config.servers if s.name != self.config.node]
        self.peers = {n: self.peers.get(n, PeerView.unknown(n)) for n in names}
        self.guards = {n: self.guards.get(n, hbmod.ReplayGuard.empty()) for n in names}
        self._by_ip = {str(s.base_ip): s.name for s in self.config.servers}

    def start(self) -> None:
        """Open the sockets, set up the fence, learn what runs here, become ready. Raises
        StartupError."""
        cfg = self.config
        Path(self.state_dir).mkdir(parents=True, exist_ok=True)
        self.incarnation = self._next_incarnation()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            udp.bind((str(cfg.local.base_ip), cfg.heartbeat_port))
        except OSError as e:
            raise StartupError(f"cannot bind the heartbeat port {cfg.local.base_ip}:"
                               f"{cfg.heartbeat_port}: {e.strerror}") from e
        udp.setblocking(False)
        self._udp = udp
        self._sel.register(udp, selectors.EVENT_READ, "udp")
        try:
            self.control.open()
        except control.ControlError as e:
            raise StartupError(str(e)) from e
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        network = self._network_factory()
        self.fence = Fence(network.lease_kernel(), lease_seconds(cfg.timers))
        record = Path(self.state_dir) / FENCE_RECORD
        mine = {x.lim for x in Executor.guarded(cfg)}
        for n, (x, doc) in self._read_held().items():
            if n not in mine:
                self.retired[n], self._retired_docs[n] = x, doc
        try:
            existed = self.fence.setup(self._guarded_aliases(cfg))
        except LeaseError as e:
            raise StartupError(f"cannot set up the self-fencing leases: {e}") from e
        self.executor = Executor(network, self.alarms, self.fence, run_dir=self._run_dir)
        self.executor.xdata_root = cfg.sync_settings.xdata_root
        self.own_mac = self.executor.network.mac_of(cfg.local.interface)
        runs = self.executor.learn_local(cfg, self.retired)
        self._forget_retired({r.lim for r in runs}, force=True)
        try:
            joined = record.read_text(encoding="utf-8").strip() == cfg.cluster
        except OSError:
            joined = False
        if not existed and not joined:
            runs = self._first_join(runs)
        try:
            record.write_text(cfg.cluster + "\n", encoding="utf-8")
        except OSError as e:
            raise StartupError(f"cannot write {record}: {e.strerror}") from e
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
        self._refresh_macs()
        self._worker = threading.Thread(target=self._work, name="executor", daemon=True)
        self._worker.start()
        self.sync.start()
        here = ", ".join(f"LIM {r.lim} {r.describe()}" for r in runs) or "no LIM"
        log.info("%s (%s) of cluster %s started, generation %d, detection %.1f s, lease "
                 "%.2f s, incarnation %d; runs %s here", cfg.node, cfg.role, cfg.cluster,
                 cfg.generation, cfg.detection, self.fence.lease, self.incarnation, here)

    def _first_join(self, runs: tuple[LimRun, ...]) -> tuple[LimRun, ...]:
        """This node's first start in its cluster: until the fence was set up a moment ago,
        its addresses answered unfenced, as any server's do before it joins a cluster, and
        no peer can have run its LIM. A LIM running here keeps answering (it is granted its
        lease at once) instead of going silent until the standby is heard."""
        assert self.fence is not None
        out = []
        for r in runs:
            if r.fenced and r.lim not in self.retired:
                alias = self.config.lim(r.lim).alias_ip
                self.fence.grant(alias)
                log.info("%s: LIM %d ran here before this node joined cluster %s; it keeps "
                         "answering on %s", self.config.node, r.lim, self.config.cluster, alias)
                r = LimRun(r.lim, r.mode, r.loading)
            out.append(r)
        return tuple(out)

    # ---- LIMs this node may hold, and those it no longer may --------------------------------

    def _guarded_aliases(self, cfg: NodeConfig) -> list:
        """The aliases to guard: the config's LIMs this node may hold, and the retired ones
        until they are stopped (a retired alias never answers again)."""
        return [x.alias_ip for x in Executor.guarded(cfg)] + [
            x.alias_ip for x in self.retired.values()]

    def _lim_config(self, n: int) -> LimConfig | None:
        """LIM ``n``'s config: the current one, else its last known one (retired), else None."""
        for x in self.config.lims:
            if x.lim == n:
                return x
        return self.retired.get(n)

    def _read_held(self) -> dict[int, tuple[LimConfig, dict]]:
        held, problems = read_held(Path(self.state_dir) / HELD_LIMS)
        for problem in problems:
            log.warning("%s: %s", self.config.node, problem)
        return held

    def _write_held(self) -> None:
        """Record in HELD_LIMS every LIM this node may hold now (best effort: logged)."""
        cfg = self.config
        held = [{"lims": [x.lim for x in Executor.guarded(cfg)], "config": cfg.to_dict()}]
        held += [{"lims": [n], "config": self._retired_docs[n]} for n in sorted(self.retired)
                 if n in self._retired_docs]
        path = Path(self.state_dir) / HELD_LIMS
        try:
            files.write_private(path, json.dumps({"format": 1, "held": held}) + "\n")
        except OSError as e:
            log.warning("%s: cannot write %s: %s", cfg.node, path, e.strerror or e)

    def _forget_retired(self, running: set[int], force: bool = False) -> None:
        """Drop the retired LIMs that no longer run here, and record it (``force``: record
        what this node may hold in any case)."""
        gone = [n for n in self.retired if n not in running]
        for n in gone:
            self.retired.pop(n, None)
            self._retired_docs.pop(n, None)
        if gone or force:
            self._write_held()

    def _next_incarnation(self) -> int:
        """This start's incarnation: above the last one (persisted in the state dir, written
        and synced before any heartbeat carries it) and at least the wall clock in us."""
        path = Path(self.state_dir) / INCARNATION_FILE
        try:
            previous = int(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            previous = 0
        value = hbmod.next_incarnation(previous, time.time_ns() // 1000)
        try:
            files.write_private(path, f"{value}\n")
        except OSError as e:
            raise StartupError(f"cannot record the incarnation in {path}: {e.strerror}") from e
        return value

    def close(self) -> None:
        self.sync.stop()
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(timeout=30)
        if self._udp is not None:
            self._udp.close()
        self.control.close()
        if self.fence is not None:
            self.fence.close()  # the leases run out on their own: see mxone_agent.lease
        if self.executor is not None:
            self.executor.network.close()
        self.status_path.unlink(missing_ok=True)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            kind, payload = job
            try:
                result = payload()
            except Exception as e:
                log.exception("%s failed", kind)
                result = e
            self._results.put((kind, result))
            os.write(self._wake_w, b"x")

    def _submit(self, kind: str, fn: Callable[[], Any]) -> None:
        self._jobs.put((kind, fn))

    def _post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop (from another thread): the loop owns every state."""
        self._results.put(("call", fn))
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # closing down

    def _unheard(self, name: str) -> bool:
        """True for a peer neither alive nor dead: not heard since this agent (re)started."""
        view = self.peers.get(name, PeerView.unknown(name))
        return not view.alive and not view.dead

    def _peer_alive(self, name: str) -> bool:
        view = self.peers.get(name)
        return view is not None and view.alive

    # ---- the loop --------------------------------------------------------------------------

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``stop_flag``). ``on_ready`` is called once."""
        interval = self.config.timers.interval
        next_tick = time.monotonic()
        # Silence is counted from now: start-up (imports, status commands) is no evidence.
        self.started = self.resumed = next_tick
        self.control.register(self._sel)  # on the loop's thread: replies are given there
        if on_ready is not None:
            on_ready()
        sdnotify.notify("READY=1")
        while not self.stop_flag:
            wake = min(next_tick, self._next_death(), self._next_watchdog,
                       self._status_written + STATUS_FILE_AT_LEAST,
                       self.control.next_deadline() or float("inf"))
            timeout = max(0.0, wake - time.monotonic())
            events = self._sel.select(timeout)
            now = time.monotonic()
            self._keep_watchdog(now)
            last = self.prev_tick if self.prev_tick is not None else self.started
            if now - last > interval * peers_mod.STALL_FACTOR:
                self._stalled(now)
            for key, mask in events:
                if self.control.handle(key, mask):
                    continue
                if key.data == "udp":
                    self._receive(now)
                elif key.data == "wake":
                    self._collect()
            self.control.expire(time.monotonic())
            if self.reload_flag:
                self.reload_flag = False
                self._reload()
                self._status_force = True
            now = time.monotonic()
            if now >= self._next_death():
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
            self._publish_status(time.monotonic())
        log.info("%s stops; LIM services are left as they are", self.config.node)

    def _next_death(self) -> float:
        """The earliest moment an alive (or unknown) peer would be judged dead."""
        d = self.config.detection
        times = [max(v.last_heard or self.resumed, self.resumed) + d + 0.001
                 for v in self.peers.values() if not v.dead]
        return min(times, default=float("inf"))

    def _stalled(self, now: float) -> None:
        """The loop did not run for a while: queued datagrams are of unknown age."""
        dropped = 0
        while self._udp is not None:
            try:
                self._udp.recvfrom(4096)
                dropped += 1
            except BlockingIOError:
                break
        self.resumed = now
        self.prev_tick = now
        log.warning("%s's loop did not run for a while; it discards %d queued heartbeats and "
                    "judges its peers afresh", self.config.node, dropped)

    def _tick(self, now: float) -> None:
        cfg = self.config
        self.resumed = resumed_at(self.prev_tick, self.resumed, now, cfg.timers)
        self.prev_tick = now
        # Leases first, then the heartbeats: a lease then never outlives, by more than its
        # length, the last heartbeat this node sent (see mxone_agent.lease).
        self._renew_leases()
        for _ in range(HEARTBEAT_COPIES):
            self._send_heartbeat()
        self._decide(now)
        if self._busy is None:
            self._start_reloads()
            self._background_jobs(now)

    def _renew_leases(self) -> None:
        """Renew the lease of every alias this node answers for; a lease found lapsed (the
        loop did not run for longer than the lease) fences its LIM until a decision says
        this node owns it again."""
        assert self.fence is not None
        try:
            lapses = self.fence.renew_all()
        except LeaseError as e:
            if str(e) != self._lease_error:  # say it once, not at every tick
                log.error("%s cannot renew its leases: %s", self.config.node, e)
                self._lease_error = str(e)
            return
        self._lease_error = ""
        if not lapses:
            return
        by_alias = {str(x.alias_ip): x.lim for x in self.config.lims}
        for lapse in lapses:
            self.lapses += 1
            log.warning("%s: the lease of alias %s (LIM %s) lapsed: it was not renewed for "
                        "%.3f s (lease %.3f s); the alias is silent until this node knows it "
                        "owns the LIM", self.config.node, lapse.alias,
                        by_alias.get(lapse.alias, "?"), lapse.unrenewed_for, self.fence.lease)
        self._sync_fences()

    def _sync_fences(self) -> None:
        """Mark as fenced every active LIM here whose alias holds no lease."""
        assert self.fence is not None
        lims = {x.lim: x for x in self.config.lims}
        runs = []
        changed = False
        for r in self.local.runs:
            x = lims.get(r.lim)
            if x is not None and r.mode is Mode.ACTIVE:
                fenced = not self.fence.holds(x.alias_ip)
                if fenced != r.fenced:
                    r = LimRun(r.lim, r.mode, r.loading, fenced)
                    changed = True
            runs.append(r)
        if changed:
            self.local = dataclasses.replace(self.local, runs=tuple(runs))
            self._dirty = True

    def _keep_watchdog(self, now: float) -> None:
        """Ping systemd's watchdog every WATCHDOG_FRACTION of WatchdogSec, on its own
        schedule (a heartbeat interval may be longer than WatchdogSec), and only while the
        loop runs and the action worker lives: a frozen loop is then restarted by systemd."""
        if now < self._next_watchdog:
            return
        if self._worker is not None and not self._worker.is_alive():
            return  # no action could be applied: let systemd restart the agent
        sdnotify.notify("WATCHDOG=1")
        assert self._watchdog is not None
        self._next_watchdog = now + self._watchdog

    def _publish_status(self, now: float) -> None:
        """Keep the status file beside the control socket current, so that a reader (the
        maintenance tool's Show status, on many servers at once) needs no process here.

        Line 1 is ``<pid> <wall clock when written>``; line 2 is the JSON of ``ctl status``.
        Written atomically when the status changed (at most every STATUS_FILE_EVERY s, at
        once after an order over the control socket) and at least every
        STATUS_FILE_AT_LEAST s; a reader treats an older file, or one whose pid is gone, as
        an agent that does not answer. Removed when the agent ends.
        """
        if not self._status_force and now - self._status_written < STATUS_FILE_EVERY:
            return
        self._status_force = False
        body = json.dumps({"ok": True, **self.status()}, sort_keys=True)
        if body == self._status_body and now - self._status_written < STATUS_FILE_AT_LEAST:
            return
        tmp = self.status_path.with_name(f".{STATUS_FILE}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, f"{os.getpid()} {time.time():.3f}\n{body}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.status_path)
        except OSError as exc:
            if str(exc) != self._status_error:  # say it once, not every tick
                log.warning("cannot write the status file %s: %s", self.status_path, exc)
                self._status_error = str(exc)
            return
        self._status_error = ""
        self._status_written, self._status_body = now, body

    def _background_jobs(self, now: float) -> None:
        ex = self.executor
        assert ex is not None
        nxt = ex.next_announce()
        if nxt is not None and now >= nxt:
            self._submit("announce", lambda: ex.announce_due(self.config))
        loading = [r.lim for r in self.local.runs if r.loading]
        if (loading and now >= self._next_loading_poll) or now >= self._next_health_poll:
            self._next_loading_poll = now + LOADING_POLL
            if now >= self._next_health_poll:
                self._next_health_poll = now + HEALTH_POLL
                lims = [r.lim for r in self.local.runs]
            else:
                lims = loading
            known = {n: x for n in lims if (x := self._lim_config(n)) is not None}
            self._submit("status", lambda: {n: self._status(x) for n, x in known.items()})
        if now >= self._next_mac_refresh:
            self._next_mac_refresh = now + MAC_REFRESH
            self._submit("macs", self._neighbour_macs)

    def _status(self, lim: LimConfig) -> int:
        if lim.service is None:  # the reference Service Node: no need for a subprocess
            return service_node.status(self._run_dir, lim.lim)
        assert self.executor is not None
        return self.executor.service_status(lim)

    def _neighbour_macs(self) -> dict[str, str]:
        assert self.executor is not None
        return self.executor.network.neighbour_macs(self.config.local.interface)

    def _refresh_macs(self) -> None:
        try:
            self._merge_macs(self._neighbour_macs())
        except AgentError:
            pass

    def _merge_macs(self, table: dict[str, str]) -> None:
        for ip, mac in table.items():
            if ip in self._by_ip and mac != "00:00:00:00:00:00":
                self.macs[ip] = mac

    # ---- heartbeats ------------------------------------------------------------------------

    def _advertised(self) -> tuple[LimRun, ...]:
        runs = {r.lim: r for r in self.local.runs}
        if self._busy is not None:
            # While a decision is applied, a LIM going away is claimed until it is gone and
            # a LIM being started from the moment it starts: peers never see a gap.
            _, before, after = self._busy
            for r in (*before, *after):
                cur = runs.get(r.lim)
                if cur is None or (r.active and not cur.active):
                    runs[r.lim] = r
        return tuple(runs.values())

    def _send_heartbeat(self) -> None:
        """Send one heartbeat to every peer; each tick sends HEARTBEAT_COPIES of them back
        to back, right after the leases are renewed.

        Each copy is a heartbeat of its own (the next sequence number), so a peer counts an
        interval as missed only when every copy is lost. A false "dead" takes two whole
        ticks lost and the third a hair late: with independent frame loss p per path, about
        p**(2 x HEARTBEAT_COPIES). Measured with 10 % loss on each switch port (19 % per
        path) and ``fastest`` timers: one copy gave two false failovers in 10 minutes, three
        copies one in two soaks of 10 minutes (p**6 = 4.7e-5 per tick); five make it p**10
        = 6e-8. Copies spread over the interval would need as many losses but start the
        peers' detection later: a slower failover at every setting.
        """
        cfg = self.config
        lims = self._advertised()
        assert self._udp is not None
        now = time.monotonic()
        for s in cfg.servers:
            if s.name == cfg.node:
                continue
            self.seq += 1
            # A peer whose authentic heartbeat came in within the detection period is
            # reachable: MSG_CONFIRM tells the kernel so, and its ARP entry for the peer
            # stays valid. Without it the entry goes stale every reachable_time and is
            # probed; under frame loss the probes can fail, and then every datagram to
            # that peer waits for a fresh ARP resolution (1 s retries) - a silence long
            # enough for a false failover at fast timers.
            view = self.peers.get(s.name)
            confirm = (view is not None and view.last_heard is not None
                       and now - view.last_heard < cfg.detection)
            # Each datagram is for one peer and echoes that peer's incarnation (as far
            # as this node knows it): no recording can be replayed (heartbeat module).
            hb = hbmod.Heartbeat(cluster=cfg.cluster, sender=cfg.node, receiver=s.name,
                                 incarnation=self.incarnation, seq=self.seq,
                                 echo=self.guards[s.name].known,
                                 generation=cfg.generation, role=cfg.role,
                                 readiness=self.local.readiness, lims=lims)
            try:
                self._udp.sendto(hbmod.encode(hb, self.secret),
                                 socket.MSG_CONFIRM if confirm else 0,
                                 (str(s.base_ip), cfg.heartbeat_port))
            except OSError:
                pass  # no route / link down: the peer will notice our silence

    def _receive(self, now: float) -> None:
        assert self._udp is not None
        for _ in range(DATAGRAMS_PER_TURN):
            try:
                data, (ip, _port) = self._udp.recvfrom(4096)
            except OSError:  # BlockingIOError: nothing more queued
                return
            self._accept_heartbeat(data, ip, now)

    def _accept_heartbeat(self, data: bytes, ip: str, now: float) -> None:
        cfg = self.config
        sender = self._by_ip.get(ip)
        if sender is None or sender not in self.peers:
            # Not from a peer's address: refused before any cryptography is spent on it.
            self.drops[hbmod.DropReason.FORGED] += 1
            return
        try:
            hb = hbmod.decode(data, self.secret, cfg.cluster, sender=sender, receiver=cfg.node)
        except hbmod.BadHeartbeat as e:
            self.drops[hbmod.drop_reason(e)] += 1
            return
        before_known = self.guards[sender].known
        refused, self.guards[sender] = self.guards[sender].admit(hb, self.incarnation)
        if self.guards[sender].known != before_known and before_known:
            log.info("%s hears a new incarnation of %s", cfg.node, sender)
        if refused is not None:
            self.drops[refused] += 1
            return
        before = self.peers[hb.sender]
        if before.last_heard is not None and before.last_heard >= self.resumed:
            gap = now - before.last_heard
            if gap > self.longest_silence.get(hb.sender, 0.0):
                self.longest_silence[hb.sender] = gap
        after = before.heard(hb, now)
        self.peers[hb.sender] = after
        old = before.heartbeat
        if (not before.alive or old is None or old.lims != hb.lims
                or old.readiness != hb.readiness):
            self._dirty = True
            self.last_change_wall = time.time()
            if not before.alive:
                log.info("%s hears %s (%s)", cfg.node, hb.sender,
                         "again" if before.dead else "for the first time")
        if reappeared(before, after):
            lim = cfg.lim_of(hb.sender)
            if lim is not None and cfg.role is Role.STANDBY:
                self.local = dataclasses.replace(self.local, appearances=record_appearance(
                    self.local.appearances, lim.lim, now))

    # ---- deciding --------------------------------------------------------------------------

    def _judge(self, now: float) -> None:
        for name, view in self.peers.items():
            judged = view.judged(now, self.config.timers, self.resumed)
            if judged.liveness is not view.liveness:
                self.last_change_wall = time.time()
                if judged.dead:
                    log.info("%s declares %s dead (silent for %.1f s)", self.config.node, name,
                             now - max(view.last_heard or self.resumed, self.resumed))
            self.peers[name] = judged

    def _decide(self, now: float) -> None:
        self._judge(now)
        self._dirty = False
        if self._busy is not None:
            return
        self._drop_done_requests()
        local = self.local
        decision = decide(self.config, self.peers, local, now)
        actions = decision.actions
        self.hold_downs = decision.hold_downs
        self.last_decision = decision.reason
        if not actions:
            return
        log.info("%s", decision.reason)
        after = local.applied(actions, now)
        self._busy = (decision, local.runs, after.runs)
        decided = time.time()
        cfg = self.config
        macs = set(self.macs.values())
        assert self.executor is not None
        ex = self.executor
        macs.add(self.own_mac)
        pull = self._pull_before_start(cfg, actions)
        retired = dict(self.retired)
        # What a dead service left behind is cleared before anything else, also before a
        # regular server waits for newer data to start its LIM again.
        cleanup = [a for a in actions if decision.kind(a) is TransitionKind.CLEANUP]
        rest = [a for a in actions if decision.kind(a) is not TransitionKind.CLEANUP]

        def apply() -> tuple[Decision, float, NodeConfig, str, list[Outcome]]:
            cleared = ex.apply(cfg, cleanup, macs, retired) if cleanup else []
            pulled = pull()
            return decision, decided, cfg, pulled, cleared + ex.apply(cfg, rest, macs, retired)

        self._submit("apply", apply)

    def _pull_before_start(self, cfg: NodeConfig, actions: tuple) -> Callable[[], str]:
        """What the action worker does before a regular server starts its own LIM: pull
        newer data from the standby (bounded), unless the standby is known dead. Returns
        a callable giving the sentence for the transition's reason."""
        starts = [a.lim for a in actions if isinstance(a, StartLim)]
        if cfg.role is not Role.REGULAR or not starts:
            return lambda: ""
        if self.sync.disabled_reason(cfg) is not None:
            return lambda: ""
        sb = cfg.standby.name
        if self.peers.get(sb, PeerView.unknown(sb)).dead:
            note = f"{sb} is not alive: LIM {starts[0]} starts with the data it has here."
            return lambda: note
        sync = self.sync
        return lambda: " ".join(sync.pull_before_start(n, PULL_BEFORE_START_S) for n in starts)

    def _drop_done_requests(self) -> None:
        """End fallback orders whose LIM no longer runs actively here (carried out, or gone
        otherwise), that expired or whose LIM left the config; end retire orders that
        expired; forget failures of LIMs that now answer somewhere (the failure no longer
        says anything about them)."""
        now = time.monotonic()
        if self.orders:
            active = set(self.local.active_lims())
            known = {x.lim for x in self.config.lims}
            for n, o in list(self.orders.items()):
                if n not in known:
                    self._end_order(n, f"LIM {n} left the cluster")
                elif n not in active:
                    self._end_order(n, f"done: LIM {n} no longer runs on {self.config.node}")
                elif now >= o.expires:
                    why = fallback_blocker(self.config, self.peers, self.local, n, now)
                    self._end_order(n, f"expired after {o.wait:.0f} s" + (
                        f": {why}" if why else ""))
        expired = [n for n, t in self._retiring_until.items() if now >= t]
        if expired:
            for n in expired:
                del self._retiring_until[n]
                log.warning("%s: LIM %d was to leave cluster %s, but no config without it came "
                            "within %.0f s; it may run here again", self.config.node, n,
                            self.config.cluster, RETIRE_HOLD)
            self.local = dataclasses.replace(self.local, retiring=frozenset(self._retiring_until))
        if self.local.failures:
            answering = set(self.local.active_lims()) | {
                n for v in self.peers.values() for n in self.local.failures if v.runs_active(n)}
            failures = {n: f for n, f in self.local.failures.items() if n not in answering}
            if len(failures) != len(self.local.failures):
                self.local = dataclasses.replace(self.local, failures=failures)

    def _collect(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                kind, result = self._results.get_nowait()
            except queue.Empty:
                return
            if isinstance(result, Exception):
                if kind == "apply":
                    self._busy = None
                elif kind == "reload":
                    self._reloading.clear()
                continue
            if kind == "call":
                try:
                    result()
                except Exception:  # a bug in a posted call must not end the loop
                    log.exception("a call posted to the loop failed")
            elif kind == "apply":
                self._applied(*result)
                self._start_reloads()
            elif kind == "reload":
                self._reloaded(*result)
            elif kind == "status":
                self._statuses(result)
            elif kind == "macs":
                self._merge_macs(result)

    def _applied(self, decision: Decision, decided: float, cfg: NodeConfig, pulled: str,
                 outcomes: list[Outcome]) -> None:
        now = time.monotonic()
        done = [o.action for o in outcomes if o.ok]
        self.local = self.local.applied(done, now)
        # A cleanup is tried once: what it could not clear, learn_local clears at the next
        # start, and the LIM counts as stopped here meanwhile.
        cleared = {o.action.lim for o in outcomes
                   if decision.kind(o.action) is TransitionKind.CLEANUP}
        self.local = dataclasses.replace(self.local, died=self.local.died - cleared)
        self._busy = None
        self._next_loading_poll = 0.0  # learn soon whether started services are up
        failures = dict(self.local.failures)
        for o in outcomes:
            a = o.action
            kind = decision.kind(a)
            if kind is None or kind is TransitionKind.CLEANUP:
                continue
            if o.ok:
                failures.pop(a.lim, None)
                if isinstance(a, StartLim | ActivateLim):
                    self.foreign_mac.pop(a.lim, None)
                if isinstance(a, RetireLim):
                    log.info("%s: LIM %d is stopped for good here; its alias no longer answers "
                             "on this node", cfg.node, a.lim)
            else:
                if o.foreign_mac:
                    self.foreign_mac[a.lim] = o.foreign_mac
                    x = self._lim_config(a.lim)
                    why = (f"{kind} of LIM {a.lim} failed: its alias "
                           f"{x.alias_ip if x else '?'} is answered by {o.foreign_mac}, a host "
                           "outside the cluster")
                else:
                    why = f"{kind} of LIM {a.lim} failed: {o.error}"
                failures[a.lim] = Failure(why, now + RETRY_AFTER)
                log.warning("%s: %s; LIM %d runs nowhere here and is tried again in %.0f s",
                            cfg.node, why, a.lim, RETRY_AFTER)
            at = {k: iso_now(v) for k, v in o.steps.items()}
            self.transitions.append(Transition(
                lim=a.lim, kind=str(kind),
                reason=f"{decision.reason} {pulled}".strip(), detected=iso_now(min(self.last_change_wall, decided)),
                decided=iso_now(decided), alias_up=at.get("alias_up"),
                first_garp=at.get("first_garp"), service_up=at.get("service_up"), ok=o.ok,
                error=o.error))
        self.local = dataclasses.replace(self.local, failures=failures)
        if self.retired:
            self._forget_retired({r.lim for r in self.local.runs})
        self._sync_fences()
        self._dirty = True

    def _statuses(self, codes: dict[int, int]) -> None:
        runs = {r.lim: r for r in self.local.runs}
        died = set(self.local.died)
        changed = False
        for n, code in codes.items():
            r = runs.get(n)
            if r is None or n in self._reloading:
                continue  # a reload's restart is no failure; its outcome comes separately
            if code == 0 and r.loading:
                runs[n] = LimRun(n, r.mode, loading=False, fenced=r.fenced)
                changed = True
            elif code not in (0, service_node.STATUS_LOADING):
                log.warning("%s: the service of LIM %d is no longer running; it counts as "
                            "stopped here", self.config.node, n)
                runs.pop(n)
                died.add(n)
                changed = True
        if changed:
            started = {k: v for k, v in self.local.started_at.items() if k in runs}
            self.local = dataclasses.replace(self.local, runs=tuple(runs.values()),
                                             started_at=started, died=frozenset(died))
            self._dirty = True  # the next decision clears what the dead service left
            if self.retired:
                self._forget_retired(set(runs) | died)

    # ---- control ---------------------------------------------------------------------------

    def _request(self, req: dict[str, Any], ticket: control.Deferred) -> dict | control.Deferred:
        """Answer one control request (``{"cmd": ...}``, already parsed and checked by the
        control server); ``sync`` is answered later, by the sync worker through the loop."""
        if req.get("cmd") == "sync":
            return self._order_sync(req, ticket)
        reply = self.handle(req)
        if req.get("cmd") != "status":
            # an order: the status file shows it before the answer goes out
            self._status_force = True
            self._publish_status(time.monotonic())
        return reply

    def _lim_arg(self, raw: object) -> int | str:
        """The LIM named by a request's ``lim``, or the refusal sentence."""
        lim = control.lim_number(raw)
        if lim is None or not any(x.lim == lim for x in self.config.lims):
            return f"LIM {str(raw)[:40]} is not in cluster {self.config.cluster}"
        return lim

    def _order_sync(self, req: dict[str, Any],
                    ticket: control.Deferred) -> dict | control.Deferred:
        """``ctl sync [LIM]``: a refusal now, or the ticket - the sync worker's answer is
        handed to the loop, which replies on the waiting connection (the loop never waits
        for a sync)."""
        cfg = self.config
        raw = req.get("lim")
        if raw is None:
            lims = list(sync_policy.initiated_lims(cfg))
            if not lims:
                return {"ok": False, "results": [], "error": (
                    f"{cfg.node} is the {cfg.role} server of cluster {cfg.cluster} and regular "
                    "for no LIM; order the sync on a regular server, or name the LIM")}
        else:
            lim = self._lim_arg(raw)
            if isinstance(lim, str):
                return {"ok": False, "results": [], "error": lim}
            lims = [lim]

        def answer(results: list[dict]) -> None:  # on the sync thread
            reply = {"ok": all(r["ok"] for r in results), "results": results}
            self._post(lambda: self.control.reply(ticket, reply))

        self.sync.order(lims, sync_policy.TRIGGER_ORDER, answer)
        return ticket

    def handle(self, req: dict) -> dict:
        """Answer one control request (``{"cmd": ...}``); see main's ``ctl`` for the verbs."""
        cmd = req.get("cmd")
        if cmd == "status":
            return {"ok": True, **self.status()}
        if cmd == "reload":
            return self._reload()
        if cmd in ("backup", "received"):
            return self._data_news(cmd, req)
        if cmd == "retire":
            return self._order_retire(req)
        lim = 0
        if cmd in ("fallback", "lock", "unlock"):
            checked = self._lim_arg(req.get("lim"))
            if isinstance(checked, str):
                return {"ok": False, "error": checked}
            lim = checked
        if cmd == "fallback":
            return self._order_fallback(lim, req)
        if cmd in ("lock", "unlock"):
            to = Lock.NONE if cmd == "unlock" else req.get("to")
            if not isinstance(to, str) or to not in (Lock.REGULAR, Lock.STANDBY, Lock.NONE):
                return {"ok": False, "error": f"lock target {str(to)[:40]!r} is not regular or "
                        "standby"}
            self.config = self.config.with_lock(lim, Lock(to))
            self._dirty = True
            log.info("%s: LIM %d %s by the operator", self.config.node, lim,
                     "unlocked" if to == Lock.NONE else f"locked to the {to} server")
            return {"ok": True, "lim": lim, "lock": str(Lock(to))}
        return {"ok": False, "error": f"unknown command {str(cmd)[:40]!r}"}

    # ---- fallback orders and LIMs leaving the cluster ------------------------------------------

    def _order_fallback(self, lim: int, req: dict) -> dict:
        """``ctl fallback LIM [wait SECONDS] [cancel]``: see decide.judge_fallback_order."""
        cfg = self.config
        cancel = req.get("cancel", False)
        if not isinstance(cancel, bool):
            return {"ok": False, "error": "cancel must be true or false"}
        if cancel:
            if lim not in self.orders:
                return {"ok": False, "lim": lim, "error": f"no fallback of LIM {lim} is pending "
                        f"on {cfg.node}: nothing to cancel"}
            self._end_order(lim, "cancelled by the operator")
            return {"ok": True, "lim": lim, "result": "fallback cancelled",
                    "text": f"fallback of LIM {lim} cancelled; LIM {lim} stays on {cfg.node}"}
        raw = req.get("wait")
        wait: float | None = None
        if raw is not None:
            if (isinstance(raw, bool) or not isinstance(raw, int | float)
                    or not 1 <= raw <= ORDER_WAIT_MAX):
                return {"ok": False, "error": f"wait = {str(raw)[:40]}: give the seconds the "
                        f"order may wait, from 1 to {ORDER_WAIT_MAX:.0f}"}
            wait = float(raw)
        now = time.monotonic()
        self._judge(now)
        v = judge_fallback_order(cfg, self.peers, self.local, lim, now, wait)
        if not v.accepted:
            log.info("%s: %s", cfg.node, v.text)
            return {"ok": False, "lim": lim, "error": v.text}
        seconds = v.wait if v.wait is not None else (wait or ORDER_WAIT_DEFAULT)
        renewed = lim in self.orders
        self.orders[lim] = FallbackOrder(lim, time.time(), now + seconds, seconds, v.pending)
        self.local = dataclasses.replace(self.local, fallback_requests=frozenset(self.orders))
        self._dirty = True
        log.info("%s: %s (ordered by the operator%s)", cfg.node, v.text,
                 "; it replaces the pending order" if renewed else "")
        return {"ok": True, "lim": lim, "pending": v.pending,
                "result": "fallback pending" if v.pending else "fallback ordered",
                "text": v.text, "expires_in_s": round(seconds, 1)}

    def _end_order(self, lim: int, outcome: str) -> None:
        order = self.orders.pop(lim, None)
        self.local = dataclasses.replace(self.local, fallback_requests=frozenset(self.orders))
        self._dirty = True
        if order is None:
            return
        self.orders_ended.append({"lim": lim, "ordered_at": iso_now(order.ordered_at),
                                  "ended_at": iso_now(time.time()), "outcome": outcome})
        log.info("%s: fallback order of LIM %d ends: %s", self.config.node, lim, outcome)

    def _order_retire(self, req: dict) -> dict:
        """``ctl retire LIM [cancel]``: the maintenance tool is removing LIM from the cluster
        (remove LIM, delete cluster): stop it here for good, and never take it over, until the
        config without it arrives (or RETIRE_HOLD passes, or the order is cancelled)."""
        cfg = self.config
        n = control.lim_number(req.get("lim"))
        if n is None:
            return {"ok": False, "error": f"LIM {str(req.get('lim'))[:40]} is not a LIM number"}
        cancel = req.get("cancel", False)
        if not isinstance(cancel, bool):
            return {"ok": False, "error": "cancel must be true or false"}
        known = any(x.lim == n for x in cfg.lims)
        if cancel:
            if self._retiring_until.pop(n, None) is None:
                return {"ok": True, "lim": n, "text": f"LIM {n} was not retiring on {cfg.node}"}
            self.local = dataclasses.replace(self.local,
                                             retiring=frozenset(self._retiring_until))
            self._dirty = True
            log.info("%s: LIM %d stays in cluster %s (the retire order was cancelled)",
                     cfg.node, n, cfg.cluster)
            return {"ok": True, "lim": n, "text": f"LIM {n} stays in cluster {cfg.cluster}; "
                    f"{cfg.node} may take it over again"}
        runs = n in {r.lim for r in self.local.runs}
        if not known:
            return {"ok": True, "lim": n, "runs_here": runs, "text": (
                f"LIM {n} is not in the config of cluster {cfg.cluster} here; " + (
                    f"{cfg.node} stops it" if runs else f"{cfg.node} does not run it"))}
        own = cfg.lim_of(cfg.node)
        if own is not None and own.lim == n:
            return {"ok": False, "lim": n, "error": f"{cfg.node} is LIM {n}'s regular server: "
                    f"it keeps running LIM {n} when the LIM leaves the cluster"}
        self._retiring_until[n] = time.monotonic() + RETIRE_HOLD
        self.local = dataclasses.replace(self.local, retiring=frozenset(self._retiring_until))
        if n in self.orders:
            self._end_order(n, f"LIM {n} is leaving the cluster")
        self._dirty = True
        text = (f"LIM {n} is leaving cluster {cfg.cluster}: {cfg.node} "
                + ("stops it for good and removes its alias" if runs else "does not run it")
                + ", and takes it over no more")
        log.info("%s: %s (ordered by the maintenance tool)", cfg.node, text)
        return {"ok": True, "lim": n, "runs_here": runs, "text": text}

    def _fallback_orders_status(self, now: float) -> list[dict]:
        out = []
        for lim, o in sorted(self.orders.items()):
            home = next((x.server for x in self.config.lims if x.lim == lim), "?")
            why = None
            if home != "?":
                why = fallback_blocker(self.config, self.peers, self.local, lim, now)
            left = max(0.0, o.expires - now)
            text = (f"fallback of LIM {lim} waits for {home} to be ready: {why}; it expires in "
                    f"{left:.0f} s" if why is not None else
                    f"fallback of LIM {lim} to {home} is being carried out")
            out.append({"lim": lim, "regular": home, "state": "pending" if why else "ordered",
                        "waits_for": why, "text": text, "ordered_at": iso_now(o.ordered_at),
                        "expires_in_s": round(left, 1)})
        return out

    # ---- exchange data -----------------------------------------------------------------------

    def _data_news(self, cmd: str, req: dict) -> dict:
        """``backup``: a data backup was written here (sync it); ``received``: a peer sent
        a new version here (a preloaded passive service reloads it)."""
        checked, version = self._lim_arg(req.get("lim")), req.get("version")
        if isinstance(checked, str):
            return {"ok": False, "error": checked}
        lim = checked
        if version is not None and not (isinstance(version, str) and 0 < len(version) <= 200):
            return {"ok": False, "error": "version must be a version name (a short string)"}
        if cmd == "backup":
            said = self.sync.backup_happened(lim, version)
            log.info("%s: data backup %s of LIM %d; %s", self.config.node, version, lim, said)
            return {"ok": True, "lim": lim, "result": said}
        if version is not None:
            self.sync.version_arrived(lim, version)
        return {"ok": True, "lim": lim, "result": self._data_arrived(lim, version)}

    def _pulled(self, lim: int, version: str) -> None:
        """The sync worker brought a newer version here (called on its thread)."""
        self._post(lambda: log.info("%s: LIM %d: %s", self.config.node, lim,
                                    self._data_arrived(lim, version)))

    def _data_arrived(self, lim: int, version: str | None) -> str:
        """New data of ``lim`` is here: a preloaded (passive) service here reloads it."""
        run = next((r for r in self.local.runs if r.lim == lim), None)
        if run is None or run.mode is not Mode.PRELOADED:
            return "new data noted; no preloaded service of it runs here"
        self._reload_pending[lim] = version or "?"
        if self._busy is None:
            self._start_reloads()
        return f"the preloaded service reloads to load {version}"

    def _start_reloads(self) -> None:
        """Restart preloaded services that have new data (one at a time, between
        decisions, on the action worker)."""
        if not self._reload_pending or self._reloading:
            return
        lim, version = self._reload_pending.popitem()
        runs = {r.lim: r for r in self.local.runs}
        run = runs.get(lim)
        if run is None or run.mode is not Mode.PRELOADED:
            return
        runs[lim] = LimRun(lim, Mode.PRELOADED, loading=True)
        self.local = dataclasses.replace(self.local, runs=tuple(runs.values()))
        self._reloading.add(lim)
        cfg = self.config
        ex = self.executor
        assert ex is not None
        decided = time.time()
        log.info("%s: LIM %d's preloaded service reloads to load the new data %s",
                 cfg.node, lim, version)
        self._submit("reload", lambda: (lim, version, decided,
                                        ex.reload_service(cfg, cfg.lim(lim))))

    def _reloaded(self, lim: int, version: str, decided: float, outcome: Outcome) -> None:
        self._reloading.discard(lim)
        self._next_loading_poll = 0.0  # learn soon when it has loaded
        at = {k: iso_now(v) for k, v in outcome.steps.items()}
        self.transitions.append(Transition(
            lim=lim, kind=str(TransitionKind.RELOAD), reason=f"New data {version} of LIM {lim} arrived: its "
            "preloaded service reloads to load it.", detected=iso_now(decided),
            decided=iso_now(decided), service_up=at.get("service_up"), ok=outcome.ok,
            error=outcome.error))
        if not outcome.ok:
            log.warning("%s: %s", self.config.node, outcome.error)
        self._start_reloads()
        self._dirty = True

    def _reload(self) -> dict:
        try:
            cfg = read_config(self.config_path)
            secret = read_secret(self.secret_path)
        except (StartupError, ConfigError) as e:
            log.warning("%s refuses the new config and keeps generation %d: %s",
                        self.config.node, self.config.generation, e)
            return {"ok": False, "error": f"new config refused, generation "
                    f"{self.config.generation} kept: {e}"}
        problems = []
        if cfg.node != self.config.node:
            problems.append(f"node is {cfg.node}, this agent runs {self.config.node}")
        if cfg.role is not self.config.role:
            problems.append(f"role changes to {cfg.role}; restart the agent for that")
        if cfg.local.base_ip != self.config.local.base_ip or (
                cfg.heartbeat_port != self.config.heartbeat_port):
            problems.append("base IP or heartbeat port changes; restart the agent for that")
        if problems:
            return {"ok": False, "error": f"new config refused, generation "
                    f"{self.config.generation} kept: " + "; ".join(problems)}
        # LIMs that run here (or are being started) and that the new config no longer gives
        # this node: their last LimConfig is kept so that a decision can stop them.
        mine = {x.lim for x in Executor.guarded(cfg)}
        present = {r.lim for r in self.local.runs} | self.local.died
        if self._busy is not None:
            present |= {r.lim for r in (*self._busy[1], *self._busy[2])}
        retired = {n: x for n, x in self.retired.items() if n not in mine}
        docs = {n: d for n, d in self._retired_docs.items() if n in retired}
        for n in sorted(present - mine - set(retired)):
            x = next((y for y in self.config.lims if y.lim == n), None)
            if x is not None:
                retired[n], docs[n] = x, self.config.to_dict()
        if self.fence is not None:
            try:  # the aliases may have changed; leases running now stay guarded
                self.fence.setup([x.alias_ip for x in Executor.guarded(cfg)]
                                 + [x.alias_ip for x in retired.values()])
            except LeaseError as e:
                return {"ok": False, "error": f"new config refused, generation "
                        f"{self.config.generation} kept: cannot guard its aliases: {e}"}
            self.fence.lease = lease_seconds(cfg.timers)
        for n in sorted(set(retired) - set(self.retired)):
            log.warning("%s: config generation %d no longer gives LIM %d to this node, which "
                        "runs it; it is stopped and its alias %s removed", cfg.node,
                        cfg.generation, n, retired[n].alias_ip)
        self.retired, self._retired_docs = retired, docs
        known = {x.lim for x in cfg.lims}
        for n in [k for k in self._retiring_until if k not in known]:
            del self._retiring_until[n]  # the new config has no such LIM: plain retired now
        self.local = dataclasses.replace(self.local, retiring=frozenset(self._retiring_until))
        old = self.config.generation
        self.config = cfg
        self._write_held()
        self.secret = secret
        if self.executor is not None:
            self.executor.xdata_root = cfg.sync_settings.xdata_root
        self._reset_peers()
        self._dirty = True
        log.info("%s loads config generation %d (was %d)", cfg.node, cfg.generation, old)
        return {"ok": True, "generation": cfg.generation, "previous_generation": old}

    # ---- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        cfg = self.config
        now = time.monotonic()
        here = {r.lim: r for r in self._advertised()}
        holds = {h.lim: h for h in self.hold_downs}
        down = explain_down(cfg, self.peers, self.local, now)
        leases = self.fence.held() if self.fence is not None else {}
        lims = []
        for x in cfg.lims:
            home = x.server == cfg.node
            run = here.get(x.lim)
            regular_runs = (run is not None and run.active) if home else \
                self.peers[x.server].runs_active(x.lim) if x.server in self.peers else False
            sb = cfg.standby.name
            standby_runs = (run is not None and run.active) if cfg.role is Role.STANDBY else \
                self.peers[sb].runs_active(x.lim)
            # A peer not heard since this agent (re)started leaves the owner unknown; a dead
            # one runs nothing as far as the cluster can tell (its lease has lapsed).
            known = (home or not self._unheard(x.server)) and (
                cfg.role is Role.STANDBY or not self._unheard(sb))
            owner = ("both" if regular_runs and standby_runs else "regular" if regular_runs
                     else "standby" if standby_runs else "none" if known else "unknown")
            hd = holds.get(x.lim)
            if hd is None and cfg.role is Role.STANDBY and x.lim in self.local.appearances:
                hd = hold_down(x.lim, self.local.appearances[x.lim], now, cfg.detection)
            lims.append({
                "lim": x.lim, "server": x.server, "alias_ip": str(x.alias_ip),
                "owner": owner, "why": down.get(x.lim) if owner == "none" else None,
                "here": None if run is None else (
                    "fenced" if run.fenced else "loading" if run.loading else str(run.mode)),
                "lease_renewed_s_ago": None if str(x.alias_ip) not in leases else round(
                    leases[str(x.alias_ip)], 3),
                "lock": str(x.lock), "priority": x.priority,
                "hold_down_s": None if hd is None or hd.seconds == 0 else round(hd.seconds, 1),
                "hold_down_left_s": None if hd is None or hd.seconds == 0 else round(
                    hd.remaining, 1)})
        peers = []
        for name, v in self.peers.items():
            hb = v.heartbeat
            peers.append({
                "name": name, "role": str(cfg.server(name).role) if name in self._by_ip.values()
                else None, "liveness": str(v.liveness),
                "incarnation": self.guards[name].known if name in self.guards else None,
                "last_heard_s_ago": None if v.last_heard is None else round(now - v.last_heard, 3),
                "longest_silence_s": round(self.longest_silence.get(name, 0.0), 3),
                "generation": hb.generation if hb else None,
                "readiness": str(hb.readiness) if hb else None,
                "runs": [{"lim": r.lim, "mode": str(r.mode), "loading": r.loading,
                          "fenced": r.fenced} for r in (hb.lims if hb else ())]})
        active, alarm_log = self.alarms.status()
        out = {
            "node": cfg.node, "cluster": cfg.cluster, "role": str(cfg.role),
            "generation": cfg.generation, "incarnation": self.incarnation,
            "behind": None if (lag := behind(cfg, self.peers)) is None else lag.as_status(),
            "readiness": str(self.local.readiness), "detection_s": cfg.detection,
            "lease_s": None if self.fence is None else round(self.fence.lease, 3),
            "lease_lapses": self.lapses,
            "tick_late_max_s": round(self.tick_late_max, 3),
            "lims": lims, "peers": peers, "alarms": active, "alarm_log": alarm_log,
            "drops": {str(k): v for k, v in self.drops.items()},
            "transitions": [dataclasses.asdict(t) for t in self.transitions],
            "last_decision": self.last_decision,
            "fallback_requests": sorted(self.local.fallback_requests),
            "fallback_orders": self._fallback_orders_status(now),
            "fallback_orders_ended": list(self.orders_ended),
            "retiring": [{"lim": n, "alias_ip": str(x.alias_ip) if x else None,
                          "here": None if (r := here.get(n)) is None else r.describe(),
                          "why": "leaving the cluster" if n in self._retiring_until
                          else "no longer in this node's config"}
                         for n in sorted(set(self._retiring_until) | set(self.retired))
                         for x in [self._lim_config(n)]],
            "sync": self.sync.status(),
            "pid": os.getpid(),
        }
        if self.foreign_mac:
            out["foreign_mac"] = {str(k): v for k, v in self.foreign_mac.items()}
        return out
