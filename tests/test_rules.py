"""Every prerequisite rule: one valid system, one mutation per rule that breaks only that
rule, and systems that break several rules at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from mxone_maintenance import rules
from mxone_maintenance.errors import ValidationError
from mxone_maintenance.model import Cluster, ClusterLim, NodeFacts, Server, System, Timers

GiB = 1024**3


def valid_system() -> System:
    servers = (
        Server("lim1", "10.0.2.11/24", "eth0", "lim", 1),
        Server("lim2", "10.0.2.32/24", "eth0", "lim", 2),
        Server("lim3", "10.0.2.33/24", "eth0", "lim", 3),
        Server("lim4", "10.0.2.34/24", "eth0", "lim", 4),
        Server("standby1", "10.0.2.20/24", "eth0", "standby"),
        Server("standby2", "10.0.2.21/24", "eth0", "standby"),
        Server("spare", "10.0.2.40/24", "eth0", "free"),
    )
    north = Cluster(
        "north",
        ("standby1",),
        (ClusterLim(2, "10.0.2.12", 1), ClusterLim(3, "10.0.2.13", 2, "regular")),
        fallback="automatic",
        timers=Timers("fast"),
    )
    return System(generation=3, servers=servers, clusters=(north,))


def replace_server(system: System, which: str, **changes: object) -> System:
    servers = tuple(dataclasses.replace(s, **changes) if s.name == which else s for s in system.servers)
    return dataclasses.replace(system, servers=servers)


def replace_cluster(system: System, **changes: object) -> System:
    return dataclasses.replace(system, clusters=(dataclasses.replace(system.clusters[0], **changes),))


def replace_lim(system: System, index: int, **changes: object) -> System:
    lims = list(system.clusters[0].lims)
    lims[index] = dataclasses.replace(lims[index], **changes)
    return replace_cluster(system, lims=tuple(lims))


def add_cluster(system: System, cluster: Cluster) -> System:
    return dataclasses.replace(system, clusters=(*system.clusters, cluster))


def eleven_lims(system: System) -> System:
    servers = [s for s in system.servers if s.role != "lim"]
    lims = []
    for n in range(1, 12):
        servers.append(Server(f"lim{n}", f"10.0.2.{100 + n}/24", "eth0", "lim", n))
        lims.append(ClusterLim(n, f"10.0.2.{150 + n}", n))
    servers.append(Server("lim12", "10.0.2.112/24", "eth0", "lim", 12))
    return dataclasses.replace(
        system, servers=tuple(servers), clusters=(Cluster("north", ("standby1",), tuple(lims)),)
    )


def test_valid_system_breaks_no_rule() -> None:
    system = valid_system()
    assert rules.check(system) == []
    assert system.validated() is system


def test_valid_system_with_disk_facts() -> None:
    facts = {"standby1": NodeFacts(10 * GiB, 0), "lim2": NodeFacts(0, 2 * GiB),
             "lim3": NodeFacts(0, 3 * GiB)}
    assert rules.check(valid_system(), facts) == []  # needs exactly 2*(2+3) = 10 GiB


# (mutation, the one rule it breaks, a fragment each violation's text must hold)
Mutation = Callable[[System], System]
SINGLE_RULE_CASES: list[tuple[str, Mutation, str, str]] = [
    ("generation zero", lambda s: dataclasses.replace(s, generation=0), "generation", "generation = 0"),
    ("server name with space", lambda s: replace_server(s, "spare", name="spare 1"),
     "server-name", "server[spare 1].name = spare 1: not a valid host name"),
    ("two servers named lim1", lambda s: replace_server(s, "spare", name="lim1"),
     "unique-server-name", "2 servers have this name"),
    ("unknown role", lambda s: replace_server(s, "spare", role="spare"),
     "server-role", "server[spare].role = spare: must be one of lim, standby, free"),
    ("LIM number 125", lambda s: replace_server(s, "lim4", lim=125),
     "lim-number", "server[lim4].lim = 125: a LIM server needs a LIM number from 1 to 124"),
    ("LIM server without number", lambda s: replace_server(s, "lim4", lim=None),
     "lim-number", "server[lim4].lim = None"),
    ("duplicate LIM number", lambda s: replace_server(s, "lim4", lim=3),
     "lim-number", "2 servers have LIM number 3"),
    ("free server with a LIM number", lambda s: replace_server(s, "spare", lim=9),
     "lim-number", "only a LIM server has a LIM number; this one is free"),
    ("interface name too long", lambda s: replace_server(s, "spare", interface="a-very-long-ifname"),
     "interface-name", "server[spare].interface = a-very-long-ifname"),
    ("interface named ..", lambda s: replace_server(s, "spare", interface=".."),
     "interface-name", "server[spare].interface = ..: not a network interface name: . and .. "
     "are path components, never a device (rule interface-name: the interface is a valid "
     "Linux interface name, not . .. all default)"),
    ("interface named .", lambda s: replace_server(s, "spare", interface="."),
     "interface-name", "server[spare].interface = .: not a network interface name"),
    ("interface named all", lambda s: replace_server(s, "spare", interface="all"),
     "interface-name", "server[spare].interface = all: not a network interface name: all is "
     "reserved, /proc/sys/net/ipv4/conf/all holds the settings of every interface, not of one"),
    ("interface named default", lambda s: replace_server(s, "spare", interface="default"),
     "interface-name", "/proc/sys/net/ipv4/conf/default holds the settings of interfaces "
     "created later"),
    ("base IP octet 300", lambda s: replace_server(s, "spare", base_ip="10.0.2.300/24"),
     "base-ip-syntax", "server[spare].base_ip = 10.0.2.300/24: not an IPv4 address"),
    ("base IP without prefix", lambda s: replace_server(s, "spare", base_ip="10.0.2.40"),
     "base-ip-syntax", "server[spare].base_ip = 10.0.2.40"),
    ("alias IP malformed", lambda s: replace_lim(s, 0, alias_ip="10.0.2"),
     "alias-ip-syntax", "cluster[north].lim[2].alias_ip = 10.0.2: not an IPv4 address"),
    ("alias IP with prefix", lambda s: replace_lim(s, 0, alias_ip="10.0.2.12/24"),
     "alias-ip-syntax", "cluster[north].lim[2].alias_ip = 10.0.2.12/24"),
    ("base IP is the network address", lambda s: replace_server(s, "spare", base_ip="10.0.2.0/24"),
     "host-address", "is the network address of 10.0.2.0/24"),
    ("alias IP is the broadcast address", lambda s: replace_lim(s, 0, alias_ip="10.0.2.255"),
     "host-address", "cluster[north].lim[2].alias_ip = 10.0.2.255: is the broadcast address of 10.0.2.0/24"),
    ("base IP is loopback", lambda s: replace_server(s, "spare", base_ip="127.0.0.5/8"),
     "host-address", "reserved address"),
    ("base IP equals an alias", lambda s: replace_server(s, "spare", base_ip="10.0.2.12/24"),
     "unique-address", "address 10.0.2.12 is also used by"),
    ("cluster name with space", lambda s: replace_cluster(s, name="no rth"),
     "cluster-name", "cluster[no rth].name = no rth: not a valid cluster name"),
    ("two clusters named north",
     lambda s: add_cluster(s, Cluster("north", ("standby2",), (ClusterLim(4, "10.0.2.14"),))),
     "cluster-name", "2 clusters have this name"),
    ("cluster without LIMs", lambda s: add_cluster(s, Cluster("south", ("standby2",), ())),
     "cluster-not-empty", "cluster[south].lim = []: a cluster needs at least one regular LIM"),
    ("eleven LIMs", eleven_lims, "cluster-max-lims", "11 LIMs (rule cluster-max-lims: a cluster can have up to ten LIMs)"),
    ("two standby servers", lambda s: replace_cluster(s, standby=("standby1", "standby2")),
     "one-standby", "cluster[north].standby = [standby1, standby2]: 2 standby servers named"),
    ("no standby server", lambda s: replace_cluster(s, standby=()),
     "one-standby", "0 standby servers named"),
    ("standby is a free server", lambda s: replace_cluster(s, standby=("spare",)),
     "standby-role", "server spare has role free, not standby"),
    ("standby not in the system", lambda s: replace_cluster(s, standby=("ghost",)),
     "standby-role", "no server with this name is in the system"),
    ("LIM not in the system", lambda s: replace_lim(s, 0, lim=9),
     "lim-in-system", "cluster[north].lim[9].lim = 9: no LIM server with LIM number 9"),
    ("standby in two clusters",
     lambda s: add_cluster(s, Cluster("south", ("standby1",), (ClusterLim(4, "10.0.2.14"),))),
     "standby-one-cluster", "standby server standby1 is already in cluster north"),
    ("LIM in two clusters",
     lambda s: add_cluster(s, Cluster("south", ("standby2",), (ClusterLim(3, "10.0.2.14"),))),
     "lim-one-cluster", "LIM 3 is already in cluster north"),
    ("LIM twice in one cluster",
     lambda s: replace_cluster(s, lims=(*s.clusters[0].lims, ClusterLim(3, "10.0.2.14"))),
     "lim-one-cluster", "LIM 3 is already in this cluster"),
    ("more standby servers than LIM servers",
     lambda s: dataclasses.replace(s, servers=(
         *replace_server(s, "spare", role="standby").servers,
         Server("standby3", "10.0.2.22/24", "eth0", "standby"),
         Server("standby4", "10.0.2.23/24", "eth0", "standby"))),
     "cluster-count", "5 standby servers but 4 LIM servers"),
    ("standby on another subnet", lambda s: replace_server(s, "standby1", base_ip="10.0.3.20/24"),
     "same-subnet", "server[standby1].base_ip = 10.0.3.20/24: server standby1 of cluster north is on "
     "10.0.3.0/24, server lim2 on 10.0.2.0/24"),
    ("alias outside base subnet", lambda s: replace_lim(s, 0, alias_ip="10.0.9.12"),
     "alias-subnet", "cluster[north].lim[2].alias_ip = 10.0.9.12: not in base subnet 10.0.2.0/24 of server lim2"),
    ("preloaded with two LIMs", lambda s: replace_cluster(s, failover="preloaded"),
     "preloaded-1+1", "cluster[north].failover = preloaded: cluster has 2 regular LIMs"),
    ("priority 1.5", lambda s: replace_lim(s, 0, priority=1.5),
     "priority", "cluster[north].lim[2].priority = 1.5: must be a whole number from 0 to 99"),
    ("priority as text", lambda s: replace_lim(s, 0, priority="1"),
     "priority", "priority = 1: must be a whole number"),
    ("priority 100", lambda s: replace_lim(s, 0, priority=100), "priority", "priority = 100"),
    ("priority true", lambda s: replace_lim(s, 0, priority=True), "priority", "priority = True"),
    ("fallback auto", lambda s: replace_cluster(s, fallback="auto"),
     "choice", "cluster[north].fallback = auto: must be one of automatic, manual"),
    ("lock yes", lambda s: replace_lim(s, 1, lock="yes"),
     "choice", "cluster[north].lim[3].lock = yes: must be one of none, regular, standby"),
    ("split brain both", lambda s: replace_cluster(s, split_brain_stop="both"),
     "choice", "split_brain_stop = both"),
    ("unknown timer preset", lambda s: replace_cluster(s, timers=Timers("slow")),
     "timers", "cluster[north].timers = slow: unknown preset; use one of mxone, fast, fastest, bfd"),
    ("interval zero", lambda s: replace_cluster(s, timers=Timers.explicit(0, 3)),
     "timers", "cluster[north].timers.interval = 0: heartbeat interval must be 0.05 to 60 seconds"),
    ("one miss", lambda s: replace_cluster(s, timers=Timers.explicit(1.0, 1)),
     "timers", "cluster[north].timers.misses = 1: miss count must be a whole number from 2 to 100"),
]


@pytest.mark.parametrize(
    ("mutate", "rule", "fragment"),
    [pytest.param(m, r, f, id=name) for name, m, r, f in SINGLE_RULE_CASES],
)
def test_each_rule_alone(mutate: Mutation, rule: str, fragment: str) -> None:
    violations = rules.check(mutate(valid_system()))
    assert {v.rule for v in violations} == {rule}, [str(v) for v in violations]
    assert any(fragment in str(v) for v in violations), [str(v) for v in violations]
    for v in violations:
        assert f"(rule {rule}: {rules.RULES_BY_CODE[rule].text})" in str(v)


def test_every_rule_has_a_single_rule_case() -> None:
    tested = {rule for _name, _m, rule, _f in SINGLE_RULE_CASES} | {"standby-disk"}
    assert tested == set(rules.RULES_BY_CODE)


def test_standby_disk_too_small() -> None:
    facts = {"standby1": NodeFacts(10 * GiB - 1, 0), "lim2": NodeFacts(0, 2 * GiB),
             "lim3": NodeFacts(0, 3 * GiB)}
    violations = rules.check(valid_system(), facts)
    assert [v.rule for v in violations] == ["standby-disk"]
    assert "standby has 10.0 GiB free, two backups of each regular need 10.0 GiB" in str(violations[0])


def test_standby_disk_not_checked_without_every_report() -> None:
    facts = {"standby1": NodeFacts(0, 0), "lim2": NodeFacts(0, GiB)}  # lim3 did not report
    assert rules.check(valid_system(), facts) == []


def test_clusters_beyond_lim_servers_are_refused() -> None:
    # Implied by cluster-not-empty + lim-one-cluster, so it cannot break alone; still named.
    s = valid_system()
    s = dataclasses.replace(s, clusters=tuple(
        Cluster(f"c{n}", (), ()) for n in range(5)))
    codes = {v.rule for v in rules.check(s)}
    assert "cluster-count" in codes
    assert any("5 clusters but 4 LIM servers" in str(v) for v in rules.check(s))


def test_several_rules_reported_at_once() -> None:
    s = valid_system()
    s = replace_server(s, "lim3", base_ip="10.0.1.33/24")  # same-subnet
    s = replace_cluster(s, failover="preloaded", fallback="sometimes")  # preloaded-1+1, choice
    s = replace_lim(s, 0, alias_ip="10.0.5.12", priority=1.5)  # alias-subnet, priority
    s = replace_lim(s, 1, alias_ip="10.0.1.255")  # host-address (broadcast of lim3's subnet)
    s = replace_server(s, "spare", name="lim1")  # unique-server-name
    violations = rules.check(s)
    codes = [v.rule for v in violations]
    assert sorted(codes) == sorted([
        "unique-server-name", "unique-server-name", "host-address", "same-subnet",
        "alias-subnet", "preloaded-1+1", "priority", "choice",
    ])
    with pytest.raises(ValidationError) as err:
        s.validated()
    assert len(err.value.violations) == len(violations)
    assert "fallback = sometimes: must be one of automatic, manual" in str(err.value)


def test_check_never_raises_on_wild_values() -> None:
    s = System(
        generation="x",  # type: ignore[arg-type]
        servers=(Server(None, 5, None, None, "one"),),  # type: ignore[arg-type]
        clusters=(Cluster(7, (None,), (ClusterLim("a", None, None, None),), None, None,  # type: ignore[arg-type]
                          Timers(None, "x", "y"), None),),  # type: ignore[arg-type]
    )
    codes = {v.rule for v in rules.check(s)}
    assert {"generation", "server-name", "base-ip-syntax", "alias-ip-syntax", "choice", "timers",
            "priority", "lim-in-system", "server-role", "interface-name"} <= codes


def test_the_contract_with_the_agent_is_written_once() -> None:
    """The tool's words and limits are the agent's contract, spelt as both files spell them."""
    from mxone_agent import config, contract
    from mxone_maintenance import model

    for name in ("FallbackType", "FailoverBehaviour", "Lock"):
        assert getattr(model, name) is getattr(contract, name) is getattr(config, name)
    assert model.SplitBrainStop is contract.Role is config.Role
    assert [str(w) for w in contract.FallbackType] == ["automatic", "manual"]
    assert [str(w) for w in contract.FailoverBehaviour] == ["regular", "preloaded"]
    assert [str(w) for w in contract.Lock] == ["none", "regular", "standby"]
    assert [str(w) for w in contract.Role] == ["regular", "standby"]
    assert model.TIMER_PRESETS == tuple(config.TIMER_PRESETS) == ("mxone", "fast", "fastest", "bfd")
    assert model.MAX_LIMS_PER_CLUSTER == config.MAX_LIMS_PER_CLUSTER == 10
    assert model.MAX_LIM_NUMBER == config.LIM_NUMBERS.stop - 1 == 124
    assert model.PRIORITY_RANGE == config.PRIORITIES == range(100)


def test_rules_and_model_do_not_import_each_other() -> None:
    """The rules read the values; only the model (values + validated) imports the rules."""
    import ast
    from pathlib import Path

    import mxone_maintenance

    top = Path(mxone_maintenance.__file__).parent

    def tool_imports(module: str) -> set[str]:
        tree = ast.parse((top / f"{module}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and n.module and n.module.startswith("mxone_maintenance")}

    assert tool_imports("rules") == {"mxone_maintenance.errors", "mxone_maintenance.values"}
    assert tool_imports("values") == set()
    assert tool_imports("errors") == set()


@pytest.mark.parametrize("name", ["eth0.100", "bond0", "bond0.100", "ens1f0", "all0", "..x"])
def test_vlan_and_bond_interfaces_break_no_rule(name: str) -> None:
    assert rules.check(replace_server(valid_system(), "spare", interface=name)) == []
