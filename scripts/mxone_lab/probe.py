"""A client that watches aliases the way phones and gateways do, and tells who answered.

The product's invariant is that at every moment at most one server answers for each alias.
This probe runs on a lab host (normally ``client``) and checks that from the outside::

    python -m mxone_lab.probe --alias 10.77.0.52 --duration 30 --out /var/tmp/p.jsonl

- **ARP rounds.** Every ``--arp-every`` s, one ARP request per alias is broadcast on an
  AF_PACKET socket. Every ARP reply for the alias (op 2, sender IP = alias) that arrives
  before the next round belongs to the round; a round records the set of distinct sender
  MACs (0, 1 or more: more is the condition the product must never produce). Who asks:

  - ``--arp-sender client`` (default): the interface's own MAC and address, a phone's own
    request. Its replies reach the client's kernel, which refreshes (after its 1 s
    ``locktime``, overwrites) its neighbour entry from them, as it would for a phone that
    asks that often: the ICMP stream then follows an alias that moved within about one
    round, gratuitous ARP or not, and with two owners it may flip between them.
  - ``--arp-sender observer``: RFC 5227 probes (sender IP 0.0.0.0) from a locally
    administered MAC made up per run. Servers answer them the same way, but the replies
    are addressed to that MAC, so the client's kernel never sees them and no server learns
    anything: the client's neighbour cache moves only by the servers' gratuitous ARP or
    its own resolution, as for a quiet phone. Use it to measure a client's outage.
- **Gratuitous ARP** seen for an alias (sender IP = target IP = alias, op 1 or 2) is
  recorded on its own, with the MAC and the time; it is never counted as a round's answer.
- **ICMP.** Every ``--icmp-every`` s, one echo request per alias goes out through the
  client's own kernel (a raw ICMP socket), so the client's neighbour cache decides which
  server gets it, as for any real client; the echo replies are captured on an AF_PACKET
  socket (a BPF filter keeps only echo replies with this probe's ICMP id), so each one is
  recorded with its source MAC.

Times are ``time.monotonic()``: the machine's clock that the test process reads too, so a
test can put its fault-injection times next to the events.

Output: JSON lines, written as they come (flushed at least every 0.1 s, so a killed probe
still leaves its data). Every line has ``"t"`` and ``"kind"``::

    {"t": 1.0, "kind": "start", "pid": 42, "interface": "eth0", "mac": "02:..", "ip": "..",
     "aliases": [...], "arp_every": 0.1, "icmp_every": 0.01, "duration": 30.0, "icmp_id": 42,
     "arp_sender": "client", "arp_mac": "02:.."}
    {"t": 1.1, "kind": "arp", "alias": "10.77.0.52", "macs": ["02:77:00:00:00:0c"]}
    {"t": 1.2, "kind": "garp", "alias": "10.77.0.52", "mac": "02:77:00:00:00:14", "op": 1}
    {"t": 1.3, "kind": "icmp", "alias": "10.77.0.52", "mac": "02:77:00:00:00:0c", "seq": 7}
    {"t": 9.9, "kind": "summary", "reason": "duration" | "signal" | "max-events",
     "events": 1234, "dropped": 0, "sent": {"10.77.0.52": {"arp": 98, "icmp": 980}},
     "send_errors": {"10.77.0.52": {"EHOSTUNREACH": 3}}, "cpu_s": 0.21}

An ``arp`` line's ``t`` is when its round's request was sent; the line is written when the
round closes (the next round starts), so lines are not strictly in time order. A round
younger than ``--arp-every`` at the stop is not written (its answers may still be on the
way). ``cpu_s`` is the probe's own CPU time, start-up included. ``seq`` is
the echo's sequence number per alias, counted from 0 without wrapping at 65536. The
``start`` line is also the first line on stdout, written once the sockets are open: a
parent can wait for it. The probe stops at ``--duration`` (a hard bound, backed by an
alarm), on SIGTERM or SIGINT, or after ``--max-events`` lines; the ``summary`` line says
which. It sends only to the given aliases, which must lie in the interface's subnet.

For tests and benchmarks: :class:`ProbeLog` (``ProbeLog.parse(text)``) answers questions
about a log, and :class:`Prober` runs the probe on a lab host for the length of a ``with``
block::

    with Prober(lab, "client", ["10.77.0.52"], duration=60) as p:
        ...inject faults...
    log = p.log()
    assert log.two_owner_rounds("10.77.0.52") == []
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno as errno_names
import fcntl
import itertools
import json
import math
import os
import resource
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Self

from mxone_lab.errors import LabError

if TYPE_CHECKING:
    from mxone_lab.lab import Lab

#: Bounds on what one probe may do (the lab has 2 cores shared by everyone's tests).
MAX_ALIASES = 16
MIN_ARP_EVERY = 0.02
MIN_ICMP_EVERY = 0.002
MAX_DURATION = 3600.0
DEFAULT_MAX_EVENTS = 1_000_000
#: Written lines reach the file at least this often.
FLUSH_EVERY = 0.1
#: The alarm that ends a probe whose loop got stuck comes this long after --duration.
ALARM_MARGIN = 5

ARP_SENDERS = ("client", "observer")

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SOL_RAW = 255
ICMP_FILTER = 1
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_UNICAST = 3
SIOCGIFHWADDR = 0x8927
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
BROADCAST = b"\xff" * 6
ECHO_PAYLOAD = b"mxone-lab-probe!"  # 16 bytes, so a capture tells probe pings apart


class ProbeError(LabError):
    """The probe could not start, or its output could not be read back."""


# --------------------------------------------------------------------- options


@dataclass(frozen=True)
class ProbeOptions:
    """What one probe does; :func:`option_problems` says what is wrong with it."""

    aliases: tuple[str, ...]
    arp_every: float = 0.1
    icmp_every: float = 0.01
    duration: float = 60.0
    interface: str = "eth0"
    out: str = "-"
    max_events: int = DEFAULT_MAX_EVENTS
    arp_sender: str = "client"


def option_problems(opts: ProbeOptions) -> list[str]:
    """Every broken rule of ``opts`` (empty when it may run), each naming field and value.

    An interval of 0 turns that kind of traffic off; at least one must be on.
    """
    problems = []
    if not opts.aliases:
        problems.append("no --alias given: at least one")
    if len(opts.aliases) > MAX_ALIASES:
        problems.append(f"{len(opts.aliases)} aliases given: at most {MAX_ALIASES}")
    for a in opts.aliases:
        try:
            IPv4Address(a)
        except ValueError:
            problems.append(f"alias {a!r} is not an IPv4 address")
    if len(set(opts.aliases)) != len(opts.aliases):
        problems.append(f"aliases {', '.join(opts.aliases)} repeat an address")
    for name, value, low in (
        ("--arp-every", opts.arp_every, MIN_ARP_EVERY),
        ("--icmp-every", opts.icmp_every, MIN_ICMP_EVERY),
    ):
        if not math.isfinite(value) or (value != 0 and not low <= value <= 60):
            problems.append(f"{name} {value:g} is invalid: 0 (off) or {low:g}..60 s")
    if opts.arp_every == 0 and opts.icmp_every == 0:
        problems.append("--arp-every and --icmp-every are both 0: nothing to do")
    if not math.isfinite(opts.duration) or not 0 < opts.duration <= MAX_DURATION:
        problems.append(
            f"--duration {opts.duration:g} is invalid: more than 0, at most {MAX_DURATION:g} s"
        )
    if not 1 <= opts.max_events <= 10 * DEFAULT_MAX_EVENTS:
        problems.append(f"--max-events {opts.max_events} is invalid: 1..{10 * DEFAULT_MAX_EVENTS}")
    if opts.arp_sender not in ARP_SENDERS:
        problems.append(
            f"--arp-sender {opts.arp_sender!r} is invalid: one of {', '.join(ARP_SENDERS)}"
        )
    if not opts.interface or len(opts.interface) > 15 or "/" in opts.interface:
        problems.append(f"--interface {opts.interface!r} is not an interface name")
    return problems


def subnet_problems(aliases: Iterable[str], own_ip: str, prefix: int) -> list[str]:
    """Every alias the probe must refuse on an interface with ``own_ip/prefix``.

    An alias must be a host address of that subnet and not the interface's own address:
    the probe never sends anything anywhere else.
    """
    net = IPv4Network(f"{own_ip}/{prefix}", strict=False)
    problems = []
    for a in aliases:
        ip = IPv4Address(a)
        if ip not in net:
            problems.append(f"alias {a} is not in the interface's subnet {net}")
        elif net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
            problems.append(f"alias {a} is the subnet {net}'s network or broadcast address")
        elif ip == IPv4Address(own_ip):
            problems.append(f"alias {a} is the probing host's own address")
    return problems


# ---------------------------------------------------------------------- frames


def mac_text(raw: bytes) -> str:
    """``b"\\x02\\x77..."`` as ``"02:77:..."``."""
    return raw.hex(":")


def arp_frame(
    op: int,
    sender_mac: bytes,
    sender_ip: bytes,
    target_ip: bytes,
    target_mac: bytes = b"\0" * 6,
    dst: bytes = BROADCAST,
) -> bytes:
    """An Ethernet ARP frame (IPv4 over Ethernet), padded to the 60-byte minimum."""
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, op)
    arp += sender_mac + sender_ip + target_mac + target_ip
    return (dst + sender_mac + struct.pack("!H", ETH_P_ARP) + arp).ljust(60, b"\0")


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = ECHO_PAYLOAD) -> bytes:
    """An ICMP echo request (no IP header: the kernel adds it)."""
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
    csum = inet_checksum(head + payload)
    return head[:2] + struct.pack("!H", csum) + head[4:] + payload


@dataclass(frozen=True)
class ArpSeen:
    """The fields of a received ARP frame that the probe looks at."""

    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_ip: bytes


def parse_arp(frame: bytes) -> ArpSeen | None:
    """The ARP fields of an Ethernet frame, or None if it is not IPv4-over-Ethernet ARP."""
    if (
        len(frame) < 42
        or frame[12:14] != b"\x08\x06"
        or frame[14:20] != b"\x00\x01\x08\x00\x06\x04"
    ):
        return None
    op = int.from_bytes(frame[20:22], "big")
    return ArpSeen(op, frame[22:28], frame[28:32], frame[38:42])


def parse_echo_reply(frame: bytes) -> tuple[bytes, bytes, int, int] | None:
    """``(source MAC, source IP, ICMP id, ICMP seq)`` of an echo-reply frame, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return None
    ihl = (frame[14] & 0x0F) * 4
    icmp = 14 + ihl
    if len(frame) < icmp + 8 or frame[icmp] != 0:
        return None
    ident, seq = struct.unpack_from("!HH", frame, icmp + 4)
    return frame[6:12], frame[26:30], ident, seq


