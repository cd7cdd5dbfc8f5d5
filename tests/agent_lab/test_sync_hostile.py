"""A compromised cluster node turns the cluster's sync key against another node, over real
SSH, through the real forced command (``mxone-agent xdata serve`` in authorized_keys).

lim2 holds the sync key as every node of the cluster does; its hostile client is the
system ``ssh`` with the agent's own arguments (:func:`xdata_sync.ssh_args`). standby1 runs
its agent and answers only through the forced command. Every hostile request must be
refused with its one-line reason, standby1's versions must stay as they were, and
``find / -cnewer MARKER`` on standby1 must show nothing new outside the versions root but
the agent's own state and log files, named here one by one. (``-cnewer``: the status
change time, which a writer cannot set back as it can a modification time - received
files keep their sender's modification times, so ``-newer`` would miss them.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from mxone_agent.xdata import shown
from mxone_lab import Lab

from tests.agent_lab.cluster import KNOWN_HOSTS, STANDBY, SYNC_KEY, Cluster

pytestmark = pytest.mark.lab

ROOT = "/var/opt/mxone/xdata"
SYNC = {"interval": 86400, "retry_min": 60, "retry_max": 600, "clock_bound": 2.0,
        "timeout": 120, "key": SYNC_KEY, "known_hosts": KNOWN_HOSTS, "user": "root",
        "xdata_root": ROOT}
# What standby1's agent may write while the test runs (all else outside ROOT is a
# finding): its log, its status file (replaced atomically through a temp file named with
# the agent's PID, so /run/mxone itself changes too), and its state files in
# /var/opt/mxone/agent replaced the same way (alarms, alarm handle, the LIMs it may hold).
# The temp files are mxone_agent.files.atomic_write's: ``.<name>.<pid>.<8 hex>.tmp``.
def agent_files(pid: int, written: Iterable[str]) -> set[str]:
    state = "/var/opt/mxone/agent"
    temp = re.compile(rf"/run/mxone/\.status\.json\.{pid}\.[0-9a-f]{{8}}\.tmp|"
                      rf"{state}/\.(alarms\.json|alarm-handle|held-lims\.json)\.{pid}"
                      r"\.[0-9a-f]{8}\.tmp")
    return {"/var/log/mxone/agent.log", "/run/mxone", "/run/mxone/status.json", state,
            *(f"{state}/{name}" for name in ("alarms.json", "alarm-handle", "held-lims.json")),
            *(p for p in written if temp.fullmatch(p))}


# Pruned from the search: the kernel's and devices' pseudo file systems, and the two trees
# the machine's other processes write all the time (this lab's own dir, other sessions'
# files, the project checkout) - those two are searched by the hostile name instead.
PRUNED = ("/proc", "/sys", "/dev", "/tmp", "/work", "/root")
#: standby1's /root is an overlay over this machine's (a quarter of a million files that a
#: cold search walks for half a minute): whatever standby1 writes there lands in the
#: overlay's upper dir, which the search walks instead, from this machine.
OVERLAID_ROOT = "/root"

HOSTILE_CLIENT = r"""
import base64, json, subprocess, sys
from pathlib import Path
from mxone_agent import xdata_sync
ssh = xdata_sync.ssh_args(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
answers = []
for words, stdin in json.loads(sys.stdin.read()):
    p = subprocess.run([*ssh, *words], input=base64.b64decode(stdin), capture_output=True,
                       timeout=60)
    answers.append({"rc": p.returncode, "stdout": p.stdout.decode("latin-1"),
                    "stderr": p.stderr.decode(errors="replace")})
print(json.dumps(answers))
"""

PLANT = r"""
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from mxone_agent import xdata
root, t0 = Path(sys.argv[1]), datetime(2026, 11, 28, 12, tzinfo=UTC)
xdata.write_version(root, 2, {"reload/ext.db": b"2001\n", "sysdb/db": b"v1" * 100}, t0)
xdata.write_version(root, 2, {"reload/ext.db": b"2001\n2002\n", "sysdb/db": b"v2" * 100},
                    t0 + timedelta(hours=1))
# another cluster's LIM whose data this node still holds: no peer of cluster1 may read it
xdata.write_version(root, 7, {"reload/ext.db": b"SECRET-OF-ANOTHER-CLUSTER\n"}, t0)
"""

MARK = r"""
import sys
from pathlib import Path
marker, probe = Path(sys.argv[1]), Path(sys.argv[2])
marker.touch()
# Wait until the kernel's file clock has moved past the marker's time (it stamps files
# with a coarse clock): from then on, whatever is written is -cnewer than the marker.
while True:
    probe.touch()
    if probe.stat().st_mtime_ns > marker.stat().st_mtime_ns:
        break
probe.unlink()
"""

LISTING = r"""
import hashlib, json, os, stat, sys
root, found = sys.argv[1], {}
for top, dirs, files in os.walk(root):
    for name in dirs + files:
        path = os.path.join(top, name)
        st = os.lstat(path)
        kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest() if kind == "file" else ""
        found[os.path.relpath(path, root)] = [kind, oct(stat.S_IMODE(st.st_mode)), digest]
print(json.dumps(found, sort_keys=True))
"""


# ---- the hostile side of the wire -------------------------------------------------------------

def entry(path: str, body: bytes = b"x", size: int | None = None) -> dict[str, Any]:
    return {"path": path, "size": len(body) if size is None else size,
            "sha256": hashlib.sha256(body).hexdigest(), "mtime_ns": 1_764_331_200_000_000_000}


def manifest(version: str, files: list[dict[str, Any]], lim: int = 2) -> dict[str, Any]:
    stamp = version.split("-", 1)[1] if version.startswith(f"lim{lim}-") else "20261128T140000"
    created = (f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:"
               f"{stamp[13:15]}+00:00")
    return {"format": 1, "lim": lim, "version": version, "created": created, "files": files}


def wire(doc: dict[str, Any], bodies: list[tuple[str, bytes]]) -> bytes:
    out = json.dumps(doc).encode() + b"\n"
    for path, body in bodies:
        out += json.dumps({"path": path, "size": len(body)}).encode() + b"\n" + body
    return out + b'{"end": true}\n'


def request(*words: str) -> list[str]:
    """The words an agent's sync sends (the forced command replaces its head)."""
    return ["/opt/mxone/agent/current/bin/mxone-agent", "xdata", "serve", "--root", ROOT, *words]


def hostile_cases(word: str) -> list[tuple[str, list[str], bytes, str]]:
    """(case, ssh words, stdin, the refusal expected) - every name holds ``word``."""
    v = "lim2-20261128T140000.000000Z"
    body = [("reload/ext.db", b"x")]
    ok_files = [entry("reload/ext.db")]
    plain = "not a plain relative path"
    lim2 = "not a version name of LIM 2 (lim2-<UTC time stamp>)"
    return [
        ("a ../ version", request("receive", "2"),
         wire(manifest(f"../../../../etc/systemd/system/{word}.d", ok_files), body),
         f"sent manifest: version is {shown(f'../../../../etc/systemd/system/{word}.d')}, "
         f"{lim2}"),
        ("an absolute version", request("receive", "2"),
         wire(manifest(f"/etc/{word}", ok_files), body),
         f"sent manifest: version is '/etc/{word}', {lim2}"),
        ("a ../ file path", request("receive", "2"),
         wire(manifest(v, [entry(f"../../../../root/.ssh/{word}")]),
              [(f"../../../../root/.ssh/{word}", b"x")]),
         f"sent manifest: files[0]: path is {shown(f'../../../../root/.ssh/{word}')}, {plain}: "
         "'..' leads out of the version"),
        ("an absolute file path", request("receive", "2"),
         wire(manifest(v, [entry(f"/etc/{word}")]), [(f"/etc/{word}", b"x")]),
         f"sent manifest: files[0]: path is '/etc/{word}', {plain}: it is absolute"),
        ("a NUL in a file path", request("receive", "2"),
         wire(manifest(v, [entry(f"{word}\x00")]), []),
         f"sent manifest: files[0]: path is '{word}\\x00', {plain}: it holds a control "
         "character"),
        ("a newline in a file path", request("receive", "2"),
         wire(manifest(v, [entry(f"{word}\n")]), []),
         f"sent manifest: files[0]: path is '{word}\\n', {plain}: it holds a control "
         "character"),
        ("a negative size", request("receive", "2"),
         wire(manifest(v, [entry(f"{word}", size=-1)]), []),
         "sent manifest: files[0]: size is -1, not a whole number of bytes from 0 to "
         "1099511627776"),
        ("a huge size", request("receive", "2"),
         wire(manifest(v, [entry(f"{word}", size=2**62)]), []),
         "sent manifest: files[0]: size is 4611686018427387904, not a whole number of bytes "
         "from 0 to 1099511627776"),
        ("more than the disk holds", request("receive", "2"),
         wire(manifest(v, [entry(f"{word}{i}", size=1 << 40) for i in range(64)]),
              [(f"{word}0", b"x" * 65536)]),
         f"version {v} needs {64 << 40} bytes (the sizes its manifest declares), {ROOT} has "),
        ("another cluster's LIM", request("receive", "7"),
         wire(manifest("lim7-20261128T140000.000000Z", ok_files, lim=7), body),
         "request: LIM 7 is not a LIM standby1 serves in cluster cluster1 (LIMs served: 2)"),
        ("another cluster's data", request("send", "7", "lim7-20261128T120000.000000Z",
                                           "reload/ext.db"), b"",
         "request: LIM 7 is not a LIM standby1 serves in cluster cluster1 (LIMs served: 2)"),
        ("another cluster's status", request("status", "7"), b"",
         "request: LIM 7 is not a LIM standby1 serves in cluster cluster1 (LIMs served: 2)"),
        ("a manifest of another LIM", request("receive", "2"),
         wire(manifest("lim3-20261128T140000.000000Z", ok_files, lim=3), body),
         "sent manifest: lim is 3, not 2 (the LIM of the request)"),
        ("KEEP=0", request("receive", "2", "0"), wire(manifest(v, ok_files), body),
         "request: receive takes the LIM only, not '0': how many versions are kept is the "
         "receiver's own rule, never the sender's"),
        ("a ../ path to send", request("send", "2", "lim2-20261128T120000.000000Z",
                                       "../../../../etc/shadow"), b"",
         "request: path '../../../../etc/shadow' (word 4) is not a file of version "
         "lim2-20261128T120000.000000Z"),
        ("a ../ version to send", request("send", "2", "../../../../etc", "shadow"), b"",
         "request: version '../../../../etc' is not lim2-<UTC time stamp>"),
        ("a shell command", ["touch", f"/etc/{word}"], b"",
         f"unknown request 'touch /etc/{word}'"),
    ]


# ---- the test ----------------------------------------------------------------------------------

def ssh_from_lim2(lab: Lab, cases: list[tuple[list[str], bytes]]) -> list[dict[str, Any]]:
    """Run each (words, stdin) from lim2 with its sync key against standby1's sshd."""
    payload = json.dumps([[w, base64.b64encode(i).decode()] for w, i in cases])
    r = lab.run_python("lim2", HOSTILE_CLIENT, args=[str(lab.hosts[STANDBY].ip), SYNC_KEY,
                                                     KNOWN_HOSTS], input=payload, timeout=300)
    return json.loads(r.stdout)


def listing(lab: Lab) -> dict[str, list[str]]:
    return json.loads(lab.run_python(STANDBY, LISTING, args=[ROOT]).stdout)


def newer_than(lab: Lab, marker: Path | None) -> tuple[str, list[str]]:
    """(the command, every path it printed) of the search on standby1; with no marker,
    every path it looks at."""
    prune = " -o ".join(f"-path {p}" for p in PRUNED)
    test = f"-cnewer {marker} " if marker else ""
    command = f"find / \\( {prune} \\) -prune -o {test}-print"
    found = [p for p in lab.exec(STANDBY, command, timeout=120).stdout.split("\n") if p]
    upper = lab.state.host_dir(STANDBY) / "ov" / OVERLAID_ROOT.strip("/") / "upper"
    written = subprocess.run(["find", str(upper), *(["-cnewer", str(marker)] if marker else []),
                              "-print"], capture_output=True, text=True, check=True, timeout=120)
    found += [OVERLAID_ROOT + p.removeprefix(str(upper)) for p in written.stdout.split("\n") if p]
    return f"{command}; find <{OVERLAID_ROOT}'s upper dir> {test}-print", found


def outside_root(paths: list[str]) -> list[str]:
    return [p for p in paths if p != ROOT and not p.startswith(ROOT + "/")]


def test_a_compromised_node_cannot_write_outside_the_versions_root_through_the_sync_key(
        lab: Lab, tmp_path: Path) -> None:
    word = f"pwned{secrets.token_hex(4)}"
    cluster = Cluster(lab, regulars=("lim2",), sync=SYNC, interval=0.2, misses=5)
    cluster.install_sync(tmp_path)
    try:
        cluster.start()
        lab.run_python(STANDBY, PLANT, args=[ROOT])
        before = listing(lab)
        assert {k for k in before if "/" not in k} == {
            "lim2-20261128T120000.000000Z", "lim2-20261128T130000.000000Z",
            "lim7-20261128T120000.000000Z"}
        # A first pass of the search before the marker: overlayfs marks a merged directory
        # that the lab made in the upper dir before mounting (trusted.overlay.* xattrs) at
        # its first lookup, which changes its ctime - the search itself must not count that.
        newer_than(lab, None)
        # the marker (in /tmp, which standby1 shares with this machine, and which the
        # search prunes): set once the versions are planted, before the first request
        marker = tmp_path / "marker"
        lab.run_python(STANDBY, MARK, args=[str(marker), str(tmp_path / "probe")])

        cases = hostile_cases(word)
        answers = ssh_from_lim2(lab, [(words, stdin) for _, words, stdin, _ in cases])
        transcript = []
        for (name, _, _, error), answer in zip(cases, answers, strict=True):
            last = answer["stderr"].strip().splitlines()[-1] if answer["stderr"].strip() else ""
            transcript.append(f"{name}: exit {answer['rc']}: {last}")
            assert answer["rc"] == 1, (name, answer)
            assert last.startswith(f"xdata serve: {error}"), (name, last)
            assert "SECRET-OF-ANOTHER-CLUSTER" not in answer["stdout"], name
            assert "root:" not in answer["stdout"], name
        print("\n".join(transcript))
        assert listing(lab) == before, "a refused request changed the versions"

        # The key's holder may still push well-formed data of a LIM of the cluster; the
        # standby keeps what its own rule says (two), whatever was asked before.
        pushes = []
        for hour in (14, 15, 16):
            v = f"lim2-20261128T{hour}0000.000000Z"
            data = f"2001\n{hour}\n".encode()
            pushes.append((request("receive", "2"),
                           wire(manifest(v, [entry("reload/ext.db", data)]),
                                [("reload/ext.db", data)])))
        for answer in ssh_from_lim2(lab, pushes):
            assert answer["rc"] == 0, answer
        after = listing(lab)
        assert sorted(k for k in after if "/" not in k) == [
            "lim2-20261128T150000.000000Z", "lim2-20261128T160000.000000Z",
            "lim7-20261128T120000.000000Z"]
        assert all(mode == ("0o700" if kind == "dir" else "0o600")
                   for kind, mode, _ in after.values()), after

        command, found = newer_than(lab, marker)
        print(f"standby1# {command}\n" + "\n".join(found))
        outside = outside_root(found)
        print(f"-- outside {ROOT}:\n" + "\n".join(outside))
        assert f"{ROOT}/lim2-20261128T160000.000000Z/reload/ext.db" in found  # it sees writes
        unexpected = sorted(set(outside) - agent_files(cluster.procs[STANDBY].pid, outside))
        assert unexpected == [], f"written outside {ROOT}: {unexpected}"
        # and the search would show a write outside the root (a control, then undone)
        lab.exec(STANDBY, f"touch /etc/mxone/{word}-control /root/{word}-control")
        shown = outside_root(newer_than(lab, marker)[1])
        assert f"/etc/mxone/{word}-control" in shown and f"/root/{word}-control" in shown
        lab.exec(STANDBY, f"rm /etc/mxone/{word}-control /root/{word}-control")
        named = lab.exec(STANDBY, f"find /tmp /work /etc /var /opt /run -name '*{word}*'",
                         check=False, timeout=120)
        print(f"standby1# find /tmp /work /etc /var /opt /run -name '*{word}*'\n"
              f"{named.stdout}(exit {named.returncode})")
        assert not [p for p in newer_than(lab, None)[1] if word in p]  # /root: its upper dir
        assert named.returncode == 0 and named.stdout == ""
    finally:
        cluster.stop_all()
