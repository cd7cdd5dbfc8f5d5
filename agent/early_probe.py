"""Early ARP probes: a takeover's foreign-owner check, begun before the peer is dead.

Before a node takes an alias it asks, with an ARP probe, whether a host outside the cluster
answers for it (:meth:`mxone_agent.executor.Executor._foreign`); the probe listens for
``probe_wait`` (at least 50 ms). Waiting for it after the peer is declared dead puts that
wait on every takeover's path. So the loop opens the probe *before*: once a peer that runs
LIMs this node may take has been silent for ``detection - lead`` (``lead`` = the probe's
wait plus half an interval), a probe of each such alias goes out and its socket keeps every
answer (:class:`mxone_agent.network.Probe`). The takeover then reads everything heard from
the probe's start up to that moment: a window at least as long as the wait and reaching up
to the decision, as safe as a probe of its own (an answer from foreign equipment at any
moment of it still stops the takeover). A probe younger than the wait is waited for; one
that lost frames in the kernel, or older than :data:`MAX_AGE`, is not used (a fresh probe is
made inline, as without this module).

A peer heard again closes its probes at the next tick. Every probe is closed after
MAX_AGE, and not opened again for that peer until it is heard again: a peer that stays dead
without a takeover (a lock, a hold-down) costs one probe.

The loop opens and closes probes; the action worker takes them (:meth:`EarlyProbes.take`):
one lock keeps each probe in one thread's hands.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Collection, Mapping

from mxone_agent.config import LimConfig, NodeConfig
from mxone_agent.errors import AgentError
from mxone_agent.network import NetworkBackend, Probe
from mxone_agent.peers import PeerView

MAX_AGE = 2.0
"""Seconds after which an early probe is closed unused (its socket's buffer is bounded)."""

Key = tuple[str, ipaddress.IPv4Address]  # (interface, alias)


def probe_wait(config: NodeConfig) -> float:
    """How long the ARP probe before a takeover waits for an answer: a sixth of the
    detection time, from 50 to 250 ms (a LAN answers within a few ms)."""
    return min(0.25, max(0.05, config.detection / 6))


def lead(config: NodeConfig) -> float:
    """How long before a silent peer's death its aliases are probed."""
    return probe_wait(config) + config.timers.interval / 2


class EarlyProbes:
    """The open early probes of one node, by (interface, alias)."""

    def __init__(self, network: NetworkBackend) -> None:
        self._network = network
        # Closing an AF_PACKET socket waits for an RCU grace period in the kernel (10-20 ms
        # measured): off the loop and off the takeover's path, on whatever dispose_with gave
        # (the daemon: the action worker, after the takeover's job). By default: at once.
        self._dispose: Callable[[list[Probe]], None] = close_all
        self._lock = threading.Lock()
        self._open: dict[Key, tuple[str, Probe]] = {}  # key -> (peer, probe)
        self._spent: set[tuple[str, Key]] = set()  # aged out; not again until heard again
        self.opened = 0  # how many were opened since start, for status
        self.used = 0  # how many a takeover used

    def dispose_with(self, dispose: Callable[[list[Probe]], None]) -> None:
        """Where the probes done with are closed from now on."""
        self._dispose = dispose

    def dispose(self, *probes: Probe) -> None:
        """Close ``probes`` (a takeover read them) where closing costs nothing to wait for."""
        if probes:
            self._dispose(list(probes))

    def upkeep(self, now: float, config: NodeConfig, peers: Mapping[str, PeerView],
               resumed: float, guarded: Collection[LimConfig], interface: Callable[[LimConfig], str],
               here: Collection[int]) -> float:
        """Open the probes now due, close those no longer wanted; returns when the next
        one falls due (monotonic; inf: none). ``guarded``: the LIMs this node may hold;
        ``here``: the LIMs active here; ``resumed``: the loop's resume time (silence is
        counted from it)."""
        ahead = lead(config)
        by_lim = {x.lim: x for x in guarded}
        wanted: dict[Key, str] = {}
        due = float("inf")
        for name, view in peers.items():
            hb = view.heartbeat
            if hb is None or view.last_heard is None:
                continue
            lims = [by_lim[r.lim] for r in hb.lims
                    if r.active and r.lim in by_lim and r.lim not in here]
            if not lims:
                continue
            starts = max(view.last_heard, resumed) + config.detection - ahead
            if now < starts:
                due = min(due, starts)
                continue
            for x in lims:
                wanted[(interface(x), x.alias_ip)] = name
        closing: list[Probe] = []
        with self._lock:
            for key, (peer, probe) in list(self._open.items()):
                if wanted.get(key) != peer or now - probe.started > MAX_AGE:
                    del self._open[key]
                    closing.append(probe)
                    if wanted.get(key) == peer:
                        self._spent.add((peer, key))
            self._spent = {(p, k) for p, k in self._spent if wanted.get(k) == p}
            for key, peer in wanted.items():
                if key in self._open or (peer, key) in self._spent:
                    continue
                try:
                    self._open[key] = (peer, self._network.open_probe(*key))
                    self.opened += 1
                except AgentError:
                    pass  # the takeover probes inline, and says what failed
        self.dispose(*closing)
        return due

    def ready(self, interface: str, alias: ipaddress.IPv4Address, wait: float) -> bool:
        """True when an open probe of ``alias`` has listened for ``wait`` seconds (and is
        not too old to use): reading it needs no waiting."""
        with self._lock:
            found = self._open.get((interface, alias))
        age = None if found is None else time.monotonic() - found[1].started
        return age is not None and wait <= age <= MAX_AGE

    def take(self, interface: str, alias: ipaddress.IPv4Address) -> Probe | None:
        """The open probe of ``alias`` on ``interface``, now the caller's (it closes it);
        None when there is none or it is too old to use."""
        with self._lock:
            found = self._open.pop((interface, alias), None)
        if found is None:
            return None
        probe = found[1]
        if time.monotonic() - probe.started > MAX_AGE:
            self.dispose(probe)
            return None
        self.used += 1
        return probe

    def close(self) -> None:
        with self._lock:
            probes = [p for _, p in self._open.values()]
            self._open.clear()
        for p in probes:
            p.close()


def close_all(probes: list[Probe]) -> None:
    """Close each of ``probes``."""
    for p in probes:
        p.close()
