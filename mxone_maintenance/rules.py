"""Every prerequisite of server redundancy, as declarative rules over a :class:`SystemValues`.

Each :class:`Rule` has a short code, the rule in an administrator's words, and a check
that yields a :class:`Violation` per offending field. :func:`check` runs them all and
returns every violation at once, in rule order; it never raises, whatever the values.

Checks that need a well-formed value (an address, a LIM reference) skip values that an
earlier rule already reports, so one mistake is reported once, by the rule it breaks.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from mxone_agent import contract
from mxone_agent.contract import FailoverBehaviour, FallbackType, Lock

from mxone_maintenance.errors import Loc, Violation
from mxone_maintenance.values import Cluster, ClusterLim, NodeFacts, Role, Server, SystemValues

__all__ = ["RULES", "RULES_BY_CODE", "Loc", "Rule", "Violation", "check"]

@dataclass(frozen=True)
class Rule:
    code: str
    text: str
    check: Callable[[SystemValues, Mapping[str, NodeFacts]], Iterable[tuple[str, object, str, Loc]]]


# ---- field names and well-formed values -------------------------------------------------

def _srv(i: int, s: Server, key: str) -> tuple[str, Loc]:
    return f"server[{s.name}].{key}", ("server", i, key)


def _cl(i: int, c: Cluster, key: str) -> tuple[str, Loc]:
    return f"cluster[{c.name}].{key}", ("cluster", i, key)


def _lim(i: int, c: Cluster, j: int, cl: ClusterLim, key: str) -> tuple[str, Loc]:
    return f"cluster[{c.name}].lim[{cl.lim}].{key}", ("cluster", i, "lim", j, key)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _iface(value: object) -> ipaddress.IPv4Interface | None:
    """The address in interface notation, or None when it is not well formed."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}", value):
        return None
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        return None
    return iface if 8 <= iface.network.prefixlen <= 30 else None


def _addr(value: object) -> ipaddress.IPv4Address | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", value):
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def _lim_servers(system: SystemValues) -> dict[int, Server]:
    """LIM number -> server, for LIM servers with a well-formed, unique number."""
    counts = Counter(s.lim for s in system.servers if s.role == Role.LIM and _is_int(s.lim))
    return {
        s.lim: s
        for s in system.servers
        if s.role == Role.LIM and _is_int(s.lim) and counts[s.lim] == 1 and s.lim is not None
    }


def _servers_by_name(system: SystemValues) -> dict[str, Server]:
    return {s.name: s for s in system.servers}


# ---- the rules ------------------------------------------------------------------------

_Found = Iterator[tuple[str, object, str, Loc]]  # field, value, what is wrong, place in the file
_Check = Callable[[SystemValues, Mapping[str, NodeFacts]], _Found]


