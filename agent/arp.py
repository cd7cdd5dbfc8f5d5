"""ARP on the wire, packed with ``struct`` (see :mod:`mxone_agent.network` for why not scapy):
the frames the agent sends - gratuitous announcements and RFC 5227 probes - the answers it
reads, and :class:`ArpProbe`, a probe that goes on listening until it is read.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time

ETH_P_ARP = 0x0806
SOL_PACKET = 263
PACKET_STATISTICS = 6


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def arp_frame(op: int, src_mac: str, sender_ip: str, target_ip: str,
              dst_mac: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    """An Ethernet ARP frame (IPv4 over Ethernet): ``op`` 1 request, 2 reply; the target
    hardware address is left zero."""
    eth = _mac_bytes(dst_mac) + _mac_bytes(src_mac) + struct.pack(">H", ETH_P_ARP)
    arp = struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + _mac_bytes(src_mac) + \
        ipaddress.IPv4Address(sender_ip).packed + bytes(6) + \
        ipaddress.IPv4Address(target_ip).packed
    return eth + arp


def garp_frame(mac: str, alias: str) -> bytes:
    """A gratuitous ARP announcement: a broadcast request with sender = target = alias, the
    form every stack updates an existing cache entry from."""
    return arp_frame(1, mac, alias, alias)


def probe_frame(mac: str, alias: str) -> bytes:
    """An RFC 5227 ARP probe: sender IP 0.0.0.0, so no cache anywhere learns from it."""
    return arp_frame(1, mac, "0.0.0.0", alias)


class ArpProbe:
    """An RFC 5227 ARP probe on a socket of its own, bound to ``interface`` before the
    request goes out: every answer from then on is kept by the kernel until read, however
    late the probe is read (see :class:`Probe`)."""

    def __init__(self, interface: str, alias: ipaddress.IPv4Address, own_mac: str) -> None:
        self._target = ipaddress.IPv4Address(alias).packed
        self._mac = own_mac
        self._found: set[str] = set()
        self._dropped = 0
        # Protocol 0 at creation: the socket hears nothing until bound to the interface.
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            s.bind((interface, ETH_P_ARP))
            s.setblocking(False)
            self.started = time.monotonic()
            s.send(probe_frame(own_mac, str(alias)))
        except OSError:
            s.close()
            raise
        self._sock = s

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            answer = arp_reply_from(data, self._target)
            if answer is not None and answer != self._mac:
                self._found.add(answer)
        try:  # reading the statistics resets them: keep the sum
            _, drops = struct.unpack("=II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self._dropped += drops
        except OSError:
            self._dropped += 1  # cannot tell: count the window as not whole

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                break
            self._read()

    def answers(self) -> set[str] | None:
        self._read()
        return None if self._dropped else set(self._found)

    def close(self) -> None:
        self._sock.close()


def arp_reply_from(frame: bytes, target: bytes) -> str | None:
    """The sender MAC of ``frame`` if it is an ARP reply (or announcement) for ``target``."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op = struct.unpack_from(">H", frame, 20)[0]
    sha, spa = frame[22:28], frame[28:32]
    if op == 2 and spa == target:
        return ":".join(f"{b:02x}" for b in sha)
    return None
