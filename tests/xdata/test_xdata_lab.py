"""Exchange-data sync between real lab hosts over real SSH: lim2 (regular) <-> standby1.

Each scenario runs the initiating side on lim2 (as its agent will) and the answering side
through sshd on standby1; faults are real: a killed ssh client, a cut link in the switch,
a full tmpfs, a peer whose clock is off (libfaketime)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mxone_lab.lab import Lab

from tests.agent_lab.cluster import CONFIG, cluster_doc

pytestmark = pytest.mark.lab

ROOT = "/var/opt/mxone/xdata"
PY = sys.executable
AGENT = f"{PY} -m mxone_agent.xdata_sync"

SYNC = """
import json, sys
from pathlib import Path
from mxone_agent import xdata, xdata_sync
address, agent, alive = sys.argv[1], sys.argv[2], int(sys.argv[3])
ssh = xdata_sync.ssh_args(address, Path("/root/.ssh/id_ed25519"), Path("/root/.ssh/known_hosts"),
                          alive_interval_s=alive)
peer = xdata_sync.Peer("standby1", ssh, agent=agent, root=Path("%(root)s"))
try:
    r = xdata_sync.sync_lim(2, Path("%(root)s"), "lim2", peer)
except xdata.XdataError as exc:
    print(json.dumps({"error": str(exc), "refused": isinstance(exc, xdata_sync.SyncRefused)}))
    sys.exit(1)
print(json.dumps(r.to_dict()))
""" % {"root": ROOT}

BACKUP = """
import sys, os
from pathlib import Path
from mxone_agent import xdata
size = int(sys.argv[1]); tag = sys.argv[2].encode()
xdata.write_version(Path("%(root)s"), 2, {"reload/ext.db": tag * 100, "sysdb/blob": os.urandom(size)})
""" % {"root": ROOT}

NEWEST = """
import json
from pathlib import Path
from mxone_agent import xdata
found = xdata.newest_valid(Path("%(root)s"), 2)
print(json.dumps(None if found is None else [found[1].version, (found[0] / "reload/ext.db").read_text()[:20],
      sorted(p.name for p in Path("%(root)s").iterdir())]))
""" % {"root": ROOT}


@pytest.fixture(autouse=True)
def node_configs(lab: Lab) -> None:
    """lim2 and standby1 in one cluster: ``xdata serve`` serves only the LIMs its node
    config names (standby1: LIM 2)."""
    for node in ("lim2", "standby1"):
        lab.exec(node, f"mkdir -p /etc/mxone/agent && cat > {CONFIG}",
                 input=json.dumps(cluster_doc(lab, node, ("lim2",))))


def sync(lab: Lab, agent: str = AGENT, alive: int = 5, check: bool = True) -> dict:
    r = lab.run_python("lim2", SYNC, args=[str(lab.hosts["standby1"].ip), agent, str(alive)],
                       check=False, timeout=120)
    out = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {"stderr": r.stderr}
    if check:
        assert r.returncode == 0, out
    return out


def newest(lab: Lab, host: str) -> list | None:
    return json.loads(lab.run_python(host, NEWEST).stdout)


def backup(lab: Lab, host: str, size: int, tag: str) -> None:
    lab.run_python(host, BACKUP, args=[str(size), tag])


def test_sync_both_ways_over_ssh_sends_only_changes(lab: Lab) -> None:
    backup(lab, "lim2", 200_000, "2001")
    first = sync(lab)
    assert first["direction"] == "to-standby" and first["fetched_files"] == 2
    assert newest(lab, "standby1")[:2] == newest(lab, "lim2")[:2]
    assert sync(lab)["direction"] == "none"
    # the LIM ran on the standby and its data changed there: it comes back to lim2
    time.sleep(0.05)
    lab.run_python("standby1", BACKUP.replace('os.urandom(size)', 'b"same"'), args=["0", "2002"])
    back = sync(lab)
    assert back["direction"] == "to-regular"
    assert newest(lab, "lim2")[1].startswith("20022002")


def slow_sync_under_way(lab: Lab, alive: int) -> tuple[list, subprocess.Popen, int]:
    """standby1's newest version, then a 40 MB sync from lim2 through a 40 Mbit/s link,
    returned once data flows: (the version before, the sync process, its ssh client PID).
    The caller removes lim2's rate limit (`tc qdisc del dev eth0 root`)."""
    backup(lab, "lim2", 10_000, "old")
    sync(lab)
    before = newest(lab, "standby1")
    backup(lab, "lim2", 40_000_000, "new")
    lab.exec("lim2", "tc qdisc add dev eth0 root tbf rate 40mbit burst 64kb latency 400ms")
    proc = lab.popen("lim2", [PY, "-c", SYNC, str(lab.hosts["standby1"].ip), AGENT, str(alive)],
                     stdout=subprocess.PIPE, text=True)
    ssh_pid = _wait_for_child(proc.pid, "ssh", timeout=10)
    time.sleep(1.0)  # data is flowing
    return before, proc, ssh_pid


