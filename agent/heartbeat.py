"""The heartbeat: what every node tells each cluster peer, once per interval, over UDP.

Heartbeats go between the base IPs of one cluster's servers. Each is authenticated with
HMAC-SHA256 under the cluster's shared secret, so only a holder of the secret can make a
node believe that a peer is alive or runs a LIM; and each is addressed to one receiver
and to that receiver's current *incarnation*, so that no recording can be replayed.

Replay protection (:class:`ReplayGuard`). Every agent start has an incarnation that rises
strictly: the last one is persisted, and a new one is ``max(last + 1, wall clock in us)``
(:func:`next_incarnation`), so it rises even across a lost state file unless the clock
also went back. A heartbeat carries the sender's incarnation and sequence number, and the
receiver's incarnation as the sender last learned it (the *echo*). A receiver accepts a
heartbeat only if

* its echo is the receiver's own current incarnation - so nothing recorded before the
  receiver's agent (re)started can be accepted after it: that is the freshness proof, and
  it needs no clock; and
* ``(incarnation, seq)`` is above the last it accepted from that sender - so nothing
  recorded since can be accepted again, in any order, across any restarts of the sender.

A receiver learns a sender's incarnation (to echo it) from any authentic datagram, but
only ever *upwards* (the highest seen), so replayed old datagrams cannot make it echo a
stale value. After an agent restarts, its peers' first heartbeats echo its previous
incarnation and are counted as ``stale``, until they hear the new one (one interval).
Neither side uses a wall clock to judge freshness: a clock step changes nothing here.

Wire format, version 2 (big-endian)::

    "MXHB"            4 bytes   magic
    version           u8        PROTOCOL_VERSION
    cluster           u8 length + UTF-8
    sender            u8 length + UTF-8   the sender's server name
    receiver          u8 length + UTF-8   the server this datagram is for
    incarnation       u64       the sender's, rising across its restarts
    seq               u64       rises by one per datagram within an incarnation
    echo              u64       the receiver's incarnation as the sender knows it (0: none)
    generation        u32       the sender's node config generation
    role              u8        0 regular, 1 standby
    readiness         u8        0 loading, 1 ready
    count             u8        number of LIM entries that follow
    count x (lim u16, state u8) bit 0: preloaded (else active); bit 1: loading;
                                bit 2: fenced (its lease lapsed: the alias does not answer)
    heard             u8        number of peer entries that follow       (version 3 only)
    heard x (name     u8 length + UTF-8   a peer of the sender, in name order
             ms)      u16       how long ago the sender last heard it (65535: that or more)
    mac               32 bytes  HMAC-SHA256(secret, every byte before it)

What a node hears of its peers (``heard``, version 3) is the *witness view*: a server cut
off from one peer alone can still learn from the others that the peer is alive (the PM/SNM
pair's hook asks it before it promotes a database). A node reads versions 2 and 3 and
answers a peer in the version the peer last spoke (:data:`READS`), so a cluster upgrades
one node at a time; a version-2 heartbeat carries no witness view.

With ten LIMs, ten peers heard and 63-byte names a heartbeat is 951 bytes (MAX_SIZE);
a typical one is about 160.

This module is pure: no sockets, no clock. The maintenance tool may import it to read a
node's heartbeats; it imports nothing from the maintenance tool.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from mxone_agent.errors import AgentError
from mxone_agent.model import LimRun, Mode, Readiness, Role

PROTOCOL_VERSION = 3
READS = (2, 3)
"""The protocol versions this agent reads (and sends, to a peer that last spoke one)."""
MAGIC = b"MXHB"
MAC_SIZE = 32
MIN_SECRET_BYTES = 16
MAX_NAME_BYTES = 63
MAX_LIMS = 16  # more than a cluster can hold (10); the wire allows 255
MAX_HEARD = 16  # peers in a witness view: more than a cluster has (10)
HEARD_CAP_MS = 0xFFFF  # "heard this long ago or longer"

_FIXED = struct.Struct(">QQQIBBB")  # incarnation, seq, echo, generation, role, readiness, count
_ENTRY = struct.Struct(">HB")  # lim, state
_MS = struct.Struct(">H")  # ms since heard
_ROLES = (Role.REGULAR, Role.STANDBY)
_READINESS = (Readiness.LOADING, Readiness.READY)
_PRELOADED_BIT = 0x01
_LOADING_BIT = 0x02
_FENCED_BIT = 0x04

MAX_SIZE = (len(MAGIC) + 1 + 3 * (1 + MAX_NAME_BYTES) + _FIXED.size + 10 * _ENTRY.size
            + 1 + 10 * (1 + MAX_NAME_BYTES + _MS.size) + MAC_SIZE)
"""The size of the largest heartbeat of a valid cluster (ten LIMs, ten peers heard,
longest names)."""


class BadReason(StrEnum):
    """Why a datagram is not an acceptable heartbeat."""

    TRUNCATED = "truncated"  # shorter than its own fields say
    MALFORMED = "malformed"  # not a heartbeat: wrong magic, trailing bytes, unknown values
    BAD_VERSION = "bad version"  # a heartbeat of a protocol version this agent does not read
    WRONG_CLUSTER = "wrong cluster"  # a heartbeat of another cluster
    WRONG_SOURCE = "wrong source"  # the named sender does not live at the source address
    MISDIRECTED = "misdirected"  # authentic, but addressed to another server
    BAD_MAC = "bad MAC"  # forged, corrupted, or made with another secret


class BadHeartbeat(AgentError):
    """A datagram was refused; ``reason`` says why (for counters and the status display)."""

    def __init__(self, reason: BadReason, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class WeakSecret(AgentError):
    """The cluster secret is too short to authenticate heartbeats."""


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat's content. Valid by construction (ValueError otherwise).

    ``lims`` lists every LIM whose service runs on the sender, whatever its mode; peers
    rely on it being complete (a regular server starts its LIM when the standby's heartbeat
    does not list it), so an agent must learn what runs locally before its first heartbeat.
    ``receiver`` and ``echo`` bind the datagram to one receiver's current incarnation
    (empty / 0 where that does not matter, e.g. in tests of decisions). ``heard`` is the
    sender's witness view: ``(peer, ms since the sender last heard it)`` per peer heard
    since the sender's loop last resumed, in name order; ``version`` the protocol version
    it travels in (a version-2 datagram carries no witness view).
    """

    cluster: str
    sender: str
    incarnation: int
    seq: int
    generation: int
    role: Role
    readiness: Readiness
    lims: tuple[LimRun, ...] = ()
    receiver: str = "?"
    echo: int = 0
    heard: tuple[tuple[str, int], ...] = ()
    version: int = field(default=PROTOCOL_VERSION, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "readiness", Readiness(self.readiness))
        object.__setattr__(self, "lims", tuple(sorted(self.lims, key=lambda r: r.lim)))
        for label, name in (("cluster", self.cluster), ("sender", self.sender),
                            ("receiver", self.receiver)):
            size = len(name.encode("utf-8"))
            if not 1 <= size <= MAX_NAME_BYTES:
                raise ValueError(f"{label} name {name!r} must be 1 to {MAX_NAME_BYTES} bytes")
        for label, value, bits in (("incarnation", self.incarnation, 64), ("seq", self.seq, 64),
                                   ("echo", self.echo, 64), ("generation", self.generation, 32)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
                raise ValueError(f"{label} {value!r} is not a whole number of {bits} bits")
        numbers = [r.lim for r in self.lims]
        if len(numbers) > MAX_LIMS or len(set(numbers)) != len(numbers):
            raise ValueError(f"LIM list {numbers} is too long or names a LIM twice")
        object.__setattr__(self, "heard", tuple(sorted(self.heard)))
        names = [name for name, _ in self.heard]
        if len(names) > MAX_HEARD or len(set(names)) != len(names):
            raise ValueError(f"witness view {names} is too long or names a peer twice")
        for name, ms in self.heard:
            if not 1 <= len(name.encode("utf-8")) <= MAX_NAME_BYTES or name == self.sender:
                raise ValueError(f"witness view names {name!r}: not a peer's name")
            if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= HEARD_CAP_MS:
                raise ValueError(f"witness view of {name}: {ms!r} is not 0 to "
                                 f"{HEARD_CAP_MS} ms")
        if self.version not in READS:
            raise ValueError(f"protocol version {self.version} is not one of {READS}")

    def runs(self, lim: int) -> LimRun | None:
        """How the sender runs ``lim``, or None when it does not run it."""
        return next((r for r in self.lims if r.lim == lim), None)

    def runs_active(self, lim: int) -> bool:
        """True when the sender's alias of ``lim`` answers (active, not fenced)."""
        run = self.runs(lim)
        return run is not None and run.active

    def heard_ms(self, peer: str) -> int | None:
        """How many ms before sending the sender last heard ``peer`` (None: not heard since
        its loop last resumed, or a version-2 heartbeat)."""
        return next((ms for name, ms in self.heard if name == peer), None)


def next_incarnation(previous: int, wall_us: int) -> int:
    """The incarnation of an agent that starts now: above the ``previous`` one (persisted by
    the caller; 0 when none), and at least the wall clock in microseconds, so that it still
    rises if the persisted value was lost. Always a whole number of 64 bits, above 0."""
    value = max(previous + 1, wall_us, 1)
    if value >= 1 << 64:
        raise ValueError(f"incarnation {previous} cannot rise any further")
    return value


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
        raise WeakSecret(f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes")


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(bytes(secret), body, hashlib.sha256).digest()


def encode(hb: Heartbeat, secret: bytes) -> bytes:
    """The datagram for ``hb``, authenticated with ``secret`` (at least 16 bytes).

    ``decode(encode(hb, s), s) == hb`` for every valid heartbeat (a version-2 one without
    its witness view, which that version cannot carry).
    """
    _check_secret(secret)
    parts = [MAGIC, bytes([hb.version])]
    for name in (hb.cluster, hb.sender, hb.receiver):
        raw = name.encode("utf-8")
        parts += [bytes([len(raw)]), raw]
    parts.append(_FIXED.pack(hb.incarnation, hb.seq, hb.echo, hb.generation,
                             _ROLES.index(hb.role), _READINESS.index(hb.readiness),
                             len(hb.lims)))
    for run in hb.lims:
        state = ((_PRELOADED_BIT if run.mode is Mode.PRELOADED else 0)
                 | (_LOADING_BIT if run.loading else 0) | (_FENCED_BIT if run.fenced else 0))
        parts.append(_ENTRY.pack(run.lim, state))
    if hb.version >= 3:
        parts.append(bytes([len(hb.heard)]))
        for name, ms in hb.heard:
            raw = name.encode("utf-8")
            parts += [bytes([len(raw)]), raw, _MS.pack(ms)]
    body = b"".join(parts)
    return body + _mac(secret, body)


def decode(data: bytes, secret: bytes, cluster: str | None = None, *,
           sender: str | None = None, receiver: str | None = None) -> Heartbeat:
    """The heartbeat in ``data``; raises BadHeartbeat when it is not an acceptable one.

    Checks, in this order: length and magic, protocol version, the cluster name (when
    ``cluster`` is given), that the named sender is ``sender`` (the server that lives at
    the datagram's source address, when given) and the receiver is ``receiver`` (this
    node, when given) - all before any MAC is computed, so a flood from elsewhere costs
    no cryptography - then the MAC (constant-time compare), then every field's value.
    Nothing of a datagram is trusted before its MAC is verified.
    """
    _check_secret(secret)
    data = bytes(data)
    pos = len(MAGIC) + 1
    if len(data) < pos:
        raise BadHeartbeat(BadReason.TRUNCATED, f"{len(data)} bytes")
    if data[:len(MAGIC)] != MAGIC:
        raise BadHeartbeat(BadReason.MALFORMED, "no heartbeat magic")
    version = data[len(MAGIC)]
    if version not in READS:
        raise BadHeartbeat(BadReason.BAD_VERSION, f"version {version}, this agent reads "
                           + " and ".join(map(str, READS)))

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise BadHeartbeat(BadReason.TRUNCATED, f"{len(data)} bytes")
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    raw_cluster = take(take(1)[0])
    raw_sender = take(take(1)[0])
    raw_receiver = take(take(1)[0])
    fixed = take(_FIXED.size)
    count = fixed[-1]
    entries = take(count * _ENTRY.size)
    heard_raw: list[tuple[bytes, bytes]] = []
    if version >= 3:
        for _ in range(take(1)[0]):
            heard_raw.append((take(take(1)[0]), take(_MS.size)))
    mac = take(MAC_SIZE)
    if pos != len(data):
        raise BadHeartbeat(BadReason.MALFORMED, f"{len(data) - pos} bytes after the MAC")
    if cluster is not None and raw_cluster != cluster.encode("utf-8"):
        raise BadHeartbeat(BadReason.WRONG_CLUSTER,
                           f"cluster {raw_cluster.decode('utf-8', 'replace')!r}, not {cluster!r}")
    if sender is not None and raw_sender != sender.encode("utf-8"):
        raise BadHeartbeat(BadReason.WRONG_SOURCE,
                           f"sent as {raw_sender.decode('utf-8', 'replace')!r} from the address "
                           f"of {sender}")
    if receiver is not None and raw_receiver != receiver.encode("utf-8"):
        raise BadHeartbeat(BadReason.MISDIRECTED,
                           f"addressed to {raw_receiver.decode('utf-8', 'replace')!r}, not "
                           f"{receiver!r}")
    if not hmac.compare_digest(mac, _mac(secret, data[:-MAC_SIZE])):
        raise BadHeartbeat(BadReason.BAD_MAC, "the MAC does not match the cluster secret")

    incarnation, seq, echo, generation, role, readiness, _ = _FIXED.unpack(fixed)
    try:
        runs = []
        for i in range(count):
            lim, state = _ENTRY.unpack_from(entries, i * _ENTRY.size)
            if state & ~(_PRELOADED_BIT | _LOADING_BIT | _FENCED_BIT):
                raise ValueError(f"unknown LIM state {state}")
            runs.append(LimRun(lim, Mode.PRELOADED if state & _PRELOADED_BIT else Mode.ACTIVE,
                               bool(state & _LOADING_BIT), bool(state & _FENCED_BIT)))
        if role >= len(_ROLES) or readiness >= len(_READINESS):
            raise ValueError(f"unknown role {role} or readiness {readiness}")
        heard = [(name.decode("utf-8"), _MS.unpack(ms)[0]) for name, ms in heard_raw]
        if [n for n, _ in heard] != sorted(n for n, _ in heard):
            raise ValueError("witness view not in name order")
        return Heartbeat(cluster=raw_cluster.decode("utf-8"), sender=raw_sender.decode("utf-8"),
                         receiver=raw_receiver.decode("utf-8"), incarnation=incarnation,
                         seq=seq, echo=echo, generation=generation, role=_ROLES[role],
                         readiness=_READINESS[readiness], lims=tuple(runs),
                         heard=tuple(heard), version=version)
    except (ValueError, UnicodeDecodeError) as e:
        # Authentic but nonsensical: a peer with a bug. Refused all the same.
        raise BadHeartbeat(BadReason.MALFORMED, str(e)) from None


# ---- replay protection --------------------------------------------------------------------

class DropReason(StrEnum):
    """Counters of refused datagrams, as shown in status."""

    FORGED = "forged"  # bad MAC, or not sent from where the named sender lives
    REPLAYED = "replayed"  # an older incarnation or sequence number, or meant for another node
    STALE = "stale"  # addressed to an earlier incarnation of this agent: a replay from
    # before it started, or a peer that has not heard this incarnation yet
    MALFORMED = "malformed"  # truncated, unknown version, wrong cluster, bad values


def drop_reason(error: BadHeartbeat) -> DropReason:
    """The counter a decode failure goes to."""
    if error.reason in (BadReason.BAD_MAC, BadReason.WRONG_SOURCE):
        return DropReason.FORGED
    if error.reason is BadReason.MISDIRECTED:
        return DropReason.REPLAYED
    return DropReason.MALFORMED


@dataclass(frozen=True)
class ReplayGuard:
    """What one sender has told this agent: accepts a heartbeat only if it is fresh.

    ``known`` is the sender's highest incarnation seen in any authentic datagram (what this
    node echoes back to it); ``last`` the ``(incarnation, seq)`` of the last heartbeat
    accepted. A heartbeat is accepted when ``(incarnation, seq) > last``, its incarnation is
    not below ``known``, and it echoes ``mine`` - this agent's own incarnation (see the
    module docstring). Immutable: every method returns a new guard. Counters of dropped
    datagrams are kept per DropReason.
    """

    known: int = 0
    last: tuple[int, int] | None = None
    drops: Mapping[DropReason, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "drops", MappingProxyType(dict(self.drops)))

    @classmethod
    def empty(cls) -> ReplayGuard:
        """A guard that has accepted nothing yet."""
        return cls()

    def admit(self, hb: Heartbeat, mine: int) -> tuple[DropReason | None, ReplayGuard]:
        """None when ``hb`` (authentic, for this node) is fresh, else why it is refused;
        and the guard after it (refusals counted)."""
        if hb.incarnation < self.known or (
                self.last is not None and (hb.incarnation, hb.seq) <= self.last):
            return DropReason.REPLAYED, self.dropped(DropReason.REPLAYED)
        learned = replace(self, known=max(self.known, hb.incarnation))
        if hb.echo != mine:
            return DropReason.STALE, learned.dropped(DropReason.STALE)
        return None, replace(learned, last=(hb.incarnation, hb.seq))

    def dropped(self, reason: DropReason) -> ReplayGuard:
        """This guard with one more datagram dropped for ``reason``."""
        counts = dict(self.drops)
        counts[reason] = counts.get(reason, 0) + 1
        return replace(self, drops=counts)

    def count(self, reason: DropReason) -> int:
        return self.drops.get(reason, 0)

    def receive(self, data: bytes, secret: bytes, cluster: str, *, mine: int,
                sender: str | None = None,
                receiver: str | None = None) -> tuple[Heartbeat | None, ReplayGuard]:
        """Decode and admit one datagram from this guard's sender.

        Returns the heartbeat (None when refused) and the guard after it, with the refusal
        counted. Never raises for a bad datagram; a weak secret still raises WeakSecret.
        """
        try:
            hb = decode(data, secret, cluster, sender=sender, receiver=receiver)
        except BadHeartbeat as e:
            return None, self.dropped(drop_reason(e))
        refused, guard = self.admit(hb, mine)
        return (None if refused else hb), guard


def total_drops(guards: Iterable[ReplayGuard]) -> dict[DropReason, int]:
    """Dropped datagrams per reason over several senders, for a status line."""
    out = {r: 0 for r in DropReason}
    for g in guards:
        for r, n in g.drops.items():
            out[r] += n
    return out