def echo_reply_filter(ident: int) -> list[tuple[int, int, int, int]]:
    """A classic BPF program (for SO_ATTACH_FILTER on a raw AF_PACKET socket) that keeps
    unfragmented IPv4 ICMP echo replies with id ``ident``, truncated to 128 bytes."""
    return [
        (0x28, 0, 0, 12),  # ldh [12]            ethertype
        (0x15, 0, 10, ETH_P_IP),  # jeq IPv4 else drop
        (0x30, 0, 0, 23),  # ldb [23]            IP protocol
        (0x15, 0, 8, 1),  # jeq ICMP else drop
        (0x28, 0, 0, 20),  # ldh [20]            flags + fragment offset
        (0x45, 6, 0, 0x1FFF),  # jset fragment -> drop
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)   IP header length
        (0x50, 0, 0, 14),  # ldb [x+14]          ICMP type
        (0x15, 0, 3, 0),  # jeq echo reply else drop
        (0x48, 0, 0, 18),  # ldh [x+18]          ICMP id
        (0x15, 0, 1, ident),  # jeq ident else drop
        (0x06, 0, 0, 128),  # ret 128
        (0x06, 0, 0, 0),  # drop: ret 0
    ]


def _attach_filter(sock: socket.socket, program: Sequence[tuple[int, int, int, int]]) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _ifreq(sock: socket.socket, request: int, interface: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, struct.pack("256s", interface.encode()))