def test_killed_ssh_mid_transfer_keeps_the_previous_version_and_the_next_sync_succeeds(lab: Lab) -> None:
    try:
        before, proc, ssh_pid = slow_sync_under_way(lab, alive=5)
        os.kill(ssh_pid, signal.SIGKILL)  # a child of the process this test started
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "sending LIM data with standby1 failed" in json.loads(out)["error"]
    finally:
        lab.exec("lim2", "tc qdisc del dev eth0 root", check=False)
    assert _settled_newest(lab) == before
    again = sync(lab)
    assert again["direction"] == "to-standby" and again["fetched_files"] == 2
    assert newest(lab, "standby1")[:2] == newest(lab, "lim2")[:2]
    assert not [n for n in newest(lab, "standby1")[2] if n.startswith(".incoming")]


def test_link_cut_mid_transfer_keeps_the_previous_version(lab: Lab) -> None:
    try:
        before, proc, _ = slow_sync_under_way(lab, alive=1)
        lab.faults.cut("lim2")
        out, _ = proc.communicate(timeout=30)  # ssh gives up after 3 missed keep-alives
        assert proc.returncode == 1, out
    finally:
        lab.faults.restore()
        lab.exec("lim2", "tc qdisc del dev eth0 root", check=False)
    assert newest(lab, "standby1")[:2] == before[:2]
    assert sync(lab)["direction"] == "to-standby"
    assert newest(lab, "standby1")[:2] == newest(lab, "lim2")[:2]


def test_a_full_standby_disk_is_refused_and_nothing_is_lost(lab: Lab) -> None:
    backup(lab, "lim2", 10_000, "v1")
    sync(lab)
    before = newest(lab, "standby1")
    lab.exec("standby1", f"mkdir -p /var/opt/mxone/small && mount -t tmpfs -o size=2m tmpfs /var/opt/mxone/small "
                         f"&& cp -a {ROOT}/. /var/opt/mxone/small/ && mount --bind /var/opt/mxone/small {ROOT}")
    try:
        backup(lab, "lim2", 3_000_000, "v2")
        out = sync(lab, check=False)
        assert out["refused"] is True
        assert "standby1: the standby has" in out["error"] and "two backups of each regular server need" in out["error"]
        assert newest(lab, "standby1") == before
    finally:
        lab.exec("standby1", f"umount {ROOT}; umount /var/opt/mxone/small", check=False)


def test_clock_skew_is_refused_naming_both_clocks(lab: Lab) -> None:
    backup(lab, "lim2", 1000, "v1")
    out = sync(lab, agent=f"faketime -f +45s {AGENT}", check=False)
    assert out["refused"] is True
    assert "clocks differ by 4" in out["error"] and "(bound 2.0 s): lim2 says " in out["error"]
    assert "UTC, standby1 says " in out["error"] and "fix NTP" in out["error"]
    assert newest(lab, "standby1") is None


def _wait_for_child(pid: int, name: str, timeout: float, word: str = "receive") -> int:
    """The PID of ``pid``'s child ``name`` whose command line holds ``word`` (the ssh client
    our sync started for the data transfer, not the short questions before it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        except OSError:
            kids = []
        for kid in kids:
            try:
                cmdline = open(f"/proc/{kid}/cmdline").read().split("\0")
                if open(f"/proc/{kid}/comm").read().strip() == name and word in cmdline:
                    return int(kid)
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError(f"no {name} child of {pid} within {timeout} s")


def _settled_newest(lab: Lab) -> list:
    """standby1's newest valid version once the killed transfer's receiver has given up."""
    end = time.monotonic() + 10
    while time.monotonic() < end:
        found = newest(lab, "standby1")
        if not [n for n in found[2] if n.startswith(".incoming")]:
            return found
        time.sleep(0.1)
    return newest(lab, "standby1")
