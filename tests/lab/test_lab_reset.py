"""End to end: reset() puts every host back to as-built between tests."""

from __future__ import annotations

import os
import signal

import pytest
from mxone_lab import Lab, procs

pytestmark = pytest.mark.lab


def test_reset_removes_what_a_test_left(lab: Lab) -> None:
    holders = {n: h.holder_pid for n, h in lab.hosts.items()}
    sshds = {n: h.sshd_pid for n, h in lab.hosts.items()}
    lab.exec("lim1", "ip addr add 10.77.0.50/24 dev eth0 && ip addr add 10.77.0.51/32 dev lo")
    lab.exec("lim1", "ip route add 10.78.0.0/24 via 10.77.0.12")
    lab.exec("lim1", "ip link add mxtest0 type veth peer name mxtest1")
    tracked = lab.popen("lim2", ["sleep", "300"])
    kept = lab.popen("lim2", ["sleep", "301"], keep_on_reset=True)
    stray = int(lab.exec("lim3", "sleep 302 >/dev/null 2>&1 & echo $!").stdout)
    lab.exec(
        "standby1",
        "mkdir -p /etc/mxone /var/opt/mxone /opt/mxone /var/log/mxone && "
        "touch /etc/mxone/a /var/opt/mxone/b /opt/mxone/c /var/log/mxone/d",
    )
    lab.exec("lim3", "nft add table inet mxtest && hostname renamed")
    lab.exec("client", "ping -c 1 -W 1 10.77.0.11 >/dev/null")
    lab.faults.cut("lim3")
    lab.faults.link_down("lim2")
    for pid in (tracked.pid, kept.pid, stray):
        assert procs.alive(pid)
    try:
        lab.reset()

        assert lab.addresses("lim1") == ["10.77.0.11/24"]
        assert "10.77.0.51" not in lab.exec("lim1", "ip -4 -o addr show dev lo").stdout
        assert "10.78.0.0" not in lab.exec("lim1", "ip -4 route").stdout
        assert "mxtest" not in lab.exec("lim1", "ip -o link").stdout
        assert tracked.poll() is not None
        assert not procs.alive(stray)
        assert kept.poll() is None, "keep_on_reset process was ended"
        left = lab.exec(
            "standby1", "ls -d /etc/mxone /var/opt/mxone /opt/mxone /var/log/mxone", check=False
        )
        assert left.stdout == ""
        assert lab.exec("lim3", "nft list ruleset; hostname").stdout.strip() == "lim3"
        assert lab.exec("client", "ip -4 neigh show").stdout.strip() == ""
        assert lab.faults.active() == []
        assert "mxone_lab_faults" not in lab.faults.nft_ruleset()
        assert lab.exec("lim3", "cat /sys/class/net/eth0/carrier").stdout.strip() == "1"
        assert (
            lab.exec("client", "ping -c 1 -W 1 10.77.0.12 >/dev/null", check=False).returncode == 0
        )
        # The lab's own processes were left alone.
        assert {n: h.holder_pid for n, h in lab.hosts.items()} == holders
        assert {n: h.sshd_pid for n, h in lab.hosts.items()} == sshds
        assert all(procs.alive(p) for p in [*holders.values(), *sshds.values()] if p)
    finally:
        kept.kill()
        kept.wait()


def test_reset_restarts_an_sshd_a_test_stopped(lab: Lab) -> None:
    old = lab.hosts["lim2"].sshd_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    assert not lab.ssh_exec("client", "true", to=["lim2"], timeout=3)["lim2"].ok
    lab.reset()
    new = lab.hosts["lim2"].sshd_pid
    assert new != old and new is not None and procs.alive(new)
    assert lab.ssh_exec("client", "hostname", to=["lim2"])["lim2"].stdout.strip() == "lim2"
