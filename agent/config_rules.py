"""The cross-field rules of a node config: what one node can check of its cluster.

The seed's prerequisites as far as one node sees them: the node is one of the servers;
exactly one standby and at least one regular server; every regular server runs exactly
one LIM and every LIM belongs to a regular server; at most ten LIMs; names, LIM numbers and
addresses are unique; all base IPs share one subnet and every alias IP is on its server's
subnet; preloaded failover only for one regular plus one standby server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from mxone_agent import contract
from mxone_agent.config_types import LimConfig, Server
from mxone_agent.contract import FailoverBehaviour, Role
from mxone_agent.jsonreader import ConfigProblem


def rule_problems(node: str | None, failover: FailoverBehaviour | None,
                  servers: Sequence[tuple[int, Server]], lims: Sequence[tuple[int, LimConfig]],
                  names_seen: set[str], lims_listed: int | None = -1,
                  servers_listed: bool = True) -> list[ConfigProblem]:
    """Every cross-field rule broken by the servers and LIMs (given with their indexes).

    When loading, a field that was wrong (``node`` and ``failover`` included) is None and
    every rule that needs it is skipped (its problem is already reported). ``names_seen``
    holds every server name in the document, so a reference to a server whose entry is
    broken is not called unknown.
    ``lims_listed`` is the number of entries in ``lims`` of the document (-1: count
    ``lims``; None: the document has no list of LIMs, so their number is not checked);
    ``servers_listed`` False: the document has no list of servers.
    """
    out: list[ConfigProblem] = []

    def problem(path: str, message: str) -> None:
        out.append(ConfigProblem(path, message))

    complete_servers = servers_listed and len(servers) == len(names_seen) and all(
        s.name is not None and s.role is not None for _, s in servers)
    if node is not None and servers_listed and node not in names_seen:
        problem("$.node", f"{node!r} is not one of the servers ({', '.join(sorted(names_seen))})")

    by_name: dict[str, Server] = {}
    for i, s in servers:
        if s.name is None:
            continue
        if s.name in by_name:
            problem(f"$.servers[{i}].name", f"server name {s.name!r} is used twice")
        by_name.setdefault(s.name, s)
    standbys = [s.name for _, s in servers if s.role is Role.STANDBY]
    if len(standbys) > 1:
        problem("$.servers", f"{len(standbys)} standby servers ({', '.join(map(str, standbys))}); "
                "a cluster has exactly one")
    if complete_servers and not standbys:
        problem("$.servers", "no standby server; a cluster has exactly one")
    if complete_servers and not any(s.role is Role.REGULAR for _, s in servers):
        problem("$.servers", "no regular server; a cluster has at least one")

    addresses: dict[ipaddress.IPv4Address, str] = {}
    addressed = [(i, s) for i, s in servers if s.base_ip is not None and s.prefix is not None]
    first = addressed[0][1] if addressed else None
    for i, s in addressed:
        path = f"$.servers[{i}].base_ip"
        if s.base_ip in addresses:
            problem(path, f"{s.base_ip} is also the {addresses[s.base_ip]}")
        addresses.setdefault(s.base_ip, f"base IP of server {s.name}")
        if s.prefix < 31 and s.base_ip in (s.network.network_address, s.network.broadcast_address):
            problem(path, f"{s.base_ip}/{s.prefix} is the network or broadcast address")
        if first is not None and s.network != first.network:
            problem(path, f"{s.base_ip}/{s.prefix} is not on the cluster subnet {first.network} "
                    f"(of server {first.name}); all servers of a cluster share one subnet")

    count = len(lims) if lims_listed is None or lims_listed < 0 else lims_listed
    if lims_listed is None:
        pass
    elif count == 0:
        problem("$.lims", "no LIM; a cluster has at least one")
    elif count > contract.MAX_LIMS_PER_CLUSTER:
        problem("$.lims", f"{count} LIMs; a cluster can have up to {contract.MAX_LIMS_PER_CLUSTER}")

    numbers: set[int] = set()
    lim_of_server: dict[str, int | None] = {}
    for j, lim in lims:
        path = f"$.lims[{j}]"
        if lim.lim is not None:
            if lim.lim in numbers:
                problem(f"{path}.lim", f"LIM {lim.lim} is listed twice")
            numbers.add(lim.lim)
        server = by_name.get(lim.server) if lim.server is not None else None
        if lim.server is None:
            pass
        elif lim.server not in names_seen and servers_listed:
            problem(f"{path}.server", f"{lim.server!r} is not one of the servers")
        elif server is not None and server.role is Role.STANDBY:
            problem(f"{path}.server", f"{lim.server} is the standby server; a LIM belongs to a "
                    "regular server")
        elif lim.server in lim_of_server:
            problem(f"{path}.server", f"server {lim.server} already runs LIM "
                    f"{lim_of_server[lim.server]}; a regular server runs one LIM")
        if lim.server is not None:
            lim_of_server.setdefault(lim.server, lim.lim)

        if lim.alias_ip is None:
            continue
        apath = f"{path}.alias_ip"
        if lim.alias_ip in addresses:
            problem(apath, f"{lim.alias_ip} is also the {addresses[lim.alias_ip]}")
        addresses.setdefault(lim.alias_ip, f"alias IP of LIM {lim.lim}")
        if (server is not None and server.base_ip is not None and server.prefix is not None
                and lim.prefix is not None
                and not contract.alias_in_subnet(lim.alias_ip, lim.prefix, server.network)):
            problem(apath, f"{lim.alias_ip}/{lim.prefix} is not on the subnet "
                    f"{server.network} of server {server.name}")
    if lims_listed is not None and len(lims) == count and all(
            lim.server is not None for _, lim in lims):
        for i, s in servers:
            if s.role is Role.REGULAR and s.name is not None and s.name not in lim_of_server:
                problem(f"$.servers[{i}]", f"regular server {s.name} runs no LIM; every "
                        "regular server of a cluster runs one")

    if failover is FailoverBehaviour.PRELOADED:
        regulars = [s.name for _, s in servers if s.role is Role.REGULAR]
        if len(regulars) > 1 or count > 1:
            problem("$.failover", f"preloaded failover is only for one regular and one standby "
                    f"server; this cluster has {len(regulars)} regular servers and {count} LIMs")
    return out
