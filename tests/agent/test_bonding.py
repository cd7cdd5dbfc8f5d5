"""The bond under the cluster interface, read from sysfs trees recorded by hand from the
bonding driver's documented formats (this kernel has no bonding driver):
``tests/agent/data/bonding/<case>/`` stands for ``/sys/class/net``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mxone_agent import bonding

TREES = Path(__file__).parent / "data" / "bonding"


def tree(case: str) -> str:
    return str(TREES / case)


def test_active_backup_with_both_slaves_up() -> None:
    net = bonding.read_network("bond0", tree("active-backup-up"))
    assert net == {"interface": "bond0", "over": None, "bond": {
        "name": "bond0", "mode": "active-backup", "mii_status": "up", "active_slave": "eth1",
        "aggregator": None, "degraded": [],
        "slaves": [{"name": "eth0", "mii_status": "up", "link_failures": 0, "state": "backup",
                    "aggregator": None},
                   {"name": "eth1", "mii_status": "up", "link_failures": 0, "state": "active",
                    "aggregator": None}]}}


def test_a_slave_down_degrades_the_redundancy() -> None:
    bond = bonding.read_bond("bond0", tree("active-backup-degraded"))
    assert bond is not None and bond.mii_status == "up" and bond.active_slave == "eth1"
    assert [(s.name, s.mii_status, s.link_failures) for s in bond.slaves] == [
        ("eth0", "down", 2), ("eth1", "up", 0)]
    assert bond.degraded() == ["bond0: slave eth0 is down, 2 link failures"]


def test_8023ad_has_no_active_slave_and_checks_the_aggregator(tmp_path: Path) -> None:
    bond = bonding.read_bond("bond0", tree("8023ad-up"))
    assert bond is not None
    assert (bond.mode, bond.active_slave, bond.aggregator) == ("802.3ad", None, 1)
    assert [(s.name, s.aggregator, s.link_failures) for s in bond.slaves] == [
        ("eth0", 1, 0), ("eth1", 1, 1)]
    assert bond.degraded() == []
    # eth1 up but negotiated into another aggregator (a switch port without LACP)
    shutil.copytree(tree("8023ad-up"), tmp_path / "net")
    (tmp_path / "net/eth1/bonding_slave/ad_aggregator_id").write_text("2\n")
    odd = bonding.read_bond("bond0", str(tmp_path / "net"))
    assert odd is not None and odd.degraded() == [
        "bond0: slave eth1 is up but not in the active 802.3ad aggregator (2, active 1): "
        "check the switch's LACP setup"]


def test_a_vlan_over_a_bond_shows_the_bond_and_reads_slaves_through_lower_links() -> None:
    net = bonding.read_network("bond0.100", tree("vlan-over-bond"))
    assert net["interface"] == "bond0.100" and net["over"] == "bond0"
    bond = net["bond"]
    assert bond["active_slave"] == "eth0"
    assert [(s["name"], s["mii_status"], s["link_failures"]) for s in bond["slaves"]] == [
        ("eth0", "up", 0), ("eth1", "going down", 5)]
    assert bond["degraded"] == ["bond0: slave eth1 is going down, 5 link failures"]


@pytest.mark.parametrize("interface, over", [("eth0", None), ("eth0.100", "eth0"),
                                             ("eth9", None), ("..", None), ("all", None)])
def test_an_interface_that_is_no_bond_has_none(interface: str, over: str | None) -> None:
    assert bonding.read_network(interface, tree("plain")) == {
        "interface": interface, "over": over, "bond": None}


def test_odd_files_read_as_unknown_and_never_raise() -> None:
    bond = bonding.read_bond("bond0", tree("odd"))
    assert bond is not None
    assert (bond.mode, bond.mii_status, bond.active_slave) == ("unknown", "unknown", None)
    # "../../etc" in the slaves file is no interface name: not followed
    assert [(s.name, s.mii_status, s.link_failures, s.state) for s in bond.slaves] == [
        ("eth0", "unknown", None, "unknown"), ("eth1", "unknown", None, "unknown")]
    assert bond.degraded() == ["bond0: slave eth0 is unknown", "bond0: slave eth1 is unknown"]


def test_a_bond_without_slaves_or_down_or_with_one_slave(tmp_path: Path) -> None:
    net = tmp_path / "net"
    shutil.copytree(tree("active-backup-up"), net)
    (net / "bond0/bonding/slaves").write_text("")
    (net / "bond0/bonding/active_slave").write_text("")
    assert bonding.read_bond("bond0", str(net)).degraded() == ["bond0 has no slaves"]  # type: ignore[union-attr]
    (net / "bond0/bonding/slaves").write_text("eth1\n")
    assert bonding.read_bond("bond0", str(net)).degraded() == [  # type: ignore[union-attr]
        "bond0 has one slave (eth1): no redundancy"]
    (net / "bond0/bonding/mii_status").write_text("down\n")
    assert bonding.read_bond("bond0", str(net)).degraded() == [  # type: ignore[union-attr]
        "bond0 is down: no slave carries traffic"]


def test_a_file_that_is_a_directory_reads_as_unknown(tmp_path: Path) -> None:
    net = tmp_path / "net"
    shutil.copytree(tree("active-backup-up"), net)
    (net / "eth0/bonding_slave/mii_status").unlink()
    (net / "eth0/bonding_slave/mii_status").mkdir()
    bond = bonding.read_bond("bond0", str(net))
    assert bond is not None and bond.slaves[0].mii_status == "unknown"
