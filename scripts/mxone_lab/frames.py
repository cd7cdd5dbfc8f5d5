"""Ethernet frames the probe sends and reads, built and parsed by hand: ARP requests and
replies, gratuitous ARP, ICMP echo, the BPF program that keeps only the probe's echo
replies, and an interface's own identity (asked of the kernel)."""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from mxone_lab.errors import ProbeError

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
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
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


def attach_filter(sock: socket.socket, program: Sequence[tuple[int, int, int, int]]) -> None:
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

        lab.run_python("standby1", "from mxone_lab import frames; "
                       "frames.announce('eth0', '10.77.0.52')")
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
