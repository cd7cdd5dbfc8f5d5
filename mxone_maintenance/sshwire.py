"""A server's connection as it goes on the wire: the SSH algorithms the tool offers
(cheapest secure first), the host-key type it asks for, and the TCP socket's options.

paramiko's own defaults still offer CBC ciphers, 3DES, HMAC-SHA1 and HMAC-MD5 for old
servers; the tool offers none of them. OpenSSH has had X25519, AES-GCM and ed25519 since
6.5 (2014), and the server takes the first of the client's list that it also has, so the
lists are ordered by what a connection costs both ends:

* key exchange: ML-KEM-768 + X25519 where the server has it (OpenSSH 9.9 and later;
  post-quantum, and both halves are cheap), else X25519, then the NIST curves; finite-field
  Diffie-Hellman (costly: a 2048-4096 bit exponentiation on each end) only for a server
  with none of those, and never SHA-1 or group 1;
* ciphers: AES-GCM (one pass for encryption and integrity, AES-NI), then AES-CTR;
* MACs (used with CTR only): encrypt-then-MAC SHA-2 first;
* host keys: the type pinned for the server first (an RSA-pinned server keeps presenting
  its RSA key, and is not refused as "changed" for offering its ed25519 one); otherwise
  ed25519 first, whose signature costs the server a fraction of an RSA one, then ECDSA,
  then RSA with SHA-2 (never ``ssh-rsa``'s SHA-1 signatures).

(Against the lab's OpenSSH 9.2, which chose X25519 and ed25519 with paramiko's defaults
too, the order measured no faster: what it changes there is the weak algorithms gone.)

The socket sends each SSH message at once and acknowledges each one it receives at once
(TCP_NODELAY, TCP_QUICKACK before every read). Without them a login and a command each
stalled about 40 ms: a message written while the previous one was not yet acknowledged
waits for that acknowledgement (Nagle), and the other end held its acknowledgement back
for the next message it had to send (delayed ACK) - on any network, however fast.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

import paramiko  # type: ignore[import-untyped]

KEX = ("mlkem768x25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
       "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group16-sha512",
       "diffie-hellman-group-exchange-sha256", "diffie-hellman-group14-sha256")
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr",
           "aes256-ctr")
MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256",
        "hmac-sha2-512")
HOST_KEYS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "rsa-sha2-512", "rsa-sha2-256")

# A pinned key's type (as in known_hosts) -> the host-key algorithms that present it.
_ALGORITHMS_OF = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


def host_key_order(pinned: Iterable[str]) -> tuple[str, ...]:
    """The host-key algorithms to offer: those of the pinned key types first (in
    :data:`HOST_KEYS` order), then the others; :data:`HOST_KEYS` when nothing is pinned."""
    wanted = {a for t in pinned for a in _ALGORITHMS_OF.get(t, (t,))}
    return (tuple(a for a in HOST_KEYS if a in wanted)
            + tuple(a for a in HOST_KEYS if a not in wanted))


class Transport(paramiko.Transport):  # type: ignore[misc]
    """paramiko's client transport offering only :data:`KEX`, :data:`CIPHERS`,
    :data:`MACS` and (in :func:`transport`'s order) :data:`HOST_KEYS`."""

    _preferred_kex = tuple(k for k in KEX if k in paramiko.Transport._kex_info)
    _preferred_ciphers = CIPHERS
    _preferred_macs = MACS
    _preferred_keys: tuple[str, ...] = HOST_KEYS
    _preferred_compression = ("none",)

    def _parse_debug(self, m: paramiko.Message) -> None:
        # sshd sends one a login (the key's options); paramiko formats it byte by byte
        # for its debug log even when nothing logs it.
        if self.logger.isEnabledFor(logging.DEBUG):
            super()._parse_debug(m)

    def exec_nowait(self, chan: paramiko.Channel, command: str) -> None:
        """Ask the server to run ``command`` on ``chan`` without waiting for its answer to
        the request (paramiko's Channel.exec_command waits): one round trip less a server.
        sshd answers the request before any output; a refusal closes the channel, which
        the caller sees as an end without an exit status."""
        m = paramiko.Message()
        m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("exec")
        m.add_boolean(True)
        m.add_string(command)
        self._send_user_message(m)


def transport(sock: object, pinned: Iterable[str] = ()) -> Transport:
    """A client transport over ``sock`` asking first for the pinned host-key types."""
    t = Transport(sock)
    t._preferred_keys = host_key_order(pinned)
    return t


class _Socket(socket.socket):
    """A TCP socket that acknowledges at once whatever it reads (Linux resets TCP_QUICKACK
    on its own, so it is set again before every read)."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return super().recv(bufsize, flags)


_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


def connect(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to the server, set up for SSH's many small messages (see above).

    Raises OSError. A connection that is not TCP (a test's socketpair) is returned as it is.
    """
    sock = socket.create_connection((address, port), timeout=timeout)
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return sock
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quick = _Socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    quick.settimeout(timeout)
    return quick


def socket_reason(exc: OSError) -> str:
    """Why a TCP connection failed, in a few words."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (connect timed out)"
    return exc.strerror or str(exc) or type(exc).__name__
