"""The heartbeat link: this node's UDP socket to its peers, what it hears of each of them,
and their liveness.

:meth:`HeartbeatLink.send` sends one heartbeat to every peer's base IP, echoing that peer's
incarnation (the loop sends HEARTBEAT_COPIES of them back to back each tick).
:meth:`HeartbeatLink.receive` reads at most DATAGRAMS_PER_TURN datagrams per loop turn; a
datagram from an address that is no peer's is refused before any HMAC is computed, and
every refusal is counted by reason (``drops``), and per peer (``refused``; the peer ``""``:
an address that is no peer's). :meth:`HeartbeatLink.judge` judges every peer at a moment of
local running time counted from ``resumed`` (the late-wakeup rule of
:mod:`mxone_agent.peers`).

The link tells the loop what matters to a decision through the callbacks it is given: a
heartbeat that changes what a peer runs or says, or brings a peer back (``on_news``), and a
regular server that reappeared (``on_back``, for the fallback hold-down).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable

from mxone_agent import heartbeat as hbmod
from mxone_agent import journal
from mxone_agent.config import NodeConfig
from mxone_agent.model import LimRun, Readiness
from mxone_agent.node_files import StartupError
from mxone_agent.peers import PeerView, reappeared

log = logging.getLogger("mxone_agent")

HEARTBEAT_COPIES = 5
NEAR_MISS = 2 / 3
"""A peer silent for longer than this share of the detection time, then heard, was a near
miss (status counts them per peer): how close a link comes to a false failover."""
"""Datagrams sent per heartbeat interval to each peer, back to back (see Agent._tick)."""
DATAGRAMS_PER_TURN = 256
"""At most this many datagrams are read per loop turn: a flood cannot keep the loop from
renewing its leases and sending its own heartbeats (the rest waits in the socket)."""


class HeartbeatLink:
    """The peers of one node as its heartbeats see them (``peers``, judged; ``guards``, the
    replay guard per peer; ``drops``, refusals by reason; ``longest_silence``) and the
    counters of each peer for metrics: heartbeats accepted (``received``), lost (``lost``:
    gaps in the sender's sequence numbers within one incarnation of it - it numbers the
    heartbeats to all its peers in turn, so a gap counts ``gap / number of peers - 1`` -
    discarded ones after a stall of this loop included), refused by reason (``refused``),
    times declared dead (``deaths``) and how long it was silent then (``silent_at_death``:
    the detection time)."""

    def __init__(self, config: Callable[[], NodeConfig], secret: Callable[[], bytes],
                 on_news: Callable[[], None], on_back: Callable[[str, float], None]) -> None:
        self._config = config
        self._secret = secret
        self._on_news = on_news
        self._on_back = on_back
        self.udp: socket.socket | None = None
        self.incarnation = 0  # this agent's: set at start, rising across restarts
        self.seq = 0
        self.peers: dict[str, PeerView] = {}
        self.guards: dict[str, hbmod.ReplayGuard] = {}
        self.drops = {r: 0 for r in hbmod.DropReason}
        self.longest_silence: dict[str, float] = {}  # peer -> longest gap between heartbeats
        self.near_misses: dict[str, int] = {}  # peer -> gaps longer than NEAR_MISS x detection
        self.by_ip: dict[str, str] = {}  # base IP -> server name, of every cluster server
        self.speaks: dict[str, int] = {}  # peer -> the protocol version it last spoke
        self.received: dict[str, int] = {}
        self.lost: dict[str, int] = {}
        self.refused: dict[str, dict[hbmod.DropReason, int]] = {}
        self.deaths: dict[str, int] = {}
        self.silent_at_death: dict[str, float] = {}
        self._unlogged: list[tuple[str, tuple[object, ...], dict[str, object]]] = []
        self._numbered: dict[str, tuple[int, int]] = {}  # peer -> newest (incarnation, seq)
        self.resumed = time.monotonic()  # peers are judged on local running time from here
        self.reset_peers()

    def reset_peers(self) -> None:
        """Follow the config's servers (what is known of a peer that stays is kept)."""
        cfg = self._config()
        names = [s.name for s in cfg.servers if s.name != cfg.node]
        self.peers = {n: self.peers.get(n, PeerView.unknown(n)) for n in names}
        self.guards = {n: self.guards.get(n, hbmod.ReplayGuard.empty()) for n in names}
        self.by_ip = {str(s.base_ip): s.name for s in cfg.servers}

    def open(self) -> socket.socket:
        """Bind the heartbeat port on this node's base IP; StartupError when it cannot."""
        cfg = self._config()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            udp.bind((str(cfg.local.base_ip), cfg.heartbeat_port))
        except OSError as e:
            raise StartupError(f"cannot bind the heartbeat port {cfg.local.base_ip}:"
                               f"{cfg.heartbeat_port}: {e.strerror}") from e
        udp.setblocking(False)
        self.udp = udp
        return udp

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()

    # ---- what is known of the peers ----------------------------------------------------------

    def alive(self, name: str) -> bool:
        view = self.peers.get(name)
        return view is not None and view.alive

    def unheard(self, name: str) -> bool:
        """True for a peer neither alive nor dead: not heard since this agent (re)started."""
        view = self.peers.get(name, PeerView.unknown(name))
        return not view.alive and not view.dead

    def next_death(self) -> float:
        """The earliest moment an alive (or unknown) peer would be judged dead."""
        d = self._config().detection
        times = [max(v.last_heard or self.resumed, self.resumed) + d + 0.001
                 for v in self.peers.values() if not v.dead]
        return min(times, default=float("inf"))

    def judge(self, now: float, on_change: Callable[[], None]) -> None:
        """Judge every peer at ``now``; ``on_change`` when a peer's liveness changes."""
        cfg = self._config()
        for name, view in self.peers.items():
            judged = view.judged(now, cfg.timers, self.resumed)
            if judged.liveness is not view.liveness:
                on_change()
                if judged.dead:
                    silent = now - max(view.last_heard or self.resumed, self.resumed)
                    self.deaths[name] = self.deaths.get(name, 0) + 1
                    self.silent_at_death[name] = silent
                    # Logged once the decision is on its way (flush_log): no logging
                    # between a death and the takeover's first gratuitous ARP.
                    self._unlogged.append((
                        "%s declares %s dead (silent for %.1f s)", (cfg.node, name, silent),
                        journal.about(x.lim if (x := cfg.lim_of(name)) else None)))
            self.peers[name] = judged

    def flush_log(self) -> None:
        """Log the deaths judged since the last call."""
        lines, self._unlogged = self._unlogged, []
        for fmt, args, extra in lines:
            log.info(fmt, *args, extra=extra)

    # ---- sending -----------------------------------------------------------------------------

    def send(self, lims: Iterable[LimRun], readiness: Readiness) -> None:
        """Send one heartbeat to every peer; each tick sends HEARTBEAT_COPIES of them back
        to back, right after the leases are renewed.

        Each copy is a heartbeat of its own (the next sequence number), so a peer counts an
        interval as missed only when every copy is lost. A false "dead" takes two whole
        ticks lost and the third a hair late: with independent frame loss p per path, about
        p**(2 x HEARTBEAT_COPIES). Measured with 10 % loss on each switch port (19 % per
        path) and ``fastest`` timers: one copy gave two false failovers in 10 minutes, three
        copies one in two soaks of 10 minutes (p**6 = 4.7e-5 per tick); five make it p**10
        = 6e-8. Copies spread over the interval would need as many losses but start the
        peers' detection later: a slower failover at every setting.
        """
        cfg = self._config()
        runs = tuple(lims)
        assert self.udp is not None
        now = time.monotonic()
        heard = self.witness_view(now)
        for s in cfg.servers:
            if s.name == cfg.node:
                continue
            self.seq += 1
            # A peer whose authentic heartbeat came in within the detection period is
            # reachable: MSG_CONFIRM tells the kernel so, and its ARP entry for the peer
            # stays valid. Without it the entry goes stale every reachable_time and is
            # probed; under frame loss the probes can fail, and then every datagram to
            # that peer waits for a fresh ARP resolution (1 s retries) - a silence long
            # enough for a false failover at fast timers.
            view = self.peers.get(s.name)
            confirm = (view is not None and view.last_heard is not None
                       and now - view.last_heard < cfg.detection)
            # Each datagram is for one peer and echoes that peer's incarnation (as far
            # as this node knows it): no recording can be replayed (heartbeat module).
            hb = hbmod.Heartbeat(cluster=cfg.cluster, sender=cfg.node, receiver=s.name,
                                 incarnation=self.incarnation, seq=self.seq,
                                 echo=self.guards[s.name].known,
                                 generation=cfg.generation, role=cfg.role,
                                 readiness=readiness, lims=runs,
                                 heard=tuple(h for h in heard if h[0] != s.name),
                                 version=self.speaks.get(s.name, hbmod.PROTOCOL_VERSION))
            try:
                self.udp.sendto(hbmod.encode(hb, self._secret()),
                                socket.MSG_CONFIRM if confirm else 0,
                                (str(s.base_ip), cfg.heartbeat_port))
            except OSError:
                pass  # no route / link down: the peer will notice our silence

    def witness_view(self, now: float) -> tuple[tuple[str, int], ...]:
        """What this node tells its peers of the others: ``(peer, ms since last heard)``
        for every peer heard since the loop last resumed (older evidence is void)."""
        return tuple((name, min(hbmod.HEARD_CAP_MS, int((now - v.last_heard) * 1000)))
                     for name, v in self.peers.items()
                     if v.last_heard is not None and v.last_heard >= self.resumed)

    def heard_by(self, name: str, now: float) -> dict[str, float]:
        """How many seconds ago each other peer last heard ``name``, as its latest heartbeat
        told (the report's own age added): the witnesses' view of a peer this node may not
        reach itself. Witnesses that did not report ``name`` are left out."""
        out = {}
        for witness, v in self.peers.items():
            hb = v.heartbeat
            ms = None if hb is None or witness == name else hb.heard_ms(name)
            if ms is not None and v.last_heard is not None:
                out[witness] = round(ms / 1000 + (now - v.last_heard), 3)
        return out

    # ---- receiving ---------------------------------------------------------------------------

    def receive(self, now: float) -> None:
        """Read the heartbeats queued now, at most DATAGRAMS_PER_TURN."""
        assert self.udp is not None
        for _ in range(DATAGRAMS_PER_TURN):
            try:
                data, (ip, _port) = self.udp.recvfrom(4096)
            except OSError:  # BlockingIOError: nothing more queued
                return
            self.accept(data, ip, now)

    def stalled(self, now: float) -> None:
        """The loop did not run for a while: drop every datagram queued now (of unknown
        age) and judge the peers afresh from ``now``."""
        dropped = 0
        while self.udp is not None:
            try:
                self.udp.recvfrom(4096)
                dropped += 1
            except BlockingIOError:
                break
        self.resumed = now
        log.warning("%s's loop did not run for a while; it discards %d queued heartbeats and "
                    "judges its peers afresh", self._config().node, dropped)

    def accept(self, data: bytes, ip: str, now: float) -> None:
        cfg = self._config()
        sender = self.by_ip.get(ip)
        if sender is None or sender not in self.peers:
            # Not from a peer's address: refused before any cryptography is spent on it.
            self._refuse("", hbmod.DropReason.FORGED)
            return
        try:
            hb = hbmod.decode(data, self._secret(), cfg.cluster, sender=sender,
                              receiver=cfg.node)
        except hbmod.BadHeartbeat as e:
            self._refuse(sender, hbmod.drop_reason(e))
            return
        self._count_lost(sender, hb.incarnation, hb.seq)
        before_known = self.guards[sender].known
        refused, self.guards[sender] = self.guards[sender].admit(hb, self.incarnation)
        if self.guards[sender].known != before_known and before_known:
            log.info("%s hears a new incarnation of %s", cfg.node, sender)
        if refused in (None, hbmod.DropReason.STALE):
            # Answer in the version it speaks. A stale echo counts: an agent that reads
            # version 2 only never learns this incarnation from a version-3 datagram, so it
            # echoes an old one until it is answered in its own version. A replay does not.
            self.speaks[sender] = hb.version
        if refused is not None:
            self._refuse(sender, refused)
            return
        self.received[sender] = self.received.get(sender, 0) + 1
        before = self.peers[hb.sender]
        if before.last_heard is not None and before.last_heard >= self.resumed:
            gap = now - before.last_heard
            if gap > self.longest_silence.get(hb.sender, 0.0):
                self.longest_silence[hb.sender] = gap
            if gap > cfg.detection * NEAR_MISS:
                self.near_misses[hb.sender] = self.near_misses.get(hb.sender, 0) + 1
        after = before.heard(hb, now)
        self.peers[hb.sender] = after
        old = before.heartbeat
        if (not before.alive or old is None or old.lims != hb.lims
                or old.readiness != hb.readiness):
            self._on_news()
            if not before.alive:
                log.info("%s hears %s (%s)", cfg.node, hb.sender,
                         "again" if before.dead or before.lost else "for the first time")
        if reappeared(before, after):
            self._on_back(hb.sender, now)

    def _refuse(self, sender: str, reason: hbmod.DropReason) -> None:
        self.drops[reason] += 1
        counts = self.refused.get(sender)
        if counts is None:
            counts = self.refused[sender] = dict.fromkeys(hbmod.DropReason, 0)
        counts[reason] += 1

    def _count_lost(self, sender: str, incarnation: int, seq: int) -> None:
        """Count the heartbeats missing between this authentic one and the newest before."""
        newest = self._numbered.get(sender)
        if newest is not None and incarnation == newest[0] and seq > newest[1]:
            stride = max(1, len(self.peers))
            missing = (seq - newest[1] + stride // 2) // stride - 1
            if missing > 0:
                self.lost[sender] = self.lost.get(sender, 0) + missing
        if newest is None or (incarnation, seq) > newest:
            self._numbered[sender] = (incarnation, seq)

    # ---- status ------------------------------------------------------------------------------

    def status(self, now: float) -> list[dict[str, object]]:
        """One row per peer, for ``ctl status``."""
        cfg = self._config()
        peers: list[dict[str, object]] = []
        for name, v in self.peers.items():
            hb = v.heartbeat
            peers.append({
                "name": name, "role": str(cfg.server(name).role) if name in self.by_ip.values()
                else None, "liveness": str(v.liveness),
                "incarnation": self.guards[name].known if name in self.guards else None,
                "last_heard_s_ago": None if v.last_heard is None else round(now - v.last_heard, 3),
                "longest_silence_s": round(self.longest_silence.get(name, 0.0), 3),
                "near_misses": self.near_misses.get(name, 0),
                "generation": hb.generation if hb else None,
                "readiness": str(hb.readiness) if hb else None,
                "runs": [{"lim": r.lim, "mode": str(r.mode), "loading": r.loading,
                          "fenced": r.fenced} for r in (hb.lims if hb else ())],
                "protocol": self.speaks.get(name),
                "heard_by_s_ago": self.heard_by(name, now)})
        return peers
