"""End to end: labs coexist, leave the machine's network alone, and leave nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mxone_lab import BuildError, HostSpec, Lab, LabSpec, machine, procs
from mxone_lab.build import Builder
from mxone_lab.sshd import Sshd
from mxone_lab.state import LabState

pytestmark = pytest.mark.lab

SMALL = LabSpec(hosts=(HostSpec("alpha", 11), HostSpec("client", 100)))


def _machine_network() -> dict[str, str]:
    """The machine's own addresses, links and routes (its root network namespace)."""
    out = {}
    for name, argv in {
        "addr": ["ip", "-o", "addr"],
        "link": ["ip", "-o", "link"],
        "route": ["ip", "route", "show", "table", "all"],
    }.items():
        text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        # Link lines carry no counters, but drop the volatile qdisc/state words anyway.
        out[name] = text
    return out


def _lab_pids(lab: Lab) -> set[int]:
    net_ids = {
        procs.ns_id(f"/run/netns/{n}") for n in os.listdir("/run/netns") if n.startswith(lab.prefix)
    }
    pids = set(procs.members({i for i in net_ids if i}))
    pids |= {h.holder_pid for h in lab.hosts.values()} | {lab.switch_pid}
    pids |= {h.sshd_pid for h in lab.hosts.values() if h.sshd_pid}
    return pids


def _assert_nothing_left(lab: Lab, pids: set[int], holders: list[int]) -> None:
    assert not [n for n in os.listdir("/run/netns") if n.startswith(lab.prefix)]
    assert not [p for p in pids if procs.alive(p)]
    for pid in holders:  # the holders' mount namespaces (and their overlays) are gone
        assert not Path(f"/proc/{pid}/mountinfo").exists() or not procs.alive(pid)
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert str(lab.dir) not in mountinfo and lab.prefix not in mountinfo
    assert lab.mounts_left() == []
    assert not lab.dir.exists()


def test_building_a_lab_adds_nothing_to_the_machine_network() -> None:
    before = _machine_network()
    with Lab.up(SMALL) as second:
        assert (
            second.exec("client", "ping -c 1 -W 1 10.77.0.11 >/dev/null", check=False).returncode
            == 0
        )
        assert _machine_network() == before
        assert "10.77." not in "".join(before.values())
    assert _machine_network() == before


def test_a_second_lab_coexists_and_leaves_nothing_behind(lab: Lab) -> None:
    second = Lab.up(SMALL)
    try:
        assert second.id != lab.id and second.dir != lab.dir
        # Same subnet, separate worlds: 10.77.0.11 is alpha in one lab and lim1 in the other.
        assert (
            second.ssh_exec("client", "hostname", to=["alpha"])["alpha"].stdout.strip() == "alpha"
        )
        assert lab.ssh_exec("client", "hostname", to=["lim1"])["lim1"].stdout.strip() == "lim1"
        holders = [h.holder_pid for h in second.hosts.values()]
        overlays = Path(f"/proc/{holders[0]}/mountinfo").read_text()
        assert str(second.dir) in overlays and " overlay " in overlays
        pids = _lab_pids(second)
        assert len(pids) >= 5  # switch holder, 2 holders, 2 sshd
    finally:
        second.down()
    _assert_nothing_left(second, pids, holders)
    # The session's lab is untouched.
    assert lab.ssh_exec("client", "hostname", to=["lim1"])["lim1"].stdout.strip() == "lim1"


def test_a_failed_build_is_torn_down(monkeypatch: pytest.MonkeyPatch) -> None:
    claimed: list[LabState] = []
    real_claim = machine.claim

    def claim(*args: Any) -> LabState:
        claimed.append(real_claim(*args))
        return claimed[-1]

    real_config = Sshd.config

    def broken_config(self: Sshd, name: str) -> str:
        text = real_config(self, name)
        return text + "NoSuchOption yes\n" if name == "client" else text

    monkeypatch.setattr(machine, "claim", claim)
    monkeypatch.setattr(Sshd, "config", broken_config)
    with pytest.raises(BuildError) as err:
        Lab.up(SMALL)
    msg = str(err.value)
    assert "sshd on client" in msg and "NoSuchOption" in msg and "torn down" in msg
    (state,) = claimed
    lab = Lab(state)
    assert re.search(lab.id, msg)
    _assert_nothing_left(lab, set(), [])


def test_a_failed_host_setup_is_named_and_torn_down(monkeypatch: pytest.MonkeyPatch) -> None:
    real_script = Builder.holder_script

    def broken(self: Builder, name: str) -> str:
        script = real_script(self, name)
        return (
            script.replace("echo ready", "mount -t nosuchfs x /mnt\necho ready")
            if name == "alpha"
            else script
        )

    monkeypatch.setattr(Builder, "holder_script", broken)
    before = set(os.listdir("/tmp"))
    with pytest.raises(BuildError, match=r"setting up host alpha failed.*holder.log: mount: /mnt"):
        Lab.up(SMALL)
    new = {d for d in set(os.listdir("/tmp")) - before if re.fullmatch(r"mx[0-9a-f]{6}", d)}
    assert not new
