"""Exchange data end to end through the tool: the cluster the tool created syncs with the
keys the tool installed, `cluster sync` reports per LIM, and a LIM's extensions survive a
failover to the standby and a manual fallback, with a change made on the standby."""

from __future__ import annotations

import time

import pytest

from tests.agent_lab.test_data_sync import UDP
from tests.orchestration.conftest import Admin

pytestmark = pytest.mark.lab

AGENT = "/opt/mxone/agent/current/bin/mxone-agent"
ROOT = "/var/opt/mxone/xdata"


def udp(lab, address: str, message: str, timeout: float = 10.0) -> str:
    r = lab.run_python("client", UDP, args=[address, "7100", message, str(timeout)],
                       check=False, timeout=timeout + 10)
    assert r.returncode == 0, f"no reply to {message!r} from {address}"
    return r.stdout.strip()


def data_backup(lab, host: str, lim: int) -> str:
    r = lab.exec(host, [AGENT, "service", "data_backup", "--lim", str(lim)], check=False, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.split()[4]


def versions(lab, host: str, lim: int) -> list[str]:
    out = lab.exec(host, f"ls {ROOT} 2>/dev/null || true").stdout.split()
    return sorted(v for v in out if v.startswith(f"lim{lim}-"))


def wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.5)


def test_extensions_survive_failover_and_manual_fallback_through_the_tool(admin: Admin, lab) -> None:
    admin.build_system()  # c1: LIMs 2 and 3 + standby1, manual fallback, fast timers
    admin.settled_status()
    assert udp(lab, "10.77.0.12", "REGISTER 2001").startswith("OK LIM 2 registered 2001 on lim2")
    v1 = data_backup(lab, "lim2", 2)

    data = admin.json("cluster", "sync", "c1", timeout=300)
    assert data["ok"], data
    lines = {x["lim"]: x["text"] for x in data["lims"]}
    assert lines[2].startswith("LIM 2: ") and lines[3].startswith("LIM 3: ")
    assert v1 in versions(lab, "standby1", 2)
    status = admin.json("cluster", "status")["clusters"][0]
    assert status["alarms"] == [], status["alarms"]
    assert [row["lim"] for row in status["sync"]] == [2, 3]
    text = admin.run("cluster", "status", check=True).stdout
    assert "Exchange data LIM 2: synced " in text and f"version {v1})" in text, text

    lab.faults.cut("lim2")
    wait(lambda: "on standby1" in udp(lab, "10.77.0.12", "EXTENSIONS"), 60,
         "LIM 2 answers from standby1")
    assert udp(lab, "10.77.0.12", "EXTENSIONS").endswith("extensions: 2001")
    assert udp(lab, "10.77.0.12", "REGISTER 2002").startswith("OK LIM 2 registered 2002 on standby1")
    v2 = data_backup(lab, "standby1", 2)

    lab.faults.restore("lim2")
    # lim2's agent hears the cluster again; the standby's newer data reaches it before it
    # may take its LIM back (and the fallback pulls it in any case)
    wait(lambda: v2 in versions(lab, "lim2", 2), 60, f"{v2} on lim2")
    r = admin.run("cluster", "fallback", "2", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    wait(lambda: "on lim2" in udp(lab, "10.77.0.12", "EXTENSIONS"), 60, "LIM 2 back on lim2")
    assert udp(lab, "10.77.0.12", "EXTENSIONS").endswith("extensions: 2001,2002")


def test_cluster_sync_reports_a_lim_whose_regular_server_is_unreachable(admin: Admin, lab) -> None:
    admin.build_system()
    admin.settled_status()
    lab.faults.cut("lim3")
    r = admin.run("cluster", "sync", "c1", timeout=300)
    assert r.returncode != 0
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("lim")}
    assert " OK " in rows["lim2"]
    assert " FAILED " in rows["lim3"] and "LIM 3: server lim3 unreachable" in rows["lim3"]
    assert "NOT every LIM was synced" in r.stdout
