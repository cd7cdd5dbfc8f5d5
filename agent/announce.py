"""Gratuitous ARP after a takeover's first burst: a second burst ``garp.second_burst_after``
seconds later, refreshes every ``garp.refresh_interval``, and a burst at once when a split
brain is over (:meth:`Announcements.claims_ended`). The executor sends the first burst
itself (:mod:`mxone_agent.executor`); the loop asks for the rest on the action worker.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection
from dataclasses import dataclass

from mxone_agent.config import LimConfig, NodeConfig
from mxone_agent.network import NetworkBackend, NetworkError


@dataclass
class _Announce:
    interface: str
    alias: ipaddress.IPv4Address
    second_at: float | None
    refresh_at: float | None


class Announcements:
    """The announcements due for the LIMs active here (by LIM number)."""

    def __init__(self, network: NetworkBackend, mono: Callable[[], float]) -> None:
        self.network = network
        self._mono = mono
        self._due: dict[int, _Announce] = {}

    def schedule(self, config: NodeConfig, lim: LimConfig, iface: str) -> None:
        """``lim``'s first burst just went out on ``iface``: its second and refreshes follow."""
        now = self._mono()
        g = config.garp
        self._due[lim.lim] = _Announce(
            iface, lim.alias_ip, now + g.second_burst_after,
            None if g.refresh_interval is None else now + g.refresh_interval)

    def next(self) -> float | None:
        """Monotonic time of the next due announcement, or None."""
        times = [t for a in self._due.values() for t in (a.second_at, a.refresh_at)
                 if t is not None]
        return min(times) if times else None

    def due(self, config: NodeConfig) -> int:
        """Send the second bursts and refreshes that are due; returns how many bursts."""
        now = self._mono()
        sent = 0
        for n, a in list(self._due.items()):
            due = False
            if a.second_at is not None and now >= a.second_at:
                a.second_at, due = None, True
            if a.refresh_at is not None and now >= a.refresh_at:
                a.refresh_at = now + (config.garp.refresh_interval or 0)
                if config.garp.refresh_interval is None:
                    a.refresh_at = None
                due = True
            if due:
                sent += self._burst(config, a)
        return sent

    def _burst(self, config: NodeConfig, a: _Announce) -> int:
        """One burst for ``a``: 1 when sent, 0 when the network refused it (the next
        announcement tries again)."""
        try:
            self.network.garp(a.interface, a.alias, config.garp.burst)
            return 1
        except NetworkError:
            return 0

    def claims_ended(self, config: NodeConfig, lims: Collection[int]) -> int:
        """No other server may answer for these LIMs any more, which answer here (a split
        brain is over, or their regular server is heard again): its copy may have pointed
        neighbours at itself (its own gratuitous ARP, its ARP replies), so each alias is
        announced again at once, a second burst following. Returns how many bursts were
        sent."""
        now = self._mono()
        sent = 0
        for n in sorted(lims):
            a = self._due.get(n)
            if a is None:
                continue  # no longer up here
            a.second_at = now + config.garp.second_burst_after
            sent += self._burst(config, a)
        return sent

    def forget(self, lim: int) -> None:
        """No more announcements of ``lim`` here."""
        self._due.pop(lim, None)
