"""The executor: applies a Decision's actions, in order, through a NetworkBackend.

``decide`` chose the actions and their order; the executor decides only how each one is
carried out safely, and reports what came of it (:class:`Outcome`; a failure becomes a
retry hold, an input of the next decisions):

* ``StartLim`` active: an ARP probe for the alias first (a MAC that belongs to no cluster
  server answering it means the address is taken by a foreign host: the LIM is *not*
  started and the outcome names that MAC); then the alias's lease granted, alias up, the
  service started bound to it, a gratuitous ARP burst. A second burst follows
  ``garp.second_burst_after`` seconds later and refreshes every ``garp.refresh_interval``
  (see :meth:`Executor.announce_due`); a split brain over, the side that keeps the LIM
  announces it again at once (:meth:`Executor.claims_ended`).
* ``StartLim`` preloaded: the alias up but blocked in the kernel (nftables), the service
  started bound to it; nobody can reach it.
* ``ActivateLim``: probe, lease granted, unblock, gratuitous ARP burst (also what makes a
  fenced LIM answer again). ``DeactivateLim``: block again, lease ended.
* ``StopLim``: the lease ended (the alias is silent at once), the service stopped, the
  alias and any block removed.
* ``RetireLim``: as StopLim, for a LIM this node no longer runs at all; a LIM the config no
  longer names is found in ``retired`` (its last known LimConfig, kept by the daemon), and
  its alias stops being guarded once it is down. A LIM found in neither fails cleanly (the
  outcome says so); no action ever raises for an unknown LIM.
* ``RaiseAlarm``/``ClearAlarm``: the alarm book.

Leases (:class:`mxone_agent.lease.Fence`) are granted and ended here; the daemon's loop
renews them (:mod:`mxone_agent.lease_upkeep`).

Services run through the LIM's configured commands (argv, no shell, bounded timeouts);
without any, the reference Service Node of :mod:`mxone_agent.service_node`. Companion
services follow the LIM on its regular server; on the standby only a co-located media
server is started (see ``config.Companion.runs_on_standby``).

Every step is timed (wall clock, for status) so transitions can show where time went.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mxone_agent import service_node
from mxone_agent.actions import (
    Action,
    ActivateLim,
    ClearAlarm,
    DeactivateLim,
    RaiseAlarm,
    RetireLim,
    StartLim,
    StopLim,
)
from mxone_agent.alarms import AlarmBook
from mxone_agent.announce import Announcements
from mxone_agent.config import Companion, LimConfig, NodeConfig, ServiceCommands
from mxone_agent.early_probe import EarlyProbes, probe_wait
from mxone_agent.lease import Fence, LeaseError
from mxone_agent.model import LimRun, Mode, Role
from mxone_agent.network import NetworkBackend, NetworkError
from mxone_agent.warm_start import WarmStarter

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
STATUS_TIMEOUT = 5.0

CommandRunner = Callable[[Sequence[str], float], int]
"""Runs an argv with a timeout; returns its exit status (-1: could not run or timed out)."""


def command_env() -> dict[str, str]:
    """The environment of a service command: ours, and the reference Service Node (this
    package) found by its python the way we found it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def run_command(argv: Sequence[str], timeout: float) -> int:
    """Run ``argv`` (no shell) with stdin/stdout closed; -1 if it cannot run or times out."""
    env = command_env()
    try:
        return subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout, env=env,
                              check=False).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


# The reference service's commands start Python without ``site`` (-S: no .pth files, no
# sitecustomize; 15-25 ms less on a takeover's path) and find this package's modules where
# the agent found them (its __init__, a docstring, is not run): argv[1] is the package
# directory, argv[2] "service".
_BOOT = ("import sys,types;p=sys.argv.pop(1);sys.argv.pop(1);m=types.ModuleType('mxone_agent');"
         "m.__path__=[p];sys.modules['mxone_agent']=m;"
         "from mxone_agent.service_node import main;sys.exit(main(sys.argv[1:]))")
