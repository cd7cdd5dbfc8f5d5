"""The system config file: strict reading, stable writing, and the round trip."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mxone_maintenance import configfile, rules
from mxone_maintenance.errors import ConfigFileError
from mxone_maintenance.model import TIMER_PRESETS, Cluster, ClusterLim, Server, System, Timers

from tests.test_rules import valid_system

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_round_trip_of_the_reference_system() -> None:
    system = valid_system()
    text = configfile.dump(system)
    assert configfile.parse(text) == system
    assert configfile.dump(configfile.parse(text)) == text


def test_example_file_is_valid_and_canonical_round_trip() -> None:
    system = configfile.parse((EXAMPLES / "system.toml").read_text())
    assert rules.check(system) == []
    assert system.cluster("north").lim_numbers() == (2, 3)
    assert system.cluster("north").timers == Timers("fast")
    assert configfile.parse(configfile.dump(system)) == system


def test_defaults_and_table_forms() -> None:
    text = """
generation = 2
[[server]]
name = "lim2"
base_ip = "10.1.0.12/24"
role = "lim"
lim = 2
[[server]]
name = "sb"
base_ip = "10.1.0.20/24"
role = "standby"
[[cluster]]
name = "c"
standby = "sb"
timers = { interval = 0.5, misses = 4 }
[[cluster.lim]]
lim = 2
alias_ip = "10.1.0.2"
"""
    s = configfile.parse(text)
    assert s.server("lim2").interface == "eth0"
    c = s.cluster("c")
    assert (c.fallback, c.failover, c.split_brain_stop) == ("manual", "regular", "regular")
    assert c.timers == Timers.explicit(0.5, 4)
    assert c.lims == (ClusterLim(2, "10.1.0.2", 1, "none"),)
    assert rules.check(s) == []


def test_syntax_error_names_line_and_column() -> None:
    text = 'generation = 1\n\n[[server]]\nname = "lim1\n'
    with pytest.raises(ConfigFileError) as err:
        configfile.parse(text, "sys.toml")
    (problem,) = err.value.problems
    assert problem.startswith("sys.toml:4:")
    assert "syntax error" in problem


def test_unknown_and_missing_keys_are_refused_with_lines() -> None:
    text = """generation = 1
