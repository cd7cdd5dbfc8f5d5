"""The leases of :mod:`mxone_agent.lease` in the kernel: nf_tables set elements with a
timeout, renewed over netlink (:class:`NftLeases`; the ruleset is loaded with ``nft``).

A renewal is one nf_tables transaction "delete the element, add it again with a fresh
timeout": when the element has expired the delete fails with ENOENT and the whole
transaction is void, so a lapsed lease is never extended, however late its renewal
arrives.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable

from mxone_agent.lease import (
    LEASED,
    NFT_TIMEOUT,
    TABLE,
    LeaseError,
    LeaseKernel,
    ruleset,
)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWSETELEM = 12
NFT_MSG_GETSETELEM = 13
NFT_MSG_DELSETELEM = 14
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NFTA_TABLE_NAME = 1
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_TIMEOUT = 4
NFTA_SET_ELEM_EXPIRATION = 5
NFTA_DATA_VALUE = 1
NFPROTO = {"ip": 2, "arp": 3}
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_GEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big-endian)
REPLY_TIMEOUT = 1.0


def _nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _attrs(data: bytes) -> Iterable[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, pos)
        if size < 4:
            return
        yield kind & ~NLA_F_NESTED, data[pos + 4:pos + size]
        pos += (size + 3) & ~3


def _element_list(alias: str, timeout_ms: int | None, set_name: str = LEASED) -> bytes:
    key = _nla(NFTA_SET_ELEM_KEY | NLA_F_NESTED,
               _nla(NFTA_DATA_VALUE, ipaddress.IPv4Address(alias).packed))
    if timeout_ms is not None:
        key += _nla(NFTA_SET_ELEM_TIMEOUT, struct.pack(">Q", timeout_ms))
    return (_nla(NFTA_SET_ELEM_LIST_TABLE, TABLE.encode() + b"\0")
            + _nla(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
            + _nla(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED,
                   _nla(NFTA_LIST_ELEM | NLA_F_NESTED, key)))


class NftLeases(LeaseKernel):
    """Leases as nftables set elements: netlink for the elements (no process start on the
    heartbeat path), ``nft -f`` for the tables. Thread-safe: one lock around each exchange."""

    def __init__(self, nft: str = "nft") -> None:
        self._nft = nft
        self._lock = threading.Lock()
        self._seq = int(time.monotonic() * 1000) & 0x7FFFFFFF
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                              NETLINK_NETFILTER)
            s.bind((0, 0))
            s.settimeout(REPLY_TIMEOUT)
            self._sock = s
        return self._sock

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _next(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        return self._seq

    @staticmethod
    def _message(kind: int, flags: int, seq: int, family: int, body: bytes,
                 res_id: int = 0) -> bytes:
        payload = _GEN.pack(family, 0, socket.htons(res_id)) + body
        return _HDR.pack(_HDR.size + len(payload), kind, flags, seq, 0) + payload

    def _exchange(self, data: bytes, seqs: list[int], want_data: bool = False
                  ) -> tuple[dict[int, int], list[bytes]]:
        """Send ``data``; collect the error code (0 = done) of each of ``seqs`` and, with
        ``want_data``, the bodies of the answers that carry data."""
        s = self._socket()
        s.send(data)
        codes: dict[int, int] = {}
        bodies: list[bytes] = []
        while len(codes) < len(seqs):
            try:
                chunk = s.recv(65536)
            except TimeoutError as e:
                raise LeaseError("nf_tables did not answer within "
                                 f"{REPLY_TIMEOUT:.0f} s") from e
            pos = 0
            while pos + _HDR.size <= len(chunk):
                size, kind, _flags, seq, _pid = _HDR.unpack_from(chunk, pos)
                if size < _HDR.size:
                    break
                if kind == NLMSG_ERROR and seq in seqs:
                    codes[seq] = -struct.unpack_from("=i", chunk, pos + _HDR.size)[0]
                elif want_data and seq in seqs and kind not in (NLMSG_ERROR, NLMSG_DONE):
                    bodies.append(chunk[pos + _HDR.size + _GEN.size:pos + size])
                pos += (size + 3) & ~3
        return codes, bodies

    def _batch(self, messages: list[tuple[int, int, str, bytes]]) -> int:
        """One nf_tables transaction; 0 when it committed, else the first errno (nothing
        of it then took effect)."""
        with self._lock:
            parts = [self._message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, self._next(), 0, b"",
                                   NFNL_SUBSYS_NFTABLES)]
            seqs = []
            for kind, flags, family, body in messages:
                seq = self._next()
                seqs.append(seq)
                parts.append(self._message((NFNL_SUBSYS_NFTABLES << 8) | kind,
                                           flags | NLM_F_REQUEST | NLM_F_ACK, seq,
                                           NFPROTO[family], body))
            parts.append(self._message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, self._next(), 0, b"",
                                       NFNL_SUBSYS_NFTABLES))
            try:
                codes, _ = self._exchange(b"".join(parts), seqs)
            except OSError as e:
                raise LeaseError(f"nf_tables: {e.strerror or e}") from e
        return next((codes[s] for s in seqs if codes[s]), 0)

    def setup(self, guarded: set[str]) -> bool:
        try:
            existed = all(subprocess.run(
                [self._nft, "list", "set", f, TABLE, LEASED], capture_output=True,
                timeout=NFT_TIMEOUT, check=False).returncode == 0 for f in NFPROTO)
            r = subprocess.run([self._nft, "-f", "-"], input=ruleset(guarded),
                               capture_output=True, text=True, timeout=NFT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LeaseError(f"cannot set up the fence (nft): {e}") from e
        if r.returncode != 0:
            raise LeaseError(f"cannot set up the fence (nft): {r.stderr.strip()}")
        return existed

    def grant(self, alias: str, ms: int) -> None:
        # A new element first: at a takeover there is none, and a transaction that fails
        # costs the kernel 10-30 ms to undo (measured) where one that commits costs 0.2 ms.
        code = self._batch([(NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, f,
                             _element_list(alias, ms)) for f in NFPROTO])
        if code == errno.EEXIST and self.renew(alias, ms):
            return
        if code:
            raise LeaseError(f"cannot lease alias {alias}: {os.strerror(code)} (is the fence "
                             "set up?)")

    def renew(self, alias: str, ms: int) -> bool:
        messages = []
        for f in NFPROTO:
            messages += [(NFT_MSG_DELSETELEM, 0, f, _element_list(alias, None)),
                         (NFT_MSG_NEWSETELEM, NLM_F_CREATE, f, _element_list(alias, ms))]
        code = self._batch(messages)
        if code == errno.ENOENT:
            return False
        if code:
            raise LeaseError(f"cannot renew the lease of alias {alias}: {os.strerror(code)}")
        return True

    def revoke(self, alias: str) -> None:
        for f in NFPROTO:  # one family at a time: a missing element in one is no error
            code = self._batch([(NFT_MSG_DELSETELEM, 0, f, _element_list(alias, None))])
            if code not in (0, errno.ENOENT):
                raise LeaseError(f"cannot end the lease of alias {alias}: {os.strerror(code)}")

    def remaining(self, alias: str) -> float | None:
        left: list[float] = []
        for f in NFPROTO:
            with self._lock:
                seq = self._next()
                msg = self._message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
                                    NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO[f],
                                    _element_list(alias, None))
                try:
                    codes, bodies = self._exchange(msg, [seq], want_data=True)
                except OSError as e:
                    raise LeaseError(f"nf_tables: {e.strerror or e}") from e
            if codes[seq] or not bodies:
                return None
            ms = _expiration_ms(bodies[0])
            if ms is None:
                return None
            left.append(ms / 1000)
        return min(left) if left else None

    def delete_table(self, family: str, table: str) -> bool:
        """Delete nftables table ``family table`` over netlink (no ``nft`` process: the
        takeover path uses it); False when there was no such table."""
        code = self._batch([(NFT_MSG_DELTABLE, 0, family,
                             _nla(NFTA_TABLE_NAME, table.encode() + b"\0"))])
        if code == errno.ENOENT:
            return False
        if code:
            raise LeaseError(f"cannot delete nftables table {family} {table}: "
                             f"{os.strerror(code)}")
        return True

    def release(self) -> None:
        for f in NFPROTO:
            try:
                r = subprocess.run([self._nft, "delete", "table", f, TABLE],
                                   capture_output=True, text=True, timeout=NFT_TIMEOUT,
                                   check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise LeaseError(f"cannot remove the fence (nft): {e}") from e
            if r.returncode != 0 and "No such file" not in r.stderr:
                raise LeaseError(f"cannot remove the fence table {f} {TABLE}: "
                                 f"{r.stderr.strip()}")


def _expiration_ms(body: bytes) -> int | None:
    """The expiration (ms left) of the one element in a GETSETELEM answer's attributes."""
    for kind, value in _attrs(body):
        if kind != NFTA_SET_ELEM_LIST_ELEMENTS:
            continue
        for ekind, elem in _attrs(value):
            if ekind != NFTA_LIST_ELEM:
                continue
            for akind, attr in _attrs(elem):
                if akind == NFTA_SET_ELEM_EXPIRATION and len(attr) == 8:
                    return int(struct.unpack(">Q", attr)[0])
    return None


