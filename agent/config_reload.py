"""A config reload (SIGHUP, ``ctl reload``): the node config and the cluster secret read
again and checked against the running agent, the aliases to guard set up for the new
config, and the LIMs the new config no longer gives this node kept to be stopped.

Refused, with every reason at once, when the files do not load or only a restart may make
the change (node, role, base IP, heartbeat port); the running config then stays.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from mxone_agent.config import ConfigError, LimConfig, NodeConfig
from mxone_agent.executor import Executor
from mxone_agent.lease import Fence, LeaseError, lease_seconds
from mxone_agent.node_files import (
    HeldLims,
    StartupError,
    read_config,
    read_secret,
    reload_problems,
)

log = logging.getLogger("mxone_agent")


@dataclasses.dataclass(frozen=True)
class NewConfig:
    """A config the running agent may take: with its secret, and the retired LIMs (and
    their config documents) it leaves to stop."""

    config: NodeConfig
    secret: bytes
    retired: dict[int, LimConfig]
    docs: dict[int, dict[str, Any]]


def load_new(old: NodeConfig, config_path: str, secret_path: str, held: HeldLims,
             present: set[int], fence: Fence | None) -> NewConfig | str:
    """The new config, or the refusal sentence. ``present``: the LIMs that run (or are
    being started or cleared) here. The fence guards the new config's aliases (those of
    the retired LIMs too) and takes its lease length."""
    try:
        cfg = read_config(config_path)
        secret = read_secret(secret_path)
    except (StartupError, ConfigError) as e:
        log.warning("%s refuses the new config and keeps generation %d: %s",
                    old.node, old.generation, e)
        return f"new config refused, generation {old.generation} kept: {e}"
    refused = f"new config refused, generation {old.generation} kept: "
    problems = reload_problems(old, cfg)
    if problems:
        return refused + "; ".join(problems)
    # LIMs that run here (or are being started) and that the new config no longer gives
    # this node: their last LimConfig is kept so that a decision can stop them.
    retired, docs = held.reloaded(old, cfg, present)
    if fence is not None:
        try:  # the aliases may have changed; leases running now stay guarded
            fence.setup([x.alias_ip for x in Executor.guarded(cfg)]
                        + [x.alias_ip for x in retired.values()])
        except LeaseError as e:
            return f"{refused}cannot guard its aliases: {e}"
        fence.lease = lease_seconds(cfg.timers)
    for n in sorted(set(retired) - set(held.retired)):
        log.warning("%s: config generation %d no longer gives LIM %d to this node, which "
                    "runs it; it is stopped and its alias %s removed", cfg.node,
                    cfg.generation, n, retired[n].alias_ip)
    return NewConfig(cfg, secret, retired, docs)
