"""ssh.py without a network: host-key pinning, result maps, one failure never stops others."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest
from paramiko.buffered_pipe import BufferedPipe

from mxone_maintenance import ssh


def _key() -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key_file(str(_keyfile()))




def _keyfile() -> Path:
    import tempfile

    d = Path(tempfile.mkdtemp())
    p = d / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(p)], check=True)
    return p


def test_fingerprint_is_the_one_ssh_keygen_prints() -> None:
    p = _keyfile()
    key = paramiko.Ed25519Key.from_private_key_file(str(p))
    out = subprocess.run(["ssh-keygen", "-lf", str(p) + ".pub"], capture_output=True, text=True,
                         check=True).stdout
    assert ssh.fingerprint(key) == out.split()[1]


def test_unknown_key_is_refused_with_its_fingerprint_then_accepted(tmp_path: Path) -> None:
    kh = ssh.KnownHosts(tmp_path / "known_hosts")
    key = _key()
    with pytest.raises(ssh.UnknownHostKey) as e:
        kh.check("lim2", "10.0.0.12", key)
    assert e.value.fingerprint == ssh.fingerprint(key)
    assert e.value.key_type == "ssh-ed25519"
    assert "lim2" in str(e.value) and e.value.fingerprint in str(e.value)
    kh.add("lim2", "10.0.0.12", key)
    kh.check("lim2", "10.0.0.12", key)
    kh.check("lim2", "10.0.0.99", key)  # pinned by name: an address change is fine
    assert (tmp_path / "known_hosts").read_text().startswith("lim2,10.0.0.12 ssh-ed25519 ")


def test_changed_key_is_refused_naming_both_fingerprints_and_what_to_do(tmp_path: Path) -> None:
    kh = ssh.KnownHosts(tmp_path / "known_hosts")
    old, new = _key(), _key()
    kh.add("lim2", "10.0.0.12", old)
    with pytest.raises(ssh.ChangedHostKey) as e:
        kh.check("lim2", "10.0.0.12", new)
    msg = str(e.value)
    assert ssh.fingerprint(old) in msg and ssh.fingerprint(new) in msg
    assert "lim2" in msg and str(tmp_path / "known_hosts") in msg and "remove the line" in msg
    # Another server's name at a pinned address is also refused (by address).
    with pytest.raises(ssh.ChangedHostKey):
        kh.check("other", "10.0.0.12", new)


def test_result_map_and_one_failure_never_stops_the_others(tmp_path: Path) -> None:
    pool = ssh.Pool(tmp_path / "kh", tmp_path / "key")
    targets = [ssh.Target(f"s{i}", (f"10.0.0.{i}",)) for i in range(6)]

    def work(t: ssh.Target) -> ssh.Result:
        if t.name == "s2":
            raise RuntimeError("boom")
        if t.name == "s3":
            raise ssh.SshError("server s3 unreachable: no answer")
        time.sleep(0.3)
        return ssh.Result(t.name, True, stdout=t.name)

    started = time.monotonic()
    res = pool.each(targets, work)
    elapsed = time.monotonic() - started
    assert set(res) == {t.name for t in targets}
    assert set(res.failed) == {"s2", "s3"}
    assert "RuntimeError: boom" in res["s2"].error
    assert res["s3"].describe() == "server s3 unreachable: no answer"
    assert len(res.succeeded) == 4
    assert elapsed < 1.0, "the calls ran one after the other"
    err = ssh.GroupError(res)
    assert "s2:" in str(err) and "s3:" in str(err) and err.result is res


def test_unreachable_address_is_bounded_and_named(tmp_path: Path) -> None:
    pool = ssh.Pool(tmp_path / "kh", tmp_path / "key", connect_timeout=0.5)
    started = time.monotonic()
    r = pool.run(ssh.Target("ghost", ("127.0.0.1",), port=1), "true")
    assert not r.ok and "server ghost unreachable: 127.0.0.1:" in r.error
    assert time.monotonic() - started < 2


def test_missing_user_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ssh.SshError, match="SSH key .*/nope: no such file"):
        ssh.load_user_key(tmp_path / "nope")


def test_target_tries_aliases_last() -> None:
    t = ssh.Target("lim2", ("10.0.0.52", "10.0.0.12"), aliases=("10.0.0.12", "10.0.0.99"))
    assert t.candidates() == (("10.0.0.52", False), ("10.0.0.12", False), ("10.0.0.99", True))


def test_known_hosts_writes_are_safe_from_threads(tmp_path: Path) -> None:
    kh = ssh.KnownHosts(tmp_path / "kh")
    keys = [_key() for _ in range(4)]
    threads = [threading.Thread(target=kh.add, args=(f"s{i}", f"10.0.0.{i}", k))
               for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, k in enumerate(keys):
        kh.check(f"s{i}", f"10.0.0.{i}", k)


class _ScriptedChannel:
    """A channel fed from another thread as paramiko's transport feeds one: its output into
    paramiko's own buffers, then the exit status and the end of output in a given order."""

    def __init__(self, steps: list[tuple[float, str, bytes]]) -> None:
        self.in_buffer = BufferedPipe()
        self.in_stderr_buffer = BufferedPipe()
        self.status_event = threading.Event()
        self.eof_received = False
        self.closed = False
        self._steps = steps
        self._status = -1

    def settimeout(self, t: float) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...

    def exec_command(self, c: str) -> None:
        threading.Thread(target=self._feed, daemon=True).start()

    def _feed(self) -> None:
        for delay, what, data in self._steps:
            time.sleep(delay)
            if what == "out":
                self.in_buffer.feed(data)
            elif what == "err":
                self.in_stderr_buffer.feed(data)
            elif what == "status":
                self._status = int(data)
                self.status_event.set()
            elif what == "eof":
                self.eof_received = True
                self.in_buffer.close()
                self.in_stderr_buffer.close()

    def exit_status_ready(self) -> bool:
        return self.closed or self.status_event.is_set()

    def recv_exit_status(self) -> int:
        self.status_event.wait()
        return self._status

    def recv_ready(self) -> bool:
        return self.in_buffer.read_ready()

    def recv(self, n: int) -> bytes:
        return bytes(self.in_buffer.read(n))

    def recv_stderr_ready(self) -> bool:
        return self.in_stderr_buffer.read_ready()

    def recv_stderr(self, n: int) -> bytes:
        return bytes(self.in_stderr_buffer.read(n))


