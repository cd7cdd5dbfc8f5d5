"""The executor applies actions through a NetworkBackend; here the recording one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mxone_agent.actions import (
    ActivateLim,
    AlarmCode,
    ClearAlarm,
    DeactivateLim,
    RaiseAlarm,
    StartLim,
    StopLim,
)
from mxone_agent.alarms import AlarmBook
from mxone_agent.config import (
    Companion,
    CompanionKind,
    NodeConfig,
    ServiceCommands,
    load_node_config,
)
from mxone_agent.executor import Executor, reference_service
from mxone_agent.lease import Fence
from mxone_agent.model import LimRun, Mode
from mxone_agent.network import RecordingNetwork, block_ruleset

from tests.agent.builders import config_dict, preloaded_config

CLUSTER_MACS = {"02:00:00:00:00:01", "02:00:00:00:00:22"}


class Services:
    """A fake command runner: records argv, answers status from a dict."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.status: dict[tuple[str, ...], int] = {}
        self.fail: set[str] = set()

    def __call__(self, argv, timeout):
        argv = tuple(argv)
        self.calls.append(argv)
        if argv[0] in self.fail:
            return 1
        return self.status.get(argv, 3) if argv[0].endswith("status") else 0

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def svc(name: str) -> dict:
    return {"start": [f"{name}-start"], "stop": [f"{name}-stop"], "status": [f"{name}-status"]}


def make(tmp_path: Path, node: str = "sb", **kw) -> tuple[Executor, RecordingNetwork, Services,
                                                          object]:
    doc = config_dict(node, **kw)
    for lim in doc["lims"]:
        lim["service"] = svc(f"lim{lim['lim']}")
    cfg = load_node_config(doc)
    net, services = RecordingNetwork(), Services()
    ex = Executor(net, AlarmBook(tmp_path, tmp_path / "alarms.log", use_syslog=False),
                  fence(net), run=services)
    return ex, net, services, cfg


def fence(net: RecordingNetwork, lease: float = 0.25) -> Fence:
    """A fence on the recording backend's lease model (real monotonic clock)."""
    return Fence(net.leases, lease, clock=net.leases.clock)


def test_start_active_probes_then_alias_garp_service(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path)
    [o] = ex.apply(cfg, [StartLim(2)], CLUSTER_MACS)
    assert o.ok and o.foreign_mac is None
    assert net.names() == ["probe", "unblock", "add_alias", "garp"]
    assert net.leases.calls == [("grant", "10.77.0.12", 250)]  # before the alias goes up
    assert ex.fence.holds("10.77.0.12")
    assert net.calls[2] == ("add_alias", "eth0", "10.77.0.12", 24)
    assert net.calls[3] == ("garp", "eth0", "10.77.0.12", cfg.garp.burst)
    assert services.names() == ["lim2-start"]
    assert set(o.steps) == {"probed", "alias_up", "first_garp", "service_up"}
    assert o.steps["alias_up"] <= o.steps["first_garp"] <= o.steps["service_up"]


def test_a_cluster_server_answering_the_probe_is_no_obstacle(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path)
    net.answers["10.77.0.12"] = {"02:00:00:00:00:22"}  # lim2's kernel still holds it
    [o] = ex.apply(cfg, [StartLim(2)], CLUSTER_MACS)
    assert o.ok


def test_a_foreign_mac_answering_stops_the_start(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path)
    net.answers["10.77.0.12"] = {"02:99:00:00:00:99", "02:00:00:00:00:22"}
    [o] = ex.apply(cfg, [StartLim(2)], CLUSTER_MACS)
    assert not o.ok and o.foreign_mac == "02:99:00:00:00:99"
    assert "belongs to no server of the cluster" in o.error
    assert net.names() == ["probe"] and services.calls == []
    assert net.leases.calls == []  # nothing granted to an address someone else has


def test_service_that_fails_to_start_takes_its_alias_back(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path)
    services.fail.add("lim2-start")
    [o] = ex.apply(cfg, [StartLim(2)], CLUSTER_MACS)
    assert not o.ok and "did not start" in o.error
    assert net.aliases == set() and ex.next_announce() is None
    assert not ex.fence.holds("10.77.0.12") and net.leases.remaining("10.77.0.12") is None


def test_stop_removes_alias_first_then_stops_the_service(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path)
    ex.apply(cfg, [StartLim(2)], CLUSTER_MACS)
    net.calls.clear()
    net.leases.calls.clear()
    [o] = ex.apply(cfg, [StopLim(2)], CLUSTER_MACS)
    assert o.ok and net.names() == ["remove_alias", "unblock"]
    assert net.leases.calls == [("revoke", "10.77.0.12")] and not ex.fence.holds("10.77.0.12")
    assert services.names()[-1] == "lim2-stop"
    assert ex.next_announce() is None  # no more gratuitous ARP for it


