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


def test_a_cluster_whose_standby_lacks_room_for_two_backups_is_refused(admin: Admin, lab) -> None:
    from tests.orchestration.conftest import all_trees

    admin.build_system(clusters=False)
    big = ("import sys\nfrom pathlib import Path\nfrom mxone_agent import xdata\n"
           "xdata.write_version(Path(sys.argv[1]), 2, {'reload/data.bin': bytes(1_500_000)})\n")
    lab.run_python("lim2", big, args=[ROOT])
    lab.exec("standby1", f"mkdir -p {ROOT} && mount -t tmpfs -o size=2m tmpfs {ROOT}")
    try:
        trees = all_trees(lab)
        toml = lab.exec("lim1", "cat /etc/mxone/system.toml").stdout
        r = admin.run("cluster", "create", "c1", "--standby", "standby1", "--lim", "2:10.77.0.52",
                      "--timers", "fast", "--json", timeout=300)
        assert r.returncode != 0
        data = json.loads(r.stdout)
        said = next(o["message"] for o in data["outcomes"] if o["server"] == "standby1")
        assert said.startswith("refused by the standby-disk rule: standby has ")
        assert "two backups of each regular need 2.9 MiB" in said and "nothing was changed" in said
        assert all_trees(lab) == trees
        assert lab.exec("lim1", "cat /etc/mxone/system.toml").stdout == toml
    finally:
        lab.exec("standby1", f"umount {ROOT}", check=False)
