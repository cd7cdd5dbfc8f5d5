"""Pure logic of the lab (no root needed): the spec and the fault table."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from mxone_lab import FaultState, HostSpec, LabSpec, SpecError


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