def test_preloaded_start_blocks_before_the_alias_goes_up(tmp_path: Path) -> None:
    cfg = preloaded_config("sb")
    net, services = RecordingNetwork(), Services()
    ex = Executor(net, AlarmBook(None, None, use_syslog=False), fence(net), run=services)
    ex.apply(cfg, [StartLim(2, Mode.PRELOADED)], CLUSTER_MACS)
    assert net.names() == ["block", "add_alias"]  # no probe, no GARP: nobody may see it
    assert net.blocked == {2: "10.77.0.12"} and not ex.fence.holds("10.77.0.12")
    assert services.calls[0][-3:] == ("start", "--alias", "10.77.0.12") or services.calls
    net.calls.clear()
    [o] = ex.apply(cfg, [ActivateLim(2)], CLUSTER_MACS)
    assert o.ok and net.names() == ["probe", "add_alias", "unblock", "garp"]
    assert net.blocked == {} and len(services.calls) == 1  # the service kept running
    assert ex.fence.holds("10.77.0.12")
    net.calls.clear()
    ex.apply(cfg, [DeactivateLim(2)], CLUSTER_MACS)
    assert net.names() == ["block"] and ex.next_announce() is None
    assert not ex.fence.holds("10.77.0.12")


def started_at_100(clock: list[float]) -> tuple[Executor, RecordingNetwork, NodeConfig]:
    """An executor on ``clock`` (set to 100.0) that started LIM 2 (active) then; bursts of
    2, the second after 1.5 s, refreshes every 10 s."""
    clock[:] = [100.0]
    doc = config_dict("sb")
    doc["garp"] = {"burst": 2, "second_burst_after": 1.5, "refresh_interval": 10.0}
    cfg = load_node_config(doc)
    net = RecordingNetwork()
    ex = Executor(net, AlarmBook(None, None, use_syslog=False), fence(net), run=Services(),
                  mono=lambda: clock[0])
    ex.apply(cfg, [StartLim(2)], CLUSTER_MACS)
    return ex, net, cfg


def test_garp_second_burst_and_refresh(tmp_path: Path) -> None:
    clock: list[float] = []
    ex, net, cfg = started_at_100(clock)
    assert ex.next_announce() == 101.5
    assert ex.announce_due(cfg) == 0
    clock[0] = 101.6
    assert ex.announce_due(cfg) == 1
    assert ex.next_announce() == 110.0
    clock[0] = 110.0
    assert ex.announce_due(cfg) == 1 and ex.next_announce() == 120.0
    assert [c for c in net.calls if c[0] == "garp"][-1] == ("garp", "eth0", "10.77.0.12", 2)


def test_a_split_brain_over_the_kept_alias_is_announced_again(tmp_path: Path) -> None:
    """The other side's copy may have pointed the neighbours at itself: the alias that
    stays here is announced at once, and once more after the second-burst delay."""
    clock: list[float] = []
    ex, net, cfg = started_at_100(clock)
    clock[0] = 105.0
    ex.announce_due(cfg)  # the second burst of the start
    garps = [c for c in net.calls if c[0] == "garp"]
    assert ex.claims_ended(cfg, {2, 3}) == 1  # LIM 3 does not run here: nothing for it
    assert [c for c in net.calls if c[0] == "garp"] == [*garps, ("garp", "eth0", "10.77.0.12",
                                                                 2)]
    assert ex.next_announce() == 106.5
    clock[0] = 106.5
    assert ex.announce_due(cfg) == 1
    ex.apply(cfg, [StopLim(2)], CLUSTER_MACS)
    assert ex.claims_ended(cfg, {2}) == 0  # gone from here: never announced again


def test_no_refresh_when_off(tmp_path: Path) -> None:
    doc = config_dict("sb")
    doc["garp"] = {"burst": 1, "second_burst_after": 1.0, "refresh_interval": None}
    cfg = load_node_config(doc)
    clock = [0.0]
    net = RecordingNetwork()
    ex = Executor(net, AlarmBook(None, None, use_syslog=False), fence(net), run=Services(),
                  mono=lambda: clock[0])
    ex.apply(cfg, [StartLim(2)], CLUSTER_MACS)
    clock[0] = 5.0
    assert ex.announce_due(cfg) == 1 and ex.next_announce() is None


def test_alarms_go_to_the_book(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path)
    ex.apply(cfg, [RaiseAlarm(AlarmCode.LIM_ON_STANDBY, 2, "LIM 2 runs on sb")], set())
    assert list(ex.alarms.active) == [("lim-running-on-standby", 2)]
    ex.apply(cfg, [ClearAlarm(AlarmCode.LIM_ON_STANDBY, 2)], set())
    assert ex.alarms.active == {}


def test_learn_local_reads_status_and_blocks(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path)
    services.status[("lim2-status",)] = 0
    services.status[("lim3-status",)] = 150
    net.aliases |= {("eth0", "10.77.0.12"), ("eth0", "10.77.0.13"), ("eth0", "10.77.0.14")}
    net.blocked[3] = "10.77.0.13"
    net.leases.grant("10.77.0.12", 250)  # an earlier agent's lease, still running
    runs = ex.learn_local(cfg)
    assert runs == (LimRun(2, Mode.ACTIVE), LimRun(3, Mode.PRELOADED, loading=True))
    assert ex.fence.holds("10.77.0.12")  # adopted: renewed from the first tick on
    # LIM 4 does not run: what it left behind is cleaned up
    assert ("eth0", "10.77.0.14") not in net.aliases
    assert ("revoke", "10.77.0.14") in net.leases.calls