def _exec_on(tmp_path: Path, chan: _ScriptedChannel, timeout: float = 5.0) -> ssh.Result:
    pool = ssh.Pool(tmp_path / "known_hosts", tmp_path / "key")

    class Transport:
        def open_session(self, timeout: float) -> _ScriptedChannel:
            return chan

        def exec_nowait(self, c: _ScriptedChannel, command: str) -> None:
            c.exec_command(command)

    conn = ssh._Connection(Transport(), "10.0.0.1")  # type: ignore[arg-type]
    return pool._exec("lim2", conn, "true", None, timeout, time.monotonic())


def test_output_that_arrives_after_the_exit_status_is_not_lost(tmp_path: Path) -> None:
    # sshd may send the exit status before the output: done only once the output ended.
    chan = _ScriptedChannel([(0.01, "status", b"0"), (0.05, "out", b'{"ok": true}\n'),
                             (0.05, "eof", b"")])
    r = _exec_on(tmp_path, chan, timeout=10.0)
    assert r.ok and r.stdout == '{"ok": true}\n'
    assert r.seconds < 5.0  # woken by the output's arrival, not at the command's timeout


def test_output_and_errors_in_pieces_are_all_read_then_the_status_after_the_end(
        tmp_path: Path) -> None:
    chan = _ScriptedChannel([(0.02, "out", b"a"), (0.02, "err", b"x"), (0.02, "out", b"b"),
                             (0.02, "eof", b""), (0.05, "status", b"3")])
    r = _exec_on(tmp_path, chan, timeout=10.0)
    assert (r.ok, r.stdout, r.stderr, r.exit_status) == (False, "ab", "x", 3)
    assert r.seconds < 5.0  # woken by the exit status after the end, not at the timeout


def test_a_command_still_running_at_its_timeout_is_reported_with_what_it_wrote(
        tmp_path: Path) -> None:
    chan = _ScriptedChannel([(0.01, "out", b"partial"), (30, "eof", b"")])
    r = _exec_on(tmp_path, chan, timeout=0.3)
    assert not r.ok and r.stdout == "partial" and "did not finish within 0.3 s" in r.error
