"""The values of the system as LIM 1 knows it: servers, their roles, and the clusters.

Plain immutable data with no I/O and no rules. A value of these classes is not valid
merely by existing: a system read from a file may hold any value the file held (a
malformed address stays a string, a priority may be a float). :mod:`mxone_maintenance.rules`
checks these values; :class:`mxone_maintenance.model.System` is the system everyone
uses, these values plus :meth:`~mxone_maintenance.model.System.validated`. They live in
their own module so that the rules, which read them, need not import the model.
"""


from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Self

from mxone_agent import contract
from mxone_agent.contract import FailoverBehaviour, FallbackType, Lock


class Role(StrEnum):
    """What a server is in the system file (``system.toml``).

    The tool's own word: in a node's config a server is :class:`mxone_agent.contract.Role`
    ``regular`` (a ``lim`` server of the cluster) or ``standby``; the one place that maps
    the two is :func:`mxone_maintenance.nodeconfig.for_cluster`.
    """

    LIM = "lim"  # a regular server that runs one LIM (Service Node + media gateways)
    STANDBY = "standby"  # takes over a failed regular server's LIM
    FREE = "free"  # in the system, but neither of the above yet


# The words and limits shared with the agent live once, in its contract; the names below
# are the tool's spelling of them.
SplitBrainStop = contract.Role  # which side stops when a regular and the standby run one LIM
TIMER_PRESETS = tuple(contract.TIMER_PRESETS)
MAX_LIMS_PER_CLUSTER = contract.MAX_LIMS_PER_CLUSTER
MAX_LIM_NUMBER = contract.LIM_NUMBERS.stop - 1  # the largest MX-ONE system
PRIORITY_RANGE = contract.PRIORITIES


@dataclass(frozen=True)
class Timers:
    """Failure detection: a preset name, or an explicit heartbeat interval and miss count.

    Detection time is ``interval * misses``. With a preset, the numbers come from the
    agent's preset table (the ``mxone`` preset depends on the failover behaviour).
    """

    preset: str | None = "mxone"
    interval: float | None = None
    misses: int | None = None

    @classmethod
    def explicit(cls, interval: float, misses: int) -> Timers:
        return cls(preset=None, interval=interval, misses=misses)


@dataclass(frozen=True)
class Server:
    """A server in the system.

    ``base_ip`` is in interface notation (``10.0.2.11/24``): its normal address and the
    subnet it sits on. ``lim`` is the LIM number, set only for role ``lim``.
    """

    name: str
    base_ip: str
    interface: str = "eth0"
    role: str = Role.FREE
    lim: int | None = None

    def interface_address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.base_ip)

    @property
    def address(self) -> str:
        """The base address without prefix (valid servers only)."""
        return str(self.interface_address().ip)

    @property
    def prefix(self) -> int:
        return self.interface_address().network.prefixlen


@dataclass(frozen=True)
class ClusterLim:
    """A regular LIM in a cluster: its alias address and its claim on the standby.

    ``alias_ip`` is a plain address on the LIM server's base subnet; it moves to the
    standby on failover. A lower ``priority`` value means a higher priority to run on
    the standby when several regular servers have failed.
    """

    lim: int
    alias_ip: str
    priority: int = 1
    lock: str = Lock.NONE


@dataclass(frozen=True)
class Cluster:
    """Regular LIMs plus the standby server that can take over any one of them.

    ``standby`` is a tuple so that a file naming two standby servers can be read and
    refused with a clear message; a valid cluster has exactly one (see :attr:`standby_name`).
    """

    name: str
    standby: tuple[str, ...]
    lims: tuple[ClusterLim, ...]
    fallback: str = FallbackType.MANUAL
    failover: str = FailoverBehaviour.REGULAR
    timers: Timers = field(default_factory=Timers)
    split_brain_stop: str = SplitBrainStop.REGULAR

    @property
    def standby_name(self) -> str:
        return self.standby[0]

    def lim_numbers(self) -> tuple[int, ...]:
        return tuple(cl.lim for cl in self.lims)

    def cluster_lim(self, lim: int) -> ClusterLim:
        for cl in self.lims:
            if cl.lim == lim:
                return cl
        raise KeyError(f"LIM {lim} is not in cluster {self.name}")


@dataclass(frozen=True)
class SystemValues:
    """Every server known to LIM 1 and every cluster, at one config generation (the values;
    :class:`mxone_maintenance.model.System` adds the check of every rule).

    ``generation`` rises by one with every accepted change; agents report the generation
    they run, so a node that missed a change is visible.
    """

    generation: int = 1
    servers: tuple[Server, ...] = ()
    clusters: tuple[Cluster, ...] = ()

    def server(self, name: str) -> Server:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(f"no server named {name!r} in the system")

    def server_for_lim(self, lim: int) -> Server:
        for s in self.servers:
            if s.role == Role.LIM and s.lim == lim:
                return s
        raise KeyError(f"no LIM server with LIM number {lim} in the system")

    def cluster(self, name: str) -> Cluster:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(f"no cluster named {name!r} in the system")

    def cluster_of_server(self, name: str) -> Cluster | None:
        """The cluster a server belongs to (as regular or standby), or None."""
        server = self.server(name)
        for c in self.clusters:
            if name in c.standby or (server.lim is not None and server.lim in c.lim_numbers()):
                return c
        return None

    def cluster_servers(self, cluster: Cluster) -> Iterator[Server]:
        """The cluster's regular servers in LIM order, then its standby."""
        for cl in cluster.lims:
            yield self.server_for_lim(cl.lim)
        for name in cluster.standby:
            yield self.server(name)

    def next_generation(self, **changes: object) -> Self:
        """A copy with the given fields changed and the generation raised by one."""
        return dataclasses.replace(self, generation=self.generation + 1, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class NodeFacts:
    """What a node reports about its own disk, in bytes.

    ``free_data_bytes``: free space where exchange-data backups live.
    ``backup_bytes``: size of one data backup (system database data included).
    """

    free_data_bytes: int
    backup_bytes: int
