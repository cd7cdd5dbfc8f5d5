"""Rebooting a lab host: a systemd host is power-cycled with its disks kept.

A ``networkd`` host (systemd-networkd brings up its addresses from its own
/etc/systemd/network at every boot) comes back on whatever its own network configuration
says; its processes, /run, /tmp and kernel network state are gone; faults on its switch
port stay in force.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mxone_lab import HostSpec, Lab, LabError, LabSpec, procs
from mxone_lab.errors import SpecError
from mxone_lab.lab import NETWORK_FILE

REPO = Path(__file__).resolve().parents[2]
SPEC = LabSpec(hosts=(HostSpec("lim1", 11), HostSpec("alpha", 12, systemd=True, networkd=True),
                      HostSpec("client", 100)))


# ---- the spec (no lab needed) ----------------------------------------------------------------


def test_networkd_is_part_of_the_spec(tmp_path: Path) -> None:
    f = tmp_path / "lab.toml"
    f.write_text('systemd = ["lim2"]\nnetworkd = ["lim2"]\n[hosts]\nlim1 = 11\nlim2 = 12\n')
    spec = LabSpec.from_toml(f)
    assert spec.networkd_names == ("lim2",) and spec.systemd_names == ("lim2",)
    assert LabSpec.from_mapping(spec.to_mapping()) == spec
    assert "networkd" not in LabSpec.default().to_mapping()
    assert LabSpec.default().with_networkd(["lim2"]) == LabSpec.default().with_systemd(
        ["lim2"]).with_networkd(["lim2"])
    assert LabSpec.default().with_networkd(["lim2"]).networkd_names == ("lim2",)
    with pytest.raises(SpecError, match="host lim1: networkd needs systemd"):
        LabSpec(hosts=(HostSpec("lim1", 11, networkd=True),))
    with pytest.raises(SpecError, match="networkd host 'lim9' is not in hosts"):
        LabSpec.from_mapping({"hosts": {"lim1": 11}, "systemd": ["lim1"], "networkd": ["lim9"]})
    with pytest.raises(SpecError, match="networkd 'lim1' must be a list of host names"):
        LabSpec.from_mapping({"hosts": {"lim1": 11}, "networkd": "lim1"})


def test_the_cli_knows_reboot_and_networkd() -> None:
    from mxone_lab import cli

    args = cli._parser().parse_args(["up", "--networkd", "lim2,lim3"])
    spec = cli._spec(args)
    assert spec.networkd_names == ("lim2", "lim3") == spec.systemd_names
    assert cli._parser().parse_args(["reboot", "lim2"]).host == "lim2"


# ---- a lab with a networkd host -----------------------------------------------------------


@pytest.fixture(scope="module")
def netlab() -> Iterator[Lab]:
    from tests.conftest import systemd_lab_up

    with systemd_lab_up(SPEC) as lab:
        yield lab


@pytest.mark.lab
def test_every_host_has_its_network_file_and_a_networkd_host_uses_it(netlab: Lab) -> None:
    lab = netlab
    for name in ("lim1", "alpha", "client"):
        text = lab.exec(name, ["cat", NETWORK_FILE]).stdout
        assert f"Address={lab.hosts[name].cidr}\n" in text and "Name=eth0\n" in text
    assert lab.exec("alpha", ["systemctl", "is-active", "systemd-networkd"]).stdout.strip() == \
        "active"
    assert lab.exec("lim1", ["systemctl", "is-active", "systemd-networkd"],
                    check=False).returncode != 0  # a plain host runs no systemd at all
    assert lab.addresses("alpha") == ["10.77.0.12/24"]
    assert lab.exec("alpha", ["systemctl", "is-system-running"]).stdout.strip() == "running"


@pytest.mark.lab
def test_reboot_keeps_the_disks_and_nothing_else(netlab: Lab) -> None:
    lab = netlab
    before = lab.hosts["alpha"]
    lab.exec("alpha", "echo kept > /etc/kept-x && echo kept > /var/kept-x && "
             "echo gone > /run/gone-x && echo gone > /tmp/gone-x && "
             "ip addr add 10.77.0.99/24 dev eth0 && nft add table ip labtest && "
             "sysctl -qw net.ipv4.conf.eth0.arp_ignore=2")
    # The host's own network configuration changes: the next boot follows it.
    lab.exec("alpha", f"sed -i s/Address=10.77.0.12/Address=10.77.0.62/ {NETWORK_FILE}")
    sleeper = lab.popen("alpha", ["sleep", "1000"])
    lab.faults.rate("alpha", 8000)
    try:
        lab.reboot("alpha")
        after = lab.hosts["alpha"]
        assert after.holder_pid != before.holder_pid and procs.alive(after.holder_pid)
        assert not procs.alive(before.holder_pid) and sleeper.poll() is not None
        assert after.sshd_pid not in (None, before.sshd_pid)
        assert lab.exec("alpha", "cat /etc/kept-x /var/kept-x").stdout.split() == ["kept", "kept"]
        assert lab.exec("alpha", "ls /run/gone-x /tmp/gone-x", check=False).stdout == ""
        assert lab.addresses("alpha") == ["10.77.0.62/24"]  # its own file's, not the lab's
        assert lab.exec("alpha", ["nft", "list", "ruleset"]).stdout.strip() == ""
        assert lab.exec("alpha", "sysctl -n net.ipv4.conf.eth0.arp_ignore").stdout \
            .strip() == "0"
        assert lab.exec("alpha", ["systemctl", "is-system-running"]).stdout.strip() == "running"
        assert lab.exec("alpha", "cat /proc/1/comm; hostname").stdout.split() == \
            ["systemd", "alpha"]
        # Same MAC and switch port, the port's rate cap still on it; reachable at its new
        # address, sshd answering there.
        assert lab.exec("alpha", "cat /sys/class/net/eth0/address").stdout.strip() == before.mac
        tc = subprocess.run(["ip", "netns", "exec", lab.switch_ns, "tc", "qdisc", "show", "dev",
                             before.switch_port], check=True, capture_output=True, text=True)
        assert " tbf " in tc.stdout and "rate 8Mbit" in tc.stdout
        lab.run_python("client", "import socket; socket.create_connection(('10.77.0.62', 22), 5)")
    finally:
        lab.faults.restore()
        lab.exec("alpha", "rm -f /etc/kept-x /var/kept-x", check=False)
    # reset puts the host's network file and address back as built.
    lab.reset()
    assert "Address=10.77.0.12/24\n" in lab.exec("alpha", ["cat", NETWORK_FILE]).stdout
    assert lab.addresses("alpha") == ["10.77.0.12/24"]


#: On lim1: accept one connection and hold it, reading nothing.
LISTEN = """
import socket, time
server = socket.create_server(("", 7070))
print("listening", flush=True)
conn, _ = server.accept()
time.sleep(600)
"""
#: On alpha: connect to lim1, then (alpha's port cut meanwhile) send and exit: the
#: connection outlives the process, orphaned, retransmitting into the cut port.
ORPHAN = """
import socket, sys
s = socket.create_connection(("10.77.0.11", 7070), 5)
print("connected", flush=True)
sys.stdin.readline()
s.sendall(b"x" * 10000)
"""


@pytest.mark.lab
def test_reboot_ends_the_connections_a_dead_process_left(netlab: Lab) -> None:
    # An orphaned TCP connection holds its network namespace (and the host's switch port)
    # alive for as long as the kernel retransmits - a minute or two, more than the
    # reboot's 10 s - unless the power cycle ends it as a real one does.
    lab = netlab
    listener = lab.popen("lim1", [sys.executable, "-c", LISTEN], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "listening\n"
        sender = lab.popen("alpha", [sys.executable, "-c", ORPHAN], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
        assert sender.stdout is not None and sender.stdout.readline() == "connected\n"
        lab.faults.cut("alpha")
        sender.communicate("go\n", timeout=10)
        assert sender.returncode == 0
        orphans = lab.exec("alpha", "ss -tnH state fin-wait-1 dst 10.77.0.11").stdout
        assert orphans.strip(), "no orphaned connection: the test would prove nothing"
        t0 = time.monotonic()
        lab.reboot("alpha")
        print(f"\n[lab] alpha rebooted in {time.monotonic() - t0:.1f} s, its orphaned "
              "connection ended")
        assert lab.exec("alpha", "ss -tnH dst 10.77.0.11").stdout.strip() == ""
        assert lab.exec("alpha", ["systemctl", "is-system-running"]).stdout.strip() == "running"
    finally:
        lab.faults.restore()
        listener.kill()
        listener.communicate(timeout=10)


@pytest.mark.lab
def test_only_a_systemd_host_can_be_rebooted(netlab: Lab) -> None:
    with pytest.raises(LabError, match="host lim1 does not boot systemd: only a systemd host "
                       "can be rebooted"):
        netlab.reboot("lim1")


@pytest.mark.lab
def test_mxone_lab_reboot(netlab: Lab) -> None:
    lab = netlab
    old = lab.hosts["alpha"].holder_pid
    p = subprocess.Popen([sys.executable, "-m", "mxone_lab", "reboot", "--lab", lab.id, "alpha"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    # The host's processes started here (its systemd's launcher, its sshd) are this
    # process's children: reap them as they end, or the host's PID 1 cannot finish dying.
    while p.poll() is None:
        procs.reap(lab.processes.children)
        time.sleep(0.02)
    out, err = p.communicate()
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"lab {lab.id}: alpha rebooted in ")
    assert r.stdout.strip().endswith("eth0 has 10.77.0.12/24")
    lab.state.read()  # another process rebooted it: this object learns the new PIDs
    assert lab.hosts["alpha"].holder_pid != old
    assert lab.exec("alpha", ["systemctl", "is-system-running"]).stdout.strip() == "running"
