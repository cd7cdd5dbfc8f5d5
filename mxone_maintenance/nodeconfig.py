"""The per-node config each agent runs on, derived from the system config on LIM 1.

The agent's own wire format (:mod:`mxone_agent.config`) is the contract: the maintenance
tool builds those objects, never a look-alike, so a node config that this module returns
has already passed the agent's own checks.
"""

from __future__ import annotations

import ipaddress

from mxone_agent import config as agent_config
from mxone_agent import model as agent_model
from mxone_maintenance.model import Cluster, Role, System


def for_cluster(system: System, cluster: Cluster, node: str) -> agent_config.NodeConfig:
    """The config of server ``node`` (a regular server or the standby of ``cluster``).

    ``system`` must be valid (see System.validated).
    """
    t = cluster.timers
    timers = (
        agent_config.timers_for_preset(t.preset, cluster.failover)
        if t.preset is not None
        else agent_config.Timers(interval=float(t.interval or 0), misses=int(t.misses or 0))
    )
    servers = []
    for s in system.cluster_servers(cluster):
        iface = s.interface_address()
        servers.append(agent_config.Server(
            name=s.name, base_ip=iface.ip, prefix=iface.network.prefixlen, interface=s.interface,
            role=agent_model.Role.STANDBY if s.role == Role.STANDBY else agent_model.Role.REGULAR,
        ))
    lims = []
    for cl in cluster.lims:
        s = system.server_for_lim(cl.lim)
        lims.append(agent_config.LimConfig(
            lim=cl.lim, server=s.name, alias_ip=ipaddress.IPv4Address(cl.alias_ip),
            prefix=s.prefix, interface=s.interface, priority=cl.priority,
            lock=agent_config.Lock(cl.lock),
        ))
    return agent_config.NodeConfig(
        generation=system.generation, node=node, cluster=cluster.name,
        fallback=agent_config.FallbackType(cluster.fallback),
        failover=agent_config.FailoverBehaviour(cluster.failover),
        timers=timers, servers=tuple(servers), lims=tuple(lims),
        split_brain_stop=agent_model.Role(cluster.split_brain_stop),
    )


def all_nodes(system: System) -> dict[str, agent_config.NodeConfig]:
    """Server name -> its node config, for every server that is in a cluster."""
    configs = {}
    for cluster in system.clusters:
        for server in system.cluster_servers(cluster):
            configs[server.name] = for_cluster(system, cluster, server.name)
    return configs