def interface_identity(interface: str) -> tuple[bytes, str, int]:
    """``(MAC, IPv4 address, prefix length)`` of ``interface`` in this network namespace.

    Asked of the kernel with ioctls: /sys would describe the namespace sysfs was mounted
    in, which on a lab host is the machine's. Raises :class:`ProbeError`.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            mac = _ifreq(s, SIOCGIFHWADDR, interface)[18:24]
        except OSError as e:
            raise ProbeError(f"interface {interface}: {e.strerror}") from None
        try:
            ip = socket.inet_ntoa(_ifreq(s, SIOCGIFADDR, interface)[20:24])
            mask = _ifreq(s, SIOCGIFNETMASK, interface)[20:24]
        except OSError as e:
            raise ProbeError(f"interface {interface} has no IPv4 address ({e.strerror})") from None
    prefix = int.from_bytes(mask, "big").bit_count()
    return mac, ip, prefix


def announce(interface: str, alias: str, count: int = 3) -> None:
    """Send ``count`` gratuitous ARP requests for ``alias`` from ``interface``'s MAC.

    A helper for tests that play a server taking an alias over by hand (``arping -U``
    is not installed on every machine)::

        lab.run_python("standby1", "from mxone_lab import probe; "
                       "probe.announce('eth0', '10.77.0.52')")
    """
    if not 1 <= count <= 100:
        raise ProbeError(f"announce count {count} is invalid: 1..100")
    mac, _, _ = interface_identity(interface)
    ip = socket.inet_aton(alias)
    frame = arp_frame(1, mac, ip, ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
        s.bind((interface, 0))
        for _ in range(count):
            s.send(frame)


# ------------------------------------------------------------------- the probe


class _Output:
    """JSON lines to a file or stdout, buffered, flushed every FLUSH_EVERY s, capped."""

    def __init__(self, stream: IO[str], max_events: int) -> None:
        self.stream = stream
        self.max_events = max_events
        self.events = 0
        self.dropped = 0
        self._pending: list[str] = []
        self._flushed = time.monotonic()

    @property
    def full(self) -> bool:
        return self.events >= self.max_events

    def event(self, record: dict[str, Any]) -> None:
        if self.full:
            self.dropped += 1
            return
        self.events += 1
        self.line(record)

    def line(self, record: dict[str, Any]) -> None:
        self._pending.append(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self, now: float, force: bool = False) -> None:
        if self._pending and (force or now - self._flushed >= FLUSH_EVERY):
            self.stream.write("".join(self._pending))
            self.stream.flush()
            self._pending.clear()
            self._flushed = now


class _Probe:
    """The sockets and the loop. Construct (opens the sockets), then :meth:`run` once."""

    def __init__(self, opts: ProbeOptions, out: _Output) -> None:
        self.opts = opts
        self.out = out
        self.aliases = list(opts.aliases)
        self.packed = {socket.inet_aton(a): a for a in self.aliases}
        self.mac, self.ip, prefix = interface_identity(opts.interface)
        problems = subnet_problems(self.aliases, self.ip, prefix)
        if problems:
            raise ProbeError("; ".join(problems))
        self.ident = os.getpid() & 0xFFFF
        self.stop_reason: str | None = None
        self.sent = {a: {"arp": 0, "icmp": 0} for a in self.aliases}
        self.send_errors: dict[str, dict[str, int]] = {a: {} for a in self.aliases}
        # The round open for each alias: (start time, answering MACs), None before the first.
        self.rounds: dict[str, tuple[float, set[str]] | None] = dict.fromkeys(self.aliases)
        self.seq = dict.fromkeys(self.aliases, -1)  # last sequence number sent per alias

        self.arp_sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.arp_sock.bind((opts.interface, ETH_P_ARP))
        self.arp_sock.setblocking(False)
        if opts.arp_sender == "observer":
            # Locally administered, unicast, never a lab host's (those are 02:77:...).
            self.arp_mac = b"\x02\x70\x72" + secrets.token_bytes(3)
            arp_ip = b"\0\0\0\0"
            # Replies come to this MAC: have the interface accept it (a NIC that filters
            # unicast would drop them; the kernel's own ARP and IP still ignore them).
            mreq = struct.pack(
                "iHH8s", socket.if_nametoindex(opts.interface), PACKET_MR_UNICAST, 6, self.arp_mac
            )
            self.arp_sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        else:
            self.arp_mac, arp_ip = self.mac, socket.inet_aton(self.ip)
        # Protocol 0 receives nothing until the bind, so no frame gets past before the filter.
        self.cap_sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        _attach_filter(self.cap_sock, echo_reply_filter(self.ident))
        self.cap_sock.bind((opts.interface, ETH_P_IP))
        self.cap_sock.setblocking(False)
        self.icmp_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        # Replies are read on the capture socket; this one must not queue a copy of each.
        self.icmp_sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", 0xFFFFFFFF))
        self.icmp_sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_BINDTODEVICE, opts.interface.encode()
        )
        self.icmp_sock.setblocking(False)
        self.requests = {
            a: arp_frame(1, self.arp_mac, arp_ip, socket.inet_aton(a)) for a in self.aliases
        }

    def close(self) -> None:
        for s in (self.arp_sock, self.cap_sock, self.icmp_sock):
            s.close()

    def start_record(self, t: float) -> dict[str, Any]:
        return {
            "t": round(t, 6),
            "kind": "start",
            "pid": os.getpid(),
            "interface": self.opts.interface,
            "mac": mac_text(self.mac),
            "ip": self.ip,
            "aliases": self.aliases,
            "arp_every": self.opts.arp_every,
            "icmp_every": self.opts.icmp_every,
            "duration": self.opts.duration,
            "icmp_id": self.ident,
            "arp_sender": self.opts.arp_sender,
            "arp_mac": mac_text(self.arp_mac),
        }

    def summary_record(self, t: float) -> dict[str, Any]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "t": round(t, 6),
            "kind": "summary",
            "reason": self.stop_reason,
            "events": self.out.events,
            "dropped": self.out.dropped,
            "sent": self.sent,
            "send_errors": self.send_errors,
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        }

    def run(self, start: float) -> None:
        opts = self.opts
        deadline = start + opts.duration
        next_arp = start if opts.arp_every else math.inf
        next_icmp = start if opts.icmp_every else math.inf
        poller = select.poll()
        poller.register(self.arp_sock, select.POLLIN)
        poller.register(self.cap_sock, select.POLLIN)
        while self.stop_reason is None:
            now = time.monotonic()
            if now >= deadline:
                self.stop_reason = "duration"
                break
            if now >= next_arp:
                self._arp_round(now)
                next_arp = _next_tick(next_arp, opts.arp_every, now)
            if now >= next_icmp:
                self._echo_requests()
                next_icmp = _next_tick(next_icmp, opts.icmp_every, now)
            self.out.flush(now)
            if self.out.full:
                self.stop_reason = "max-events"
                break
            wait = min(next_arp, next_icmp, deadline, now + FLUSH_EVERY) - time.monotonic()
            # poll() sleeps at least one ms-tick when asked for 0 < x < 1 ms: round up.
            for fd, _ in poller.poll(max(0, math.ceil(wait * 1000))):
                if fd == self.arp_sock.fileno():
                    self._read_arp()
                else:
                    self._read_replies()

    def _arp_round(self, now: float) -> None:
        for a in self.aliases:
            self._close_round(a)
            try:
                self.arp_sock.send(self.requests[a])
                self.sent[a]["arp"] += 1
            except OSError as e:
                self._send_error(a, e)
            self.rounds[a] = (now, set())

    def _close_round(self, alias: str) -> None:
        opened = self.rounds[alias]
        if opened is not None:
            t, macs = opened
            self.out.event({"t": round(t, 6), "kind": "arp", "alias": alias, "macs": sorted(macs)})

    def _echo_requests(self) -> None:
        for a in self.aliases:
            seq = self.seq[a] + 1
            try:
                self.icmp_sock.sendto(echo_request(self.ident, seq), (a, 0))
                self.sent[a]["icmp"] += 1
            except OSError as e:
                self._send_error(a, e)
            self.seq[a] = seq  # a failed send still uses its number: replies stay matched

    def _send_error(self, alias: str, e: OSError) -> None:
        name = errno_names.errorcode.get(e.errno or 0, str(e.errno))
        self.send_errors[alias][name] = self.send_errors[alias].get(name, 0) + 1

    def _read_arp(self) -> None:
        while True:
            try:
                frame, addr = self.arp_sock.recvfrom(128)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            arp = parse_arp(frame)
            if arp is None:
                continue
            alias = self.packed.get(arp.sender_ip)
            if alias is None:
                continue
            now = time.monotonic()
            if arp.target_ip == arp.sender_ip:
                self.out.event(
                    {
                        "t": round(now, 6),
                        "kind": "garp",
                        "alias": alias,
                        "mac": mac_text(arp.sender_mac),
                        "op": arp.op,
                    }
                )
            elif arp.op == 2:
                opened = self.rounds[alias]
                if opened is not None:
                    opened[1].add(mac_text(arp.sender_mac))

    def _read_replies(self) -> None:
        while True:
            try:
                frame, addr = self.cap_sock.recvfrom(128)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            reply = parse_echo_reply(frame)
            if reply is None:
                continue
            src_mac, src_ip, ident, wire_seq = reply
            alias = self.packed.get(src_ip)
            if alias is None or ident != self.ident:
                continue
            last = self.seq[alias]
            seq = last - ((last - wire_seq) & 0xFFFF)  # undo the 16-bit wrap
            self.out.event(
                {
                    "t": round(time.monotonic(), 6),
                    "kind": "icmp",
                    "alias": alias,
                    "mac": mac_text(src_mac),
                    "seq": seq,
                }
            )


def _next_tick(previous: float, every: float, now: float) -> float:
    """The next send time: on the grid, but never a burst to catch up after a stall."""
    tick = previous + every
    return tick if tick > now else now + every


def run(opts: ProbeOptions, stdout: IO[str] | None = None) -> int:
    """Run one probe to its end; the exit status (0, or 2 when it could not start).

    Signal handlers only set a flag; the loop notices within FLUSH_EVERY s.
    """
    stdout = stdout or sys.stdout
    problems = option_problems(opts)
    if problems:
        print("probe: " + "; ".join(problems), file=sys.stderr)
        return 2
    # The hard bound, should the loop ever get stuck (a blocked stdout, say).
    signal.alarm(math.ceil(opts.duration) + ALARM_MARGIN)
    stream: IO[str] = stdout
    try:
        if opts.out != "-":
            stream = open(opts.out, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        out = _Output(stream, opts.max_events)
        probe = _Probe(opts, out)
    except (OSError, ProbeError) as e:
        print(f"probe: cannot start: {e}", file=sys.stderr)
        signal.alarm(0)
        if stream is not stdout:
            stream.close()
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        probe.stop_reason = "signal"

    old_handlers = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        start = time.monotonic()
        record = probe.start_record(start)
        out.line(record)
        out.flush(start, force=True)
        if stream is not stdout:
            print(json.dumps(record, separators=(",", ":")), file=stdout, flush=True)
        probe.run(start)
    finally:
        for a in probe.aliases:
            # A round that ran its full interval is complete; a younger one is not written.
            opened = probe.rounds[a]
            if opened is not None and time.monotonic() - opened[0] >= opts.arp_every:
                probe._close_round(a)
        now = time.monotonic()
        probe.stop_reason = probe.stop_reason or "error"
        out.line(probe.summary_record(now))
        out.flush(now, force=True)
        probe.close()
        if stream is not stdout:
            stream.close()
        signal.alarm(0)
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> ProbeOptions:
    """The command line as :class:`ProbeOptions` (not yet checked: :func:`option_problems`)."""
    p = argparse.ArgumentParser(
        prog="python -m mxone_lab.probe",
        description="Watch aliases from a client: ARP rounds, gratuitous ARP, ICMP echo.",
    )
    p.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="A",
        help="an alias IPv4 address to watch (repeat for several)",
    )
    p.add_argument(
        "--arp-every",
        type=float,
        default=0.1,
        metavar="S",
        help="seconds between ARP rounds (0: none; default 0.1)",
    )
    p.add_argument(
        "--icmp-every",
        type=float,
        default=0.01,
        metavar="S",
        help="seconds between echo requests to each alias (0: none; default 0.01)",
    )
    p.add_argument(
        "--duration",
        type=float,
        required=True,
        metavar="S",
        help=f"stop after this many seconds (hard bound, at most {MAX_DURATION:g})",
    )
    p.add_argument(
        "--arp-sender",
        choices=ARP_SENDERS,
        default="client",
        help="who asks in ARP rounds: the client itself (default) or an observer "
        "whose answers the client's kernel never sees",
    )
    p.add_argument("--interface", default="eth0", help="the interface to probe on (eth0)")
    p.add_argument("--out", default="-", metavar="FILE", help="JSON lines go here (- = stdout)")
    p.add_argument(
        "--max-events",
        type=int,
        default=DEFAULT_MAX_EVENTS,
        metavar="N",
        help=f"stop after writing N events (default {DEFAULT_MAX_EVENTS})",
    )
    a = p.parse_args(argv)
    return ProbeOptions(
        aliases=tuple(a.alias),
        arp_every=a.arp_every,
        icmp_every=a.icmp_every,
        duration=a.duration,
        interface=a.interface,
        out=a.out,
        max_events=a.max_events,
        arp_sender=a.arp_sender,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


# -------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class ArpRound:
    """One ARP round for one alias: sent at ``t``, answered by ``macs`` (maybe none)."""

    t: float
    alias: str
    macs: frozenset[str]


@dataclass(frozen=True)
class Garp:
    """A gratuitous ARP for ``alias`` from ``mac``, seen at ``t`` (``op`` 1 or 2)."""

    t: float
    alias: str
    mac: str
    op: int


@dataclass(frozen=True)
class EchoReply:
    """An echo reply from ``alias``, received at ``t`` in a frame from ``mac``."""

    t: float
    alias: str
    mac: str
    seq: int


def json_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects of ``lines``; a line that is not one (torn by a kill) is skipped."""
    records = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict):
            records.append(r)
    return records


