"""End to end: faults injected in the lab switch really break (and heal) the network."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from mxone_lab import Lab, LabError, UnknownHost

pytestmark = pytest.mark.lab


def ping(
    lab: Lab, src: str, dst: str, count: int = 3, interval: float = 0.1, wait: float = 1.0
) -> tuple[int, int]:
    """(sent, received) of a bounded ping from host ``src`` to host ``dst``'s base address."""
    ip = str(lab.hosts[dst].ip)
    r = lab.exec(
        src,
        ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), ip],
        check=False,
        timeout=count * interval + wait + 10,
    )
    m = re.search(r"(\d+) packets transmitted, (\d+) received", r.stdout)
    assert m, f"unexpected ping output: {r.stdout!r} {r.stderr!r}"
    return int(m.group(1)), int(m.group(2))


def test_cut_isolates_a_host_until_restored(lab: Lab) -> None:
    assert ping(lab, "client", "lim2") == (3, 3)
    lab.faults.cut("lim2")
    assert lab.faults.active() == ["cut lim2"]
    assert ping(lab, "client", "lim2", wait=0.5) == (3, 0)
    assert ping(lab, "lim2", "lim1", wait=0.5) == (3, 0)
    assert ping(lab, "client", "lim1") == (3, 3)  # the others are untouched
    lab.exec("lim2", "true")  # the host itself runs on
    lab.faults.restore("lim2")
    assert lab.faults.active() == []
    assert ping(lab, "client", "lim2") == (3, 3)


def test_loss_drops_that_share_of_frames(lab: Lab) -> None:
    assert ping(lab, "client", "lim3", count=2)[1] == 2  # neighbour entries in place
    # One direction only: requests to lim3 are dropped with p = 0.5, replies pass.
    lab.faults.loss("lim3", 50, direction="to")
    assert "numgen random mod 100 < 50 drop" in lab.faults.nft_ruleset()
    sent, received = ping(lab, "client", "lim3", count=200, interval=0.01, wait=1)
    loss = 1 - received / sent
    assert 0.2 <= loss <= 0.8, f"{loss:.0%} lost of {sent}"
    lab.faults.loss("lim3", 100)
    assert ping(lab, "client", "lim3", count=20, interval=0.01, wait=0.3) == (20, 0)
    lab.faults.loss("lim3", 0)
    assert ping(lab, "client", "lim3")[1] == 3


def test_partition_separates_two_hosts_only(lab: Lab) -> None:
    lab.faults.partition("lim1", "lim2")
    assert ping(lab, "lim1", "lim2", wait=0.5)[1] == 0
    assert ping(lab, "lim2", "lim1", wait=0.5)[1] == 0
    assert ping(lab, "lim1", "client")[1] == 3
    assert ping(lab, "lim2", "client")[1] == 3
    lab.faults.restore()
    assert ping(lab, "lim1", "lim2")[1] == 3


def _carrier(lab: Lab, host: str) -> str:
    return lab.exec(host, ["cat", "/sys/class/net/eth0/carrier"], check=False).stdout.strip()


def test_link_down_is_a_pulled_cable(lab: Lab) -> None:
    lab.faults.link_down("standby1")
    assert _carrier(lab, "standby1") == "0"
    assert lab.faults.active() == ["link down standby1"]
    assert ping(lab, "client", "standby1", wait=0.5)[1] == 0
    lab.faults.link_up("standby1")
    deadline = time.monotonic() + 3
    while _carrier(lab, "standby1") != "1" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _carrier(lab, "standby1") == "1"
    assert ping(lab, "client", "standby1")[1] >= 2


def test_fault_arguments_are_checked(lab: Lab) -> None:
    with pytest.raises(UnknownHost, match="nosuch"):
        lab.faults.cut("nosuch")
    with pytest.raises(LabError, match="percent"):
        lab.faults.loss("lim1", 101)
    with pytest.raises(LabError, match="direction"):
        lab.faults.loss("lim1", 10, direction="sideways")
    with pytest.raises(LabError, match="two different"):
        lab.faults.partition("lim1", "lim1")
    assert lab.faults.active() == []


def test_ssh_dropped_but_pings_pass(lab: Lab) -> None:
    connect = ["timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/10.77.0.12/22"]
    assert lab.exec("client", connect, check=False).returncode == 0
    lab.faults.drop_ssh("lim2")
    assert lab.faults.active() == ["SSH dropped for lim2"]
    assert ping(lab, "client", "lim2") == (3, 3)
    assert lab.exec("client", connect, check=False).returncode != 0  # no handshake
    lab.faults.restore()
    assert lab.exec("client", connect, check=False).returncode == 0


def test_bandwidth_cap_slows_a_bulk_transfer(lab: Lab) -> None:
    """64 kbit/s to lim2: 64 kB take about 8 s instead of milliseconds."""
    send = ("import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for i in range(64):\n    s.sendto(b'x' * 1000, ('10.77.0.12', 9))\n")
    count = ("import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "s.bind(('10.77.0.12', 9))\ns.settimeout(1.0)\nn = 0\nstart = None\n"
             "try:\n    while True:\n        s.recv(2000)\n        n += 1\n"
             "        start = start or time.monotonic()\nexcept TimeoutError:\n    pass\n"
             "print(n, round(time.monotonic() - 1.0 - (start or time.monotonic()), 2))\n")
    lab.faults.rate("lim2", 64)
    assert lab.faults.active() == ["rate lim2 64 kbit/s"]
    listener = lab.popen("lim2", [sys.executable, "-c", count], stdout=subprocess.PIPE)
    time.sleep(0.3)
    lab.run_python("client", send)
    out, _ = listener.communicate(timeout=30)
    got, seconds = out.split()
    # 16 kB of burst pass at once; the rest at 8 kB/s, or dropped past 200 ms of queue
    assert int(got) < 64 or float(seconds) > 1.0, out
    lab.faults.restore()
    assert lab.faults.active() == []
