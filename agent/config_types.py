"""The parts of a node config: servers, LIMs, companions, GARP and sync settings.

Plain immutable values; :class:`mxone_agent.config.NodeConfig` puts them together and
checks the rules across them (:mod:`mxone_agent.config_rules`). While a document is being
loaded a part may hold None for a field that was wrong (already reported); a part of a
loaded or built NodeConfig never does.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mxone_agent import contract, paths
from mxone_agent.contract import FailoverBehaviour, Lock, Role, Timers
from mxone_agent.errors import AgentError
from mxone_agent.jsonreader import ConfigProblem


class ConfigError(AgentError):
    """A node config breaks one or more rules; ``problems`` lists every one, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        count = len(self.problems)
        head = "1 problem" if count == 1 else f"{count} problems"
        super().__init__(f"{head} in node config:\n" + "\n".join(f"  {p}" for p in self.problems))


def timers_for_preset(name: str, failover: FailoverBehaviour | str) -> Timers:
    """The timers of preset ``name`` for a cluster of the given failover behaviour.

    Raises ConfigError for an unknown preset or failover behaviour.
    """
    problems = []
    if name not in contract.TIMER_PRESETS:
        problems.append(ConfigProblem("preset", f"unknown preset {name!r}; use one of "
                                      + ", ".join(contract.TIMER_PRESETS)))
    if failover not in set(FailoverBehaviour):
        problems.append(ConfigProblem("failover", f"{failover!r} is not one of "
                                      + ", ".join(FailoverBehaviour)))
    if problems:
        raise ConfigError(problems)
    return contract.TIMER_PRESETS[name][FailoverBehaviour(failover)]


@dataclass(frozen=True)
class Garp:
    """Gratuitous ARP after an alias moves: a burst, a second burst, then optional refreshes."""

    burst: int = 3
    second_burst_after: float = 2.0
    refresh_interval: float | None = 30.0  # None: no periodic refresh


@dataclass(frozen=True)
class Sync:
    """How this node syncs exchange data with its peers (``sync`` in node.json).

    Times are seconds: a periodic sync every ``interval``; after a failure a retry after
    ``retry_min``, doubling up to ``retry_max``; clocks must agree within ``clock_bound``;
    one transfer may last ``timeout``. ``key`` is the cluster's SSH sync key (sync is off
    while it is absent), ``known_hosts`` pins the peers' host keys, ``user`` logs in on the
    peer, ``xdata_root`` holds the versions here (and, by the forced command, on peers).
    """

    interval: float = 86400.0
    retry_min: float = 10.0
    retry_max: float = 600.0
    clock_bound: float = 2.0
    timeout: float = 3600.0
    key: str = paths.SYNC_KEY
    known_hosts: str = paths.KNOWN_HOSTS
    user: str = "root"
    xdata_root: str = paths.XDATA

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Server:
    """A server of the cluster, with its base address (its own, never moved)."""

    name: str
    base_ip: ipaddress.IPv4Address
    prefix: int
    interface: str
    role: Role

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The subnet the base IP is on."""
        return contract.subnet_of(self.base_ip, self.prefix)


@dataclass(frozen=True)
class ServiceCommands:
    """The commands (argv lists, no shell) that start, stop and query one LIM's service."""

    start: tuple[str, ...]
    stop: tuple[str, ...]
    status: tuple[str, ...]


class CompanionKind(StrEnum):
    MANAGEMENT = "management"  # the management system: never on the standby
    MEDIA_SERVER = "media-server"  # on the standby only when co-located with the LIM
    CSTA = "csta"  # CSTA Phase III web service: never on the standby
    OTHER = "other"  # a site's own service: never on the standby


@dataclass(frozen=True)
class Companion:
    """A service that runs beside a LIM on its regular server (see the module docstring)."""

    name: str
    kind: CompanionKind
    service: ServiceCommands
    colocated: bool = True

    @property
    def runs_on_standby(self) -> bool:
        """Whether the standby starts this companion when it runs the LIM."""
        return self.kind is CompanionKind.MEDIA_SERVER and self.colocated


@dataclass(frozen=True)
class LimConfig:
    """A LIM of the cluster: its regular server, its alias IP and its claim on the standby.

    ``service`` None means the reference Service Node commands (decided by the executor).
    """

    lim: int
    server: str
    alias_ip: ipaddress.IPv4Address
    prefix: int
    interface: str
    priority: int
    lock: Lock = Lock.NONE
    service: ServiceCommands | None = None
    companions: tuple[Companion, ...] = ()


