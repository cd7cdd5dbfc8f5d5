"""Early ARP probes: opened before a silent peer's death, read by the takeover, closed when
the peer is heard again; the foreign-owner check stays whole (mxone_agent.early_probe)."""

from __future__ import annotations

import time
from pathlib import Path

from mxone_agent.actions import StartLim, StopLim
from mxone_agent.alarms import AlarmBook
from mxone_agent.config import LimConfig, NodeConfig
from mxone_agent.early_probe import MAX_AGE, EarlyProbes, lead, probe_wait
from mxone_agent.executor import Executor
from mxone_agent.lease import Fence
from mxone_agent.network import RecordingNetwork, RecordingProbe
from mxone_agent.peers import Liveness, PeerView

from tests.agent.builders import Timers, active, cluster_config, heartbeat

FASTEST = Timers(interval=0.1, misses=3)
CLUSTER_MACS = {"02:00:00:00:00:01", "02:00:00:00:00:22"}
FOREIGN = "02:99:99:99:99:99"


def cfg() -> NodeConfig:
    return cluster_config("sb", timers=FASTEST)


def heard(name: str, lim: int, at: float) -> PeerView:
    return PeerView(name, Liveness.ALIVE, at, heartbeat(name, [active(lim)]))


def upkeep(early: EarlyProbes, now: float, views: dict[str, PeerView], here=()) -> float:
    c = cfg()
    return early.upkeep(now, c, views, resumed=0.0, guarded=list(c.lims),
                        interface=lambda x: "eth0", here=set(here))


def opened(net: RecordingNetwork) -> list[str]:
    return [c[2] for c in net.calls if c[0] == "open_probe"]


def test_a_probe_opens_once_the_peer_is_silent_for_detection_minus_the_lead() -> None:
    net = RecordingNetwork()
    early = EarlyProbes(net)
    c = cfg()
    ahead = lead(c)
    assert ahead == probe_wait(c) + 0.05 == 0.1
    views = {"lim2": heard("lim2", 2, at=100.0)}
    due = upkeep(early, 100.1, views)
    assert opened(net) == []
    assert abs(due - (100.0 + 0.3 - ahead)) < 1e-9  # the loop wakes then
    assert upkeep(early, 100.21, views) == float("inf")
    assert opened(net) == ["10.77.0.12"]  # LIM 2's alias, and only it
    upkeep(early, 100.25, views)
    assert opened(net) == ["10.77.0.12"]  # not twice


def test_a_peer_heard_again_closes_its_probe() -> None:
    net = RecordingNetwork()
    early = EarlyProbes(net)
    upkeep(early, 100.21, {"lim2": heard("lim2", 2, at=100.0)})
    probe = early._open[("eth0", cfg().lim(2).alias_ip)][1]
    upkeep(early, 100.25, {"lim2": heard("lim2", 2, at=100.24)})
    assert isinstance(probe, RecordingProbe) and probe.closed
    assert early.take("eth0", cfg().lim(2).alias_ip) is None


def test_no_probe_for_a_lim_that_runs_here_or_is_not_advertised_active() -> None:
    net = RecordingNetwork()
    early = EarlyProbes(net)
    upkeep(early, 100.21, {"lim2": heard("lim2", 2, at=100.0)}, here={2})
    quiet = PeerView("lim3", Liveness.ALIVE, 100.0, heartbeat("lim3", []))
    upkeep(early, 100.21, {"lim3": quiet})
    assert opened(net) == []


def test_an_aged_probe_is_closed_and_not_opened_again_until_the_peer_is_heard() -> None:
    net = RecordingNetwork()
    early = EarlyProbes(net)
    views = {"lim2": heard("lim2", 2, at=100.0)}
    upkeep(early, 100.21, views)
    [(_, probe)] = early._open.values()
    probe.started = 100.4 - MAX_AGE - 0.1  # type: ignore[misc]  # the loop's clock here
    upkeep(early, 100.4, views)
    assert isinstance(probe, RecordingProbe) and probe.closed
    upkeep(early, 100.5, views)
    assert opened(net) == ["10.77.0.12"]
    upkeep(early, 103.0, {"lim2": heard("lim2", 2, at=102.9)})  # heard again
    upkeep(early, 103.2, {"lim2": heard("lim2", 2, at=102.9)})  # silent again
    assert opened(net) == ["10.77.0.12", "10.77.0.12"]


def executor(tmp_path: Path) -> tuple[Executor, RecordingNetwork, NodeConfig]:
    c = cfg()
    net = RecordingNetwork()
    ex = Executor(net, AlarmBook(tmp_path, tmp_path / "alarms.log", use_syslog=False),
                  Fence(net.leases, 0.25, clock=net.leases.clock), run=lambda argv, t: 0)
    return ex, net, c


def open_early(ex: Executor, c: NodeConfig, started: float) -> RecordingProbe:
    lims: list[LimConfig] = list(c.lims)
    ex.early.upkeep(100.21, c, {"lim2": heard("lim2", 2, at=100.0)}, 0.0, lims,
                    lambda x: ex.interface(c, x), set())
    [(_, probe)] = ex.early._open.values()
    assert isinstance(probe, RecordingProbe)
    probe.started = started
    return probe


def test_the_takeover_reads_the_early_probe_instead_of_probing_again(tmp_path: Path) -> None:
    ex, net, c = executor(tmp_path)
    probe = open_early(ex, c, time.monotonic() - 1.0)
    [o] = ex.apply(c, [StartLim(2)], CLUSTER_MACS)
    assert o.ok and probe.closed
    names = net.names()
    assert "probe" not in names and "probe_wait" not in names  # old enough: no wait
    assert names.index("probe_read") < names.index("add_alias") < names.index("garp")
    assert o.steps["probed"] <= o.steps["alias_up"]


