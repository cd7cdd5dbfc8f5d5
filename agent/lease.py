"""Self-fencing: an alias answers only while this node's agent keeps renewing its lease.

A node whose agent is dead (kill -9, OOM, a bad upgrade) or frozen (SIGSTOP, a swap storm,
a paused VM) cannot remove the kernel addresses it holds, and its peers take the LIM over
once it has been silent for the detection time. Without a fence both would then answer
for the alias. So every alias this node may hold is *guarded* in the kernel, and a guarded
alias passes traffic only while it is *leased*: a set element with a timeout that the
kernel itself lets expire. The agent's loop renews the lease of every alias it owns at each
heartbeat tick, right before it sends the heartbeat; the lease is shorter than the
detection time (:func:`lease_seconds`), so by the time a peer may declare this node dead
its aliases have stopped answering, by the kernel's own clock.

Measured on this kernel (6.18) in the lab: an IPv4 address lifetime (``valid_lft``) of 2 s
ended 2.10-2.12 s after it was set (whole seconds only, 1 s at least), far too coarse for
the ``fastest`` preset (0.3 s detection). An nftables set element with a 250 ms timeout
stopped a client's 10 ms pings 237-250 ms after its last renewal, and a renewal over
netlink costs about 50 us. So leases are nftables set elements, renewed over netlink.

The kernel is the referee. A renewal is one nf_tables transaction "delete the element,
add it again with a fresh timeout": when the element has expired the delete fails with
ENOENT and the whole transaction is void, so an agent that wakes up from a stall can never
extend a lease that already lapsed, however late its renewal arrives. A lapsed lease
is given back only by a decision (the node owns the LIM again): :meth:`Fence.grant`.

The nftables layout (families ``arp`` and ``ip``, table ``mxone_lease`` in each)::

    set guarded { type ipv4_addr; }                 the aliases this node may hold
    set leased  { type ipv4_addr; flags timeout; }  those it may answer for right now
    arp input:  arp daddr ip @guarded arp daddr ip != @leased drop   (no ARP replies)
    arp output: arp saddr ip @guarded arp saddr ip != @leased drop
    ip prerouting (raw): ip daddr @guarded ip daddr != @leased drop  (no traffic in)
    ip output (raw):     ip saddr @guarded ip saddr != @leased drop  (nor out)

Only traffic *to* and *from* a guarded alias as this node's own address is dropped: this
node still reaches a peer's alias (the source is its base address). The preloaded block
(:mod:`mxone_agent.network`) is separate and permanent until activation; a lease adds a
dead man's switch on top of it.

The kernel side over netlink is :class:`mxone_agent.lease_nft.NftLeases`; this module holds
the :class:`LeaseKernel` contract, a model of it for unit tests and the :class:`Fence`.
"""

from __future__ import annotations

import abc
import ipaddress
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mxone_agent.config import Timers
from mxone_agent.errors import AgentError

TABLE = "mxone_lease"
GUARDED = "guarded"
LEASED = "leased"
NFT_TIMEOUT = 5.0


class LeaseError(AgentError):
    """The kernel refused a lease operation; the message names the alias and why."""


def lease_seconds(timers: Timers) -> float:
    """How long a lease lasts: the detection time minus half a heartbeat interval.

    The lease is renewed right before each heartbeat goes out, so it ends at most this long
    after the last heartbeat this node sent; a peer declares the node dead no earlier than
    the detection time after it *received* that heartbeat. Half an interval is the margin
    (0.25 s for the 0.3 s ``fastest`` preset, 0.125 s for the 0.15 s of ``bfd``, 2.5 s for
    ``fast``); a renewal may come up to 1.5 intervals late before a healthy node loses its
    lease.
    """
    return timers.detection - timers.interval / 2