def test_learn_local_fences_an_active_lim_whose_lease_lapsed(tmp_path: Path) -> None:
    """An agent restarted after its lease ran out: the LIM still runs, its alias is still
    on the interface, but it stays silent (fenced) until a decision grants it again."""
    ex, net, services, cfg = make(tmp_path, node="lim2")
    services.status[("lim2-status",)] = 0
    net.aliases.add(("eth0", "10.77.0.12"))
    assert ex.learn_local(cfg) == (LimRun(2, Mode.ACTIVE, fenced=True),)
    assert not ex.fence.holds("10.77.0.12") and net.leases.remaining("10.77.0.12") is None
    [o] = ex.apply(cfg, [ActivateLim(2)], CLUSTER_MACS)
    assert o.ok and ex.fence.holds("10.77.0.12")
    assert [c[0] for c in net.leases.calls][-1] == "grant"


def test_learn_local_on_a_regular_looks_at_its_own_lim_only(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path, node="lim3")
    assert ex.learn_local(cfg) == ()
    assert services.calls == [("lim3-status",)]


def companions() -> tuple[Companion, ...]:
    cmds = lambda n: ServiceCommands((f"{n}-start",), (f"{n}-stop",), (f"{n}-status",))
    return (Companion("mgmt", CompanionKind.MANAGEMENT, cmds("mgmt")),
            Companion("ms", CompanionKind.MEDIA_SERVER, cmds("ms"), colocated=True),
            Companion("ms-remote", CompanionKind.MEDIA_SERVER, cmds("msr"), colocated=False),
            Companion("csta", CompanionKind.CSTA, cmds("csta")))


@pytest.mark.parametrize("node, started", [
    ("lim2", ["lim2-start", "mgmt-start", "ms-start", "msr-start", "csta-start"]),
    # the seed: management, CSTA never on the standby; a co-located media server is started
    # by the standby, a stand-alone one keeps running on its own server
    ("sb", ["lim2-start", "ms-start"]),
])
def test_companions_follow_the_seed(tmp_path: Path, node: str, started: list[str]) -> None:
    ex, net, services, cfg = make(tmp_path, node=node)
    lims = tuple(dataclasses.replace(x, companions=companions()) if x.lim == 2 else x
                 for x in cfg.lims)
    cfg = dataclasses.replace(cfg, lims=lims)
    ex.apply(cfg, [StartLim(2)], CLUSTER_MACS)
    assert services.names() == started
    services.calls.clear()
    ex.apply(cfg, [StopLim(2)], CLUSTER_MACS)
    assert sorted(services.names()) == sorted(s.replace("start", "stop") for s in started)


def test_companions_round_trip_through_the_config() -> None:
    doc = config_dict("sb")
    doc["lims"][0]["companions"] = [
        {"name": "ms", "kind": "media-server", "colocated": False, "service": svc("ms")}]
    cfg = load_node_config(doc)
    [c] = cfg.lim(2).companions
    assert c.kind is CompanionKind.MEDIA_SERVER and not c.runs_on_standby
    assert load_node_config(cfg.to_dict()) == cfg


def test_reference_service_commands() -> None:
    cfg = load_node_config(config_dict("sb"))
    cmds = reference_service(cfg.lim(2), "/run/x", "/data/x")
    assert cmds.start[-10:] == ("service", "start", "--lim", "2", "--run-dir", "/run/x",
                                "--xdata-root", "/data/x", "--alias", "10.77.0.12")
    assert cmds.status[-7:] == ("status", "--lim", "2", "--run-dir", "/run/x",
                                "--xdata-root", "/data/x")
    # by default the data is where the agent's sync puts it
    assert reference_service(cfg.lim(2)).start[-4:-2] == ("--xdata-root", "/var/opt/mxone/xdata")


def test_block_ruleset_drops_arp_and_ip_both_ways() -> None:
    text = block_ruleset(2, "10.77.0.12")
    assert "table arp mxone_block_lim2" in text and "table ip mxone_block_lim2" in text
    for rule in ("arp daddr ip 10.77.0.12 drop", "arp saddr ip 10.77.0.12 drop",
                 "ip daddr 10.77.0.12 drop", "ip saddr 10.77.0.12 drop"):
        assert rule in text


def test_a_reload_restarts_only_the_service_and_leaves_the_alias_and_block(tmp_path: Path) -> None:
    ex, net, services, cfg = make(tmp_path)
    o = ex.reload_service(cfg, cfg.lim(2))
    assert o.ok and services.names() == ["lim2-stop", "lim2-start"]
    assert net.calls == [] and set(o.steps) == {"service_down", "service_up"}
    services.fail.add("lim2-start")
    o = ex.reload_service(cfg, cfg.lim(2))
    assert not o.ok and o.error == "the service of LIM 2 did not start again (exit status 1)"
