"""The network side effects of the agent, behind one ABC: :class:`NetworkBackend`.

* :class:`LinuxNetwork` - pyroute2 for addresses and the neighbour table, nftables for the
  blocked (preloaded, passive) alias, ARP frames sent and received on an AF_PACKET socket.

* :class:`RecordingNetwork` - records every call and keeps a model of the addresses,
  blocks, ARP answers and leases, for unit tests.

The ARP frames (42 bytes) are packed here with ``struct`` rather than built with scapy:
measured in the lab, importing ``scapy.layers.l2`` alone takes the agent from 40 MB to 87 MB
RSS (scapy.data loads the manufacturer DB, /etc/services and more at import), above the
64 MB budget, for two fixed frame layouts. scapy stays the tool of the tests, which check
these frames with it and inject forged heartbeats; the agent never imports it.

A backend never decides anything; the executor tells it what to do. Every method may raise
:class:`NetworkError` (an AgentError) with a message naming the address and the interface.

Blocking a preloaded alias follows the lab-measured recipe: the alias is on the interface,
and two per-LIM nftables tables (``arp mxone_block_limN`` and ``ip mxone_block_limN``) drop
ARP for it in and out and every IP packet to or from it. The service stays bound to it.
"""

from __future__ import annotations

import abc
import ipaddress
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from mxone_agent.arp import ETH_P_ARP, ArpProbe, garp_frame
from mxone_agent.errors import AgentError
from mxone_agent.lease import LeaseError, LeaseKernel, RecordingLeases
from mxone_agent.lease_nft import NftLeases
from mxone_agent.rtnl import AddressAdder

PROBE_WAIT = 0.25
"""Seconds an ARP probe waits for an answer before the address counts as free."""
NFT_TIMEOUT = 5.0


class NetworkError(AgentError):
    """A network operation failed; the message names the address and interface."""


def block_table(lim: int) -> str:
    """The nftables table name (in the arp and ip families) that blocks ``lim``'s alias."""
    return f"mxone_block_lim{lim}"


def block_ruleset(lim: int, alias: ipaddress.IPv4Address) -> str:
    """The nft script that blocks ``alias`` (ARP in/out, IP in/out) in LIM ``lim``'s tables."""
    t = block_table(lim)
    return (
        f"table arp {t} {{\n"
        f"  chain input {{ type filter hook input priority 0; arp daddr ip {alias} drop; }};\n"
        f"  chain output {{ type filter hook output priority 0; arp saddr ip {alias} drop; }};\n"
        "}\n"
        f"table ip {t} {{\n"
        f"  chain input {{ type filter hook input priority -300; ip daddr {alias} drop; }};\n"
        f"  chain output {{ type filter hook output priority -300; ip saddr {alias} drop; }};\n"
        "}\n")


class Probe(Protocol):
    """An ARP probe that goes on listening until it is closed: ``started`` (monotonic) is
    when its request went out; :meth:`wait` collects answers for up to ``seconds``;
    :meth:`answers` gives the MACs (lower case, this host's own left out) that answered
    since it started, or None when the kernel dropped frames meanwhile (the window is not
    whole: probe again)."""

    started: float

    def wait(self, seconds: float) -> None: ...

    def answers(self) -> set[str] | None: ...

    def close(self) -> None: ...