def ruleset(guarded: Iterable[ipaddress.IPv4Address | str]) -> str:
    """The nft script that creates (or repairs) the fence and sets the guarded aliases.

    Idempotent and atomic (one ``nft -f`` transaction); it never touches the leased sets,
    so a running lease survives a repair or a config reload.
    """
    elements = ", ".join(sorted(str(ipaddress.IPv4Address(str(a))) for a in guarded))
    lines = []
    for family, hooks in (("arp", (("input", "input", "-10", "arp daddr ip"),
                                   ("output", "output", "-10", "arp saddr ip"))),
                          ("ip", (("input", "prerouting", "-300", "ip daddr"),
                                  ("output", "output", "-300", "ip saddr")))):
        t = f"{family} {TABLE}"
        lines += [f"add table {t}",
                  f"add set {t} {GUARDED} {{ type ipv4_addr; }}",
                  f"add set {t} {LEASED} {{ type ipv4_addr; flags timeout; }}"]
        for chain, hook, prio, match in hooks:
            lines += [f"add chain {t} {chain} {{ type filter hook {hook} priority {prio}; }}",
                      f"flush chain {t} {chain}",
                      f"add rule {t} {chain} {match} @{GUARDED} {match} != @{LEASED} drop"]
        lines.append(f"flush set {t} {GUARDED}")
        if elements:
            lines.append(f"add element {t} {GUARDED} {{ {elements} }}")
    return "\n".join(lines) + "\n"


class LeaseKernel(abc.ABC):
    """What the fence needs of the kernel. Every method may raise LeaseError."""

    @abc.abstractmethod
    def setup(self, guarded: set[str]) -> bool:
        """Create or repair the fence; guard exactly ``guarded`` (leases are kept). True
        when a fence was already there."""

    @abc.abstractmethod
    def grant(self, alias: str, ms: int) -> None:
        """Lease ``alias`` for ``ms`` milliseconds from now, whether or not it was leased."""

    @abc.abstractmethod
    def renew(self, alias: str, ms: int) -> bool:
        """Extend a lease that is still running to ``ms`` from now; False (and nothing
        changed) when it has already lapsed."""

    @abc.abstractmethod
    def revoke(self, alias: str) -> None:
        """End the lease of ``alias`` now (no error when there is none)."""

    @abc.abstractmethod
    def remaining(self, alias: str) -> float | None:
        """Seconds left on the lease of ``alias``; None when it is not leased."""

    @abc.abstractmethod
    def release(self) -> None:
        """Remove the fence altogether: every alias answers as a plain address again."""

    def close(self) -> None:
        """Release sockets (idempotent)."""


# ---- a model for unit tests -----------------------------------------------------------------

@dataclass
class RecordingLeases(LeaseKernel):
    """A LeaseKernel that models leases on an injected clock and records every call."""

    clock: Callable[[], float] = time.monotonic
    guarded: set[str] = field(default_factory=set)
    expiry: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)
    released: bool = False
    present: bool = False  # the fence tables exist (set up and not released)

    def _call(self, name: str, *args: object) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise LeaseError(f"{name} failed (recording lease kernel told to fail)")

    def leased(self, alias: str) -> bool:
        """True when ``alias`` would pass traffic now (guarded and leased, or unguarded)."""
        t = self.expiry.get(alias)
        return alias not in self.guarded or (t is not None and self.clock() < t)

    def setup(self, guarded: set[str]) -> bool:
        self._call("setup", sorted(guarded))
        existed, self.present, self.released = self.present, True, False
        self.guarded = set(guarded)
        return existed

    def grant(self, alias: str, ms: int) -> None:
        self._call("grant", alias, ms)
        self.expiry[alias] = self.clock() + ms / 1000

    def renew(self, alias: str, ms: int) -> bool:
        self._call("renew", alias, ms)
        t = self.expiry.get(alias)
        if t is None or self.clock() >= t:
            self.expiry.pop(alias, None)
            return False
        self.expiry[alias] = self.clock() + ms / 1000
        return True

    def revoke(self, alias: str) -> None:
        self._call("revoke", alias)
        self.expiry.pop(alias, None)

    def remaining(self, alias: str) -> float | None:
        t = self.expiry.get(alias)
        left = None if t is None else t - self.clock()
        return left if left is not None and left > 0 else None

    def release(self) -> None:
        self._call("release")
        self.guarded.clear()
        self.expiry.clear()
        self.released, self.present = True, False


