"""A simulated cluster: every node runs decide() on its own view; hypothesis drives faults.

The network is simple: a heartbeat reaches every peer the same tick unless the pair is cut
(partitions are symmetric). Time advances in ticks of one heartbeat interval. Each node does
what the daemon will do: renew the leases of the aliases it holds (a lease not renewed for
LEASE has lapsed: that LIM is fenced), work out whether its loop was stalled, take in
heartbeats, judge its peers, record reappearances, decide, apply the actions as if they
all succeeded (a start or activation grants the lease), and decide once more (alarms follow
what runs).

Faults: a server crashes (agent and LIMs stop) and recovers (boots afresh); an agent
restarts while its LIMs keep running; a node freezes (SIGSTOP: nothing runs, nothing is sent,
its LIMs keep running) and later resumes; links are cut and healed; LIMs are locked and
unlocked (also while a server is down: it keeps its older config, comes back behind, and
runs so until the tool catches it up); manual fallbacks are ordered; a LIM is removed from
the cluster (every node gets the config without it, its server leaves - the standby may be
running it then). Priorities, fallback type and split-brain side are drawn per run, with
ties.

Invariants:
* the client's view: at every moment at most one server answers for each alias (its LIM is
  active there and its lease has not expired, frozen or not), unless the servers that do
  are cut from each other or were within the last two ticks (a partition and its heal);
* two nodes that have heard each other for one detection period never both run a LIM;
* the standby never runs two LIMs;
* no action moves a locked LIM away from, or onto, the wrong server (by the node's own
  config; a node that is behind yields in a split brain whatever its lock);
* a regular starts nothing actively after booting until it heard the standby or a full
  detection period passed;
* the standby gives up the LIM of a server still down only for a strictly higher priority;
* once things settle (and every node holds the same generation), the failed LIM with the
  highest priority runs on the standby (unless the standby holds a LIM locked to it, or one
  of equal or higher priority); a LIM locked to the standby that its regular server does not
  run counts as failed;
* once things settle in a healthy network at one generation, every LIM whose server is up
  runs on exactly one server (allowing the one tick of a fallback hand-over), unless it is
  locked to the standby and the standby is busy with another LIM;
* the standby holds exactly the "LIM on standby" alarms of the LIMs it runs; one regular at
  most holds "standby out of order", and only while the standby is down;
* after each tick no running node runs a LIM its config does not give it (a LIM removed
  from the cluster is stopped at once where it ran), and the other LIMs still fail over;
* an ordered (manual) fallback hands a LIM only to a regular server that is ready for it:
  past its hold-down and up for a detection period since it last came back.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mxone_agent.actions import (
    ActivateLim,
    AlarmCode,
    DeactivateLim,
    RetireLim,
    StartLim,
    StopLim,
)
from mxone_agent.config import FallbackType, Lock, NodeConfig
from mxone_agent.decide import LocalState, decide, fallback_blocker, record_appearance
from mxone_agent.heartbeat import Heartbeat
from mxone_agent.lease import lease_seconds
from mxone_agent.model import LimRun, Mode, Readiness, Role
from mxone_agent.peers import PeerView, reappeared, resumed_at

from tests.agent.builders import CLUSTER, STANDBY, TIMERS, cluster_config

D = TIMERS.detection
TICK = TIMERS.interval
LEASE = lease_seconds(TIMERS)
SETTLE = D + 2 * TICK


@dataclass
class Node:
    name: str
    role: Role
    lim: int | None
    config: NodeConfig
    up: bool = True
    frozen: bool = False
    incarnation: int = 1
    seq: int = 0
    booted_at: float = 0.0
    resumed: float = 0.0
    last_tick: float | None = None
    heard_standby: bool = False
    local: LocalState = field(default_factory=LocalState.empty)
    peers: dict[str, PeerView] = field(default_factory=dict)
    renewed: dict[int, float] = field(default_factory=dict)  # LIM -> last lease renewal

    @property
    def running(self) -> bool:
        return self.up and not self.frozen

    def answers(self, lim: int, now: float) -> bool:
        """What a client sees: the LIM is active here and its lease runs (frozen or not)."""
        run = self.local.run(lim)
        return (self.up and run is not None and run.active
                and now < self.renewed.get(lim, float("-inf")) + LEASE)

    def renew_leases(self, now: float) -> None:
        """The daemon's renewal at the top of a tick: a lapsed lease fences its LIM."""
        runs = []
        for r in self.local.runs:
            if r.active and now >= self.renewed.get(r.lim, float("-inf")) + LEASE:
                self.renewed.pop(r.lim, None)
                r = LimRun(r.lim, r.mode, r.loading, fenced=True)
            elif r.active:
                self.renewed[r.lim] = now
            runs.append(r)
        self.local = _with(self.local, runs=tuple(runs))

    def applied(self, actions, now: float) -> None:
        for a in actions:
            if isinstance(a, ActivateLim) or (isinstance(a, StartLim) and a.mode is Mode.ACTIVE):
                self.renewed[a.lim] = now
            elif isinstance(a, StopLim | RetireLim | DeactivateLim):
                self.renewed.pop(a.lim, None)
        self.local = self.local.applied(actions, now)


