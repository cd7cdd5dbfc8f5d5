"""The cluster's sync key on the nodes: installed with the cluster, usable for nothing but
``mxone-agent xdata serve`` between the cluster's servers, removed with the cluster, and
the administrator's own authorized_keys lines never touched."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.orchestration.conftest import Admin

pytestmark = pytest.mark.lab

NODES = ("lim2", "lim3", "standby1")
AUTH = "/root/.ssh/authorized_keys"
ADMIN_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdminKeyOfTheOperatorNotARealKey0000 ops@desk"


def _ssh_with_sync_key(lab, src: str, dst: str, *words: str) -> subprocess.CompletedProcess[str]:
    ip = str(lab.hosts[dst].ip) if dst != "lim2" else "10.77.0.52"
    argv = ["ssh", "-i", "/etc/mxone/agent/sync.key", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=/etc/mxone/agent/known_hosts",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "-T", f"root@{ip}", *words]
    return lab.exec(src, argv, check=False, timeout=30)


def test_the_sync_key_serves_exchange_data_only_and_leaves_with_the_cluster(admin: Admin, lab) -> None:
    for host in NODES:
        lab.exec(host, f"mkdir -p /root/.ssh && echo '{ADMIN_LINE}' > {AUTH}")
    admin.build_system()
    for host in NODES:
        mode = lab.exec(host, "stat -c %a /etc/mxone/agent/sync.key").stdout.strip()
        assert mode == "600"
        auth = lab.exec(host, f"cat {AUTH}").stdout.splitlines()
        assert auth[0] == ADMIN_LINE and len(auth) == 2
        assert auth[1].startswith('command="/opt/mxone/agent/current/bin/mxone-agent xdata serve"'
                                  ',restrict ssh-ed25519 ') and auth[1].endswith(" mxone-sync-c1")
        known = lab.exec(host, "cat /etc/mxone/agent/known_hosts").stdout.split()
        assert {"10.77.0.52", "10.77.0.53", str(lab.hosts["standby1"].ip)} <= set(known)

    # lim2 asks standby1 for its clock through the forced command: an answer in JSON
    r = _ssh_with_sync_key(lab, "lim2", "standby1", "xdata", "serve", "clock")
    assert r.returncode == 0, r.stderr
    assert "time" in json.loads(r.stdout)
    # anything else is still `xdata serve`: a shell command is an unknown request
    r = _ssh_with_sync_key(lab, "standby1", "lim2", "cat", "/etc/shadow")
    assert r.returncode != 0 and "unknown request" in r.stderr
    assert "root:" not in r.stdout

    r = admin.run("cluster", "delete", "c1", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for host in NODES:
        assert lab.exec(host, f"cat {AUTH}").stdout == ADMIN_LINE + "\n"
        assert lab.exec(host, "ls -A /etc/mxone/agent").stdout.split() == []
    assert lab.exec("lim1", "ls /etc/mxone/secrets 2>/dev/null || true").stdout.split() == []
