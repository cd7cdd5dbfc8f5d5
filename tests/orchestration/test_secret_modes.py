"""Secrets are private from their first byte: on the nodes (SFTP creates each upload with its
mode in the OPEN request) and on LIM 1 (the tool's key files).

The lab test pauses an upload halfway - the data is a generator that waits for the test -
and meanwhile looks at the half-written file on the node as another user would: ``stat``,
and ``cat`` as nobody. A control upload through paramiko's plain ``open`` shows that the
same look does see a file written the old way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import paramiko
import pytest

from mxone_maintenance import nodechange, nodeconfig, ssh, store, synckeys
from mxone_maintenance.artefact import Artefact
from tests.agent_lab.cluster import eventually
from tests.orchestration.test_orchestrate_unit import applier, system

DIR = "/etc/mxone/agent"  # on the node: 0755, as the tool makes it
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

UPLOAD = r'''
import json, sys
from pathlib import Path
import paramiko
from mxone_maintenance import ssh
req = json.loads(sys.stdin.readline())
pool = ssh.Pool(Path(req["known_hosts"]), Path(req["key"]))
target = ssh.Target(req["name"], (req["ip"],))

def chunks():
    yield b"secret-part-1 " * 4096
    print("paused", flush=True)
    sys.stdin.readline()  # the test looks at the node meanwhile
    yield b"secret-part-2\n"

if req["how"] == "pool":
    r = pool.put(target, req["path"], chunks(), 0o600)
    print(json.dumps({"ok": r.ok, "error": r.error}), flush=True)
else:  # the old way: paramiko's open, chmod afterwards
    sftp = paramiko.SFTPClient.from_transport(pool.connection(target).transport)
    with sftp.open(req["path"], "wb") as f:
        for c in chunks():
            f.write(c)
            f.flush()
    sftp.chmod(req["path"], 0o600)
    print(json.dumps({"ok": True, "error": ""}), flush=True)
'''


def _upload_paused(lab: Any, how: str, path: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start an upload to lim2 from lim1, halfway through; (process, stat, cat-as-nobody)."""
    lab.exec("lim1", "mkdir -p /etc/mxone && cat > /etc/mxone/known_hosts",
             input=lab.hosts["lim2"].known_hosts_line + "\n")
    lab.exec("lim2", f"mkdir -p {DIR} && chmod 0755 /etc/mxone {DIR} && rm -f {path}")
    p = lab.popen("lim1", [sys.executable, "-c", UPLOAD], stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(json.dumps({"how": how, "path": path, "name": "lim2",
                              "ip": str(lab.hosts["lim2"].ip), "key": str(lab.user_key_path),
                              "known_hosts": "/etc/mxone/known_hosts"}) + "\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "paused", p.stderr.read() if p.stderr else ""
    # The first chunk has reached the file: the secret is in it now.
    eventually(lambda: int(lab.exec("lim2", ["stat", "-c", "%s", path]).stdout) > 0, 10,
               "the first half on the node")
    st = lab.exec("lim2", ["stat", "-c", "%a %U %s", path]).stdout.strip()
    cat = lab.exec("lim2", [*AS_NOBODY, "cat", path], check=False)
    return p, st, (cat.stdout[:13] if cat.returncode == 0 else cat.stderr.strip())


def _finish(p: subprocess.Popen[str]) -> dict[str, Any]:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write("\n")
    p.stdin.flush()
    out = json.loads(p.stdout.readline())
    p.wait(30)
    return out


@pytest.mark.lab
def test_an_upload_is_private_from_its_first_byte(lab: Any) -> None:
    path = f"{DIR}/.key.upload-test"
    p, st, seen = _upload_paused(lab, "pool", path)
    try:
        mode, user, size = st.split()
        assert (mode, user) == ("600", "root") and int(size) > 0
        assert "Permission denied" in seen, seen
    finally:
        done = _finish(p)
    assert done == {"ok": True, "error": ""}
    assert lab.exec("lim2", ["stat", "-c", "%a", path]).stdout.strip() == "600"
    assert lab.exec("lim2", ["tail", "-c", "14", path]).stdout == "secret-part-2\n"


@pytest.mark.lab
def test_the_same_look_sees_a_file_written_the_old_way(lab: Any) -> None:
    """Control: paramiko's plain open, chmod afterwards - readable while it is written."""
    p, st, seen = _upload_paused(lab, "plain", f"{DIR}/.key.upload-old")
    _finish(p)
    assert st.split()[0] == "644"
    assert seen == "secret-part-1", seen


@pytest.mark.lab
def test_an_upload_never_writes_through_what_is_there(lab: Any) -> None:
    """O_EXCL: a file (or symlink) already at the temp name is refused, not written."""
    lab.exec("lim1", "mkdir -p /etc/mxone && cat > /etc/mxone/known_hosts",
             input=lab.hosts["lim2"].known_hosts_line + "\n")
    lab.exec("lim2", f"mkdir -p {DIR} && ln -sf /tmp/planted {DIR}/.key.upload-x")
    code = (
        "import sys; from pathlib import Path; from mxone_maintenance import ssh\n"
        "pool = ssh.Pool(Path('/etc/mxone/known_hosts'), Path(sys.argv[1]))\n"
        "r = pool.put(ssh.Target('lim2', (sys.argv[2],)), sys.argv[3], b'secret', 0o600)\n"
        "print(r.ok, r.error)\n")
    r = lab.run_python("lim1", code, args=[str(lab.user_key_path), str(lab.hosts["lim2"].ip),
                                           f"{DIR}/.key.upload-x"])
    assert r.stdout.startswith("False server lim2: cannot write /etc/mxone/agent/.key.upload-x: "
                               "it exists already"), r.stdout
    assert lab.exec("lim2", "test -e /tmp/planted", check=False).returncode == 1


# ---- without a lab --------------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def _adjust_cwd(self, path: str) -> str:
        return path

    def _request(self, *args: Any) -> tuple[int, paramiko.Message]:
        self.calls.append(args)
        msg = paramiko.Message()
        msg.add_string(b"handle-1")
        msg.rewind()
        return paramiko.sftp.CMD_HANDLE, msg


def test_the_open_request_carries_the_mode() -> None:
    rec = _Recorder()
    f = ssh._create(rec, "/etc/mxone/agent/.key.upload-1", 0o600)  # type: ignore[arg-type]
    (cmd, path, flags, attrs), = rec.calls
    assert cmd == paramiko.sftp.CMD_OPEN and path == "/etc/mxone/agent/.key.upload-1"
    assert flags == (paramiko.sftp.SFTP_FLAG_WRITE | paramiko.sftp.SFTP_FLAG_CREATE
                     | paramiko.sftp.SFTP_FLAG_EXCL)
    assert attrs.st_mode == 0o600
    packed = paramiko.Message()
    attrs._pack(packed)
    assert packed.asbytes() == (paramiko.SFTPAttributes.FLAG_PERMISSIONS).to_bytes(4, "big") + \
        (0o600).to_bytes(4, "big")
    f._closed = True  # nothing to close on the recorder


def test_local_secrets_are_private_from_the_first_byte(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """LIM 1: the key file exists with 0600 before its first byte is written, even under
    umask 0 (a chmod afterwards would leave a moment at 0644 or wider)."""
    seen: list[int] = []
    real = os.fdopen

    def spy(fd: int, *a: Any, **kw: Any) -> Any:
        seen.append(os.fstat(fd).st_mode & 0o7777)
        return real(fd, *a, **kw)

    monkeypatch.setattr(store.os, "fdopen", spy)
    old = os.umask(0)
    try:
        store.atomic_write(tmp_path / "c1.key", b"secret\n", mode=0o600)
        a = applier(tmp_path)
        created: list[Path] = []
        a.keys.cluster_keys(system(), created)
        a.keys.sync_keys(system(), created)
    finally:
        os.umask(old)
    assert seen and all(m == 0o600 for m in seen), seen
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in created) == ["north.key", "north.sync"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in created)


class _UploadPool(ssh.Pool):
    """Answers every node command with success and records each upload."""

    def __init__(self, tmp_path: Path, generation: int) -> None:
        super().__init__(tmp_path / "kh", tmp_path / "key")
        self.generation = generation
        self.uploads: list[tuple[str, int, bytes]] = []

    def run(self, target, command, *, input=None, timeout=None):  # type: ignore[no-untyped-def]
        if not isinstance(command, str):  # the agent's `ctl status`, after the reload
            return ssh.Result(target.name, True, json.dumps({"generation": self.generation}), "", 0)
        return ssh.Result(target.name, True, json.dumps({"ok": True}), "", 0)

    def put(self, target, path, data, mode=0o644):  # type: ignore[no-untyped-def]
        self.uploads.append((path, mode, data if isinstance(data, bytes) else b"".join(data)))
        return ssh.Result(target.name, True, exit_status=0)


def test_every_upload_of_a_change_is_created_0600(tmp_path: Path) -> None:
    """The node's files - the cluster key and the sync key among them - travel only to
    fresh dot-names created 0600; each gets its final mode on the node at the rename."""
    s = system()
    cfg = nodeconfig.all_nodes(s)["lim2"]
    pool = _UploadPool(tmp_path, s.generation)
    a = applier(tmp_path, pool)
    key, sync = "ab" * 32, synckeys.SyncKey.generate()
    node = nodechange.Node(ssh.Target("lim2", ("10.77.0.32",)), cfg, key, sync,
                             snapshot={"running": True, "files": {}})
    art_path = tmp_path / "agent.tar.gz"
    art_path.write_bytes(b"artefact")
    art = Artefact(art_path, "0" * 64)
    lines: list[str] = []
    r = a._change_node(node, art, s.generation,
                       nodechange.Tracker(lambda line, f: lines.append(line), 10))
    assert r.ok, r.error
    secrets = {p: data for p, _, data in pool.uploads
               if key.encode() in data or sync.private.encode() in data}
    assert len(secrets) == 2
    for path, mode, _ in pool.uploads:
        name = path.rsplit("/", 1)[1]
        assert mode == 0o600 and name.startswith(".") and ".upload-" in name, path
