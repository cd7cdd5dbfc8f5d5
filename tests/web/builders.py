"""Builders for the tool's tests: node configs of LIM 1's cluster, pairs and settings.

The reference system: LIM 1 on ``lim1`` (10.77.0.11), LIM 2 on ``lim2`` (10.77.0.12), the
standby ``sb`` (10.77.0.20), all on 10.77.0.0/24 (eth0); LIM aliases 10.77.0.111/.112.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from mxone_agent.config import load_node_config
from mxone_web import discover
from mxone_web.stack.api import PairRole, PairServer, PairSettings, WebFallback

NET = ipaddress.IPv4Network("10.77.0.0/24")


def node_doc(node: str = "lim1", lims: tuple[int, ...] = (1, 2), fallback: str = "manual",
             cluster: str = "north") -> dict[str, Any]:
    servers = [{"name": f"lim{n}", "base_ip": f"10.77.0.{10 + n}", "prefix": 24,
                "interface": "eth0", "role": "regular"} for n in lims]
    servers.append({"name": "sb", "base_ip": "10.77.0.20", "prefix": 24, "interface": "eth1",
                    "role": "standby"})
    return {"format": 1, "generation": 3, "node": node, "cluster": cluster,
            "fallback": fallback, "failover": "regular",
            "timers": {"interval": 1.0, "misses": 3},
            "garp": {"burst": 3, "second_burst_after": 2.0, "refresh_interval": 30.0},
            "heartbeat_port": 7011, "servers": servers,
            "lims": [{"lim": n, "server": f"lim{n}", "alias_ip": f"10.77.0.{110 + n}",
                      "prefix": 24, "interface": "eth0", "priority": 1, "lock": "none"}
                     for n in lims]}


def write_node(tmp: Path, **kw: Any) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "node.json"
    path.write_text(json.dumps(node_doc(**kw)))
    return path


def pair(node: str = "lim1", **kw: Any) -> discover.Pair:
    return discover.pair_of(load_node_config(node_doc(node, **kw)))


def settings(role: PairRole = PairRole.MASTER, vip: str = "10.77.0.50",
             user: str = "replicator", password: str = "Tr4in-Sh3d-Vault") -> PairSettings:
    return PairSettings(role=role, master=PairServer("lim1", ipaddress.IPv4Address("10.77.0.11")),
                        standby=PairServer("sb", ipaddress.IPv4Address("10.77.0.20")),
                        cluster="north", network=NET, interface="eth0",
                        vip=ipaddress.IPv4Address(vip), replication_user=user,
                        replication_password=password, fallback=WebFallback.MANUAL,
                        witnesses=(ipaddress.IPv4Address("10.77.0.12"),))
