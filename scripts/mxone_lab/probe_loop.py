"""The probe's own loop, on the client host: ARP rounds, gratuitous ARP and the ICMP echo
stream for each alias, written as JSON lines (the format: probe.py).

Signal handlers only set a flag; the loop notices within :data:`FLUSH_EVERY` s. Sockets:
one AF_PACKET socket for ARP (requests out, replies and gratuitous ARP in), a raw ICMP
socket that sends echo requests through the client's own kernel (its neighbour cache picks
the server), and an AF_PACKET capture socket that reads the echo replies with their MAC.
"""

from __future__ import annotations

import errno as errno_names
import json
import math
import os
import resource
import secrets
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from types import FrameType
from typing import IO, Any

from mxone_lab.errors import ProbeError
from mxone_lab.frames import (
    ETH_P_ARP,
    ETH_P_IP,
    ICMP_FILTER,
    PACKET_ADD_MEMBERSHIP,
    PACKET_MR_UNICAST,
    PACKET_OUTGOING,
    SOL_PACKET,
    SOL_RAW,
    arp_frame,
    attach_filter,
    echo_reply_filter,
    echo_request,
    interface_identity,
    mac_text,
    parse_arp,
    parse_echo_reply,
)

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
        attach_filter(self.cap_sock, echo_reply_filter(self.ident))
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
