"""What the pool offers on the wire: algorithms, the pinned host-key type, socket options.

The negotiation tests run the pool's real client against paramiko's own SSH server on one
end of a socketpair (no network): the server holds both an RSA and an ed25519 host key, as
an OpenSSH server does, and presents the one the client asks for first.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from mxone_maintenance import ssh, sshwire

WEAK = ("cbc", "3des", "hmac-sha1", "hmac-md5", "group1-", "group14-sha1",
        "group-exchange-sha1")


def test_only_strong_algorithms_are_offered_cheapest_first() -> None:
    t = sshwire.Transport(socket.socketpair()[0])
    offered = (*t.preferred_kex, *t.preferred_ciphers, *t.preferred_macs, *t.preferred_keys)
    assert not [a for a in offered if any(w in a for w in WEAK)]
    assert "ssh-rsa" not in t.preferred_keys  # RSA host keys only with SHA-2 signatures
    assert t.preferred_kex[0] in ("mlkem768x25519-sha256", "curve25519-sha256@libssh.org")
    assert "curve25519-sha256@libssh.org" in t.preferred_kex[:2]
    assert t.preferred_ciphers[0] == "aes128-gcm@openssh.com"
    assert t.preferred_macs[0] == "hmac-sha2-256-etm@openssh.com"
    assert t.preferred_keys[0] == "ssh-ed25519"
    assert t.preferred_compression == ("none",)
    t.close()


@pytest.mark.parametrize(("pinned", "first"), [
    ((), ("ssh-ed25519",)),
    (("ssh-ed25519",), ("ssh-ed25519",)),
    (("ssh-rsa",), ("rsa-sha2-512", "rsa-sha2-256")),
    (("ecdsa-sha2-nistp256",), ("ecdsa-sha2-nistp256",)),
])
def test_the_pinned_host_key_type_is_asked_for_first(pinned: tuple[str, ...],
                                                      first: tuple[str, ...]) -> None:
    order = sshwire.host_key_order(pinned)
    assert order[:len(first)] == first
    assert sorted(order) == sorted(sshwire.HOST_KEYS)  # the others still offered, after


class _Server(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, paramiko.PKey]]:
    """A server with an RSA and an ed25519 host key; the pool's connect leads to it."""
    keys = {"ssh-rsa": paramiko.RSAKey.generate(2048), "ssh-ed25519": _ed25519(tmp_path)}
    transports: list[paramiko.Transport] = []

    def connect(address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        mine, theirs = socket.socketpair()
        t = paramiko.Transport(theirs)
        for k in keys.values():
            t.add_server_key(k)
        transports.append(t)
        t.start_server(event=threading.Event(), server=_Server())
        return mine

    monkeypatch.setattr(sshwire.socket, "create_connection", connect)
    yield keys
    for t in transports:
        t.close()


def _ed25519(tmp: Path) -> paramiko.PKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    for name in ("host", "user"):
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption())
        (tmp / name).write_bytes(pem)
    return paramiko.Ed25519Key.from_private_key_file(str(tmp / "host"))


@pytest.mark.parametrize("pinned", ["ssh-rsa", "ssh-ed25519"])
def test_a_server_presents_the_pinned_key_and_gcm_is_chosen(
        server: dict[str, paramiko.PKey], tmp_path: Path, pinned: str) -> None:
    key = server[pinned]
    (tmp_path / "known_hosts").write_text(f"s1,10.0.0.1 {key.get_name()} {key.get_base64()}\n")
    with ssh.Pool(tmp_path / "known_hosts", tmp_path / "user") as pool:
        conn = pool.connection(ssh.Target("s1", ("10.0.0.1",)))
        t = conn.transport
        assert t.get_remote_server_key() == key  # an RSA-pinned server is not "changed"
        assert t.local_cipher == t.remote_cipher == "aes128-gcm@openssh.com"


def test_a_tcp_connection_sends_and_acknowledges_at_once() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        sock = sshwire.connect("127.0.0.1", listener.getsockname()[1], 2.0)
        peer, _ = listener.accept()
        with sock, peer:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert sock.gettimeout() == 2.0
            peer.sendall(b"x")
            sock.setsockopt(socket.IPPROTO_TCP, sshwire._QUICKACK, 0)
            assert sock.recv(1) == b"x"
            assert sock.getsockopt(socket.IPPROTO_TCP, sshwire._QUICKACK)  # set again
    finally:
        listener.close()


class _Refusing(_Server):
    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        return False


def test_a_refused_command_is_reported_at_once(server: dict[str, paramiko.PKey], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The exec request's answer is not awaited: a refusal closes the channel instead.
    monkeypatch.setattr(sys.modules[__name__], "_Server", _Refusing)
    key = server["ssh-ed25519"]
    (tmp_path / "known_hosts").write_text(f"s1,10.0.0.1 {key.get_name()} {key.get_base64()}\n")
    with ssh.Pool(tmp_path / "known_hosts", tmp_path / "user") as pool:
        r = pool.run(ssh.Target("s1", ("10.0.0.1",)), "true", timeout=10)
    assert not r.ok and "refused" in r.error and r.seconds < 5


def test_a_debug_message_is_formatted_only_for_a_debug_log(
        monkeypatch: pytest.MonkeyPatch) -> None:
    formatted: list[bytes] = []
    monkeypatch.setattr(paramiko.util, "safe_string",
                        lambda s: formatted.append(s) or s)
    t = sshwire.Transport(socket.socketpair()[0])

    def debug() -> paramiko.Message:
        m = paramiko.Message()
        m.add_boolean(False)
        m.add_string("/root/.ssh/authorized_keys:1: key options: agent-forwarding")
        m.add_string("")
        m.rewind()
        return m

    t.logger.setLevel(logging.WARNING)
    t._parse_debug(debug())
    assert formatted == []
    t.logger.setLevel(logging.DEBUG)
    t._parse_debug(debug())
    assert len(formatted) == 1
    t.logger.setLevel(logging.NOTSET)
    t.close()
