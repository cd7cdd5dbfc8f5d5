"""ssh.Pool over many servers without a network: what each server costs LIM 1.

The servers here are paramiko's own SSH server, one per server, each on one end of a
socketpair handed to the pool in place of its TCP connection (no address, no port): the
client side is the pool's real one - key exchange, host key check against the pinned
file, login with the key file, one exec.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from mxone_maintenance import knownhosts, ssh, sshwire


def _keygen(path: Path) -> paramiko.Ed25519Key:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


class _Server(paramiko.ServerInterface):
    """Accepts the lab user's key; every exec prints the server's name and exits 0."""

    def __init__(self, name: str) -> None:
        self.name = name

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        def answer() -> None:
            # Only once the client has its exec reply (it then ends its input), as sshd
            # answers after its reply: an answer before it would close the channel first.
            end = time.monotonic() + 10
            while not channel.eof_received and time.monotonic() < end:
                time.sleep(0.001)
            channel.sendall(f"{self.name}\n".encode())
            channel.send_exit_status(0)
            channel.shutdown_write()
            channel.close()

        threading.Thread(target=answer, daemon=True).start()
        return True


class _Servers:
    """``count`` SSH servers s0..; those in ``silent`` accept the connection and never speak
    (a hung server); the pool's TCP connect is routed to them by address."""

    def __init__(self, tmp: Path, count: int, silent: frozenset[str] = frozenset()) -> None:
        self.host_key = _keygen(tmp / "host_key")
        _keygen(tmp / "user_key")
        self.user_key = tmp / "user_key"
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text("".join(
            f"s{i},10.0.0.{i} {self.host_key.get_name()} {self.host_key.get_base64()}\n"
            for i in range(count)))
        self.targets = [ssh.Target(f"s{i}", (f"10.0.0.{i}",)) for i in range(count)]
        self.silent = silent
        self._keep: list[object] = []
        self._transports: list[paramiko.Transport] = []

    def connect(self, address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        name = f"s{address[0].rsplit('.', 1)[1]}"
        mine, theirs = socket.socketpair()
        mine.settimeout(timeout)
        if name in self.silent:
            self._keep.append(theirs)
            return mine
        t = paramiko.Transport(theirs)
        t.add_server_key(self.host_key)
        self._transports.append(t)
        t.start_server(event=threading.Event(), server=_Server(name))
        return mine

    def close(self) -> None:
        for t in self._transports:
            t.close()


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Servers]:
    made: list[_Servers] = []

    def make(count: int, silent: frozenset[str] = frozenset()) -> _Servers:
        s = _Servers(tmp_path, count, silent)
        monkeypatch.setattr(sshwire.socket, "create_connection", s.connect)
        made.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in made:
        s.close()


def test_many_servers_answer_with_one_read_of_the_key_and_a_hung_one_is_named(
        servers, monkeypatch: pytest.MonkeyPatch) -> None:
    s = servers(24, frozenset({"s5", "s17"}))
    loads = []
    real_load = ssh.load_user_key

    def counting_load(path: Path) -> paramiko.PKey:
        loads.append(path)
        time.sleep(0.05)  # as slow as a key on a busy disk: every login waits on it at once
        return real_load(path)

    monkeypatch.setattr(ssh, "load_user_key", counting_load)
    with ssh.Pool(s.known_hosts, s.user_key, connect_timeout=1.0) as pool:
        started = time.monotonic()
        res = pool.run_all(s.targets, "hostname")
        elapsed = time.monotonic() - started
    assert set(res.failed) == {"s5", "s17"}
    for name in ("s5", "s17"):
        assert f"server {name} unreachable: 10.0.0.{name[1:]}: SSH handshake failed" in \
            res[name].error
    assert {n: r.stdout for n, r in res.succeeded.items()} == {
        t.name: f"{t.name}\n" for t in s.targets if t.name not in ("s5", "s17")}
    assert len(loads) == 1 and pool.key_loads == 1
    assert pool.connects == 22
    # The hung servers cost their connect timeout once, beside the others, not one after
    # the other (2 x 1 s) and not more than the bound.
    assert elapsed < 1.9
    assert all(r.seconds < 1.9 for r in res.values())
    assert set(pool.connect_phases) == set(res.succeeded)


def test_a_pinned_key_that_differs_is_still_refused_among_many(servers) -> None:
    s = servers(12)
    other = _keygen(s.known_hosts.parent / "other_key")
    lines = s.known_hosts.read_text().splitlines()
    lines[7] = f"s7,10.0.0.7 {other.get_name()} {other.get_base64()}"
    s.known_hosts.write_text("\n".join(lines) + "\n")
    with ssh.Pool(s.known_hosts, s.user_key, connect_timeout=2.0) as pool:
        res = pool.run_all(s.targets, "hostname")
    assert set(res.failed) == {"s7"}
    assert "changed" in res["s7"].error.lower() or "CHANGED" in res["s7"].error


def test_servers_are_reached_at_once_up_to_the_bound_never_more(tmp_path: Path) -> None:
    pool = ssh.Pool(tmp_path / "kh", tmp_path / "key")
    assert pool.max_workers == ssh.MAX_WORKERS >= 64
    targets = [ssh.Target(f"s{i}", (f"10.0.1.{i}",)) for i in range(ssh.MAX_WORKERS + 36)]
    lock = threading.Lock()
    running, peak = [0], [0]
    all_in = threading.Event()

    def work(t: ssh.Target) -> ssh.Result:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] == ssh.MAX_WORKERS:
                all_in.set()
        all_in.wait(5.0)  # each server's wait overlaps the others'
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return ssh.Result(t.name, True)

    res = pool.each(targets, work)
    assert len(res.succeeded) == len(targets)
    assert peak[0] == ssh.MAX_WORKERS


def test_pinned_keys_are_parsed_once_until_the_file_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _keygen(tmp_path / "k1")
    new = _keygen(tmp_path / "k2")
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"s{i},10.0.0.{i} {key.get_name()} {key.get_base64()}\n"
                            for i in range(50)))
    parses = []
    real = paramiko.HostKeys.load

    def counting(self: paramiko.HostKeys, filename: str) -> None:
        parses.append(filename)
        real(self, filename)

    monkeypatch.setattr(knownhosts.paramiko.HostKeys, "load", counting)
    kh = ssh.KnownHosts(path)
    for i in range(50):
        kh.check(f"s{i}", f"10.0.0.{i}", key)
    assert len(parses) == 1
    with pytest.raises(ssh.UnknownHostKey):
        kh.check("s50", "10.0.0.50", new)
    # Another process pins s50 (an atomic rewrite, as the tool's own): seen at once.
    kh2 = ssh.KnownHosts(path)
    kh2.add("s50", "10.0.0.50", new)
    kh.check("s50", "10.0.0.50", new)
    # ... and a line changed in place (the operator's editor) is seen too.
    text = path.read_text().replace(f"s3,10.0.0.3 {key.get_name()} {key.get_base64()}",
                                    f"s3,10.0.0.3 {new.get_name()} {new.get_base64()}")
    path.write_text(text)
    with pytest.raises(ssh.ChangedHostKey):
        kh.check("s3", "10.0.0.3", key)
    path.unlink()
    with pytest.raises(ssh.UnknownHostKey):
        kh.check("s1", "10.0.0.1", key)