def _each_server(key: str, ok: Callable[[object], bool], detail: str) -> _Check:
    """The rule "field ``key`` of every server is ``ok``"; ``detail`` says what is wrong."""
    def check(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
        for i, s in enumerate(system.servers):
            if not ok(value := getattr(s, key)):
                f, loc = _srv(i, s, key)
                yield f, value, detail, loc
    return check


def _each_lim(key: str, ok: Callable[[object], bool], detail: str) -> _Check:
    """The rule "field ``key`` of every LIM of every cluster is ``ok``"."""
    def check(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
        for i, c in enumerate(system.clusters):
            for j, cl in enumerate(c.lims):
                if not ok(value := getattr(cl, key)):
                    f, loc = _lim(i, c, j, cl, key)
                    yield f, value, detail, loc
    return check


_server_names = _each_server("name", contract.is_name, "not a valid host name")
_base_ip_syntax = _each_server("base_ip", lambda v: _iface(v) is not None,
                               "not an IPv4 address with a prefix length from 8 to 30")


def _interface_names(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    for i, s in enumerate(system.servers):
        if (problem := contract.interface_name_problem(s.interface)) is not None:
            f, loc = _srv(i, s, "interface")
            yield f, s.interface, problem, loc


_alias_ip_syntax = _each_lim("alias_ip", lambda v: _addr(v) is not None,
                             "not an IPv4 address (dotted quad, no prefix)")
_priorities = _each_lim("priority", lambda v: _is_int(v) and v in contract.PRIORITIES,
                        f"must be a whole number from {contract.PRIORITIES.start} to "
                        f"{contract.PRIORITIES.stop - 1}")


def _unique_server_names(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    counts = Counter(s.name for s in system.servers)
    for i, s in enumerate(system.servers):
        if counts[s.name] > 1:
            f, loc = _srv(i, s, "name")
            yield f, s.name, f"{counts[s.name]} servers have this name", loc


def _usable(addr: ipaddress.IPv4Address, net: ipaddress.IPv4Network | None) -> str | None:
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local:
        return "a reserved address (unspecified, loopback, link-local or multicast)"
    if addr == ipaddress.IPv4Address("255.255.255.255") or addr.is_reserved:
        return "a reserved address"
    if net is not None and addr == net.network_address:
        return f"the network address of {net}"
    if net is not None and addr == net.broadcast_address:
        return f"the broadcast address of {net}"
    return None


def _host_addresses(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    by_lim = _lim_servers(system)
    for i, s in enumerate(system.servers):
        iface = _iface(s.base_ip)
        if iface is not None and (why := _usable(iface.ip, iface.network)):
            f, loc = _srv(i, s, "base_ip")
            yield f, s.base_ip, f"is {why}", loc
    for i, c in enumerate(system.clusters):
        for j, cl in enumerate(c.lims):
            addr = _addr(cl.alias_ip)
            if addr is None:
                continue
            owner = by_lim.get(cl.lim) if _is_int(cl.lim) else None
            owner_if = _iface(owner.base_ip) if owner else None
            if why := _usable(addr, owner_if.network if owner_if else None):
                f, loc = _lim(i, c, j, cl, "alias_ip")
                yield f, cl.alias_ip, f"is {why}", loc


def _unique_addresses(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    places: list[tuple[ipaddress.IPv4Address, str, object, Loc]] = []
    for i, s in enumerate(system.servers):
        if (iface := _iface(s.base_ip)) is not None:
            f, loc = _srv(i, s, "base_ip")
            places.append((iface.ip, f, s.base_ip, loc))
    for i, c in enumerate(system.clusters):
        for j, cl in enumerate(c.lims):
            if (addr := _addr(cl.alias_ip)) is not None:
                f, loc = _lim(i, c, j, cl, "alias_ip")
                places.append((addr, f, cl.alias_ip, loc))
    users: dict[ipaddress.IPv4Address, list[str]] = {}
    for addr, f, _v, _l in places:
        users.setdefault(addr, []).append(f)
    for addr, f, v, loc in places:
        others = [o for o in users[addr] if o != f]
        if others:
            yield f, v, f"address {addr} is also used by {', '.join(others)}", loc


def _roles(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    allowed = [r.value for r in Role]
    for i, s in enumerate(system.servers):
        if s.role not in allowed:
            f, loc = _srv(i, s, "role")
            yield f, s.role, f"must be one of {', '.join(allowed)}", loc


def _lim_numbers(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    counts = Counter(s.lim for s in system.servers if s.role == Role.LIM and _is_int(s.lim))
    for i, s in enumerate(system.servers):
        f, loc = _srv(i, s, "lim")
        if s.role == Role.LIM:
            if not _is_int(s.lim) or s.lim not in contract.LIM_NUMBERS:
                yield f, s.lim, ("a LIM server needs a LIM number from "
                                 f"{contract.LIM_NUMBERS.start} to {contract.LIM_NUMBERS.stop - 1}"), loc
            elif counts[s.lim] > 1:
                yield f, s.lim, f"{counts[s.lim]} servers have LIM number {s.lim}", loc
        elif s.lim is not None and s.role in (Role.STANDBY, Role.FREE):
            yield f, s.lim, f"only a LIM server has a LIM number; this one is {s.role}", loc


def _cluster_names(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    counts = Counter(c.name for c in system.clusters)
    for i, c in enumerate(system.clusters):
        f, loc = _cl(i, c, "name")
        if not contract.is_name(c.name):
            yield f, c.name, "not a valid cluster name (letters, digits and -)", loc
        elif counts[c.name] > 1:
            yield f, c.name, f"{counts[c.name]} clusters have this name", loc


def _cluster_has_lims(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    for i, c in enumerate(system.clusters):
        if not c.lims:
            f, loc = _cl(i, c, "lim")
            yield f, [], "a cluster needs at least one regular LIM", loc


def _max_lims(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    for i, c in enumerate(system.clusters):
        if len(c.lims) > contract.MAX_LIMS_PER_CLUSTER:
            f, loc = _cl(i, c, "lim")
            yield f, list(c.lim_numbers()), f"{len(c.lims)} LIMs", loc


def _one_standby(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    for i, c in enumerate(system.clusters):
        if len(c.standby) != 1:
            f, loc = _cl(i, c, "standby")
            yield f, list(c.standby), f"{len(c.standby)} standby servers named", loc


def _standby_is_standby(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    by_name = _servers_by_name(system)
    for i, c in enumerate(system.clusters):
        for name in c.standby:
            f, loc = _cl(i, c, "standby")
            server = by_name.get(name)
            if server is None:
                yield f, name, "no server with this name is in the system", loc
            elif server.role != Role.STANDBY:
                yield f, name, f"server {name} has role {server.role}, not standby", loc


def _lim_exists(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    # Every LIM server's number counts here, duplicates too: a duplicate is lim-number's.
    numbers = {s.lim for s in system.servers if s.role == Role.LIM}
    for i, c in enumerate(system.clusters):
        for j, cl in enumerate(c.lims):
            f, loc = _lim(i, c, j, cl, "lim")
            if not _is_int(cl.lim):
                yield f, cl.lim, "a LIM number is a whole number", loc
            elif cl.lim not in numbers:
                yield f, cl.lim, f"no LIM server with LIM number {cl.lim} is in the system", loc


def _standby_one_cluster(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    seen: dict[str, str] = {}
    for i, c in enumerate(system.clusters):
        for name in c.standby:
            f, loc = _cl(i, c, "standby")
            if name in seen and seen[name] != c.name:
                yield f, name, f"standby server {name} is already in cluster {seen[name]}", loc
            seen.setdefault(name, c.name)


def _lim_one_cluster(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    seen: dict[object, str] = {}
    for i, c in enumerate(system.clusters):
        for j, cl in enumerate(c.lims):
            f, loc = _lim(i, c, j, cl, "lim")
            if cl.lim in seen:
                where = "this cluster" if seen[cl.lim] == c.name else f"cluster {seen[cl.lim]}"
                yield f, cl.lim, f"LIM {cl.lim} is already in {where}", loc
            else:
                seen[cl.lim] = c.name


def _clusters_vs_lims(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    # Implied by the other rules for clusters (each has its own LIMs), but not for standby
    # servers: converting free servers to standby is bounded by the LIM servers too.
    lim_servers = sum(1 for s in system.servers if s.role == Role.LIM)
    if len(system.clusters) > lim_servers:
        names = [c.name for c in system.clusters]
        yield "cluster", names, f"{len(names)} clusters but {lim_servers} LIM servers", ("cluster",)
    standbys = [(i, s) for i, s in enumerate(system.servers) if s.role == Role.STANDBY]
    if len(standbys) > lim_servers:
        for i, s in standbys[lim_servers:]:
            f, loc = _srv(i, s, "role")
            yield f, s.role, (
                f"{len(standbys)} standby servers but {lim_servers} LIM servers in the system"
            ), loc


def _same_subnet(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    by_lim, by_name = _lim_servers(system), _servers_by_name(system)
    for c in system.clusters:
        members = [by_lim[cl.lim] for cl in c.lims if _is_int(cl.lim) and cl.lim in by_lim]
        members += [by_name[n] for n in c.standby if n in by_name]
        placed = [(s, iface.network) for s in members if (iface := _iface(s.base_ip))]
        if not placed:
            continue
        first, first_net = placed[0]
        for s, net in placed[1:]:
            if net != first_net:
                yield (
                    f"server[{s.name}].base_ip",
                    s.base_ip,
                    (f"server {s.name} of cluster {c.name} is on {net}, "
                     f"server {first.name} on {first_net}"),
                    ("server", system.servers.index(s), "base_ip"),
                )


def _alias_in_subnet(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    by_lim = _lim_servers(system)
    for i, c in enumerate(system.clusters):
        for j, cl in enumerate(c.lims):
            addr = _addr(cl.alias_ip)
            owner = by_lim.get(cl.lim) if _is_int(cl.lim) else None
            iface = _iface(owner.base_ip) if owner else None
            if addr is not None and iface is not None and not contract.alias_in_subnet(
                    addr, iface.network.prefixlen, iface.network):
                f, loc = _lim(i, c, j, cl, "alias_ip")
                yield f, cl.alias_ip, (
                    f"not in base subnet {iface.network} of server {owner.name}"  # type: ignore[union-attr]
                ), loc


def _preloaded_one_plus_one(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    for i, c in enumerate(system.clusters):
        if c.failover == FailoverBehaviour.PRELOADED and len(c.lims) != 1:
            f, loc = _cl(i, c, "failover")
            yield f, c.failover, f"cluster has {len(c.lims)} regular LIMs", loc


def _standby_disk(system: SystemValues, facts: Mapping[str, NodeFacts]) -> _Found:
    by_lim = _lim_servers(system)
    for i, c in enumerate(system.clusters):
        if len(c.standby) != 1 or c.standby[0] not in facts:
            continue
        regulars = [by_lim[cl.lim] for cl in c.lims if _is_int(cl.lim) and cl.lim in by_lim]
        if any(r.name not in facts for r in regulars):
            continue
        need = sum(2 * facts[r.name].backup_bytes for r in regulars)
        free = facts[c.standby[0]].free_data_bytes
        if free < need:
            f, loc = _cl(i, c, "standby")
            yield f, c.standby[0], (
                f"standby has {_size(free)} free, two backups of each regular need {_size(need)}"
            ), loc


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _choices(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    for i, c in enumerate(system.clusters):
        for key, enum in (
            ("fallback", FallbackType),
            ("failover", FailoverBehaviour),
            ("split_brain_stop", contract.Role),
        ):
            value = getattr(c, key)
            if value not in [e.value for e in enum]:
                f, loc = _cl(i, c, key)
                yield f, value, f"must be one of {', '.join(e.value for e in enum)}", loc
        for j, cl in enumerate(c.lims):
            if cl.lock not in [e.value for e in Lock]:
                f, loc = _lim(i, c, j, cl, "lock")
                yield f, cl.lock, f"must be one of {', '.join(e.value for e in Lock)}", loc


def _timers(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    for i, c in enumerate(system.clusters):
        t = c.timers
        f, loc = _cl(i, c, "timers")
        if t.preset is not None:
            if t.preset not in contract.TIMER_PRESETS:
                yield f, t.preset, f"unknown preset; use one of {', '.join(contract.TIMER_PRESETS)}", loc
            continue
        ok_interval = isinstance(t.interval, int | float) and not isinstance(t.interval, bool)
        low, high = contract.TIMER_INTERVAL
        if not ok_interval or not low <= t.interval <= high:  # type: ignore[operator]
            yield f + ".interval", t.interval, (
                f"heartbeat interval must be {low:g} to {high:g} seconds"), (
                *loc, "interval")
        if not _is_int(t.misses) or t.misses not in contract.MISSES:
            yield f + ".misses", t.misses, ("miss count must be a whole number from "
                                            f"{contract.MISSES.start} to {contract.MISSES.stop - 1}"), (
                *loc, "misses")


def _generation(system: SystemValues, _f: Mapping[str, NodeFacts]) -> _Found:
    if not _is_int(system.generation) or system.generation < 1:
        yield "generation", system.generation, "must be a whole number of 1 or more", ("generation",)


RULES: tuple[Rule, ...] = (
    Rule("generation", "the config generation is a whole number of 1 or more", _generation),
    Rule("server-name", "a server name is a host name: letters, digits and -", _server_names),
    Rule("unique-server-name", "server names are unique in the system", _unique_server_names),
    Rule("server-role", "a server is a LIM server, a standby server or a free server", _roles),
    Rule("lim-number", "every LIM server has its own LIM number, 1 to 124", _lim_numbers),
    Rule("interface-name", "the interface is a valid Linux interface name, not . .. all "
         "default", _interface_names),
    Rule("base-ip-syntax", "a base IP is an IPv4 address with its prefix, e.g. 10.0.2.11/24",
         _base_ip_syntax),
    Rule("alias-ip-syntax", "an alias IP is an IPv4 address, e.g. 10.0.2.21", _alias_ip_syntax),
    Rule("host-address", "an address is usable by a host: not the network or broadcast "
         "address of its subnet, nor a reserved one", _host_addresses),
    Rule("unique-address", "every address is used once in the system", _unique_addresses),
    Rule("cluster-name", "cluster names are valid and unique", _cluster_names),
    Rule("cluster-not-empty", "a cluster has at least one regular LIM", _cluster_has_lims),
    Rule("cluster-max-lims", "a cluster can have up to ten LIMs", _max_lims),
    Rule("one-standby", "a cluster has exactly one standby server", _one_standby),
    Rule("standby-role", "a cluster's standby is a server in the system converted to standby",
         _standby_is_standby),
    Rule("lim-in-system", "a cluster's LIMs are LIM servers in the system", _lim_exists),
    Rule("standby-one-cluster", "a standby server belongs to one cluster only",
         _standby_one_cluster),
    Rule("lim-one-cluster", "a LIM server belongs to one cluster only", _lim_one_cluster),
    Rule("cluster-count", "there are no more clusters, nor standby servers, than LIM servers",
         _clusters_vs_lims),
    Rule("same-subnet", "all servers in a cluster reside on the same subnet", _same_subnet),
    Rule("alias-subnet", "an alias IP is on the same subnet as its server's base IP",
         _alias_in_subnet),
    Rule("preloaded-1+1", "preloaded failover is only for one regular and one standby server",
         _preloaded_one_plus_one),
    Rule("standby-disk", "the standby has free disk for two data backups of each regular server",
         _standby_disk),
    Rule("priority", "a priority is a whole number; lower means higher priority on the standby",
         _priorities),
    Rule("choice", "fallback, failover, lock and split-brain fields take one of their words",
         _choices),
    Rule("timers", "detection timers are a known preset or a sane interval and miss count",
         _timers),
)

RULES_BY_CODE = {r.code: r for r in RULES}


def check(system: SystemValues, facts: Mapping[str, NodeFacts] | None = None) -> list[Violation]:
    """Every violation of every rule, in rule order then field order. Never raises.

    ``facts`` are the nodes' own reports (disk); rules needing facts a node did not
    report are not evaluated for that cluster.
    """
    facts = facts or {}
    found: list[Violation] = []
    for rule in RULES:
        for field_name, value, detail, loc in rule.check(system, facts):
            found.append(Violation(rule.code, field_name, value, detail, rule.text, loc))
    return found
