"""The network redundancy under a server's cluster interface, read from sysfs.

MX-ONE recommends Ethernet bonding under server redundancy: a bond (``bond0``) of two
ports on two switches, often with a VLAN on top (``bond0.100``). When the cluster
interface is a bond, or a VLAN over one, :func:`read_network` reads the bond's state as
the bonding driver publishes it (``Documentation/networking/bonding.rst``, "Configuring
Bonding Manually via Sysfs"):

=====================================  ===================================================
``<bond>/bonding/mode``                the mode's name and number: ``active-backup 1``
``<bond>/bonding/mii_status``          ``up`` or ``down`` (the bond's carrier)
``<bond>/bonding/active_slave``        the slave carrying the traffic; empty in the modes
                                       without one (802.3ad, balance-rr, ...)
``<bond>/bonding/slaves``              the slaves, separated by spaces; empty with none
``<bond>/bonding/ad_aggregator``       802.3ad: the active aggregator's id
``<slave>/bonding_slave/mii_status``   ``up``, ``going down``, ``down``, ``going back``
``<slave>/bonding_slave/link_failure_count``  link failures since the slave joined
``<slave>/bonding_slave/state``        ``active`` or ``backup``
``<slave>/bonding_slave/ad_aggregator_id``   802.3ad: the slave's aggregator (else N/A)
=====================================  ===================================================

A slave's directory is read at ``<root>/<slave>`` or, where only the bond's view exists,
``<root>/<bond>/lower_<slave>``. A file that is missing or says something unexpected reads
as "unknown" (a count as None): status shows what it cannot read and never fails for it.
Nothing here raises for an odd tree; nothing is logged (status is built every half second).

The reader takes the root (default ``/sys/class/net``) so tests run it against recorded
trees (``tests/agent/data/bonding/``).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from mxone_agent import contract

SYSFS_NET = "/sys/class/net"
UNKNOWN = "unknown"
_WORD = re.compile(r"[A-Za-z0-9_.:@ -]{1,40}")


@dataclass(frozen=True)
class Slave:
    """One port of a bond: ``mii_status`` up, down, going down, going back or unknown."""

    name: str
    mii_status: str = UNKNOWN
    link_failures: int | None = None
    state: str = UNKNOWN  # active, backup
    aggregator: int | None = None  # 802.3ad only

    @property
    def up(self) -> bool:
        return self.mii_status == "up"


@dataclass(frozen=True)
class Bond:
    """A bond as its driver shows it in sysfs. ``mode`` is the name (``active-backup``)."""

    name: str
    mode: str = UNKNOWN
    mii_status: str = UNKNOWN
    active_slave: str | None = None
    slaves: tuple[Slave, ...] = ()
    aggregator: int | None = None  # 802.3ad: the active aggregator

    def degraded(self) -> list[str]:
        """Why the network redundancy under this bond is not whole, one sentence each;
        empty when every slave is up (and, in 802.3ad, in the active aggregator)."""
        if self.mii_status == "down":
            return [f"{self.name} is down: no slave carries traffic"]
        if not self.slaves:
            return [f"{self.name} has no slaves"]
        out = []
        for s in self.slaves:
            if not s.up:
                failures = "" if s.link_failures is None else f", {_failures(s.link_failures)}"
                out.append(f"{self.name}: slave {s.name} is {s.mii_status}{failures}")
            elif (self.mode == "802.3ad" and self.aggregator is not None
                  and s.aggregator is not None and s.aggregator != self.aggregator):
                out.append(f"{self.name}: slave {s.name} is up but not in the active "
                           f"802.3ad aggregator ({s.aggregator}, active {self.aggregator}): "
                           "check the switch's LACP setup")
        if len(self.slaves) == 1:
            out.append(f"{self.name} has one slave ({self.slaves[0].name}): no redundancy")
        return out

    def as_status(self) -> dict[str, Any]:
        return {**asdict(self), "slaves": [asdict(s) for s in self.slaves],
                "degraded": self.degraded()}


def _failures(n: int) -> str:
    return f"{n} link failure" + ("" if n == 1 else "s")


def _read(path: str) -> str | None:
    """The file's text, stripped; None when it cannot be read (or is not small text)."""
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
        return data.decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _word(path: str) -> str:
    text = _read(path)
    return text if text is not None and _WORD.fullmatch(text) else UNKNOWN


def _count(path: str) -> int | None:
    text = _read(path)
    return int(text) if text is not None and text.isdigit() else None


def _slave_dir(root: str, bond: str, slave: str) -> str:
    for d in (os.path.join(root, slave, "bonding_slave"),
              os.path.join(root, bond, f"lower_{slave}", "bonding_slave")):
        if os.path.isdir(d):
            return d
    return os.path.join(root, slave, "bonding_slave")


def is_bond(interface: str, root: str = SYSFS_NET) -> bool:
    """True when ``interface`` is a bond master (its ``bonding/`` directory exists)."""
    return contract.is_interface_name(interface) and \
        os.path.isdir(os.path.join(root, interface, "bonding"))


def read_bond(interface: str, root: str = SYSFS_NET) -> Bond | None:
    """The bond ``interface`` as sysfs shows it; None when it is not a bond."""
    if not is_bond(interface, root):
        return None
    b = os.path.join(root, interface, "bonding")
    mode = _word(os.path.join(b, "mode")).split(" ")[0]  # "active-backup 1"
    names = (_read(os.path.join(b, "slaves")) or "").split()
    slaves = []
    for name in names:
        if not contract.is_interface_name(name):
            continue
        d = _slave_dir(root, interface, name)
        slaves.append(Slave(name, _word(os.path.join(d, "mii_status")),
                            _count(os.path.join(d, "link_failure_count")),
                            _word(os.path.join(d, "state")),
                            _count(os.path.join(d, "ad_aggregator_id"))))
    active = _read(os.path.join(b, "active_slave"))
    return Bond(interface, mode, _word(os.path.join(b, "mii_status")),
                active if contract.is_interface_name(active) else None, tuple(slaves),
                _count(os.path.join(b, "ad_aggregator")))


def lower_devices(interface: str, root: str = SYSFS_NET) -> list[str]:
    """The devices ``interface`` sits on (a VLAN's parent), from its ``lower_*`` entries."""
    try:
        entries = os.listdir(os.path.join(root, interface))
    except OSError:
        return []
    return sorted(e[len("lower_"):] for e in entries
                  if e.startswith("lower_") and contract.is_interface_name(e[len("lower_"):]))


def read_network(interface: str, root: str = SYSFS_NET) -> dict[str, Any]:
    """What status shows of the cluster interface: ``interface``, ``over`` (the device a
    VLAN sits on, else None) and ``bond`` (:meth:`Bond.as_status` of the bond that is the
    interface or that it sits on, else None). Never raises."""
    try:
        bond = read_bond(interface, root)
        over = None
        if bond is None:
            lower = lower_devices(interface, root)
            if len(lower) == 1:
                over = lower[0]
                bond = read_bond(over, root)
    except (OSError, ValueError):  # a tree changing under the reader
        return {"interface": interface, "over": None, "bond": None}
    return {"interface": interface, "over": over,
            "bond": None if bond is None else bond.as_status()}