PACKAGE_DIR = os.path.dirname(os.path.abspath(service_node.__file__))
REFERENCE_PREFIX = (sys.executable, "-S", "-c", _BOOT, PACKAGE_DIR, "service")
"""Every command of the reference Service Node begins so (:mod:`mxone_agent.warm_start`)."""


def reference_service(lim: LimConfig, run_dir: str = service_node.DEFAULT_RUN_DIR,
                      xdata_root: str = service_node.DEFAULT_XDATA_ROOT) -> ServiceCommands:
    """The commands of the reference Service Node for ``lim`` (it loads its exchange data
    from ``xdata_root``)."""
    base = list(REFERENCE_PREFIX)
    tail = ["--lim", str(lim.lim), "--run-dir", run_dir, "--xdata-root", xdata_root]
    return ServiceCommands(start=(*base, "start", *tail, "--alias", str(lim.alias_ip)),
                           stop=(*base, "stop", *tail), status=(*base, "status", *tail))


@dataclass
class Outcome:
    """What became of one action: done or not, why not, and the wall time of each step."""

    action: Action
    ok: bool = True
    error: str | None = None
    foreign_mac: str | None = None
    steps: dict[str, float] = field(default_factory=dict)  # step -> time.time()


class Executor:
    """Applies actions for one node. Not thread-safe: one caller (the daemon's worker)."""

    def __init__(self, network: NetworkBackend, alarms: AlarmBook, fence: Fence,
                 run: CommandRunner = run_command,
                 run_dir: str = service_node.DEFAULT_RUN_DIR,
                 clock: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self.network = network
        self.alarms = alarms
        self.fence = fence
        self._run = run
        self._run_dir = run_dir
        self._clock = clock
        self._mono = mono
        self.announcements = Announcements(network, mono)  # the bursts after the first
        self.early = EarlyProbes(network)  # the loop opens them, takeovers use them
        self.warm: WarmStarter | None = None  # the daemon's, for the reference service
        self.xdata_root = service_node.DEFAULT_XDATA_ROOT  # the daemon sets the config's

    # ---- helpers --------------------------------------------------------------------------

    @staticmethod
    def interface(config: NodeConfig, lim: LimConfig) -> str:
        """Where ``lim``'s alias goes on this node: its own interface on its regular server,
        the standby's interface on the standby."""
        return lim.interface if config.role is Role.REGULAR else config.local.interface

    def service(self, lim: LimConfig) -> ServiceCommands:
        return lim.service or reference_service(lim, self._run_dir, self.xdata_root)

    def _companions(self, config: NodeConfig, lim: LimConfig) -> list[Companion]:
        on_standby = config.role is Role.STANDBY
        return [c for c in lim.companions if not on_standby or c.runs_on_standby]

    def service_status(self, lim: LimConfig) -> int:
        """The status command's exit code: 0 running, 150 loading, other: not running."""
        return self._run(self.service(lim).status, STATUS_TIMEOUT)

    # ---- learning what runs here ------------------------------------------------------------

    @staticmethod
    def guarded(config: NodeConfig) -> list[LimConfig]:
        """The LIMs whose alias this node may hold: all on the standby, its own on a
        regular server."""
        return list(config.lims) if config.role is Role.STANDBY else [
            x for x in config.lims if x.server == config.node]

    def learn_local(self, config: NodeConfig,
                    retired: Mapping[int, LimConfig] | None = None) -> tuple[LimRun, ...]:
        """The LIMs whose service runs here, from their status commands, the blocks and
        the leases: those this node may hold, and the ``retired`` ones (LIMs an earlier
        config gave this node; a decision stops those that still run).

        An active LIM whose lease an earlier agent left running (restarted within the
        lease) keeps it; one whose lease lapsed is *fenced* until a decision grants it
        again. Also cleans up what a LIM that does not run left behind (lease, alias,
        block): a node never claims an address for a LIM it does not run.
        """
        runs = []
        mine = self.guarded(config)
        known = {x.lim for x in mine}
        others = [x for n, x in sorted((retired or {}).items()) if n not in known]
        for lim in [*mine, *others]:
            code = self.service_status(lim)
            iface = self.interface(config, lim)
            if code in (0, service_node.STATUS_LOADING):
                mode = Mode.PRELOADED if self.network.is_blocked(lim.lim) else Mode.ACTIVE
                if not self.network.has_alias(iface, lim.alias_ip):
                    if mode is Mode.PRELOADED:
                        self.network.add_alias(iface, lim.alias_ip, lim.prefix)
                    else:  # alias gone behind our back: stop it; decide starts it again
                        self.fence.revoke(lim.alias_ip)
                        self._run(self.service(lim).stop, STOP_TIMEOUT)
                        continue
                fenced = False
                if mode is Mode.ACTIVE:
                    fenced = self.fence.adopt(lim.alias_ip) is None
                    self.announcements.schedule(config, lim, iface)
                else:
                    self.fence.revoke(lim.alias_ip)
                runs.append(LimRun(lim.lim, mode, loading=code != 0, fenced=fenced))
            else:
                try:
                    self.fence.revoke(lim.alias_ip)
                    self.network.remove_alias(iface, lim.alias_ip, lim.prefix)
                    self.network.unblock(lim.lim)
                except (NetworkError, LeaseError):
                    pass
        return tuple(runs)

    # ---- applying ---------------------------------------------------------------------------

    def apply(self, config: NodeConfig, actions: Iterable[Action], cluster_macs: set[str],
              retired: Mapping[int, LimConfig] | None = None,
              claimed: Mapping[Action, Outcome] | None = None) -> list[Outcome]:
        """Apply ``actions`` in order. A failed LIM action does not stop the others.

        ``retired``: the last known LimConfig of LIMs the config no longer names (for
        RetireLim and StopLim of such a LIM). ``claimed``: the outcomes of :meth:`claim`
        (an active start then only starts the service; an activation is done)."""
        retired = retired or {}
        claimed = claimed or {}
        out = []
        for a in actions:
            o = claimed.get(a) or Outcome(a)
            if a in claimed and not (o.ok and isinstance(a, StartLim)):
                out.append(o)
                continue
            try:
                if isinstance(a, RaiseAlarm):
                    self.alarms.raise_(a.code, a.lim, a.text)
                elif isinstance(a, ClearAlarm):
                    self.alarms.clear(a.code, a.lim)
                else:
                    lim = self._lim(config, a.lim, retired)
                    if lim is None:
                        o.ok = False
                        o.error = (f"LIM {a.lim} is neither in the config of cluster "
                                   f"{config.cluster} nor among the LIMs that left it: nothing "
                                   "is known of its alias or its service here")
                    elif isinstance(a, StartLim):
                        self._start(config, lim, a.mode, cluster_macs, o, a in claimed)
                    elif isinstance(a, StopLim):
                        self._stop(config, lim, o)
                    elif isinstance(a, RetireLim):
                        self._retire(config, lim, retired, o)
                    elif isinstance(a, ActivateLim):
                        self._activate(config, lim, cluster_macs, o)
                    elif isinstance(a, DeactivateLim):
                        self._deactivate(config, lim, o)
            except (NetworkError, LeaseError) as e:
                o.ok, o.error = False, str(e)
            out.append(o)
        return out

    @staticmethod
    def _lim(config: NodeConfig, n: int, retired: Mapping[int, LimConfig]) -> LimConfig | None:
        for x in config.lims:
            if x.lim == n:
                return x
        return retired.get(n)

    def _retire(self, config: NodeConfig, lim: LimConfig, retired: Mapping[int, LimConfig],
                o: Outcome) -> None:
        """Stop ``lim`` for good; a LIM the config no longer names stops being guarded."""
        self._stop(config, lim, o)
        if all(x.lim != lim.lim for x in config.lims):
            keep = [x.alias_ip for x in self.guarded(config)]
            keep += [x.alias_ip for n, x in retired.items() if n != lim.lim]
            self.fence.setup(keep)  # its alias, unless a LIM of the config uses it too

    def _mark(self, o: Outcome, step: str) -> None:
        o.steps.setdefault(step, self._clock())

    def _foreign(self, config: NodeConfig, lim: LimConfig, iface: str, cluster_macs: set[str],
                 o: Outcome) -> bool:
        """True (and ``o`` failed, naming the MAC) when a host outside the cluster answers
        an ARP probe for ``lim``'s alias: the early probe's window up to now when there is
        one (:mod:`mxone_agent.early_probe`), else a probe made now."""
        wait = probe_wait(config)
        answers = None
        early = self.early.take(iface, lim.alias_ip)
        if early is not None:
            try:
                left = early.started + wait - time.monotonic()
                if left > 0:
                    early.wait(left)
                answers = early.answers()
            finally:
                self.early.dispose(early)  # closed after this, not before the alias is up
        if answers is None:
            answers = self.network.probe(iface, lim.alias_ip, wait)
        self._mark(o, "probed")
        foreign = sorted(m for m in answers if m not in cluster_macs)
        if foreign:
            o.ok, o.foreign_mac = False, foreign[0]
            o.error = (f"alias {lim.alias_ip} of LIM {lim.lim} is answered by {foreign[0]}, "
                       "which belongs to no server of the cluster; LIM not started")
            return True
        return False

    def _start_services(self, config: NodeConfig, lim: LimConfig, o: Outcome) -> bool:
        code = None if self.warm is None else self.warm.run(self.service(lim).start,
                                                             START_TIMEOUT)
        if code is None:
            code = self._run(self.service(lim).start, START_TIMEOUT)
        if code != 0:
            o.ok = False
            o.error = f"the service of LIM {lim.lim} did not start (exit status {code})"
            return False
        self._mark(o, "service_up")
        for c in self._companions(config, lim):
            if self._run(c.service.start, START_TIMEOUT) != 0:
                o.error = f"companion {c.name} of LIM {lim.lim} did not start"
        return True

    def claim(self, config: NodeConfig, action: Action, cluster_macs: set[str]) -> Outcome | None:
        """The first part of a takeover, done by the caller (the loop, at its priority, no
        hand-over to the worker): for a StartLim (active) or ActivateLim whose early probe
        has listened long enough (:mod:`mxone_agent.early_probe`), the probe read, the lease,
        the block lifted, the alias up and the first gratuitous ARP. None when it would have
        to wait (no early probe ready): :meth:`apply` then does the whole action. The
        outcome, failed or not, goes to :meth:`apply` with the action (``claimed``), which
        starts the service."""
        if not isinstance(action, StartLim | ActivateLim) or (
                isinstance(action, StartLim) and action.mode is not Mode.ACTIVE):
            return None
        lim = self._lim(config, action.lim, {})
        if lim is None:
            return None
        iface = self.interface(config, lim)
        if not self.early.ready(iface, lim.alias_ip, probe_wait(config)):
            return None
        o = Outcome(action)
        try:
            if isinstance(action, StartLim):
                self._up(config, lim, iface, cluster_macs, o)
            else:
                self._activate(config, lim, cluster_macs, o)
        except (NetworkError, LeaseError) as e:
            o.ok, o.error = False, str(e)
        return o

    def _up(self, config: NodeConfig, lim: LimConfig, iface: str, cluster_macs: set[str],
            o: Outcome) -> bool:
        """An active start up to the first gratuitous ARP (the service comes after)."""
        if self._foreign(config, lim, iface, cluster_macs, o):
            return False
        self.fence.grant(lim.alias_ip)  # before the alias is up: it answers from its first moment
        self.network.unblock(lim.lim)
        self.network.add_alias(iface, lim.alias_ip, lim.prefix)
        self._mark(o, "alias_up")
        # Announce before the service is up: clients' traffic then reaches this host at
        # once, and the service answers as soon as it binds.
        self.network.garp(iface, lim.alias_ip, config.garp.burst)
        self._mark(o, "first_garp")
        self.announcements.schedule(config, lim, iface)
        return True

    def _start(self, config: NodeConfig, lim: LimConfig, mode: Mode, cluster_macs: set[str],
               o: Outcome, claimed: bool = False) -> None:
        iface = self.interface(config, lim)
        if mode is Mode.PRELOADED:
            self.network.block(lim.lim, lim.alias_ip)
            self.network.add_alias(iface, lim.alias_ip, lim.prefix)
            self._start_services(config, lim, o)
            return
        if not claimed and not self._up(config, lim, iface, cluster_macs, o):
            return
        if not self._start_services(config, lim, o):
            self.announcements.forget(lim.lim)
            self.fence.revoke(lim.alias_ip)
            self.network.remove_alias(iface, lim.alias_ip, lim.prefix)

    def _stop(self, config: NodeConfig, lim: LimConfig, o: Outcome) -> None:
        iface = self.interface(config, lim)
        self.announcements.forget(lim.lim)
        # Lease and address first: from now on no client traffic reaches a half-stopped
        # service.
        self.fence.revoke(lim.alias_ip)
        self.network.remove_alias(iface, lim.alias_ip, lim.prefix)
        self.network.unblock(lim.lim)
        for c in reversed(self._companions(config, lim)):
            self._run(c.service.stop, STOP_TIMEOUT)
        code = self._run(self.service(lim).stop, STOP_TIMEOUT)
        if code != 0:
            o.error = f"the stop command of LIM {lim.lim} failed (exit status {code})"
        self._mark(o, "service_down")

    def _activate(self, config: NodeConfig, lim: LimConfig, cluster_macs: set[str],
                  o: Outcome) -> None:
        iface = self.interface(config, lim)
        if self._foreign(config, lim, iface, cluster_macs, o):
            return
        self.fence.grant(lim.alias_ip)
        self.network.add_alias(iface, lim.alias_ip, lim.prefix)
        self.network.unblock(lim.lim)
        self._mark(o, "alias_up")
        self.network.garp(iface, lim.alias_ip, config.garp.burst)
        self._mark(o, "first_garp")
        self.announcements.schedule(config, lim, iface)

    def reload_service(self, config: NodeConfig, lim: LimConfig) -> Outcome:
        """Restart ``lim``'s service in place so it loads its newest exchange data (a
        preloaded passive side after new data arrived): stop, then start; the alias, its
        block and the companions stay as they are. The service is *loading* afterwards."""
        o = Outcome(StartLim(lim.lim, Mode.PRELOADED))
        service = self.service(lim)
        self._run(service.stop, STOP_TIMEOUT)
        self._mark(o, "service_down")
        code = self._run(service.start, START_TIMEOUT)
        if code != 0:
            o.ok = False
            o.error = f"the service of LIM {lim.lim} did not start again (exit status {code})"
        else:
            self._mark(o, "service_up")
        return o

    def _deactivate(self, config: NodeConfig, lim: LimConfig, o: Outcome) -> None:
        self.announcements.forget(lim.lim)
        self.network.block(lim.lim, lim.alias_ip)
        self.fence.revoke(lim.alias_ip)  # passive: the block holds it, no lease needed
        self._mark(o, "blocked")

    # ---- gratuitous ARP after the first burst (mxone_agent.announce) -------------------------

    def next_announce(self) -> float | None:
        return self.announcements.next()

    def announce_due(self, config: NodeConfig) -> int:
        return self.announcements.due(config)

    def claims_ended(self, config: NodeConfig, lims: Collection[int]) -> int:
        return self.announcements.claims_ended(config, lims)

    def forget(self, lim: int) -> None:
        self.announcements.forget(lim)