class NetworkBackend(abc.ABC):
    """What the executor needs of the network. Implementations keep no policy."""

    @abc.abstractmethod
    def has_alias(self, interface: str, alias: ipaddress.IPv4Address) -> bool:
        """True when ``alias`` is configured on ``interface``."""

    @abc.abstractmethod
    def add_alias(self, interface: str, alias: ipaddress.IPv4Address, prefix: int) -> None:
        """Put ``alias/prefix`` on ``interface`` (no error if it is already there)."""

    @abc.abstractmethod
    def remove_alias(self, interface: str, alias: ipaddress.IPv4Address, prefix: int) -> None:
        """Take ``alias`` off ``interface`` (no error if it is not there)."""

    @abc.abstractmethod
    def is_blocked(self, lim: int) -> bool:
        """True when LIM ``lim``'s alias is blocked here (its block tables exist)."""

    @abc.abstractmethod
    def block(self, lim: int, alias: ipaddress.IPv4Address) -> None:
        """Block ``alias`` in the kernel (idempotent)."""

    @abc.abstractmethod
    def unblock(self, lim: int) -> None:
        """Lift the block of LIM ``lim``'s alias (idempotent)."""

    @abc.abstractmethod
    def garp(self, interface: str, alias: ipaddress.IPv4Address, count: int) -> None:
        """Send ``count`` gratuitous ARP announcements of ``alias`` from ``interface``."""

    @abc.abstractmethod
    def probe(self, interface: str, alias: ipaddress.IPv4Address,
              wait: float = PROBE_WAIT) -> set[str]:
        """MACs (lower-case ``aa:bb:..``) of the hosts that answer an ARP probe for ``alias``
        within ``wait`` seconds; empty when nobody does."""

    @abc.abstractmethod
    def open_probe(self, interface: str, alias: ipaddress.IPv4Address) -> Probe:
        """Send an ARP probe for ``alias`` now and keep listening for answers until the
        returned probe is read and closed (:mod:`mxone_agent.early_probe`)."""

    @abc.abstractmethod
    def mac_of(self, interface: str) -> str:
        """The MAC of a local interface."""

    @abc.abstractmethod
    def neighbour_macs(self, interface: str) -> dict[str, str]:
        """IPv4 address -> MAC of the neighbour table entries of ``interface`` that have one."""

    @abc.abstractmethod
    def lease_kernel(self) -> LeaseKernel:
        """Where this backend keeps the self-fencing leases (:mod:`mxone_agent.lease`)."""

    def prepare(self, interface: str) -> None:
        """Open now what a takeover on ``interface`` needs (sockets, caches), so that it is
        not opened on the takeover's path. Optional."""

    def close(self) -> None:
        """Release sockets (idempotent)."""


# ---- recording backend (unit tests) -----------------------------------------------------

@dataclass
class RecordingNetwork(NetworkBackend):
    """A NetworkBackend that records calls and models state; never touches the system.

    ``answers`` maps an alias to the MACs that answer a probe for it; ``fail`` names
    methods that raise NetworkError.
    """

    local_mac: str = "02:00:00:00:00:01"
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    aliases: set[tuple[str, str]] = field(default_factory=set)
    blocked: dict[int, str] = field(default_factory=dict)
    answers: dict[str, set[str]] = field(default_factory=dict)
    neighbours: dict[str, str] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    leases: RecordingLeases = field(default_factory=RecordingLeases)

    def lease_kernel(self) -> LeaseKernel:
        return self.leases

    def _call(self, name: str, *args: object) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise NetworkError(f"{name} failed (recording backend told to fail)")

    def has_alias(self, interface: str, alias: ipaddress.IPv4Address) -> bool:
        return (interface, str(alias)) in self.aliases

    def add_alias(self, interface: str, alias: ipaddress.IPv4Address, prefix: int) -> None:
        self._call("add_alias", interface, str(alias), prefix)
        self.aliases.add((interface, str(alias)))

    def remove_alias(self, interface: str, alias: ipaddress.IPv4Address, prefix: int) -> None:
        self._call("remove_alias", interface, str(alias), prefix)
        self.aliases.discard((interface, str(alias)))

    def is_blocked(self, lim: int) -> bool:
        return lim in self.blocked

    def block(self, lim: int, alias: ipaddress.IPv4Address) -> None:
        self._call("block", lim, str(alias))
        self.blocked[lim] = str(alias)

    def unblock(self, lim: int) -> None:
        self._call("unblock", lim)
        self.blocked.pop(lim, None)

    def garp(self, interface: str, alias: ipaddress.IPv4Address, count: int) -> None:
        self._call("garp", interface, str(alias), count)

    def probe(self, interface: str, alias: ipaddress.IPv4Address,
              wait: float = PROBE_WAIT) -> set[str]:
        self._call("probe", interface, str(alias))
        return set(self.answers.get(str(alias), set()))

    def open_probe(self, interface: str, alias: ipaddress.IPv4Address) -> Probe:
        self._call("open_probe", interface, str(alias))
        return RecordingProbe(self, str(alias), time.monotonic())

    def mac_of(self, interface: str) -> str:
        return self.local_mac

    def neighbour_macs(self, interface: str) -> dict[str, str]:
        return dict(self.neighbours)

    def names(self) -> list[str]:
        """The names of the calls made, in order."""
        return [c[0] for c in self.calls]


