"""The heartbeat: what every node tells its cluster peers, once per interval, over UDP.

Heartbeats go between the base IPs of one cluster's servers. Each is authenticated with
HMAC-SHA256 under the cluster's shared secret, so only a holder of the secret can make a
node believe that a peer is alive or runs a LIM. :class:`ReplayGuard` refuses a datagram
seen before (or older than one already accepted) from the same sender.

Wire format, version 1 (big-endian)::

    "MXHB"            4 bytes   magic
    version           u8        PROTOCOL_VERSION
    cluster           u8 length + UTF-8
    sender            u8 length + UTF-8   the sender's server name
    incarnation       u64       random, chosen when the sender's agent starts
    seq               u64       rises by one per heartbeat within an incarnation
    generation        u32       the sender's node config generation
    role              u8        0 regular, 1 standby
    readiness         u8        0 loading, 1 ready
    count             u8        number of LIM entries that follow
    count x (lim u16, state u8) state bit 0: preloaded (else active); bit 1: loading
    mac               32 bytes  HMAC-SHA256(secret, every byte before it)

With ten LIMs and 63-byte names a heartbeat is 218 bytes (MAX_SIZE); a typical one
is about 100.

This module is pure: no sockets, no clock. The maintenance tool may import it to read a
node's heartbeats; it imports nothing from the maintenance tool.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from mxone_agent.errors import AgentError
from mxone_agent.model import LimRun, Mode, Readiness, Role

PROTOCOL_VERSION = 1
MAGIC = b"MXHB"
MAC_SIZE = 32
MIN_SECRET_BYTES = 16
MAX_NAME_BYTES = 63
MAX_LIMS = 16  # more than a cluster can hold (10); the wire allows 255
RETIRED_INCARNATIONS_KEPT = 8

_FIXED = struct.Struct(">QQIBBB")  # incarnation, seq, generation, role, readiness, count
_ENTRY = struct.Struct(">HB")  # lim, state
_ROLES = (Role.REGULAR, Role.STANDBY)
_READINESS = (Readiness.LOADING, Readiness.READY)
_PRELOADED_BIT = 0x01
_LOADING_BIT = 0x02

MAX_SIZE = (len(MAGIC) + 1 + 2 * (1 + MAX_NAME_BYTES) + _FIXED.size + 10 * _ENTRY.size
            + MAC_SIZE)
"""The size of the largest heartbeat of a valid cluster (ten LIMs, longest names)."""


class BadReason(StrEnum):
    """Why a datagram is not an acceptable heartbeat."""

    TRUNCATED = "truncated"  # shorter than its own fields say
    MALFORMED = "malformed"  # not a heartbeat: wrong magic, trailing bytes, unknown values
    BAD_VERSION = "bad version"  # a heartbeat of a protocol version this agent does not read
    WRONG_CLUSTER = "wrong cluster"  # a heartbeat of another cluster
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
    """

    cluster: str
    sender: str
    incarnation: int
    seq: int
    generation: int
    role: Role
    readiness: Readiness
    lims: tuple[LimRun, ...] = ()
    version: int = field(default=PROTOCOL_VERSION, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "readiness", Readiness(self.readiness))
        object.__setattr__(self, "lims", tuple(sorted(self.lims, key=lambda r: r.lim)))
        for label, name in (("cluster", self.cluster), ("sender", self.sender)):
            size = len(name.encode("utf-8"))
            if not 1 <= size <= MAX_NAME_BYTES:
                raise ValueError(f"{label} name {name!r} must be 1 to {MAX_NAME_BYTES} bytes")
        for label, value, bits in (("incarnation", self.incarnation, 64), ("seq", self.seq, 64),
                                   ("generation", self.generation, 32)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
                raise ValueError(f"{label} {value!r} is not a whole number of {bits} bits")
        numbers = [r.lim for r in self.lims]
        if len(numbers) > MAX_LIMS or len(set(numbers)) != len(numbers):
            raise ValueError(f"LIM list {numbers} is too long or names a LIM twice")

    def runs(self, lim: int) -> LimRun | None:
        """How the sender runs ``lim``, or None when it does not run it."""
        return next((r for r in self.lims if r.lim == lim), None)

    def runs_active(self, lim: int) -> bool:
        """True when the sender holds ``lim``'s alias live (active mode, loading or not)."""
        run = self.runs(lim)
        return run is not None and run.active


def new_incarnation() -> int:
    """A fresh random 64-bit incarnation for an agent that is starting."""
    return secrets.randbits(64)


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
        raise WeakSecret(f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes")


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(bytes(secret), body, hashlib.sha256).digest()


def encode(hb: Heartbeat, secret: bytes) -> bytes:
    """The datagram for ``hb``, authenticated with ``secret`` (at least 16 bytes).

    ``decode(encode(hb, s), s) == hb`` for every valid heartbeat.
    """
    _check_secret(secret)
    cluster = hb.cluster.encode("utf-8")
    sender = hb.sender.encode("utf-8")
    parts = [MAGIC, bytes([PROTOCOL_VERSION, len(cluster)]), cluster, bytes([len(sender)]),
             sender,
             _FIXED.pack(hb.incarnation, hb.seq, hb.generation, _ROLES.index(hb.role),
                         _READINESS.index(hb.readiness), len(hb.lims))]
    for run in hb.lims:
        state = (_PRELOADED_BIT if run.mode is Mode.PRELOADED else 0) | (
            _LOADING_BIT if run.loading else 0)
        parts.append(_ENTRY.pack(run.lim, state))
    body = b"".join(parts)
    return body + _mac(secret, body)


def decode(data: bytes, secret: bytes, cluster: str | None = None) -> Heartbeat:
    """The heartbeat in ``data``; raises BadHeartbeat when it is not an acceptable one.

    Checks, in this order: length and magic, protocol version, cluster name (when
    ``cluster`` is given), the MAC (constant-time compare), then every field's value.
    Nothing of a datagram is trusted before its MAC is verified.
    """
    _check_secret(secret)
    data = bytes(data)
    pos = len(MAGIC) + 1
    if len(data) < pos:
        raise BadHeartbeat(BadReason.TRUNCATED, f"{len(data)} bytes")
    if data[:len(MAGIC)] != MAGIC:
        raise BadHeartbeat(BadReason.MALFORMED, "no heartbeat magic")
    if data[len(MAGIC)] != PROTOCOL_VERSION:
        raise BadHeartbeat(BadReason.BAD_VERSION, f"version {data[len(MAGIC)]}, this agent reads "
                           f"{PROTOCOL_VERSION}")

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise BadHeartbeat(BadReason.TRUNCATED, f"{len(data)} bytes")
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    raw_cluster = take(take(1)[0])
    raw_sender = take(take(1)[0])
    fixed = take(_FIXED.size)
    count = fixed[-1]
    entries = take(count * _ENTRY.size)
    mac = take(MAC_SIZE)
    if pos != len(data):
        raise BadHeartbeat(BadReason.MALFORMED, f"{len(data) - pos} bytes after the MAC")
    if cluster is not None and raw_cluster != cluster.encode("utf-8"):
        raise BadHeartbeat(BadReason.WRONG_CLUSTER,
                           f"cluster {raw_cluster.decode('utf-8', 'replace')!r}, not {cluster!r}")
    if not hmac.compare_digest(mac, _mac(secret, data[:-MAC_SIZE])):
        raise BadHeartbeat(BadReason.BAD_MAC, "the MAC does not match the cluster secret")

    incarnation, seq, generation, role, readiness, _ = _FIXED.unpack(fixed)
    try:
        runs = []
        for i in range(count):
            lim, state = _ENTRY.unpack_from(entries, i * _ENTRY.size)
            if state & ~(_PRELOADED_BIT | _LOADING_BIT):
                raise ValueError(f"unknown LIM state {state}")
            runs.append(LimRun(lim, Mode.PRELOADED if state & _PRELOADED_BIT else Mode.ACTIVE,
                               bool(state & _LOADING_BIT)))
        if role >= len(_ROLES) or readiness >= len(_READINESS):
            raise ValueError(f"unknown role {role} or readiness {readiness}")
        return Heartbeat(cluster=raw_cluster.decode("utf-8"), sender=raw_sender.decode("utf-8"),
                         incarnation=incarnation, seq=seq, generation=generation,
                         role=_ROLES[role], readiness=_READINESS[readiness], lims=tuple(runs))
    except (ValueError, UnicodeDecodeError) as e:
        # Authentic but nonsensical: a peer with a bug. Refused all the same.
        raise BadHeartbeat(BadReason.MALFORMED, str(e)) from None


# ---- replay protection --------------------------------------------------------------------

class DropReason(StrEnum):
    """Counters of refused datagrams, as shown in status."""

    FORGED = "forged"  # bad MAC
    REPLAYED = "replayed"  # seen before, older than the last accepted, or an old incarnation
    MALFORMED = "malformed"  # truncated, unknown version, wrong cluster, bad values


def drop_reason(error: BadHeartbeat) -> DropReason:
    """The counter a decode failure goes to."""
    return DropReason.FORGED if error.reason is BadReason.BAD_MAC else DropReason.MALFORMED


@dataclass(frozen=True)
class ReplayGuard:
    """What one sender has already told us: accepts a heartbeat only if it is new.

    New means: the current incarnation with a sequence number above the last accepted, or
    an incarnation never seen before (the sender restarted; its sequence starts over). An
    incarnation that was replaced by a newer one is refused for good (the last
    RETIRED_INCARNATIONS_KEPT of them are remembered). Immutable: every method returns a
    new guard. Counters of dropped datagrams are kept per DropReason.
    """

    incarnation: int | None = None
    last_seq: int = -1
    retired: tuple[int, ...] = ()
    drops: Mapping[DropReason, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "drops", MappingProxyType(dict(self.drops)))

    @classmethod
    def empty(cls) -> ReplayGuard:
        """A guard that has accepted nothing yet."""
        return cls()

    def admit(self, hb: Heartbeat) -> tuple[bool, ReplayGuard]:
        """Whether ``hb`` is new, and the guard after it (a refusal counts as replayed)."""
        if hb.incarnation == self.incarnation:
            if hb.seq > self.last_seq:
                return True, replace(self, last_seq=hb.seq)
            return False, self.dropped(DropReason.REPLAYED)
        if hb.incarnation in self.retired:
            return False, self.dropped(DropReason.REPLAYED)
        retired = self.retired if self.incarnation is None else (
            self.incarnation, *self.retired)[:RETIRED_INCARNATIONS_KEPT]
        return True, replace(self, incarnation=hb.incarnation, last_seq=hb.seq, retired=retired)

    def dropped(self, reason: DropReason) -> ReplayGuard:
        """This guard with one more datagram dropped for ``reason``."""
        counts = dict(self.drops)
        counts[reason] = counts.get(reason, 0) + 1
        return replace(self, drops=counts)

    def count(self, reason: DropReason) -> int:
        return self.drops.get(reason, 0)

    def receive(self, data: bytes, secret: bytes,
                cluster: str) -> tuple[Heartbeat | None, ReplayGuard]:
        """Decode and admit one datagram from this guard's sender.

        Returns the heartbeat (None when refused) and the guard after it, with the refusal
        counted. Never raises for a bad datagram; a weak secret still raises WeakSecret.
        """
        try:
            hb = decode(data, secret, cluster)
        except BadHeartbeat as e:
            return None, self.dropped(drop_reason(e))
        ok, guard = self.admit(hb)
        return (hb if ok else None), guard


def total_drops(guards: Iterable[ReplayGuard]) -> dict[DropReason, int]:
    """Dropped datagrams per reason over several senders, for a status line."""
    out = {r: 0 for r in DropReason}
    for g in guards:
        for r, n in g.drops.items():
            out[r] += n
    return out
