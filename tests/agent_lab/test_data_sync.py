"""Exchange data with real agents: data backups, syncs over SSH with the forced command,
failover and fallback carrying a LIM's extensions, faults during a sync, and a preloaded
passive side reloading new data.

The cluster is lim2 (LIM 2) and standby1 unless told otherwise; every node has the sync
key (:meth:`Cluster.install_sync`). A client registers extensions on the LIM's alias with
UDP datagrams (``REGISTER <ext>``) and reads them back (``EXTENSIONS``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mxone_lab import Lab

from tests.agent_lab.cluster import (
    KNOWN_HOSTS,
    PORT,
    STANDBY,
    SYNC_KEY,
    Cluster,
    alias,
    answers_during,
    eventually,
    wait_answer,
)

pytestmark = pytest.mark.lab

PY = sys.executable
ROOT = "/var/opt/mxone/xdata"
MARGIN = 10.0  # generous: SSH and process start-up on a loaded 2-core machine
SYNC_WAIT = 30.0
ALARM = "Standby cluster has failed to synchronize data"
# Retries far apart: each test orders the "next sync" itself.
SYNC = {"interval": 86400, "retry_min": 60, "retry_max": 600, "clock_bound": 2.0,
        "timeout": 120, "key": SYNC_KEY, "known_hosts": KNOWN_HOSTS, "user": "root",
        "xdata_root": ROOT}

UDP = r"""
import socket, sys, time
address, port, message, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
end = time.monotonic() + timeout
while time.monotonic() < end:
    try:
        s.sendto(message.encode(), (address, port))
        print(s.recv(4096).decode())
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
"""

BIG_VERSION = """
import json, os, sys
from pathlib import Path
from mxone_agent import xdata, xdata_sync
lim, size, root = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
m = xdata.write_version(root, lim, {"reload/extensions.json": json.dumps(
    {"format": 1, "lim": lim, "extensions": ["4001"]}).encode(), "sysdb/blob": os.urandom(size)})
xdata_sync.notify_agent({"cmd": "backup", "lim": lim, "version": m.version})
print(m.version)
"""

NEWEST = """
import json, sys
from pathlib import Path
from mxone_agent import service_node, xdata
lim, root = int(sys.argv[1]), Path(sys.argv[2])
found = service_node.newest_loadable(root, lim)
print(json.dumps({"loadable": found and [found[0], sorted(found[1])],
                  "versions": [p.name for p in xdata.versions(root, lim)]}))
"""


# ---- helpers -------------------------------------------------------------------------------

def udp(lab: Lab, lim: int, message: str, timeout: float = 5.0) -> str:
    """Send ``message`` to LIM ``lim``'s service from the client; its reply."""
    r = lab.run_python("client", UDP, args=[alias(lim), str(PORT), message, str(timeout)],
                       check=False, timeout=timeout + 10)
    assert r.returncode == 0, f"no reply to {message!r} from LIM {lim}"
    return r.stdout.strip()


def data_backup(lab: Lab, node: str, lim: int) -> str:
    """``mxone-agent service data_backup`` on ``node``; the new version's name."""
    r = lab.exec(node, [PY, "-m", "mxone_agent", "service", "data_backup", "--lim", str(lim)],
                 check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"LIM {lim}: data backup lim{lim}-"), r.stdout
    return r.stdout.split()[4]


def big_version(lab: Lab, node: str, lim: int, size: int) -> str:
    """A version of ``size`` random bytes written on ``node``, announced to its agent."""
    return lab.run_python(node, BIG_VERSION, args=[str(lim), str(size), ROOT], timeout=60).stdout.strip()


def on_disk(lab: Lab, node: str, lim: int) -> dict[str, Any]:
    """``node``'s versions of ``lim`` and the one its service would load (full check)."""
    return json.loads(lab.run_python(node, NEWEST, args=[str(lim), ROOT]).stdout)


