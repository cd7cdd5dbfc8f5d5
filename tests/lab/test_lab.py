"""End to end: the lab's hosts are real-looking hosts (own identity, files, sshd)."""

from __future__ import annotations

import json
import os
import re
import secrets
import textwrap
from pathlib import Path

import pytest
from mxone_lab import Lab

pytestmark = pytest.mark.lab


def test_ssh_from_client_and_lim1_reaches_every_host_as_itself(lab: Lab) -> None:
    for src in ("client", "lim1"):
        results = lab.ssh_exec(src, "hostname; ip -4 -o addr show eth0")
        assert set(results) == set(lab.hosts)
        for name, r in results.items():
            assert r.ok, f"{src} -> {name}: {r.error or r.stderr}"
            assert r.stdout.splitlines()[0] == name
            assert re.findall(r"inet (\S+)", r.stdout) == [lab.hosts[name].cidr]


def _remote_request(lab: Lab, target: str, host_key: str, key_path: str) -> str:
    h = lab.hosts[target]
    request = {
        "targets": [{"name": h.name, "ip": str(h.ip), "port": 22, "host_key": host_key}],
        "command": "hostname",
        "key_path": key_path,
        "timeout": 5,
    }
    return textwrap.dedent(
        f"""
        import json
        from mxone_lab import remote
        print(json.dumps(remote.run({request!r})))
        """
    )


def test_ssh_rejects_a_host_key_that_is_not_the_hosts(lab: Lab) -> None:
    wrong = lab.hosts["lim1"].host_key  # lim1's key pinned for lim2
    out = lab.run_python("client", _remote_request(lab, "lim2", wrong, str(lab.user_key_path)))
    result = json.loads(out.stdout)["lim2"]
    assert not result["ok"]
    assert "BadHostKey" in result["error"]
    right = lab.hosts["lim2"].host_key
    out = lab.run_python("client", _remote_request(lab, "lim2", right, str(lab.user_key_path)))
    assert json.loads(out.stdout)["lim2"]["stdout"].strip() == "lim2"


def test_ssh_refuses_a_key_that_is_not_the_lab_key(lab: Lab, tmp_path: Path) -> None:
    from mxone_lab import keys

    stranger = tmp_path / "stranger"
    keys.write_private(stranger, keys.generate("not-the-lab"))
    code = _remote_request(lab, "lim3", lab.hosts["lim3"].host_key, str(stranger))
    result = json.loads(lab.run_python("client", code).stdout)["lim3"]
    assert not result["ok"]
    assert "Authentication" in result["error"]


def test_openssh_client_on_a_host_logs_in_by_name_with_the_lab_key(lab: Lab) -> None:
    r = lab.exec(
        "lim1", ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "lim2", "hostname"]
    )
    assert r.stdout.strip() == "lim2"


def test_each_host_has_its_own_identity(lab: Lab) -> None:
    for name, h in lab.hosts.items():
        r = lab.exec(
            name,
            "uname -n; cat /etc/hostname; cat /sys/class/net/eth0/address; "
            "cat /proc/sys/net/ipv6/conf/all/disable_ipv6; ip -6 -o addr | wc -l; "
            "getent hosts lim2",
        )
        uname, etc_hostname, mac, v6_off, v6_count, lim2 = r.stdout.splitlines()
        assert (uname, etc_hostname, mac) == (name, name, h.mac)
        assert (v6_off, v6_count.strip()) == ("1", "0")
        assert lim2.split() == [str(lab.hosts["lim2"].ip), "lim2"]


def test_python3_runs_on_every_host(lab: Lab) -> None:
    for name in lab.hosts:
        r = lab.exec(name, ["/usr/bin/python3", "-c", "import socket; print(socket.gethostname())"])
        assert r.stdout.strip() == name
        r = lab.run_python(name, "import paramiko, socket; print(socket.gethostname())")
        assert r.stdout.strip() == name


def test_files_under_etc_are_private_to_each_host(lab: Lab) -> None:
    token = secrets.token_hex(8)
    lab.exec("lim1", f"mkdir -p /etc/mxone && echo {token} > /etc/mxone/x")
    assert lab.exec("lim1", ["cat", "/etc/mxone/x"]).stdout.strip() == token
    for other in set(lab.hosts) - {"lim1"}:
        r = lab.exec(other, ["cat", "/etc/mxone/x"], check=False)
        assert r.returncode != 0 and token not in r.stdout, other
    machine = Path("/etc/mxone/x")
    assert not (machine.exists() and token in machine.read_text())
    # sshd runs in the host's mount namespace too: a login sees the same private files.
    results = lab.ssh_exec("client", "cat /etc/mxone/x", to=["lim1", "lim2"])
    assert results["lim1"].stdout.strip() == token
    assert results["lim2"].exit_status != 0


def test_root_ssh_dir_on_a_host_holds_only_the_lab_key(lab: Lab) -> None:
    listing = lab.exec("lim2", ["ls", "-A", "/root/.ssh"]).stdout.split()
    assert sorted(listing) == ["id_ed25519", "id_ed25519.pub", "known_hosts"]
    pub = lab.exec("lim2", ["cat", "/root/.ssh/id_ed25519.pub"]).stdout.split()[:2]
    assert pub == Path(f"{lab.user_key_path}.pub").read_text().split()[:2]
    # The machine's own ~/.ssh (if any) stays hidden: the dir is an opaque overlay dir.
    upper = lab.dir / "hosts" / "lim2" / "ov" / "root" / "upper" / ".ssh"
    assert os.getxattr(upper, "trusted.overlay.opaque") == b"y"


def test_sshd_pid_is_sshd_itself_inside_the_host(lab: Lab) -> None:
    for h in lab.hosts.values():
        assert h.sshd_pid is not None
        assert os.readlink(f"/proc/{h.sshd_pid}/exe") == "/usr/sbin/sshd"
        for kind, ref in (("net", f"/run/netns/{h.ns}"), ("mnt", f"/proc/{h.holder_pid}/ns/mnt")):
            assert os.stat(f"/proc/{h.sshd_pid}/ns/{kind}").st_ino == os.stat(ref).st_ino, kind


def test_known_hosts_pins_every_host_by_name_and_address(lab: Lab) -> None:
    lines = lab.known_hosts_path.read_text().splitlines()
    assert sorted(lines) == sorted(h.known_hosts_line for h in lab.hosts.values())