@dataclass
class RecordingProbe:
    """A probe of :class:`RecordingNetwork`: its answers are the network's ``answers`` for
    the alias when read; ``dropped`` makes it report an incomplete window."""

    network: RecordingNetwork
    alias: str
    started: float
    dropped: bool = False
    closed: bool = False

    def wait(self, seconds: float) -> None:
        self.network.calls.append(("probe_wait", self.alias))

    def answers(self) -> set[str] | None:
        self.network.calls.append(("probe_read", self.alias))
        return None if self.dropped else set(self.network.answers.get(self.alias, set()))

    def close(self) -> None:
        self.closed = True


# ---- Linux backend ------------------------------------------------------------------------

class LinuxNetwork(NetworkBackend):
    """pyroute2 + nftables + ARP frames on an AF_PACKET socket."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute  # type: ignore[import-untyped]

        self._ipr = IPRoute()
        self._blocked: dict[int, bool] = {}  # what nft said or we did, to skip nft calls
        self._sockets: dict[str, socket.socket] = {}
        self._index: dict[str, int] = {}
        self._nl: NftLeases | None = None  # nf_tables over netlink, for the block tables
        self._adder = AddressAdder()
        # pyroute2's socket is not for two threads at once; a takeover on the loop and the
        # action worker may both touch the network (mxone_agent.executor.Executor.claim)
        self._ipr_lock = threading.Lock()
        self._sysfs: dict[str, bool] = {}  # interface -> its sysfs entry is this namespace's

    def lease_kernel(self) -> LeaseKernel:
        return NftLeases()

    def _netlink(self) -> NftLeases:
        if self._nl is None:
            self._nl = NftLeases()
        return self._nl

    def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None
        self._adder.close()
        for s in self._sockets.values():
            s.close()
        self._sockets.clear()
        try:
            self._ipr.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass

    def _ifindex(self, interface: str) -> int:
        if interface not in self._index:
            with self._ipr_lock:
                found = self._ipr.link_lookup(ifname=interface)
            if not found:
                raise NetworkError(f"interface {interface} does not exist on this host")
            self._index[interface] = found[0]
        return self._index[interface]

    def has_alias(self, interface: str, alias: ipaddress.IPv4Address) -> bool:
        idx = self._ifindex(interface)
        with self._ipr_lock:
            msgs = self._ipr.get_addr(family=socket.AF_INET, index=idx)
        for msg in msgs:
            if msg.get_attr("IFA_ADDRESS") == str(alias):
                return True
        return False

    def add_alias(self, interface: str, alias: ipaddress.IPv4Address, prefix: int) -> None:
        try:  # one rtnetlink message; an address already there is no error
            self._adder.add(self._ifindex(interface), alias, prefix)
        except OSError as e:
            raise NetworkError(f"cannot add alias {alias}/{prefix} on {interface}: "
                               f"{e.strerror or e}") from e

    def prepare(self, interface: str) -> None:
        # What a takeover on ``interface`` needs, opened now: its index, its MAC source,
        # the ARP socket, the rtnetlink socket.
        self._ifindex(interface)
        self.mac_of(interface)
        self._socket(interface)
        self._adder.open()

    def remove_alias(self, interface: str, alias: ipaddress.IPv4Address, prefix: int) -> None:
        if not self.has_alias(interface, alias):
            return
        try:
            index = self._ifindex(interface)
            with self._ipr_lock:
                self._ipr.addr("del", index=index, address=str(alias),
                           prefixlen=prefix)
        except Exception as e:
            raise NetworkError(f"cannot remove alias {alias} from {interface}: {e}") from e

    def _nft(self, args: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(["nft", *args], input=script, capture_output=True, text=True,
                                  timeout=NFT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NetworkError(f"nft {' '.join(args)} failed: {e}") from e

    def is_blocked(self, lim: int) -> bool:
        if lim not in self._blocked:
            self._blocked[lim] = self._nft(["list", "table", "arp", block_table(lim)]
                                           ).returncode == 0
        return self._blocked[lim]

    def block(self, lim: int, alias: ipaddress.IPv4Address) -> None:
        if self.is_blocked(lim):
            return
        r = self._nft(["-f", "-"], block_ruleset(lim, alias))
        if r.returncode != 0:
            raise NetworkError(f"cannot block alias {alias} with nftables: {r.stderr.strip()}")
        self._blocked[lim] = True

    def unblock(self, lim: int) -> None:
        # Only this agent makes these tables (and an operator's `nft flush ruleset` only
        # removes them), so a LIM known to be unblocked needs no nft call: that saves two
        # process starts on the takeover path.
        if not self.is_blocked(lim):
            return
        # Over netlink, not `nft delete table`: no process start when a preloaded LIM is
        # activated on the takeover path.
        for family in ("arp", "ip"):
            try:
                self._netlink().delete_table(family, block_table(lim))
            except LeaseError as e:
                raise NetworkError(str(e)) from e
        self._blocked[lim] = False

    def _socket(self, interface: str) -> socket.socket:
        s = self._sockets.get(interface)
        if s is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            s.bind((interface, ETH_P_ARP))
            s.setblocking(False)
            self._sockets[interface] = s
        return s

    def mac_of(self, interface: str) -> str:
        # sysfs is read each time (a bond's MAC may change), when this process's sysfs shows
        # this network namespace's interface (same index as netlink's); else netlink.
        sysfs = self._sysfs.get(interface)
        if sysfs is None:
            try:
                with open(f"/sys/class/net/{interface}/ifindex", encoding="ascii") as f:
                    sysfs = int(f.read()) == self._ifindex(interface)
            except (OSError, ValueError):
                sysfs = False
            self._sysfs[interface] = sysfs
        if sysfs:
            try:
                with open(f"/sys/class/net/{interface}/address", encoding="ascii") as f:
                    return f.read().strip().lower()
            except OSError:
                pass
        index = self._ifindex(interface)
        with self._ipr_lock:
            links = self._ipr.get_links(index)
        return str(links[0].get_attr("IFLA_ADDRESS")).lower()

    def garp(self, interface: str, alias: ipaddress.IPv4Address, count: int) -> None:
        frame = garp_frame(self.mac_of(interface), str(alias))
        s = self._socket(interface)
        try:
            for _ in range(count):
                s.send(frame)
        except OSError as e:
            raise NetworkError(f"cannot send gratuitous ARP for {alias} on {interface}: "
                               f"{e.strerror}") from e

    def probe(self, interface: str, alias: ipaddress.IPv4Address,
              wait: float = PROBE_WAIT) -> set[str]:
        for _ in range(2):  # frames dropped while it listened: listen once more
            p = self.open_probe(interface, alias)
            try:
                p.wait(wait)
                found = p.answers()
            finally:
                p.close()
            if found is not None:
                return found
        raise NetworkError(f"the ARP probe for {alias} on {interface} lost frames in the "
                           "kernel twice: whether a foreign host answers is unknown")

    def open_probe(self, interface: str, alias: ipaddress.IPv4Address) -> Probe:
        try:
            return ArpProbe(interface, alias, self.mac_of(interface))
        except OSError as e:
            raise NetworkError(f"cannot send an ARP probe for {alias} on {interface}: "
                               f"{e.strerror or e}") from e

    def neighbour_macs(self, interface: str) -> dict[str, str]:
        out: dict[str, str] = {}
        index = self._ifindex(interface)
        with self._ipr_lock:
            found = self._ipr.get_neighbours(family=socket.AF_INET, ifindex=index)
        for n in found:
            ip, ll = n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")
            if ip and ll:
                out[ip] = str(ll).lower()
        return out


def rss_kb(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process) in kB, from /proc."""
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
