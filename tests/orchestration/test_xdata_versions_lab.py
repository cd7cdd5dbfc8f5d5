"""Cluster changes whose older exchange-data versions no longer fit remove them on every
server of the cluster, keeping the newest valid version of each LIM - and only once the
change is in place."""

from __future__ import annotations

import json

import pytest

from tests.orchestration.conftest import Admin

pytestmark = pytest.mark.lab

ROOT = "/var/opt/mxone/xdata"
WRITE = (
    "import sys, time\n"
    "from datetime import UTC, datetime, timedelta\n"
    "from pathlib import Path\n"
    "from mxone_agent import xdata\n"
    "root = Path(sys.argv[1])\n"
    "start = datetime(2026, 11, 1, tzinfo=UTC)\n"
    "for lim in (2, 3):\n"
    "    for i in range(3):\n"
    "        xdata.write_version(root, lim, {'reload/extensions.json': b'[%d]' % i},\n"
    "                            when=start + timedelta(hours=i))\n"
)


def versions(lab, host: str) -> list[str]:
    return sorted(lab.exec(host, f"ls {ROOT} 2>/dev/null || true").stdout.split())


def test_a_priority_change_keeps_only_the_newest_version_of_each_lim(admin: Admin, lab) -> None:
    admin.build_system()
    for host in ("lim2", "lim3", "standby1"):
        lab.run_python(host, WRITE, args=[ROOT])
        assert len(versions(lab, host)) == 6
    lab.run_python("lim1", WRITE, args=[ROOT])  # lim1 is in no cluster: left alone

    data = admin.json("cluster", "set", "c1", "--priority", "2:5", timeout=300)
    assert data["ok"], data
    newest = ["lim2-20261101T020000.000000Z", "lim3-20261101T020000.000000Z"]
    for host in ("lim2", "lim3", "standby1"):
        assert versions(lab, host) == newest, host
        said = next(o["message"] for o in data["outcomes"] if o["server"] == host
                    and "exchange-data" in o["message"])
        assert said.startswith("older exchange-data versions removed (the newest valid one of "
                               "each LIM kept): ")
        assert "lim2-20261101T000000.000000Z" in said and "lim3-20261101T010000.000000Z" in said
    assert len(versions(lab, "lim1")) == 6


def test_a_refused_change_removes_no_version(admin: Admin, lab) -> None:
    admin.build_system()
    lab.run_python("standby1", WRITE, args=[ROOT])
    before = versions(lab, "standby1")
    lab.faults.cut("lim3")  # a server of the cluster cannot be reached: nothing changes
    r = admin.run("cluster", "set", "c1", "--priority", "2:5", "--json", timeout=300)
    assert r.returncode != 0
    assert json.loads(r.stdout)["generation"] == 6
    assert versions(lab, "standby1") == before
