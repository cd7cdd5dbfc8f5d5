"""ssh.py without a network: host-key pinning, result maps, one failure never stops others."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest

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


class _LateOutputChannel:
    """A channel whose exit status arrives before its output (sshd may send them so)."""

    def __init__(self) -> None:
        self.polls = 0
        self.eof_received = False
        self.closed = False
        self._out = b""

    def settimeout(self, t: float) -> None: ...
    def exec_command(self, c: str) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return 0

    def recv_ready(self) -> bool:
        self.polls += 1
        if self.polls == 5:  # the output arrives a little after the exit status ...
            self._out = b'{"ok": true}\n'
        if self.polls == 8:  # ... then the end of it
            self.eof_received = True
        return bool(self._out)

    def recv(self, n: int) -> bytes:
        out, self._out = self._out, b""
        return out

    def recv_stderr_ready(self) -> bool:
        return False


def test_output_that_arrives_after_the_exit_status_is_not_lost(tmp_path: Path) -> None:
    pool = ssh.Pool(tmp_path / "known_hosts", tmp_path / "key")
    chan = _LateOutputChannel()

    class Transport:
        def open_session(self, timeout: float) -> _LateOutputChannel:
            return chan

    conn = ssh._Connection(Transport(), "10.0.0.1")  # type: ignore[arg-type]
    r = pool._exec("lim2", conn, "true", None, 5.0, time.monotonic())
    assert r.ok and r.stdout == '{"ok": true}\n'
