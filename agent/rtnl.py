"""Adding an address over rtnetlink, packed with ``struct``: the one address operation on a
takeover's path.

pyroute2 (:mod:`mxone_agent.network`) does every other address operation. Its first
``addr("add")`` in a process costs milliseconds of lazy set-up, and a takeover is usually
the first add on a standby; one RTM_NEWADDR message on a socket opened at start costs a
tenth of one. EEXIST is success: the address is there.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading

NETLINK_ROUTE = 0
RTM_NEWADDR = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
IFA_ADDRESS = 1
IFA_LOCAL = 2
RT_SCOPE_UNIVERSE = 0
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
REPLY_TIMEOUT = 1.0


def _nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def new_address(index: int, address: ipaddress.IPv4Address, prefix: int, seq: int) -> bytes:
    """The RTM_NEWADDR request for ``address/prefix`` on interface ``index`` (create, and
    fail with EEXIST when it is there)."""
    packed = address.packed
    body = (_IFADDR.pack(socket.AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, index)
            + _nla(IFA_LOCAL, packed) + _nla(IFA_ADDRESS, packed))
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _HDR.pack(_HDR.size + len(body), RTM_NEWADDR, flags, seq, 0) + body


class AddressAdder:
    """One rtnetlink socket, opened on first use (:meth:`open` at start keeps that off the
    takeover path); thread-safe."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._seq = 0

    def open(self) -> None:
        with self._lock:
            self._open()

    def _open(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                              NETLINK_ROUTE)
            s.bind((0, 0))
            s.settimeout(REPLY_TIMEOUT)
            self._sock = s
        return self._sock

    def add(self, index: int, address: ipaddress.IPv4Address, prefix: int) -> bool:
        """Add ``address/prefix`` on interface ``index``: True when added, False when it was
        there already; OSError with the kernel's errno otherwise."""
        with self._lock:
            s = self._open()
            self._seq = (self._seq + 1) & 0x7FFFFFFF
            seq = self._seq
            s.send(new_address(index, address, prefix, seq))
            while True:
                chunk = s.recv(65536)
                pos = 0
                while pos + _HDR.size <= len(chunk):
                    size, kind, _flags, got, _pid = _HDR.unpack_from(chunk, pos)
                    if size < _HDR.size:
                        break
                    if kind == NLMSG_ERROR and got == seq:
                        code = -struct.unpack_from("=i", chunk, pos + _HDR.size)[0]
                        if code == errno.EEXIST:
                            return False
                        if code:
                            raise OSError(code, os.strerror(code))
                        return True
                    pos += (size + 3) & ~3

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
