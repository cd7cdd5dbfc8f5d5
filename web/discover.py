"""Who is who in PM/SNM redundancy, found from this server's node config by itself.

The *master* is the server that runs LIM 1; the *standby* is the standby server of LIM 1's
cluster. Each server of the cluster has the agent's node config
(:data:`mxone_agent.paths.NODE_JSON`, written by the maintenance tool on LIM 1 and read
here with the agent's own loader), so :func:`discover` works on either server, and only
there: any other server is refused by name. LIM 1's server also holds the system config,
whose every base and alias address is then known too (the virtual IP must be none of them).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mxone_agent import config as agent_config
from mxone_agent import paths
from mxone_agent.contract import FallbackType, Role
from mxone_web.errors import Refused, WebError
from mxone_web.stack.api import PairRole, PairServer, TwoSides, WebFallback

NOT_IN_CLUSTER = "Server redundancy must be set first: LIM 1 is not in a cluster"
"""The refusal of Redundancy on a system whose LIM 1 is in no cluster (also the menu's)."""

MASTER_LIM = 1


@dataclass(frozen=True)
class Pair(TwoSides):
    """The pair as found on this server: everything but the operator's answers.

    ``role`` is which half this server is; ``interface`` its own interface (the virtual IP
    goes there); ``network`` the subnet of both base addresses; ``witnesses`` the base
    addresses of the cluster's other servers; ``taken`` every address of the system known
    here (bases and LIM aliases) with what holds it.
    """

    role: PairRole
    master: PairServer
    standby: PairServer
    cluster: str
    network: ipaddress.IPv4Network
    interface: str
    fallback: WebFallback
    witnesses: tuple[ipaddress.IPv4Address, ...] = ()
    taken: Mapping[ipaddress.IPv4Address, str] = field(default_factory=dict)

    def lines(self) -> tuple[str, ...]:
        """The found pair as the operator reads it (the seed's "SNM Configuration" screen)."""
        return (f"Cluster:       {self.cluster} ({self.network}, fallback {self.fallback})",
                f"Master:        {self.master.name} {self.master.base_ip} (runs LIM 1)",
                f"Standby:       {self.standby.name} {self.standby.base_ip}",
                f"This server:   {self.local.name} ({self.role}), interface {self.interface}",
                "Witnesses:     " + (", ".join(map(str, self.witnesses)) or "(none)"))


def pair_of(cfg: agent_config.NodeConfig,
            system_addresses: Mapping[ipaddress.IPv4Address, str] | None = None) -> Pair:
    """The pair seen from the node whose config is ``cfg``; :class:`Refused` naming this
    server when it is neither LIM 1's server nor the standby of LIM 1's cluster."""
    try:
        lim1 = cfg.lim(MASTER_LIM)
    except KeyError:
        raise Refused(f"server {cfg.node} is neither LIM 1's server (the master) nor the "
                      f"standby of LIM 1's cluster: its cluster {cfg.cluster} does not hold "
                      f"LIM 1 (PM/SNM redundancy pairs LIM 1's server with its standby)"
                      ) from None
    master, standby = cfg.server(lim1.server), cfg.standby
    if cfg.node == master.name:
        role = PairRole.MASTER
    elif cfg.local.role is Role.STANDBY:
        role = PairRole.STANDBY
    else:
        raise Refused(f"server {cfg.node} is neither LIM 1's server ({master.name}, the "
                      f"master) nor the standby of cluster {cfg.cluster} ({standby.name}): "
                      "run webserver_config on one of those two")
    if master.network != standby.network:
        raise Refused(f"standby {standby.name} = {standby.base_ip}/{standby.prefix}: not in "
                      f"the master's subnet {master.network} (the virtual IP moves between "
                      "the two on one subnet)")
    taken: dict[ipaddress.IPv4Address, str] = dict(system_addresses or {})
    for s in cfg.servers:
        taken.setdefault(s.base_ip, f"base address of server {s.name}")
    for lim in cfg.lims:
        taken.setdefault(lim.alias_ip, f"alias address of LIM {lim.lim}")
    witnesses = tuple(s.base_ip for s in cfg.servers if s.name not in (master.name, standby.name))
    return Pair(
        role=role,
        master=PairServer(master.name, master.base_ip),
        standby=PairServer(standby.name, standby.base_ip),
        cluster=cfg.cluster, network=master.network, interface=cfg.local.interface,
        fallback=WebFallback.AUTOMATIC if cfg.fallback is FallbackType.AUTOMATIC
        else WebFallback.MANUAL,
        witnesses=witnesses, taken=taken)


def read_node_config(path: Path) -> agent_config.NodeConfig | None:
    """The node config at ``path`` (None when there is none); WebError when it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise WebError(f"{path}: cannot read the node config: {e.strerror or e}") from e
    try:
        return agent_config.load_node_config(json.loads(text))
    except json.JSONDecodeError as e:
        raise WebError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from e
    except agent_config.ConfigError as e:
        raise WebError(f"{path}: {e}") from e


def system_addresses(path: Path) -> dict[ipaddress.IPv4Address, str]:
    """Every base and alias address of the system config at ``path`` (on LIM 1's server);
    empty when there is none here or it cannot be read (the node config still names the
    cluster's own)."""
    from mxone_maintenance import store
    from mxone_maintenance.errors import MxoneError

    if not path.exists():
        return {}
    try:
        system = store.load(path)
    except MxoneError:
        return {}
    found: dict[ipaddress.IPv4Address, str] = {}
    for s in system.servers:
        found[ipaddress.IPv4Interface(s.base_ip).ip] = f"base address of server {s.name}"
    for c in system.clusters:
        for cl in c.lims:
            found[ipaddress.IPv4Address(cl.alias_ip)] = f"alias address of LIM {cl.lim}"
    return found


def discover(node_json: Path = Path(paths.NODE_JSON), system_config: Path | None = None) -> Pair:
    """The pair, found on this server; :class:`Refused` when LIM 1 is in no cluster (this
    server has no node config) or this server is neither master nor standby."""
    from mxone_maintenance import store

    cfg = read_node_config(node_json)
    if cfg is None:
        raise Refused(f"{NOT_IN_CLUSTER} (this server has no node config, {node_json})")
    return pair_of(cfg, system_addresses(system_config or store.config_path()))