# ---- the fence --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lapse:
    """A lease found lapsed at a renewal: the alias, and how long it went unrenewed."""

    alias: str
    unrenewed_for: float


class Fence:
    """The leases this node holds. Shared by the loop (:meth:`renew_all`, each tick) and the
    action worker (:meth:`grant`, :meth:`revoke` while it starts and stops LIMs); every
    method holds one lock. ``lease`` is the lease length in seconds (set from the timers)."""

    def __init__(self, kernel: LeaseKernel, lease: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kernel = kernel
        self.lease = lease
        self._clock = clock
        self._lock = threading.RLock()
        self._renewed: dict[str, float] = {}  # alias -> when its lease was last granted/renewed
        self._guarded: set[str] = set()

    @property
    def _ms(self) -> int:
        return max(1, int(self.lease * 1000))

    def setup(self, guarded: Iterable[ipaddress.IPv4Address | str]) -> bool:
        """Guard ``guarded`` (and every alias leased now): creates or repairs the fence.
        True when a fence was already there (False: every alias answered unfenced until
        now - a node that just joined a cluster, or a reboot)."""
        with self._lock:
            self._guarded = {str(a) for a in guarded} | set(self._renewed)
            return self.kernel.setup(set(self._guarded))

    def adopt(self, alias: ipaddress.IPv4Address | str) -> float | None:
        """At start: take over the lease an earlier agent left on ``alias`` if it still
        runs (seconds left), else None - the alias then stays silent until :meth:`grant`."""
        a = str(alias)
        with self._lock:
            left = self.kernel.remaining(a)
            if left is not None:
                self._renewed[a] = self._clock() - max(0.0, self.lease - left)
            return left

    def grant(self, alias: ipaddress.IPv4Address | str) -> None:
        """Lease ``alias`` now (this node owns it by decision); repairs a missing fence."""
        a = str(alias)
        with self._lock:
            try:
                self.kernel.grant(a, self._ms)
            except LeaseError:
                self.kernel.setup(self._guarded | {a})
                self.kernel.grant(a, self._ms)
            self._renewed[a] = self._clock()

    def revoke(self, alias: ipaddress.IPv4Address | str) -> None:
        """Stop answering for ``alias`` now."""
        a = str(alias)
        with self._lock:
            self._renewed.pop(a, None)
            self.kernel.revoke(a)

    def forget(self, alias: ipaddress.IPv4Address | str) -> None:
        """Stop renewing ``alias`` without touching the kernel (it lapses on its own)."""
        with self._lock:
            self._renewed.pop(str(alias), None)

    def renew_all(self) -> list[Lapse]:
        """Renew every held lease; the ones that had lapsed are dropped and returned."""
        lapsed = []
        with self._lock:
            now = self._clock()
            for a, at in list(self._renewed.items()):
                if self.kernel.renew(a, self._ms):
                    self._renewed[a] = now
                else:
                    del self._renewed[a]
                    lapsed.append(Lapse(a, now - at))
        return lapsed

    def holds(self, alias: ipaddress.IPv4Address | str) -> bool:
        """True while this node's lease on ``alias`` runs (as far as the last renewal knew)."""
        with self._lock:
            return str(alias) in self._renewed

    def held(self) -> dict[str, float]:
        """Alias -> seconds since its lease was last renewed."""
        with self._lock:
            now = self._clock()
            return {a: now - t for a, t in self._renewed.items()}

    def release(self) -> None:
        """Remove the fence (the node leaves its cluster)."""
        with self._lock:
            self._renewed.clear()
            self.kernel.release()

    def close(self) -> None:
        self.kernel.close()
