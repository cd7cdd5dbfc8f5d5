"""Per-node configs derived from the system config pass the agent's own loader."""

from __future__ import annotations

import dataclasses
import json

from mxone_agent import config as agent_config
from mxone_maintenance import nodeconfig
from mxone_maintenance.model import Timers

from tests.test_rules import valid_system


def test_every_cluster_server_gets_a_config_the_agent_accepts() -> None:
    system = valid_system()
    configs = nodeconfig.all_nodes(system)
    assert sorted(configs) == ["lim2", "lim3", "standby1"]  # lim1, lim4, spare: in no cluster
    for name, cfg in configs.items():
        doc = json.loads(json.dumps(cfg.to_dict()))
        again = agent_config.load_node_config(doc)
        assert again == cfg
        assert doc["node"] == name and doc["generation"] == 3
    standby = configs["standby1"].to_dict()
    assert [s["name"] for s in standby["servers"]] == ["lim2", "lim3", "standby1"]
    assert [s["role"] for s in standby["servers"]] == ["regular", "regular", "standby"]
    assert standby["lims"][0] == {"lim": 2, "server": "lim2", "alias_ip": "10.0.2.12", "prefix": 24,
                                  "interface": "eth0", "priority": 1, "lock": "none"}
    assert standby["lims"][1]["lock"] == "regular"
    assert standby["fallback"] == "automatic"
    assert standby["timers"] == {"interval": 1.0, "misses": 3}


def test_timers_follow_preset_and_failover() -> None:
    system = valid_system()
    c = system.clusters[0]
    mx = dataclasses.replace(system, clusters=(dataclasses.replace(c, timers=Timers("mxone")),))
    assert nodeconfig.for_cluster(mx, mx.clusters[0], "lim2").detection == 60.0
    one = dataclasses.replace(c, lims=c.lims[:1], failover="preloaded", timers=Timers("mxone"))
    pre = dataclasses.replace(system, clusters=(one,))
    assert nodeconfig.for_cluster(pre, one, "lim2").detection == 30.0
    ex = dataclasses.replace(system, clusters=(dataclasses.replace(c, timers=Timers.explicit(0.25, 4)),))
    assert nodeconfig.for_cluster(ex, ex.clusters[0], "lim3").timers == agent_config.Timers(0.25, 4)
