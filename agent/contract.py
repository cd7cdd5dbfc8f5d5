"""The contract between the maintenance tool and the agent, written once.

Everything both sides must agree on lives here and only here: the words of the node config
(roles, fallback, failover, locks), its format number, the limits of a cluster, the timer
presets, and the rules on names and addresses. The tool imports this module; the agent
imports nothing of the tool. The words are spelt as the files spell them (``system.toml``
on LIM 1 and ``node.json`` on each node), so a value read from either compares equal to
the member.

The system file's server role (``lim``/``standby``/``free``) is the tool's own word and is
not here: the tool maps it to :class:`Role` where it writes ``node.json``
(:mod:`mxone_maintenance.nodeconfig`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_HEARTBEAT_PORT", "FORMAT", "LIM_NUMBERS", "MAX_LIMS_PER_CLUSTER", "MISSES",
    "PRIORITIES", "RESERVED_INTERFACE_NAMES", "TIMER_INTERVAL", "TIMER_PRESETS",
    "FailoverBehaviour", "FallbackType", "Lock", "Role", "Timers", "alias_in_subnet",
    "interface_name_problem", "is_interface_name", "is_name", "subnet_of",
]

FORMAT = 1  # the node.json format this agent reads and the tool writes
MAX_LIMS_PER_CLUSTER = 10
LIM_NUMBERS = range(1, 125)  # the largest MX-ONE system has 124 LIMs
PRIORITIES = range(100)  # lower value = higher priority to run on the standby
DEFAULT_HEARTBEAT_PORT = 7011
TIMER_INTERVAL = (0.05, 60.0)  # seconds an operator may set between heartbeats
MISSES = range(2, 101)  # missed heartbeats an operator may set before a peer is dead

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
#: Names an interface must not have although they match the characters: ``.`` and ``..``
#: (path components) and ``all`` and ``default`` (the directories of /proc/sys/net/ipv4/conf
#: that set every interface and the interfaces created later; the agent writes one
#: interface's settings there). The lab's kernel (6.18) refuses all four as device names;
#: the rule does not count on every kernel doing so.
RESERVED_INTERFACE_NAMES = (".", "..", "all", "default")


class Role(StrEnum):
    """What a server is in its cluster."""

    REGULAR = "regular"  # a LIM server: its own LIM normally runs here
    STANDBY = "standby"  # takes over the LIM of a failed regular server


class FallbackType(StrEnum):
    """How a LIM that runs on the standby goes back to its recovered regular server."""

    # In the order the operator is offered them (the menu lists them so).
    AUTOMATIC = "automatic"  # as soon as the regular server is back and ready
    MANUAL = "manual"  # only when an operator orders it


class FailoverBehaviour(StrEnum):
    REGULAR = "regular"  # the standby starts the LIM when it takes over
    PRELOADED = "preloaded"  # the LIM is loaded on both; takeover only unblocks the alias


class Lock(StrEnum):
    """Where an operator pinned a LIM. A lock stops the cluster from moving the LIM."""

    NONE = "none"
    REGULAR = "regular"  # no failover: the standby never starts this LIM
    STANDBY = "standby"  # no fallback: the LIM never leaves (nor starts on) its regular server


@dataclass(frozen=True)
class Timers:
    """Heartbeat interval (seconds) and how many missed heartbeats make a peer dead."""

    interval: float
    misses: int

    @property
    def detection(self) -> float:
        """Seconds of silence after which a peer is declared dead: ``interval * misses``."""
        return self.interval * self.misses


# "mxone" follows the vendor: a preloaded cluster detects a failed server in 30 s, a regular
# cluster takes longer (60 s here). "fast" and "fastest" trade false alarms for speed and
# need a sound network (the seed: a shorter detection time raises the risk of false failover).
# "bfd" runs at the 50 ms x 3 of BFD in routers (0.15 s): the tool's rules allow it only with
# a warning of what it demands (mxone_maintenance.warning_rules, rule short-detection).
TIMER_PRESETS: Mapping[str, Mapping[FailoverBehaviour, Timers]] = {
    "mxone": {
        FailoverBehaviour.REGULAR: Timers(interval=5.0, misses=12),
        FailoverBehaviour.PRELOADED: Timers(interval=5.0, misses=6),
    },
    "fast": {b: Timers(interval=1.0, misses=3) for b in FailoverBehaviour},
    "fastest": {b: Timers(interval=0.1, misses=3) for b in FailoverBehaviour},
    "bfd": {b: Timers(interval=0.05, misses=3) for b in FailoverBehaviour},
}


def seconds(value: float, detection: float) -> str:
    """``value`` seconds as a sentence writes them, at a precision fit for a detection time
    of ``detection``: 0.15 at ``bfd`` (not 0.2), 3.0 at ``fast``."""
    return f"{value:.2f}" if detection < 1.0 else f"{value:.1f}"


def is_name(value: object) -> bool:
    """A server, cluster or user name: 1-63 letters, digits and -, not starting or ending with -."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def interface_name_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a Linux network interface name (1-15 of A-Z a-z 0-9
    _ . -, not one of :data:`RESERVED_INTERFACE_NAMES`); None when it is one. A VLAN
    interface (``eth0.100``, ``bond0.100``) is one."""
    if not isinstance(value, str) or _IFNAME.fullmatch(value) is None:
        return "not a network interface name (1-15 of A-Z a-z 0-9 _ . -)"
    if value in (".", ".."):
        return "not a network interface name: . and .. are path components, never a device"
    if value in RESERVED_INTERFACE_NAMES:
        which = "every interface" if value == "all" else "interfaces created later"
        return (f"not a network interface name: {value} is reserved, "
                f"/proc/sys/net/ipv4/conf/{value} holds the settings of {which}, not of one")
    return None


def is_interface_name(value: object) -> bool:
    """A Linux network interface name (see :func:`interface_name_problem`)."""
    return interface_name_problem(value) is None


def subnet_of(address: ipaddress.IPv4Address, prefix: int) -> ipaddress.IPv4Network:
    """The subnet ``address/prefix`` is on."""
    return ipaddress.IPv4Network(f"{address}/{prefix}", strict=False)


def alias_in_subnet(alias: ipaddress.IPv4Address, prefix: int, base: ipaddress.IPv4Network) -> bool:
    """The rule both sides apply to a LIM's alias: ``alias/prefix`` is its server's subnet.

    The tool gives the alias its server's prefix, so on LIM 1 this is "the alias is in the
    base subnet"; on a node it also refuses an alias written with another prefix.
    """
    return subnet_of(alias, prefix) == base
