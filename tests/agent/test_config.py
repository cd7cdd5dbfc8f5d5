"""The node config schema: round trip, every problem named with its path, presets."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json

import pytest

from mxone_agent import AgentError
from mxone_agent.config import (
    TIMER_PRESETS,
    ConfigError,
    FailoverBehaviour,
    FallbackType,
    Lock,
    ServiceCommands,
    Timers,
    load_node_config,
    timers_for_preset,
)
from mxone_agent.model import Role

from tests.agent.builders import config_dict


def problems(doc: dict) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_node_config(doc)
    return [(p.path, p.message) for p in info.value.problems]


def paths(doc: dict) -> list[str]:
    return [p for p, _ in problems(doc)]


# ---- valid documents ------------------------------------------------------------------------

def test_loads_the_reference_document() -> None:
    cfg = load_node_config(config_dict("lim3"))
    assert cfg.node == "lim3" and cfg.role is Role.REGULAR
    assert cfg.fallback is FallbackType.AUTOMATIC and cfg.failover is FailoverBehaviour.REGULAR
    assert cfg.timers == Timers(1.0, 3) and cfg.detection == 3.0
    assert cfg.standby.name == "sb" and [s.name for s in cfg.regulars] == ["lim2", "lim3", "lim4"]
    assert cfg.lim(3).alias_ip == ipaddress.IPv4Address("10.77.0.13")
    assert cfg.lim_of("lim3").lim == 3 and cfg.lim_of("sb") is None
    assert cfg.split_brain_stop is Role.REGULAR


def test_round_trip_through_json() -> None:
    doc = config_dict("sb", locks={3: "standby"})
    doc["lims"][0]["service"] = {"start": ["/opt/mx/start", "--lim", "2"],
                                 "stop": ["/opt/mx/stop"], "status": ["/opt/mx/status"]}
    doc["garp"]["refresh_interval"] = None
    cfg = load_node_config(json.loads(json.dumps(doc)))
    assert cfg.to_dict() == doc
    assert load_node_config(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.lim(2).service == ServiceCommands(("/opt/mx/start", "--lim", "2"),
                                                 ("/opt/mx/stop",), ("/opt/mx/status",))
    assert cfg.lim(3).lock is Lock.STANDBY and cfg.garp.refresh_interval is None


def test_split_brain_stop_defaults_to_regular_and_is_written_back() -> None:
    doc = config_dict(split_brain_stop=None)
    cfg = load_node_config(doc)
    assert cfg.split_brain_stop is Role.REGULAR
    assert cfg.to_dict()["split_brain_stop"] == "regular"
    cfg = load_node_config(config_dict(split_brain_stop="standby"))
    assert cfg.split_brain_stop is Role.STANDBY


def test_integral_seconds_are_accepted() -> None:
    doc = config_dict()
    doc["timers"]["interval"] = 2
    assert load_node_config(doc).timers.interval == 2.0


def test_preloaded_one_plus_one() -> None:
    cfg = load_node_config(config_dict(lims=((2, 1),), failover="preloaded"))
    assert cfg.preloaded and len(cfg.lims) == 1


def test_with_lock_gives_a_new_view() -> None:
    cfg = load_node_config(config_dict())
    locked = cfg.with_lock(2, Lock.REGULAR, generation=2)
    assert locked.lim(2).lock is Lock.REGULAR and locked.generation == 2
    assert cfg.lim(2).lock is Lock.NONE
    with pytest.raises(KeyError):
        cfg.with_lock(9, Lock.REGULAR)


def test_config_is_immutable_and_valid_by_construction() -> None:
    cfg = load_node_config(config_dict())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.node = "x"  # type: ignore[misc]
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(cfg, node="nobody")
    assert info.value.problems[0].path == "$.node"


# ---- problems, each with its path -------------------------------------------------------------

def test_every_problem_is_listed_at_once() -> None:
    doc = config_dict()
    doc["generation"] = 0
    doc["fallback"] = "sometimes"
    doc["timers"] = {"interval": -1, "misses": 1, "jitter": 0.1}
    doc["servers"][1]["base_ip"] = "10.77.0.300"
    doc["lims"][2]["priority"] = True
    doc["colour"] = "blue"
    assert paths(doc) == [
        "$.colour", "$.generation", "$.fallback", "$.timers.jitter", "$.timers.interval",
        "$.timers.misses", "$.servers[1].base_ip", "$.lims[2].priority"]


def test_error_message_names_field_value_and_rule() -> None:
    doc = config_dict()
    doc["timers"]["misses"] = 1
    with pytest.raises(ConfigError) as info:
        load_node_config(doc)
    assert str(info.value) == ("1 problem in node config:\n"
                               "  $.timers.misses: 1 is below the minimum 2")
    assert isinstance(info.value, AgentError)


@pytest.mark.parametrize("where, key", [
    ("$", "extra"), ("$.timers", "extra"), ("$.garp", "extra"), ("$.servers[0]", "extra"),
    ("$.lims[1]", "extra"), ("$.lims[1].service", "extra"),
])
def test_unknown_keys_are_refused_everywhere(where: str, key: str) -> None:
    doc = config_dict()
    doc["lims"][1]["service"] = {"start": ["a"], "stop": ["b"], "status": ["c"]}
    target = {"$": doc, "$.timers": doc["timers"], "$.garp": doc["garp"],
              "$.servers[0]": doc["servers"][0], "$.lims[1]": doc["lims"][1],
              "$.lims[1].service": doc["lims"][1]["service"]}[where]
    target[key] = 1
    found = problems(doc)
    assert [p for p, _ in found] == [f"{where}.{key}"]
    assert "unknown key" in found[0][1]


@pytest.mark.parametrize("mutate, path, words", [
    (lambda d: d.pop("node"), "$.node", "missing"),
    (lambda d: d["timers"].pop("misses"), "$.timers.misses", "missing"),
    (lambda d: d["servers"][0].pop("role"), "$.servers[0].role", "missing"),
    (lambda d: d["lims"][0].pop("lock"), "$.lims[0].lock", "missing"),
    (lambda d: d.update(generation="7"), "$.generation", "whole number"),
    (lambda d: d.update(generation=1.0), "$.generation", "whole number"),
    (lambda d: d.update(heartbeat_port=70000), "$.heartbeat_port", "above the maximum 65535"),
    (lambda d: d.update(failover="hot"), "$.failover", "is not one of regular, preloaded"),
    (lambda d: d.update(split_brain_stop="both"), "$.split_brain_stop", "regular, standby"),
    (lambda d: d.update(cluster="-bad-"), "$.cluster", "not a valid name"),
    (lambda d: d.update(timers=[1, 3]), "$.timers", "must be an object, not array"),
    (lambda d: d["timers"].update(interval=0), "$.timers.interval", "greater than 0"),
    (lambda d: d["timers"].update(interval=float("nan")), "$.timers.interval", "not a finite"),
    (lambda d: d["timers"].update(interval="1s"), "$.timers.interval", "number of seconds"),
    (lambda d: d["garp"].update(burst=0), "$.garp.burst", "below the minimum 1"),
    (lambda d: d["garp"].update(refresh_interval=-5), "$.garp.refresh_interval", "greater than 0"),
    (lambda d: d["garp"].update(second_burst_after=None), "$.garp.second_burst_after",
     "number of seconds"),
    (lambda d: d["servers"][0].update(prefix=33), "$.servers[0].prefix", "above the maximum 32"),
    (lambda d: d["servers"][0].update(interface="eth0 with spaces"), "$.servers[0].interface",
     "not a network interface name"),
    (lambda d: d["servers"][0].update(interface=".."), "$.servers[0].interface",
     "'..' is not a network interface name: . and .. are path components"),
    (lambda d: d["lims"][0].update(interface="all"), "$.lims[0].interface",
     "'all' is not a network interface name: all is reserved, /proc/sys/net/ipv4/conf/all"),
    (lambda d: d["servers"][0].update(interface="default"), "$.servers[0].interface",
     "/proc/sys/net/ipv4/conf/default holds the settings of interfaces created later"),
    (lambda d: d["servers"][0].update(role="primary"), "$.servers[0].role", "regular, standby"),
    (lambda d: d["lims"][0].update(lim=0), "$.lims[0].lim", "below the minimum 1"),
    (lambda d: d["lims"][0].update(priority=100), "$.lims[0].priority", "above the maximum 99"),
    (lambda d: d["lims"][0].update(lock="both"), "$.lims[0].lock", "none, regular, standby"),
    (lambda d: d["lims"][0].update(alias_ip="fe80::1"), "$.lims[0].alias_ip", "not an IPv4"),
    (lambda d: d["lims"][0].update(service={"start": [], "stop": ["x"], "status": ["y"]}),
     "$.lims[0].service.start", "non-empty array"),
    (lambda d: d["lims"][0].update(service={"start": ["a", 1], "stop": ["x"], "status": ["y"]}),
     "$.lims[0].service.start[1]", "non-empty string"),
    (lambda d: d["lims"][0].update(service={"start": ["a"], "stop": ["x"]}),
     "$.lims[0].service.status", "missing"),
    (lambda d: d.update(servers={}), "$.servers", "must be an array"),
])
def test_field_problems(mutate, path: str, words: str) -> None:
    doc = config_dict()
    mutate(doc)
    found = problems(doc)
    assert [p for p, _ in found] == [path], found
    assert words in found[0][1]


@pytest.mark.parametrize("mutate, path, words", [
    (lambda d: d.update(node="lim9"), "$.node", "is not one of the servers"),
    (lambda d: d["servers"][1].update(name="lim2"), "$.servers[1].name", "used twice"),
    (lambda d: d["servers"][0].update(role="standby"), "$.servers", "2 standby servers"),
    (lambda d: d["servers"][3].update(role="regular"), "$.servers", "no standby server"),
    (lambda d: d["servers"][1].update(base_ip="10.77.0.32"), "$.servers[1].base_ip",
     "also the base IP of server lim2"),
    (lambda d: d["servers"][1].update(base_ip="10.77.1.33"), "$.servers[1].base_ip",
     "not on the cluster subnet 10.77.0.0/24"),
    (lambda d: d["servers"][1].update(base_ip="10.77.0.255"), "$.servers[1].base_ip",
     "network or broadcast"),
    (lambda d: d["lims"][1].update(lim=2), "$.lims[1].lim", "LIM 2 is listed twice"),
    (lambda d: d["lims"][0].update(alias_ip="10.77.0.13"), "$.lims[1].alias_ip",
     "also the alias IP of LIM 2"),
    (lambda d: d["lims"][0].update(alias_ip="10.77.0.90"), "$.lims[0].alias_ip",
     "also the base IP of server sb"),
    (lambda d: d["lims"][0].update(alias_ip="10.77.5.12"), "$.lims[0].alias_ip",
     "not on the subnet 10.77.0.0/24 of server lim2"),
    (lambda d: d["lims"][0].update(prefix=16), "$.lims[0].alias_ip", "not on the subnet"),
    (lambda d: d["lims"][0].update(server="sb"), "$.lims[0].server", "is the standby server"),
    (lambda d: d["lims"][0].update(server="ghost"), "$.lims[0].server", "not one of the servers"),
    (lambda d: d.update(lims=[]), "$.lims", "no LIM"),
    (lambda d: d.update(failover="preloaded"), "$.failover",
     "only for one regular and one standby"),
])
def test_rule_problems(mutate, path: str, words: str) -> None:
    doc = config_dict()
    mutate(doc)
    found = problems(doc)
    assert path in [p for p, _ in found], found
    assert any(words in m for p, m in found if p == path), found


def test_two_lims_on_one_server_and_a_server_without_lim() -> None:
    doc = config_dict()
    doc["lims"][1]["server"] = "lim2"
    found = problems(doc)
    assert ("$.lims[1].server", "server lim2 already runs LIM 2; a regular server runs one LIM") \
        in found
    assert ("$.servers[1]", "regular server lim3 runs no LIM; every regular server of a cluster "
            "runs one") in found


def test_more_than_ten_lims() -> None:
    doc = config_dict(lims=[(n, 1) for n in range(2, 14)])
    assert any(p == "$.lims" and "12 LIMs" in m for p, m in problems(doc))


def test_rules_still_checked_next_to_type_errors() -> None:
    doc = config_dict()
    doc["lims"][0]["priority"] = "high"
    doc["lims"][0]["alias_ip"] = "10.77.9.12"
    assert paths(doc) == ["$.lims[0].priority", "$.lims[0].alias_ip"]


def test_broken_server_is_not_reported_as_unknown_reference() -> None:
    doc = config_dict()
    doc["servers"][0]["prefix"] = "24"
    assert paths(doc) == ["$.servers[0].prefix"]


def test_other_format_is_refused_alone() -> None:
    doc = config_dict()
    doc["format"] = 2
    doc["colour"] = "blue"
    assert problems(doc) == [("$.format", "2 is not a supported format (this agent reads "
                                          "format 1)")]


def test_not_an_object() -> None:
    assert problems([]) == [("$", "must be an object, not array")]  # type: ignore[arg-type]


def test_every_missing_key_listed() -> None:
    assert paths({"format": 1}) == [f"$.{k}" for k in (
        "generation", "node", "cluster", "fallback", "failover", "timers", "garp",
        "heartbeat_port", "servers", "lims")]


def test_input_is_not_modified() -> None:
    doc = config_dict()
    before = copy.deepcopy(doc)
    load_node_config(doc)
    assert doc == before


# ---- timer presets ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, failover, detection", [
    ("mxone", "regular", 60.0), ("mxone", "preloaded", 30.0),
    ("fast", "regular", 3.0), ("fast", "preloaded", 3.0),
    ("fastest", "regular", 0.1 * 3), ("fastest", "preloaded", 0.1 * 3),
    ("bfd", "regular", 0.15), ("bfd", "preloaded", 0.15),
])
def test_presets(name: str, failover: str, detection: float) -> None:
    timers = timers_for_preset(name, failover)
    assert timers.detection == pytest.approx(detection)
    assert timers.misses >= 2


def test_the_bfd_preset_is_a_node_config_the_agent_loads() -> None:
    """The tool writes a preset's numbers into node.json: the agent's loader takes the
    smallest interval the rules allow (0.05 s) with three misses, for both behaviours."""
    for failover in FailoverBehaviour:
        bfd = timers_for_preset("bfd", failover)
        doc = config_dict()
        doc["timers"] = {"interval": bfd.interval, "misses": bfd.misses}
        cfg = load_node_config(doc)
        assert cfg.timers == Timers(0.05, 3)
        assert cfg.detection == pytest.approx(0.15)
        assert cfg.to_dict()["timers"] == {"interval": 0.05, "misses": 3}


def test_preloaded_cluster_detects_faster_than_regular_with_mxone_preset() -> None:
    assert (TIMER_PRESETS["mxone"][FailoverBehaviour.PRELOADED].detection
            < TIMER_PRESETS["mxone"][FailoverBehaviour.REGULAR].detection)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError) as info:
        timers_for_preset("slowest", "regular")
    assert info.value.problems[0].path == "preset"
    with pytest.raises(ConfigError):
        timers_for_preset("fast", "hot")


def test_a_load_checks_the_cross_field_rules_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader checks the rules with every other problem; the config it builds is not
    checked again. Built any other way (directly, ``replace``), a config is checked."""
    from mxone_agent import config as config_mod

    calls: list[str] = []
    real = config_mod.rule_problems

    def counting(*args: object, **kwargs: object) -> list:
        calls.append("rules")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(config_mod, "rule_problems", counting)
    cfg = load_node_config(config_dict("lim3"))
    assert calls == ["rules"]
    with pytest.raises(ConfigError, match="is not one of the servers"):
        dataclasses.replace(cfg, node="ghost")
    assert calls == ["rules", "rules"]


def test_vlan_and_bond_interfaces_load() -> None:
    doc = config_dict()
    for s in doc["servers"]:
        s["interface"] = "bond0.100"
    for x in doc["lims"]:
        x["interface"] = "eth0.100"
    cfg = load_node_config(doc)
    assert cfg.local.interface == "bond0.100" and cfg.lims[0].interface == "eth0.100"
