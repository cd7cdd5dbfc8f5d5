"""Pure logic of the lab (no root needed): the spec and the fault table."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from mxone_lab import FaultState, HostSpec, LabSpec, SpecError, systemd_etc, systemd_host


def test_default_spec_is_the_documented_one() -> None:
    spec = LabSpec.default()
    assert [(h.name, str(spec.ip_of(h)), h.mac) for h in spec.hosts] == [
        ("lim1", "10.77.0.11", "02:77:00:00:00:0b"),
        ("lim2", "10.77.0.12", "02:77:00:00:00:0c"),
        ("lim3", "10.77.0.13", "02:77:00:00:00:0d"),
        ("standby1", "10.77.0.20", "02:77:00:00:00:14"),
        ("client", "10.77.0.100", "02:77:00:00:00:64"),
    ]
    assert spec.prefix == 24


def test_with_hosts_builds_lims_and_a_client() -> None:
    spec = LabSpec.with_hosts(20)
    assert spec.names[:2] == ("lim1", "lim2") and spec.names[-2:] == ("lim19", "client")
    assert len({h.host_byte for h in spec.hosts}) == 20
    for bad in (1, 91):
        with pytest.raises(SpecError, match="2..90"):
            LabSpec.with_hosts(bad)


def test_toml_spec_round_trips(tmp_path: Path) -> None:
    f = tmp_path / "lab.toml"
    f.write_text('subnet = "10.88.0.0/16"\n[hosts]\nmx1 = 11\nmx2 = 44\nclient = 100\n')
    spec = LabSpec.from_toml(f)
    assert spec.subnet == ipaddress.IPv4Network("10.88.0.0/16")
    assert str(spec.ip_of(spec.hosts[1])) == "10.88.0.44"
    assert LabSpec.from_mapping(spec.to_mapping()) == spec


def test_every_broken_rule_is_named_at_once(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(
        'subnet = "10.77.0.0/24"\ncolour = "red"\n[hosts]\nlim1 = 11\nLim2 = 12\nlim3 = 11\nlim4 = 255\n'
    )
    with pytest.raises(SpecError) as err:
        LabSpec.from_toml(f)
    text = str(err.value)
    assert "unknown key(s) colour: only subnet and hosts" in text
    f.write_text('[hosts]\nlim1 = 11\nLim2 = 12\nlim3 = 11\nlim4 = 255\nlim5 = "x"\n')
    with pytest.raises(SpecError) as err:
        LabSpec.from_toml(f)
    text = str(err.value)
    assert str(f) in text
    assert "'Lim2' is invalid" in text
    assert "host lim3: host byte 11 is already used by lim1" in text
    assert "host lim4: host byte 255 must be 1..254" in text
    assert "host lim5: host byte 'x' is not an integer" in text


def test_a_host_outside_a_small_subnet_is_refused() -> None:
    with pytest.raises(SpecError, match="not a host address of subnet 10.0.0.0/28"):
        LabSpec(hosts=(HostSpec("a", 15),), subnet=ipaddress.IPv4Network("10.0.0.0/28"))
    with pytest.raises(SpecError, match="invalid"):
        LabSpec(hosts=(HostSpec("averyveryverylongname", 1),))


def test_fault_table_matches_the_state() -> None:
    ports = {n: f"v-{n}" for n in ("lim1", "lim2", "lim3")}
    fs = FaultState(
        cut={"lim1"},
        loss={"lim2": (30, "to"), "lim3": (100, "both")},
        partitions={("lim2", "lim3")},
    )
    script = fs.nft_script(ports)
    assert script.startswith(
        "table bridge mxone_lab_faults\ndelete table bridge mxone_lab_faults\n"
    )
    for rule in (
        'iifname "v-lim1" drop',
        'oifname "v-lim1" drop',
        'iifname "v-lim2" oifname "v-lim3" drop',
        'iifname "v-lim3" oifname "v-lim2" drop',
        'oifname "v-lim2" numgen random mod 100 < 30 drop',
        'iifname "v-lim3" drop',
    ):
        assert f"\t\t{rule}\n" in script
    assert 'iifname "v-lim2" numgen' not in script  # "to" only
    healthy = FaultState().nft_script(ports)
    assert healthy == "table bridge mxone_lab_faults\ndelete table bridge mxone_lab_faults\n"


def test_garp_ssh_and_rate_faults() -> None:
    ports = {n: f"v-{n}" for n in ("lim1", "lim2")}
    fs = FaultState(garp={"10.77.0.52", "10.77.0.51"}, ssh={"lim2"}, rate={"lim1": 256})
    script = fs.nft_script(ports)
    for rule in ('oifname "v-lim2" tcp dport 22 drop', 'iifname "v-lim2" tcp sport 22 drop',
                 "ether type arp arp operation request arp saddr ip { 10.77.0.51, 10.77.0.52 } "
                 "drop"):
        assert f"\t\t{rule}\n" in script
    assert fs.describe() == ["rate lim1 256 kbit/s", "gratuitous ARP dropped for 10.77.0.51",
                             "gratuitous ARP dropped for 10.77.0.52", "SSH dropped for lim2"]
    assert FaultState.from_mapping(fs.to_mapping()) == fs
    assert fs.without("lim2") == FaultState(garp=fs.garp, rate={"lim1": 256})
    assert fs.without("lim1").rate == {}


def test_restoring_one_host_keeps_the_other_faults() -> None:
    fs = FaultState(
        cut={"lim1", "lim2"},
        loss={"lim1": (5, "both")},
        partitions={("lim1", "lim3")},
        down={"lim1"},
    )
    left = fs.without("lim1")
    assert left == FaultState(cut={"lim2"})
    assert left.describe() == ["cut lim2"]
    assert FaultState.from_mapping(fs.to_mapping()) == fs
    assert fs.without(None) == FaultState()


def test_tests_cannot_reach_the_real_ssh_config() -> None:
    import os

    import paramiko  # type: ignore[import-untyped]

    assert not os.path.expanduser("~/.ssh").startswith("/root/")
    assert "SSH_AUTH_SOCK" not in os.environ
    client = paramiko.SSHClient()
    client.load_system_host_keys()  # the redirected HOME: nothing real in it
    with pytest.raises(AssertionError, match="real"):
        client.load_system_host_keys("/root/.ssh/known_hosts")


def test_systemd_hosts_are_part_of_the_spec(tmp_path: Path) -> None:
    f = tmp_path / "lab.toml"
    f.write_text('systemd = ["lim2"]\n[hosts]\nlim1 = 11\nlim2 = 12\n')
    spec = LabSpec.from_toml(f)
    assert spec.systemd_names == ("lim2",)
    assert [h.systemd for h in spec.hosts] == [False, True]
    assert LabSpec.from_mapping(spec.to_mapping()) == spec
    assert "systemd" not in LabSpec.default().to_mapping()  # the default lab is unchanged
    assert LabSpec.default().with_systemd(["standby1"]).systemd_names == ("standby1",)
    sd = LabSpec.systemd_standby()
    assert [(h.name, str(sd.ip_of(h)), h.systemd) for h in sd.hosts] == [
        ("lim1", "10.77.0.11", False),
        ("lim2", "10.77.0.12", False),
        ("standby1", "10.77.0.20", True),
        ("client", "10.77.0.100", False),
    ]
    with pytest.raises(SpecError, match="systemd host 'lim9' is not in hosts"):
        LabSpec.from_mapping({"hosts": {"lim1": 11}, "systemd": ["lim9"]})
    with pytest.raises(SpecError, match="must be a list of host names"):
        LabSpec.from_mapping({"hosts": {"lim1": 11}, "systemd": "lim1"})
    with pytest.raises(SpecError, match="systemd host 'nosuch' is not a host of the lab"):
        LabSpec.default().with_systemd(["nosuch"])


def test_a_systemd_host_masks_what_the_machine_enables_but_keeps_its_basics() -> None:
    masked = set(systemd_etc.masked_units())
    assert {"ssh.service", "systemd-udevd.service", "systemd-sysctl.service"} <= masked
    assert {"getty@.service", "console-getty.service", "systemd-tmpfiles-clean.timer"} <= masked
    assert not masked & systemd_etc.KEPT_UNITS
    enabled = {u for d in Path("/etc/systemd/system").glob("*.wants") for u in os.listdir(d)}
    assert enabled - systemd_etc.KEPT_UNITS <= masked


def test_a_systemd_host_sets_up_only_paths_of_its_own_at_boot() -> None:
    # /home, /srv, /forcefsck... are the machine's: their tmpfiles.d lines are left out.
    for text in systemd_etc.tmpfiles_overrides().values():
        for line in text.splitlines():
            if line.strip() and not line.startswith("#"):
                assert line.split()[1].startswith(systemd_etc.HOST_OWNED), line
    assert systemd_etc._tmpfiles_line_is_hosts("d /run/lock/subsys 0755 root root -")
    assert not systemd_etc._tmpfiles_line_is_hosts("Q /home 0755 - - -")
    assert not systemd_etc._tmpfiles_line_is_hosts("r! /forcefsck")
    assert not systemd_etc._tmpfiles_line_is_hosts("d /etcetera 0755")


def test_the_systemd_holder_hides_the_machines_tmp_before_systemd_starts() -> None:
    script = systemd_host.holder_script(
        name="sd",
        tag="mx123456-sd",
        net_batch=Path("/tmp/mx123456/hosts/sd/net.batch"),
        overlays=[("/etc", "mx123456-sd/etc", "lowerdir=/etc,upperdir=u,workdir=w")],
        shown=[(Path("/tmp/mx123456"), "/run/.mxone-lab"),
               (Path("/tmp/ci-clone"), "/run/.mxone-lab-1")],
    )
    lines = script.splitlines()
    tmp = lines.index("mount -t tmpfs -o mode=1777,size=512m mx123456-sd-tmp /tmp")
    assert lines.index("mkdir -m 0700 /run/.mxone-lab && mount --bind /tmp/mx123456 "
                       "/run/.mxone-lab") < tmp
    assert lines.index("mkdir -m 0700 /run/.mxone-lab-1 && mount --bind /tmp/ci-clone "
                       "/run/.mxone-lab-1") < tmp
    assert tmp < lines.index("mount --move /run/.mxone-lab-dev /dev")
    assert lines[-1].startswith(f"exec {systemd_host.SYSTEMD} ") and tmp < len(lines) - 1
    assert (
        "mount -o remount,bind,ro /proc/sys" in lines and "mount -o remount,bind,ro /sys" in lines
    )


def test_as_built_units_are_told_apart_by_cgroup() -> None:
    root = "/mx123456-sd"
    units = {"dbus.service", "init.scope", "system.slice"}
    assert systemd_host.in_units("/mx123456-sd/system.slice/dbus.service", root, units)
    assert systemd_host.in_units("/mx123456-sd/init.scope", root, units)
    # a slice holds anything: the product's unit in system.slice is not as-built
    assert not systemd_host.in_units("/mx123456-sd/system.slice/mxone-agent.service", root, units)
    assert not systemd_host.in_units("/mx123456-sdx/system.slice/dbus.service", root, units)
    assert not systemd_host.in_units("/", root, units)
    assert not systemd_host.in_units(None, root, units)
    listed = "init.scope loaded active running System\nx.service not-found inactive dead x\n"
    assert systemd_host.parse_units(listed) == {"init.scope": "active", "x.service": "inactive"}