def test_a_young_early_probe_is_waited_for(tmp_path: Path) -> None:
    ex, net, c = executor(tmp_path)
    open_early(ex, c, time.monotonic())
    [o] = ex.apply(c, [StartLim(2)], CLUSTER_MACS)
    assert o.ok
    assert net.names().index("probe_wait") < net.names().index("probe_read")


def test_a_foreign_answer_in_the_early_window_stops_the_takeover(tmp_path: Path) -> None:
    ex, net, c = executor(tmp_path)
    open_early(ex, c, time.monotonic() - 1.0)
    net.answers["10.77.0.12"] = {FOREIGN}
    [o] = ex.apply(c, [StartLim(2)], CLUSTER_MACS)
    assert not o.ok and o.foreign_mac == FOREIGN
    assert "add_alias" not in net.names() and "garp" not in net.names()


def test_an_early_probe_that_lost_frames_is_not_trusted(tmp_path: Path) -> None:
    ex, net, c = executor(tmp_path)
    probe = open_early(ex, c, time.monotonic() - 1.0)
    probe.dropped = True
    net.answers["10.77.0.12"] = {FOREIGN}  # the inline probe hears the foreign host
    [o] = ex.apply(c, [StartLim(2)], CLUSTER_MACS)
    assert not o.ok and o.foreign_mac == FOREIGN
    assert net.names().index("probe_read") < net.names().index("probe")


def services_run(ex: Executor) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    ex._run = lambda argv, timeout: calls.append(tuple(argv)) or 0  # type: ignore[method-assign]
    return calls


def test_a_ready_probe_lets_the_caller_take_the_alias_and_the_worker_starts_the_service(
        tmp_path: Path) -> None:
    ex, net, c = executor(tmp_path)
    started = services_run(ex)
    open_early(ex, c, time.monotonic() - 1.0)
    action = StartLim(2)
    claimed = ex.claim(c, action, CLUSTER_MACS)
    assert claimed is not None and claimed.ok
    assert set(claimed.steps) == {"probed", "alias_up", "first_garp"}
    assert net.names()[-4:] == ["probe_read", "unblock", "add_alias", "garp"]
    assert started == []  # no process start before the first gratuitous ARP
    [o] = ex.apply(c, [action], CLUSTER_MACS, claimed={action: claimed})
    assert o is claimed and o.ok and "service_up" in o.steps
    assert len(started) == 1 and "start" in started[0]  # the reference service, once
    assert net.names().count("add_alias") == 1 and net.names().count("garp") == 1


def test_without_a_ready_probe_nothing_is_claimed_and_the_worker_does_it_all(
        tmp_path: Path) -> None:
    ex, net, c = executor(tmp_path)
    assert ex.claim(c, StartLim(2), CLUSTER_MACS) is None  # no early probe at all
    open_early(ex, c, time.monotonic())  # one that has not listened long enough
    assert ex.claim(c, StartLim(2), CLUSTER_MACS) is None
    assert "add_alias" not in net.names()
    assert ex.claim(c, StopLim(2), CLUSTER_MACS) is None  # only takeovers are claimed


def test_a_claimed_takeover_refused_for_a_foreign_host_starts_no_service(tmp_path: Path) -> None:
    ex, net, c = executor(tmp_path)
    started = services_run(ex)
    open_early(ex, c, time.monotonic() - 1.0)
    net.answers["10.77.0.12"] = {FOREIGN}
    action = StartLim(2)
    claimed = ex.claim(c, action, CLUSTER_MACS)
    assert claimed is not None and not claimed.ok and claimed.foreign_mac == FOREIGN
    [o] = ex.apply(c, [action], CLUSTER_MACS, claimed={action: claimed})
    assert o is claimed and started == [] and "add_alias" not in net.names()


def test_the_cycle_claims_only_the_first_lim_action_and_none_after_a_cleanup_of_its_lim(
        ) -> None:
    from mxone_agent.decision_cycle import DecisionCycle

    class Claims:
        def __init__(self) -> None:
            self.asked: list[object] = []

        def claim(self, cfg: object, action: object, macs: object) -> object:
            self.asked.append(action)
            return "claimed"

    ex = Claims()
    got = DecisionCycle._claim(cfg(), ex, set(), [], [StopLim(3), StartLim(2)])  # type: ignore[arg-type]
    assert ex.asked == [StopLim(3)] and got == {StopLim(3): "claimed"}
    ex.asked.clear()
    got = DecisionCycle._claim(cfg(), ex, set(), [StopLim(2)], [StartLim(2)])  # type: ignore[arg-type]
    assert ex.asked == [] and got == {}


def test_probes_are_closed_where_dispose_says_never_on_the_takeover_path(tmp_path: Path) -> None:
    ex, net, c = executor(tmp_path)
    disposed: list[object] = []
    ex.early.dispose_with(disposed.extend)
    probe = open_early(ex, c, time.monotonic() - 1.0)
    claimed = ex.claim(c, StartLim(2), CLUSTER_MACS)
    assert claimed is not None and claimed.ok
    assert disposed == [probe] and not probe.closed  # the worker closes it, later
    early = EarlyProbes(net)
    early.dispose_with(disposed.extend)
    upkeep(early, 100.21, {"lim2": heard("lim2", 2, at=100.0)})
    [(_, other)] = early._open.values()
    upkeep(early, 100.3, {"lim2": heard("lim2", 2, at=100.29)})  # heard again
    assert disposed == [probe, other] and not other.closed  # type: ignore[attr-defined]