def _within(t: float, since: float | None, until: float | None) -> bool:
    return (since is None or t >= since) and (until is None or t <= until)


@dataclass(frozen=True)
class ProbeLog:
    """A probe's output, parsed; immutable. Windows (``since``/``until``) are inclusive
    ``time.monotonic()`` values; None means open. An ARP round is placed at the time its
    request was sent. Events of every kind are in time order."""

    start: dict[str, Any] | None
    summary: dict[str, Any] | None
    rounds: tuple[ArpRound, ...]
    garps: tuple[Garp, ...]
    replies: tuple[EchoReply, ...]

    @classmethod
    def parse(cls, text: str) -> ProbeLog:
        """Parse JSON lines; a torn last line (a killed probe) and unknown kinds are skipped."""
        return cls.from_records(json_records(text.splitlines()))

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> ProbeLog:
        """A log of records already decoded (one dict per line); unknown kinds are skipped."""
        start = summary = None
        rounds, garps, replies = [], [], []
        for r in records:
            kind = r.get("kind")
            if kind == "arp":
                rounds.append(ArpRound(float(r["t"]), r["alias"], frozenset(r["macs"])))
            elif kind == "icmp":
                replies.append(EchoReply(float(r["t"]), r["alias"], r["mac"], int(r["seq"])))
            elif kind == "garp":
                garps.append(Garp(float(r["t"]), r["alias"], r["mac"], int(r.get("op", 1))))
            elif kind == "start":
                start = r
            elif kind == "summary":
                summary = r
        return cls(
            start=start,
            summary=summary,
            rounds=tuple(sorted(rounds, key=lambda e: e.t)),
            garps=tuple(sorted(garps, key=lambda e: e.t)),
            replies=tuple(sorted(replies, key=lambda e: e.t)),
        )

    # -- coverage

    @property
    def complete(self) -> bool:
        """True when the probe wrote its summary (it stopped in order)."""
        return self.summary is not None

    @property
    def began(self) -> float | None:
        """When the probe started (its start line), None if that line is missing."""
        return float(self.start["t"]) if self.start else None

    @property
    def end(self) -> float | None:
        """The last moment the log covers: the summary's time, else the last event's."""
        if self.summary:
            return float(self.summary["t"])
        times = [e[-1].t for e in (self.rounds, self.garps, self.replies) if e]
        return max(times) if times else self.began

    def sent(self, alias: str) -> dict[str, int]:
        """``{"arp": n, "icmp": n}`` sent to ``alias`` (from the summary; {} without one)."""
        return dict((self.summary or {}).get("sent", {}).get(alias, {}))

    # -- selections

    def rounds_of(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> list[ArpRound]:
        return [r for r in self.rounds if r.alias == alias and _within(r.t, since, until)]

    def replies_of(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> list[EchoReply]:
        return [r for r in self.replies if r.alias == alias and _within(r.t, since, until)]

    def garps_of(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> list[Garp]:
        return [g for g in self.garps if g.alias == alias and _within(g.t, since, until)]

    # -- questions

    def two_owner_rounds(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> list[tuple[float, frozenset[str]]]:
        """``(t, macs)`` of every ARP round in which more than one MAC answered for
        ``alias``: the moments the invariant was broken (want: none)."""
        return [(r.t, r.macs) for r in self.rounds_of(alias, since, until) if len(r.macs) > 1]

    def answering_macs(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> set[str]:
        """Every MAC that answered for ``alias`` in the window, in ARP rounds or by echo
        replies (a gratuitous ARP announces, it does not answer: see :meth:`garps_of`)."""
        macs = {m for r in self.rounds_of(alias, since, until) for m in r.macs}
        return macs | {r.mac for r in self.replies_of(alias, since, until)}

    def outage(self, alias: str, since: float, until: float | None = None) -> float | None:
        """The longest time without an echo reply from ``alias`` in ``[since, until]``:
        from ``since`` to the first reply, between two consecutive replies, or from the
        last reply to ``until`` (an outage still going on counts). ``until`` defaults to,
        and never goes past, :attr:`end`. None when no reply came in the window at all
        (the alias never answered after ``since``).
        """
        end = self.end
        if until is None or (end is not None and until > end):
            until = end
        times = [r.t for r in self.replies_of(alias, since, until)]
        if not times:
            return None
        edges = [since, *times] + ([until] if until is not None else [])
        return max(b - a for a, b in itertools.pairwise(edges))

    def first_reply_from(self, alias: str, mac: str, since: float | None = None) -> float | None:
        """When the first echo reply from ``alias`` came in a frame from ``mac``."""
        return next((r.t for r in self.replies_of(alias, since) if r.mac == mac), None)

    def last_reply_from(self, alias: str, mac: str, until: float | None = None) -> float | None:
        """When the last echo reply from ``alias`` came in a frame from ``mac``."""
        times = [r.t for r in self.replies_of(alias, None, until) if r.mac == mac]
        return times[-1] if times else None

    def owner_after(self, alias: str, t: float) -> str | None:
        """The one MAC that answered every ARP round and sent every echo reply for
        ``alias`` from ``t`` on; None if a round went unanswered, several MACs answered,
        or nothing was seen after ``t``."""
        macs: set[str] = set()
        rounds = self.rounds_of(alias, since=t)
        for r in rounds:
            if len(r.macs) != 1:
                return None
            macs |= r.macs
        macs |= {r.mac for r in self.replies_of(alias, since=t)}
        return next(iter(macs)) if len(macs) == 1 else None


# ---------------------------------------------------------------------- Prober


class Prober:
    """The probe running on a lab host for the length of a ``with`` block.

    Entering starts ``python -m mxone_lab.probe`` on ``host`` with :meth:`Lab.popen` and
    returns once its sockets are open (its start line arrived), so the block's actions are
    seen; leaving stops it by its PID (SIGTERM, then SIGKILL after ``stop_timeout``) and
    reads its output back. :meth:`log` works during the block (what was flushed so far)
    and after it (everything, summary included). The output file lives on the host
    (``/var/tmp``, in its own overlay) and is removed once read back; :meth:`log` reads
    only what was added since its last call, so polling it stays cheap.
    """

    def __init__(
        self,
        lab: Lab,
        host: str,
        aliases: Sequence[str],
        *,
        arp_every: float = 0.1,
        icmp_every: float = 0.01,
        duration: float = 60.0,
        interface: str = "eth0",
        max_events: int = DEFAULT_MAX_EVENTS,
        arp_sender: str = "client",
        start_timeout: float = 10.0,
        stop_timeout: float = 3.0,
    ) -> None:
        self.lab = lab
        self.host = host
        self.options = ProbeOptions(
            aliases=tuple(str(a) for a in aliases),
            arp_every=arp_every,
            icmp_every=icmp_every,
            duration=duration,
            interface=interface,
            out=f"/var/tmp/mxone-probe-{secrets.token_hex(4)}.jsonl",
            max_events=max_events,
            arp_sender=arp_sender,
        )
        problems = option_problems(self.options)
        if problems:
            raise ProbeError(f"probe on {host}: " + "; ".join(problems))
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._records: list[dict[str, Any]] = []
        self._read_bytes = 0  # of the output file, up to the end of the last whole line
        self._stopped = False
        self.start_record: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        """The probe's PID (on the machine: the lab's hosts share its PID namespace)."""
        return self._proc.pid if self._proc else None

    def argv(self) -> list[str]:
        o = self.options
        argv = [sys.executable, "-m", "mxone_lab.probe"]
        for a in o.aliases:
            argv += ["--alias", a]
        return argv + [
            "--arp-every",
            repr(o.arp_every),
            "--icmp-every",
            repr(o.icmp_every),
            "--duration",
            repr(o.duration),
            "--interface",
            o.interface,
            "--out",
            o.out,
            "--max-events",
            str(o.max_events),
            "--arp-sender",
            o.arp_sender,
        ]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the probe and wait for its start line; :class:`ProbeError` if it fails."""
        if self._proc is not None:
            raise ProbeError(f"probe on {self.host} was already started")
        p = self.lab.popen(
            self.host,
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._proc = p
        assert p.stdout is not None
        line = b""
        deadline = time.monotonic() + self.start_timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, left))
            chunk = os.read(p.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                why = "exited" if ready else f"sent no start line within {self.start_timeout:g} s"
                self._end()
                self._stopped = True
                self._remove_output()
                err = self._stderr()
                raise ProbeError(f"probe on {self.host} {why}" + (f": {err}" if err else ""))
            line += chunk
        self.start_record = json.loads(line.splitlines()[0])

    def log(self) -> ProbeLog:
        """The output so far (while running: what the probe flushed) or all of it (once
        stopped)."""
        if not self._stopped:
            self._read_more(final=False)
        return ProbeLog.from_records(self._records)

    def stop(self) -> ProbeLog:
        """Stop the probe (idempotent), read the rest of its output and remove the file."""
        if self._proc is None:
            raise ProbeError(f"probe on {self.host} was never started")
        if not self._stopped:
            self._end()
            self._read_more(final=True)
            self._stopped = True
            self._remove_output()
            for f in (self._proc.stdout, self._proc.stderr):
                if f is not None:
                    f.close()
        return ProbeLog.from_records(self._records)

    def _end(self) -> None:
        p = self._proc
        assert p is not None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def _read_more(self, final: bool) -> None:
        """Decode the whole lines the file gained since the last read (and, when ``final``,
        a torn last line too, which the decoder then skips)."""
        argv = ["tail", "-c", f"+{self._read_bytes + 1}", self.options.out]
        r = self.lab.exec(self.host, argv, check=False, timeout=30)
        if r.returncode != 0:
            raise ProbeError(
                f"cannot read the probe's output {self.options.out} on "
                f"{self.host}: {r.stderr.strip()}"
            )
        text = r.stdout  # JSON lines of ASCII only: characters are bytes
        whole = len(text) if final else text.rfind("\n") + 1
        self._records += json_records(text[:whole].splitlines())
        self._read_bytes += whole

    def _remove_output(self) -> None:
        with contextlib.suppress(LabError):
            self.lab.exec(self.host, ["rm", "-f", self.options.out], timeout=10)

    def _stderr(self) -> str:
        p = self._proc
        if p is None or p.stderr is None or p.poll() is None:
            return ""
        return p.stderr.read().decode("utf-8", "replace").strip()


if __name__ == "__main__":
    sys.exit(main())