def ssh_child(pid: int, timeout: float, word: str = "receive") -> int:
    """The PID of the ``ssh`` client that process ``pid`` started (from any of its threads:
    the agent's sync worker is one) whose command line holds ``word``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        kids: list[str] = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                kids += (task / "children").read_text().split()
            except OSError:
                pass
        for kid in kids:
            try:
                cmdline = Path(f"/proc/{kid}/cmdline").read_text().split("\0")
                if Path(f"/proc/{kid}/comm").read_text().strip() == "ssh" and word in cmdline:
                    return int(kid)
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError(f"no ssh child of {pid} with {word!r} within {timeout} s")


def sync_row(cluster: Cluster, node: str, lim: int) -> dict[str, Any]:
    rows = cluster.status(node)["sync"]["lims"]
    return next((r for r in rows if r["lim"] == lim), {})


def ctl_sync(lab: Lab, node: str, *args: str) -> tuple[int, dict[str, Any]]:
    r = lab.exec(node, [PY, "-m", "mxone_agent", "ctl", "sync", *args], check=False,
                 timeout=200)
    return r.returncode, json.loads(r.stdout)


def sync_alarms(cluster: Cluster, node: str) -> list[dict[str, Any]]:
    return [a for a in cluster.status(node)["alarms"] if a["name"] == ALARM]


def service_status(lab: Lab, node: str, lim: int) -> str:
    return lab.exec(node, [PY, "-m", "mxone_agent", "service", "status", "--lim", str(lim)],
                    check=False).stdout.strip()


def lim2_cluster(lab: Lab, key_dir: Path, serve_prefix: str = "", **kw: Any) -> Cluster:
    cluster = Cluster(lab, regulars=("lim2",), sync=SYNC, interval=0.2, misses=5, **kw)
    cluster.install_sync(key_dir, serve_prefix)
    return cluster


def synced_to_standby(cluster: Cluster, version: str) -> bool:
    row = sync_row(cluster, "lim2", 2)
    return row.get("last_version") == version and row.get("last_error") is None


# ---- (a) extensions follow the LIM to the standby and back -------------------------------

def test_extensions_follow_lim2_to_the_standby_and_back(lab: Lab, tmp_path: Path) -> None:
    cluster = lim2_cluster(lab, tmp_path, fallback="automatic")
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2", timeout=MARGIN)[0]
        for ext in ("2001", "2002"):
            assert udp(lab, 2, f"REGISTER {ext}") == f"OK LIM 2 registered {ext} on lim2"
        version = data_backup(lab, "lim2", 2)
        eventually(lambda: synced_to_standby(cluster, version), SYNC_WAIT,
                   "lim2's backup synced to standby1")
        assert sync_row(cluster, "lim2", 2)["last_direction"] == "to-standby"
        assert on_disk(lab, STANDBY, 2)["loadable"] == [version, ["2001", "2002"]]

        cluster.kill_agent("lim2")
        cluster.kill_service("lim2", 2)
        ok, out = wait_answer(lab, 2, STANDBY, timeout=cluster.detection + MARGIN)
        assert ok, out + cluster.log(STANDBY)
        assert udp(lab, 2, "EXTENSIONS") == "LIM 2 on standby1 extensions: 2001,2002"
        assert udp(lab, 2, "REGISTER 2003") == "OK LIM 2 registered 2003 on standby1"
        on_standby = data_backup(lab, STANDBY, 2)

        cluster.start_agent("lim2")
        ok, out = wait_answer(lab, 2, "lim2", timeout=cluster.detection + SYNC_WAIT)
        assert ok, out + cluster.log("lim2") + cluster.log(STANDBY)
        assert udp(lab, 2, "EXTENSIONS") == "LIM 2 on lim2 extensions: 2001,2002,2003"
        assert service_status(lab, "lim2", 2) == f"running (data {on_standby})"
        assert sync_alarms(cluster, "lim2") == [] and sync_alarms(cluster, STANDBY) == []
    finally:
        cluster.stop_all()


# ---- (b) a sync interrupted mid-transfer ------------------------------------------------------

@pytest.mark.parametrize("fault", ["ssh killed", "link cut"])
def test_an_interrupted_sync_keeps_the_previous_version_and_the_next_clears_the_alarm(
        lab: Lab, tmp_path: Path, fault: str) -> None:
    # LIM 2 locked to lim2: a cut link must not move it (this test is about the data)
    cluster = lim2_cluster(lab, tmp_path, locks={2: "regular"})
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2", timeout=MARGIN)[0]
        assert udp(lab, 2, "REGISTER 2001").startswith("OK")
        first = data_backup(lab, "lim2", 2)
        eventually(lambda: synced_to_standby(cluster, first), SYNC_WAIT, "the first sync")

        # 40 MB through a 40 Mbit/s link: the transfer takes seconds
        lab.exec("lim2", "tc qdisc add dev eth0 root tbf rate 40mbit burst 64kb latency 400ms")
        try:
            big = big_version(lab, "lim2", 2, 40_000_000)
            ssh = ssh_child(cluster.procs["lim2"].pid, timeout=MARGIN)
            time.sleep(1.0)  # let data flow
            if fault == "ssh killed":
                os.kill(ssh, signal.SIGKILL)  # a child of the agent this test started
            else:
                lab.faults.cut("lim2")
            row = eventually(lambda: (r := sync_row(cluster, "lim2", 2)).get("last_error")
                             and r, 60, "the interrupted sync reported")
        finally:
            lab.faults.restore()
            lab.exec("lim2", "tc qdisc del dev eth0 root", check=False)
        assert "sending LIM data with standby1" in row["last_error"] and row["alarm"]
        alarms = sync_alarms(cluster, "lim2")
        assert [a["lim"] for a in alarms] == [2] and "sync of LIM 2 between lim2 and standby1 " \
            "failed: sending LIM data with standby1" in alarms[0]["text"]
        assert on_disk(lab, STANDBY, 2)["loadable"] == [first, ["2001"]]

        code, reply = ctl_sync(lab, "lim2")
        assert code == 0 and reply["ok"], reply
        [result] = reply["results"]
        assert result["lim"] == 2 and result["direction"] == "to-standby"
        assert result["version"] == big and result["fetched_files"] >= 1
        assert on_disk(lab, STANDBY, 2)["loadable"] == [big, ["4001"]]
        assert sync_alarms(cluster, "lim2") == []
        cleared = [a for a in cluster.status("lim2")["alarm_log"] if a["name"] == ALARM]
        assert [a["severity"] for a in cleared] == [2, 0]
    finally:
        cluster.stop_all()


# ---- (c) the standby's data disk is full ------------------------------------------------------

def test_a_full_standby_disk_is_refused_with_an_alarm_and_nothing_is_lost(
        lab: Lab, tmp_path: Path) -> None:
    cluster = lim2_cluster(lab, tmp_path)
    mounted = False
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2", timeout=MARGIN)[0]
        assert udp(lab, 2, "REGISTER 2001").startswith("OK")
        first = data_backup(lab, "lim2", 2)
        eventually(lambda: synced_to_standby(cluster, first), SYNC_WAIT, "the first sync")
        lab.exec(STANDBY, f"mkdir -p /var/opt/mxone/small && mount -t tmpfs -o size=2m tmpfs "
                          f"/var/opt/mxone/small && cp -a {ROOT}/. /var/opt/mxone/small/ && "
                          f"mount --bind /var/opt/mxone/small {ROOT}")
        mounted = True
        big = big_version(lab, "lim2", 2, 3_000_000)
        row = eventually(lambda: (r := sync_row(cluster, "lim2", 2)).get("last_error") and r,
                         SYNC_WAIT, "the refusal reported")
        assert row["last_error"].startswith("standby1: the standby has ")
        assert "two backups of each regular server need" in row["last_error"]
        assert ALARM in sync_alarms(cluster, "lim2")[0]["name"]
        code, reply = ctl_sync(lab, "lim2", "2")
        assert code == 1 and not reply["ok"]
        assert reply["results"][0]["error"].startswith("standby1: the standby has ")
        assert on_disk(lab, STANDBY, 2)["loadable"] == [first, ["2001"]]
        assert on_disk(lab, "lim2", 2)["versions"] == [big, first]
    finally:
        if mounted:
            lab.exec(STANDBY, f"umount {ROOT}; umount /var/opt/mxone/small", check=False)
        cluster.stop_all()


# ---- (d) clocks too far apart -----------------------------------------------------------------

def test_clock_skew_is_refused_naming_both_clocks_with_an_alarm(lab: Lab, tmp_path: Path) -> None:
    cluster = lim2_cluster(lab, tmp_path, serve_prefix="faketime -f +45s ")
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2", timeout=MARGIN)[0]
        assert udp(lab, 2, "REGISTER 2001").startswith("OK")
        data_backup(lab, "lim2", 2)
        code, reply = ctl_sync(lab, "lim2", "2")
        assert code == 1 and not reply["ok"]
        error = reply["results"][0]["error"]
        assert "clocks differ by 4" in error and "(bound 2.0 s): lim2 says " in error
        assert "UTC, standby1 says " in error and "fix NTP" in error
        [alarm] = sync_alarms(cluster, "lim2")
        assert alarm["lim"] == 2 and "clocks differ by 4" in alarm["text"]
        assert on_disk(lab, STANDBY, 2)["versions"] == []
    finally:
        cluster.stop_all()


# ---- ctl sync where there is nothing to initiate ----------------------------------------------

def test_ctl_sync_on_the_standby_without_a_lim_is_refused_naming_it(lab: Lab,
                                                                    tmp_path: Path) -> None:
    cluster = lim2_cluster(lab, tmp_path)
    try:
        cluster.start()
        code, reply = ctl_sync(lab, STANDBY)
        assert code == 1 and reply["ok"] is False and reply["results"] == []
        assert "standby1 is the standby server" in reply["error"]
        assert "regular for no LIM" in reply["error"]
    finally:
        cluster.stop_all()


# ---- (e) preloaded: the passive side reloads new data -----------------------------------------

def reference_services(lim: int, load_seconds: float) -> dict[int, dict[str, list[str]]]:
    base = [PY, "-m", "mxone_agent", "service"]
    tail = ["--lim", str(lim), "--run-dir", "/run/mxone"]
    return {lim: {"start": [*base, "start", *tail, "--alias", alias(lim), "--load-seconds",
                            str(load_seconds)],
                  "stop": [*base, "stop", *tail], "status": [*base, "status", *tail]}}


def test_preloaded_passive_side_reloads_a_new_backup(lab: Lab, tmp_path: Path) -> None:
    cluster = Cluster(lab, regulars=("lim1",), failover="preloaded", sync=SYNC, interval=0.2,
                      misses=5, services=reference_services(1, 3.0))
    cluster.install_sync(tmp_path)
    try:
        cluster.start()
        assert wait_answer(lab, 1, "lim1", timeout=MARGIN + 3)[0]
        eventually(lambda: cluster.runs(STANDBY) == {1: "preloaded"}, MARGIN + 3,
                   "the standby preloads LIM 1")
        assert service_status(lab, STANDBY, 1) == "running (no data)"
        assert udp(lab, 1, "REGISTER 3001") == "OK LIM 1 registered 3001 on lim1"

        version = data_backup(lab, "lim1", 1)
        eventually(lambda: cluster.runs(STANDBY).get(1) == "loading", SYNC_WAIT,
                   "the standby reloads LIM 1 with the new data")
        eventually(lambda: cluster.runs(STANDBY) == {1: "preloaded"}, MARGIN,
                   "the standby's LIM 1 is preloaded again")
        assert service_status(lab, STANDBY, 1) == f"running (data {version})"
        reload = [t for t in cluster.status(STANDBY)["transitions"] if t["kind"] == "reload"]
        assert reload and reload[-1]["ok"] and version in reload[-1]["reason"]
        # the active side never stopped answering
        assert answers_during(lab, 1, 0.5) == {"LIM 1 on lim1"}
        # a backup on the passive side is refused: its data comes from the active side
        r = lab.exec(STANDBY, [PY, "-m", "mxone_agent", "service", "data_backup", "--lim", "1"],
                     check=False, timeout=60)
        assert r.returncode == 1
        assert r.stderr.startswith("data backup refused: LIM 1 is the passive (preloaded) side "
                                   "on standby1: make the data backup on the active side (its "
                                   "regular server)"), r.stderr
        assert on_disk(lab, STANDBY, 1)["versions"] == [version], on_disk(lab, STANDBY, 1)
    finally:
        cluster.stop_all()


def test_the_lab_authorizes_the_sync_key_only_with_the_forced_command(lab: Lab,
                                                                     tmp_path: Path) -> None:
    """The sync key cannot run anything but ``xdata serve``: a shell command sent with it
    is answered by the serve request parser, never run."""
    cluster = lim2_cluster(lab, tmp_path)
    try:
        r = lab.exec("lim2", ["ssh", "-i", SYNC_KEY, "-o", "BatchMode=yes", "-o",
                              "IdentitiesOnly=yes", "-o",
                              f"UserKnownHostsFile={KNOWN_HOSTS}", "-T",
                              f"root@{lab.hosts[STANDBY].ip}", "touch", "/var/opt/mxone/pwned"],
                     check=False, timeout=30)
        assert r.returncode != 0 and "unknown request 'touch /var/opt/mxone/pwned'" in r.stderr
        assert lab.exec(STANDBY, "test -e /var/opt/mxone/pwned", check=False).returncode != 0
    finally:
        cluster.stop_all()


def test_ctl_sync_reports_every_key_of_its_contract(lab: Lab, tmp_path: Path) -> None:
    cluster = lim2_cluster(lab, tmp_path)
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2", timeout=MARGIN)[0]
        version = data_backup(lab, "lim2", 2)
        eventually(lambda: synced_to_standby(cluster, version), SYNC_WAIT, "the backup synced")
        code, reply = ctl_sync(lab, "lim2")
        assert code == 0 and reply["ok"] is True
        [row] = reply["results"]
        assert set(row) == {"lim", "ok", "direction", "version", "fetched_files",
                            "fetched_bytes", "reused_files", "seconds", "notes"}
        assert row["direction"] == "none" and row["version"] == version
        status = cluster.status("lim2")["sync"]
        assert status["enabled"] is True and status["lims"][0]["last_success"]
    finally:
        cluster.stop_all()