colour = "blue"
[[server]]
name = "lim1"
base_ip = "10.0.0.11/24"
role = "lim"
lim = 1
priorty = 3
[[cluster]]
name = "c"
standby = "sb"
[[cluster.lim]]
lim = 1
alias = "10.0.0.12"
"""
    with pytest.raises(ConfigFileError) as err:
        configfile.parse(text, "f.toml")
    problems = err.value.problems
    assert 'f.toml:2: unknown key "colour" at the top level' in problems[0]
    assert any(p.startswith('f.toml:8: unknown key "priorty" in [[server]] "lim1"') for p in problems)
    assert any(p.startswith('f.toml:14: unknown key "alias" in [[cluster.lim]] #1 of cluster "c"')
               for p in problems)
    assert any(p.startswith('f.toml:12: [[cluster.lim]] #1 of cluster "c" has no "alias_ip"')
               for p in problems)
    assert len(problems) == 4


def test_wrong_table_kinds_are_refused() -> None:
    with pytest.raises(ConfigFileError) as err:
        configfile.parse('server = "lim1"\n[[cluster]]\nname="c"\nstandby=3\nlim=[]\ntimers=5\n', "f")
    text = "\n".join(err.value.problems)
    assert '"server" must be written as [[server]] tables' in text
    assert "timers of [[cluster]] \"c\" must be a preset name" in text
    assert 'standby of [[cluster]] "c" must be a server name' in text


def test_two_standby_servers_in_a_file_are_read_then_refused_by_the_rule() -> None:
    system = valid_system()
    text = configfile.dump(system).replace('standby = "standby1"', 'standby = ["standby1", "standby2"]')
    parsed = configfile.parse(text)
    assert parsed.cluster("north").standby == ("standby1", "standby2")
    assert [v.rule for v in rules.check(parsed)] == ["one-standby"]


def test_describe_points_at_the_offending_line() -> None:
    system = valid_system()
    lims = (dataclasses.replace(system.clusters[0].lims[0], alias_ip="10.9.9.9"), system.clusters[0].lims[1])
    bad = dataclasses.replace(system, clusters=(dataclasses.replace(system.clusters[0], lims=lims),))
    text = configfile.dump(bad)
    (line,) = configfile.describe(rules.check(bad), text, "s.toml")
    lineno = int(line.split(":")[1])
    assert text.splitlines()[lineno - 1] == 'alias_ip = "10.9.9.9"'


# ---- the property: accepted systems survive write -> read; a broken rule is refused ----

@st.composite
def valid_systems(draw: st.DrawFn) -> System:
    prefix = draw(st.integers(min_value=20, max_value=26))
    base = draw(st.integers(min_value=1, max_value=200))
    network = ipaddress.IPv4Network(f"10.{base}.0.0/{prefix}", strict=False)
    hosts = list(network.hosts())
    n_lims = draw(st.integers(min_value=1, max_value=14))
    n_clusters = draw(st.integers(min_value=0, max_value=min(3, n_lims)))
    picks = draw(st.lists(st.sampled_from(range(len(hosts))), min_size=2 * n_lims + n_clusters + 1,
                          max_size=2 * n_lims + n_clusters + 1, unique=True))
    addrs = [hosts[i] for i in picks]
    lim_numbers = draw(st.lists(st.integers(1, 124), min_size=n_lims, max_size=n_lims, unique=True))
    servers = [Server(f"lim{n}", f"{addrs[k]}/{prefix}", draw(st.sampled_from(["eth0", "bond0"])), "lim", n)
               for k, n in enumerate(lim_numbers)]
    standbys = [Server(f"sb{k}", f"{addrs[n_lims + k]}/{prefix}", "eth0", "standby")
                for k in range(n_clusters)]
    free = [Server("spare", f"{addrs[n_lims + n_clusters]}/{prefix}", "eth0", "free")]
    alias_addrs = addrs[n_lims + n_clusters + 1:]
    clusters = []
    remaining = list(lim_numbers)
    for k in range(n_clusters):
        size = draw(st.integers(1, min(10, len(remaining) - (n_clusters - k - 1))))
        members, remaining = remaining[:size], remaining[size:]
        lims = tuple(
            ClusterLim(n, str(alias_addrs[lim_numbers.index(n)]), draw(st.integers(0, 99)),
                       draw(st.sampled_from(["none", "regular", "standby"])))
            for n in members
        )
        timers = draw(st.one_of(
            st.sampled_from([Timers(p) for p in TIMER_PRESETS]),
            st.builds(Timers.explicit, st.floats(0.05, 60, allow_nan=False), st.integers(2, 100)),
        ))
        clusters.append(Cluster(
            f"c{k}", (standbys[k].name,), lims,
            fallback=draw(st.sampled_from(["automatic", "manual"])),
            failover=draw(st.sampled_from(["regular", "preloaded"])) if size == 1 else "regular",
            timers=timers,
            split_brain_stop=draw(st.sampled_from(["regular", "standby"])),
        ))
    return System(generation=draw(st.integers(1, 10**6)), servers=tuple(servers + standbys + free),
                  clusters=tuple(clusters))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_systems())
def test_accepted_systems_survive_write_then_read(system: System) -> None:
    assert rules.check(system) == []
    assert configfile.parse(configfile.dump(system)) == system


def _with_cluster(s: System, **changes: object) -> System:
    return dataclasses.replace(s, clusters=(dataclasses.replace(s.clusters[0], **changes), *s.clusters[1:]))


def _with_lim(s: System, **changes: object) -> System:
    c = s.clusters[0]
    return _with_cluster(s, lims=(dataclasses.replace(c.lims[0], **changes), *c.lims[1:]))


def _with_server(s: System, index: int, **changes: object) -> System:
    servers = list(s.servers)
    servers[index] = dataclasses.replace(servers[index], **changes)
    return dataclasses.replace(s, servers=tuple(servers))


def _outside(s: System) -> str:
    net = s.servers[0].interface_address().network
    return str(net.broadcast_address + 2)


MUTATIONS = {
    "base-ip-syntax": lambda s: _with_server(s, 0, base_ip="10.0.0.256/24"),
    "unique-server-name": lambda s: _with_server(s, -1, name=s.servers[0].name),
    "lim-number": lambda s: _with_server(s, -1, role="lim", lim=s.servers[0].lim),
    "host-address": lambda s: _with_server(s, -1, base_ip=f"{s.servers[-1].interface_address().network.network_address}/{s.servers[-1].prefix}"),
    "unique-address": lambda s: _with_server(s, -1, base_ip=s.servers[0].base_ip),
    "server-role": lambda s: _with_server(s, -1, role="backup"),
    "alias-subnet": lambda s: _with_lim(s, alias_ip=_outside(s)),
    "cluster-max-lims": lambda s: _with_cluster(s, lims=s.clusters[0].lims * 11),
    "one-standby": lambda s: _with_cluster(s, standby=(*s.clusters[0].standby, "spare")),
    "standby-role": lambda s: _with_cluster(s, standby=("spare",)),
    "lim-one-cluster": lambda s: _with_cluster(s, lims=(*s.clusters[0].lims, s.clusters[0].lims[0])),
    "same-subnet": lambda s: _with_server(s, 0, base_ip="192.168.77.1/24"),
    "preloaded-1+1": lambda s: _with_cluster(s, failover="preloaded", lims=s.clusters[0].lims * 2),
    "priority": lambda s: _with_lim(s, priority=0.5),
    "choice": lambda s: _with_lim(s, lock="both"),
    "timers": lambda s: _with_cluster(s, timers=Timers.explicit(0.01, 3)),
    "cluster-not-empty": lambda s: _with_cluster(s, lims=()),
    "generation": lambda s: dataclasses.replace(s, generation=-1),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_systems(), st.sampled_from(sorted(MUTATIONS)))
def test_a_mutation_that_breaks_a_rule_is_refused(system: System, rule: str) -> None:
    assume(system.clusters)
    broken = MUTATIONS[rule](system)
    codes = {v.rule for v in rules.check(broken)}
    assert rule in codes
    # ... and the same holds for the file written from it: nothing is lost on the way.
    assert {v.rule for v in rules.check(configfile.parse(configfile.dump(broken)))} == codes