class Cluster(RuleBasedStateMachine):
    """Three regular servers and a standby, or one of each in a preloaded cluster."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.cuts: set[frozenset[str]] = set()
        self.last_event = 0.0
        self.pair_since: dict[frozenset[str], float] = {}
        self.dark_ticks: dict[int, int] = {}
        self.incarnations = itertools.count(2)
        self.cut_at: dict[frozenset[str], float] = {}  # pair -> last time it was cut

    # ---- set-up ------------------------------------------------------------------------

    @initialize(
        preloaded=st.booleans(),
        priorities=st.lists(st.integers(0, 2), min_size=3, max_size=3),
        fallback=st.sampled_from(["automatic", "manual"]),
        split=st.sampled_from(["regular", "standby"]),
    )
    def setup(self, preloaded: bool, priorities: list[int], fallback: str, split: str) -> None:
        lims = [(2, priorities[0])] if preloaded else list(zip((2, 3, 4), priorities, strict=True))
        self.kw = dict(lims=lims, fallback=fallback, split_brain_stop=split,
                       failover="preloaded" if preloaded else "regular")
        self.locks: dict[int, str] = {n: "none" for n, _ in lims}
        names = [f"lim{n}" for n, _ in lims] + [STANDBY]
        for name in names:
            cfg = cluster_config(name, **self.kw)
            lim = cfg.lim_of(name)
            self.nodes[name] = Node(name, cfg.role, lim.lim if lim else None, cfg)
        self.lim_numbers = [n for n, _ in lims]

    # ---- the simulated daemons ---------------------------------------------------------

    def _tick(self) -> None:
        self.now += TICK
        now = self.now
        for node in self.nodes.values():
            if node.running and node.local.readiness is Readiness.LOADING:
                node.local = _with(node.local, readiness=Readiness.READY)
            if node.running:  # a LIM started a tick ago has finished loading
                node.local = _with(node.local, runs=tuple(
                    LimRun(r.lim, r.mode, False, r.fenced)
                    if now - node.local.started_at.get(r.lim, now) >= TICK else r
                    for r in node.local.runs))
                node.renew_leases(now)
        sent: dict[str, Heartbeat] = {}
        for node in self.nodes.values():
            if node.running:
                node.seq += 1
                sent[node.name] = Heartbeat(
                    cluster=CLUSTER, sender=node.name, incarnation=node.incarnation,
                    seq=node.seq, generation=node.config.generation, role=node.role,
                    readiness=node.local.readiness, lims=node.local.runs)
        for node in self.nodes.values():
            if node.running:
                self._run_daemon(node, sent)
        self._track_pairs()
        for node in self.nodes.values():
            if node.running:
                mine = ({x.lim for x in node.config.lims} if node.role is Role.STANDBY
                        else {node.lim})
                stray = [r.lim for r in node.local.runs if r.lim not in mine]
                assert not stray, f"{node.name} still runs LIM(s) {stray} its config does not give it"
        # Rules that advance several ticks must not hide a violation in between.
        self.at_most_one_server_answers()
        self.standby_runs_at_most_one_lim()
        self.peers_that_hear_each_other_do_not_both_run_a_lim()
        self.best_failed_lim_gets_the_standby()
        self.every_lim_of_a_live_server_runs_once_in_a_healthy_network()
        self.alarms_match_the_state()

    def _run_daemon(self, node: Node, sent: dict[str, Heartbeat]) -> None:
        now = self.now
        node.resumed = resumed_at(node.last_tick, node.resumed, now, TIMERS)
        node.last_tick = now
        views = {}
        for peer in self.nodes:
            if peer == node.name:
                continue
            before = node.peers.get(peer)
            view = before or PeerView.unknown(peer)
            if peer in sent and frozenset((peer, node.name)) not in self.cuts:
                view = view.heard(sent[peer], now)
                if peer == STANDBY:
                    node.heard_standby = True
            view = view.judged(now, TIMERS, node.resumed)
            lim = node.config.lim_of(peer)
            if lim is not None and reappeared(before, view):
                node.local = _with(node.local, appearances=record_appearance(
                    node.local.appearances, lim.lim, now))
            views[peer] = view
        node.peers = views
        for _ in range(2):  # the daemon decides again once a decision is applied
            decision = decide(node.config, views, node.local, now)
            self._check_actions(node, decision)
            node.applied(decision.actions, now)
        # The daemon drops a fallback request once the LIM no longer runs actively here.
        node.local = _with(node.local, fallback_requests=frozenset(
            n for n in node.local.fallback_requests if n in node.local.active_lims()))

    def _check_actions(self, node: Node, decision) -> None:
        if node.role is Role.STANDBY and node.config.fallback is FallbackType.MANUAL and not any(
                isinstance(a, StartLim | ActivateLim) for a in decision.actions):
            for a in decision.actions:
                if not (isinstance(a, StopLim | DeactivateLim)
                        and a.lim in node.local.fallback_requests):
                    continue
                home = node.peers.get(node.config.lim(a.lim).server)
                if home is not None and home.alive and not home.runs_active(a.lim):
                    why = fallback_blocker(node.config, node.peers, node.local, a.lim, self.now)
                    assert why is None, (f"ordered fallback of LIM {a.lim} to a server not "
                                         f"ready ({why}): {decision.reason}")
        if node.role is Role.STANDBY and len(node.local.active_lims()) <= 1:
            # The running LIM of a server still down is given up only for a strictly
            # higher priority: on a tie, the LIM already running keeps the standby.
            started = [a.lim for a in decision.actions if isinstance(a, StartLim)]
            for a in decision.actions:
                run = node.local.run(a.lim)
                if isinstance(a, StopLim) and not (run is not None and run.fenced) and \
                        not node.peers[node.config.lim(a.lim).server].alive:
                    prio = node.config.lim(a.lim).priority
                    assert any(node.config.lim(n).priority < prio for n in started), (
                        f"standby gave up LIM {a.lim} of a server still down: {decision.reason}")
        for a in decision.actions:
            if not isinstance(a, StartLim | StopLim | ActivateLim | DeactivateLim):
                continue
            assert any(x.lim == a.lim for x in node.config.lims), (
                f"{node.name}: {a} of a LIM its config does not name: {decision.reason}")
            lock = node.config.lim(a.lim).lock
            claims = isinstance(a, ActivateLim) or (isinstance(a, StartLim)
                                                    and a.mode is Mode.ACTIVE)
            releases = isinstance(a, StopLim | DeactivateLim)
            run = node.local.run(a.lim)
            if run is not None and run.fenced:
                # A fenced LIM answers nowhere: letting it go moves nothing, and taking it
                # again (where it runs) claims nothing new.
                claims = releases = False
            if a.lim in decision.split_brain and any(
                    v.alive and v.heartbeat is not None
                    and v.heartbeat.generation > node.config.generation
                    for v in node.peers.values()):
                releases = False  # behind: the older generation yields, whatever its lock
            if lock is not Lock.NONE:
                assert not (releases and lock.value == node.role.value), (
                    f"{node.name}: {a} against LIM {a.lim} locked to it: {decision.reason}")
                assert not (claims and lock.value != node.role.value), (
                    f"{node.name}: {a} of LIM {a.lim} locked to the {lock}: {decision.reason}")
            if claims and node.role is Role.REGULAR:
                assert node.heard_standby or self.now - node.booted_at > D, (
                    f"{node.name} claimed LIM {a.lim} {self.now - node.booted_at} s after boot "
                    f"without hearing the standby: {decision.reason}")

    def _partitioned(self, a: str, b: str) -> bool:
        """Cut from each other now, or healed too recently to have settled it."""
        pair = frozenset((a, b))
        return pair in self.cuts or self.now - self.cut_at.get(pair, float("-inf")) <= 2 * TICK

    def _connected(self, a: str, b: str) -> bool:
        return (self.nodes[a].running and self.nodes[b].running
                and frozenset((a, b)) not in self.cuts)

    def _track_pairs(self) -> None:
        for a, b in itertools.combinations(self.nodes, 2):
            pair = frozenset((a, b))
            if self._connected(a, b):
                self.pair_since.setdefault(pair, self.now)
            else:
                self.pair_since.pop(pair, None)
        for n in self.lim_numbers:
            holders = [x for x in self.nodes.values() if x.up and n in x.local.active_lims()]
            self.dark_ticks[n] = 0 if holders else self.dark_ticks.get(n, 0) + 1

    def _event(self) -> None:
        self.last_event = self.now

    # ---- rules -------------------------------------------------------------------------

    @rule(ticks=st.integers(1, 3))
    def advance(self, ticks: int) -> None:
        for _ in range(ticks):
            self._tick()

    @rule()
    def settle(self) -> None:
        for _ in range(int(SETTLE / TICK) + 2):
            self._tick()

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        node = self.nodes[data.draw(st.sampled_from(sorted(self.nodes)))]
        if node.up:
            node.up, node.frozen = False, False
            node.local, node.peers, node.renewed = LocalState.empty(), {}, {}
            self.pair_since = {p: t for p, t in self.pair_since.items() if node.name not in p}
            self._event()

    @rule(data=st.data())
    def recover(self, data: st.DataObject) -> None:
        node = self.nodes[data.draw(st.sampled_from(sorted(self.nodes)))]
        if not node.up:
            node.up = True
            self._boot(node, keep_runs=False)

    @rule(data=st.data())
    def restart_agent(self, data: st.DataObject) -> None:
        """The agent restarts; the LIM services it started keep running."""
        node = self.nodes[data.draw(st.sampled_from(sorted(self.nodes)))]
        if node.running:
            self._boot(node, keep_runs=True)
            self.pair_since = {p: t for p, t in self.pair_since.items() if node.name not in p}

    def _boot(self, node: Node, keep_runs: bool) -> None:
        node.incarnation, node.seq = next(self.incarnations), 0
        node.booted_at = node.resumed = self.now
        node.last_tick, node.heard_standby, node.peers = None, False, {}
        runs = node.local.runs if keep_runs else ()
        if not keep_runs:
            node.renewed = {}
        node.local = LocalState(runs=runs, started_at={r.lim: self.now - 10 for r in runs})
        self._event()

    @rule(data=st.data(), ticks=st.integers(2, 6))
    def freeze(self, data: st.DataObject, ticks: int) -> None:
        """SIGSTOP one node for a while (its LIMs keep running), then let it resume."""
        node = self.nodes[data.draw(st.sampled_from(sorted(self.nodes)))]
        if not node.running:
            return
        node.frozen = True
        self._event()
        for _ in range(ticks):
            self._tick()
        node.frozen = False
        self._event()

    @rule(data=st.data())
    def cut(self, data: st.DataObject) -> None:
        a, b = data.draw(st.lists(st.sampled_from(sorted(self.nodes)), min_size=2, max_size=2,
                                  unique=True))
        self.cuts.add(frozenset((a, b)))
        self.cut_at[frozenset((a, b))] = self.now
        self._event()

    @rule(data=st.data())
    def isolate(self, data: st.DataObject) -> None:
        a = data.draw(st.sampled_from(sorted(self.nodes)))
        pairs = {frozenset((a, b)) for b in self.nodes if b != a}
        self.cuts |= pairs
        self.cut_at.update((p, self.now) for p in pairs)
        self._event()

    @precondition(lambda self: bool(self.cuts))
    @rule()
    def heal(self) -> None:
        self.cut_at.update((p, self.now) for p in self.cuts)
        self.cuts.clear()
        self._event()

    @rule(data=st.data(), lock=st.sampled_from(["none", "regular", "standby"]))
    def lock(self, data: st.DataObject, lock: str) -> None:
        n = data.draw(st.sampled_from(self.lim_numbers))
        self.locks[n] = lock
        self._deploy(self.nodes.values())

    def _deploy(self, nodes) -> None:
        """The tool deploys the current config, at a new generation, to ``nodes``."""
        generation = max(node.config.generation for node in self.nodes.values()) + 1
        for node in nodes:
            node.config = cluster_config(node.name, **self.kw, locks=self.locks,
                                         generation=generation)
        self._event()

    @rule(data=st.data(), lock=st.sampled_from(["none", "regular", "standby"]),
          back=st.booleans())
    def degraded_lock(self, data: st.DataObject, lock: str, back: bool) -> None:
        """A lock or unlock deployed while a server is down (one is crashed for it if none
        is): it keeps its older config and, recovered now (``back``) or later, runs behind
        until ``catch_up``."""
        down = [x.name for x in self.nodes.values() if not x.up]
        name = data.draw(st.sampled_from(down or sorted(self.nodes)))
        node = self.nodes[name]
        if node.up:
            node.up, node.frozen = False, False
            node.local, node.peers, node.renewed = LocalState.empty(), {}, {}
            self.pair_since = {p: t for p, t in self.pair_since.items() if name not in p}
        n = data.draw(st.sampled_from(self.lim_numbers))
        self.locks[n] = lock
        self._deploy([x for x in self.nodes.values() if x.up])
        if back:
            node.up = True
            self._boot(node, keep_runs=False)

    @precondition(lambda self: self._behind())
    @rule()
    def catch_up(self) -> None:
        """The tool reaches the servers that are behind and brings them to the current
        generation."""
        top = max(node.config.generation for node in self.nodes.values())
        for node in self.nodes.values():
            if node.config.generation < top:
                node.config = cluster_config(node.name, **self.kw, locks=self.locks,
                                             generation=top)
        self._event()

    def _behind(self) -> bool:
        """Some node's config is older than another's."""
        return len({node.config.generation for node in self.nodes.values()}) > 1

    @rule(data=st.data())
    def order_fallback(self, data: st.DataObject) -> None:
        n = data.draw(st.sampled_from(self.lim_numbers))
        sb = self.nodes[STANDBY]
        if sb.running:
            sb.local = _with(sb.local, fallback_requests=sb.local.fallback_requests | {n})
            self._event()

    @precondition(lambda self: len(self.lim_numbers) > 1)
    @rule(data=st.data())
    def remove_lim(self, data: st.DataObject) -> None:
        """The maintenance tool removes a LIM from the cluster; here without its hand-back
        (the agents alone must cope): every node gets the config without it, its server
        leaves the cluster, and the standby may be running it at that moment."""
        n = data.draw(st.sampled_from(self.lim_numbers))
        self.lim_numbers = [x for x in self.lim_numbers if x != n]
        self.locks.pop(n, None)
        self.dark_ticks.pop(n, None)
        lims = [(x, p) for x, p in self.kw["lims"] if x != n]
        self.kw = {**self.kw, "lims": lims}
        generation = max(node.config.generation for node in self.nodes.values()) + 1
        del self.nodes[f"lim{n}"]
        self.pair_since = {p: t for p, t in self.pair_since.items() if f"lim{n}" not in p}
        self.cuts = {c for c in self.cuts if f"lim{n}" not in c}
        for node in self.nodes.values():
            node.config = cluster_config(node.name, **self.kw, locks=self.locks,
                                         generation=generation)
            node.peers.pop(f"lim{n}", None)
        self._event()

    # ---- invariants --------------------------------------------------------------------

    def _settled(self) -> bool:
        return self.now - self.last_event >= SETTLE

    @invariant()
    def at_most_one_server_answers(self) -> None:
        for n in self.lim_numbers:
            holders = [x.name for x in self.nodes.values() if x.answers(n, self.now)]
            for a, b in itertools.combinations(holders, 2):
                assert self._partitioned(a, b), (
                    f"at {self.now}: {a} and {b} both answer for LIM {n}'s alias")

    @invariant()
    def standby_runs_at_most_one_lim(self) -> None:
        assert len(self.nodes[STANDBY].local.active_lims()) <= 1

    @invariant()
    def peers_that_hear_each_other_do_not_both_run_a_lim(self) -> None:
        for pair, since in self.pair_since.items():
            if self.now - since < D:
                continue
            a, b = (self.nodes[x] for x in pair)
            both = set(a.local.active_lims()) & set(b.local.active_lims())
            assert not both, f"{a.name} and {b.name} both run LIM(s) {both}"

    @invariant()
    def best_failed_lim_gets_the_standby(self) -> None:
        sb = self.nodes[STANDBY]
        if not (self._settled() and sb.running and sb.local.ready) or self._behind():
            return
        cfg = sb.config
        failed = [x for x in cfg.lims if x.lock is not Lock.REGULAR and (
            not self._connected(x.server, STANDBY)
            or (x.lock is Lock.STANDBY and x.lim not in self.nodes[x.server].local.active_lims()))]
        if not failed:
            return
        best = min(x.priority for x in failed)
        running = sb.local.active_lims()
        assert running, f"standby idle while LIM(s) {[x.lim for x in failed]} failed"
        held = cfg.lim(running[0])
        assert held.lock is Lock.STANDBY or held.priority <= best, (
            f"standby runs LIM {held.lim} (priority {held.priority}) while a failed LIM has "
            f"priority {best}")

    @invariant()
    def every_lim_of_a_live_server_runs_once_in_a_healthy_network(self) -> None:
        sb = self.nodes[STANDBY]
        if not (self._settled() and not self.cuts and sb.running) or self._behind():
            return
        for x in sb.config.lims:
            home = self.nodes[x.server]
            if not home.running:
                continue
            holders = [n.name for n in (home, sb) if x.lim in n.local.active_lims()]
            assert len(holders) <= 1, f"LIM {x.lim} runs on {holders}"
            standby_busy = bool(set(sb.local.active_lims()) - {x.lim})
            if x.lock is not Lock.STANDBY or not standby_busy:
                assert holders or self.dark_ticks[x.lim] <= 1, (
                    f"LIM {x.lim} has run nowhere for {self.dark_ticks[x.lim]} ticks")

    @invariant()
    def alarms_match_the_state(self) -> None:
        sb = self.nodes[STANDBY]
        if sb.running and sb.last_tick is not None:  # a restarted agent decides first
            held = {lim for code, lim in sb.local.alarms if code is AlarmCode.LIM_ON_STANDBY}
            with_alias = {r.lim for r in sb.local.runs if r.mode is Mode.ACTIVE}
            assert set(sb.local.active_lims()) <= held <= with_alias, (held, sb.local.runs)
        holders = [n.name for n in self.nodes.values() if n.running and n.role is Role.REGULAR
                   and (AlarmCode.STANDBY_OUT_OF_ORDER, None) in n.local.alarms]
        if not (self._settled() and not self.cuts):
            return
        if sb.running:
            assert not holders, f"{holders} hold 'standby out of order' with the standby up"
        elif not sb.up:
            live = sorted((n.lim, n.name) for n in self.nodes.values()
                          if n.running and n.role is Role.REGULAR)
            assert holders == ([live[0][1]] if live else []), (
                f"'standby out of order' held by {holders}, live regulars {live}")


def _with(state: LocalState, **changes) -> LocalState:
    return dataclasses.replace(state, **changes)


Cluster.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestCluster = Cluster.TestCase
