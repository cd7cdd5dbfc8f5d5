"""SshApplier end to end on the lab, driven by mxone_maintenance on lim1 as the admin runs it.

The agent deployed is the real one, except in the two tests of faults a real agent cannot be
made to show on demand (a refused reload, a server lost in the middle of its reload), which
deploy the stand-in of tests/orchestration/fake_agent with the same command-line contract.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.orchestration.conftest import Admin, all_trees

pytestmark = pytest.mark.lab

NODES = ("lim2", "lim3", "standby1")


def node_json(lab, host: str) -> dict:
    return json.loads(lab.exec(host, ["cat", "/etc/mxone/agent/node.json"]).stdout)


def agent_generation(lab, host: str) -> int:
    r = lab.exec(host, ["/opt/mxone/agent/current/bin/mxone-agent", "ctl", "status"])
    return json.loads(r.stdout)["generation"]


def outcomes(stdout: str) -> dict[str, str]:
    """Server -> its outcome line, from the part after "Applied"/"NOT applied"."""
    lines = stdout.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(("Applied", "NOT applied")))
    out = {}
    for x in lines[start + 1:]:
        if x.startswith("  ") and x.split():
            out[x.split()[0]] = x
        else:
            break
    return out


def system_toml(lab) -> str:
    return lab.exec("lim1", ["cat", "/etc/mxone/system.toml"]).stdout


def test_cluster_create_distributes_node_configs_with_roles_and_generation(admin, lab) -> None:
    admin.build_system(clusters=False)
    r = admin.run("cluster", "create", "c1", "--standby", "standby1", "--lim", "2:10.77.0.52",
                  "--lim", "3:10.77.0.53:2", "--timers", "fast", "--fallback", "automatic")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Applied: system generation 6." in r.stdout
    key = lab.exec("lim1", ["cat", "/etc/mxone/secrets/c1.key"]).stdout
    assert len(key.strip()) == 64
    assert lab.exec("lim1", ["stat", "-c", "%a", "/etc/mxone/secrets/c1.key"]).stdout.strip() == "600"
    for host, role in (("lim2", "regular"), ("lim3", "regular"), ("standby1", "standby")):
        cfg = node_json(lab, host)
        assert cfg["generation"] == 6 and cfg["node"] == host and cfg["cluster"] == "c1"
        assert next(s for s in cfg["servers"] if s["name"] == host)["role"] == role
        assert cfg["fallback"] == "automatic"
        assert [(x["lim"], x["server"], x["alias_ip"], x["priority"]) for x in cfg["lims"]] == [
            (2, "lim2", "10.77.0.12", 1), (3, "lim3", "10.77.0.13", 2)]
        assert lab.exec(host, ["cat", "/etc/mxone/agent/cluster.key"]).stdout == key
        assert lab.exec(host, ["stat", "-c", "%a", "/etc/mxone/agent/cluster.key"]).stdout.strip() == "600"
        assert agent_generation(lab, host) == 6
        left = lab.exec(host, ["ls", "-A", "/etc/mxone/agent"]).stdout.split()
        # no .prev, no temp files
        assert sorted(left) == ["cluster.key", "known_hosts", "node.json", "sync.key"]
    assert "generation = 6" in system_toml(lab)
    # lim1 is in no cluster: no agent there
    assert lab.exec("lim1", ["test", "-e", "/etc/mxone/agent/node.json"], check=False).returncode == 1


def test_artefact_checksum_verified_and_second_deploy_skips_upload(admin, lab, real_artefact) -> None:
    admin.build_system(clusters=False)
    r = admin.run("cluster", "create", "c1", "--standby", "standby1", "--lim", "2:10.77.0.52",
                  check=True)
    sha = hashlib.sha256(real_artefact.read_bytes()).hexdigest()
    release = sha[:12]
    for host in ("lim2", "standby1"):
        assert f"{host}: agent release {release} uploaded and verified" in r.stderr
        assert lab.exec(host, ["readlink", "/opt/mxone/agent/current"]).stdout.strip() == \
            f"releases/{release}"
        assert lab.exec(host, ["cat", f"/opt/mxone/agent/releases/{release}/ARTEFACT.sha256"]
                        ).stdout.strip() == sha
        assert lab.exec(host, "ls -A /opt/mxone/agent/releases").stdout.split() == [release]
    r = admin.run("cluster", "set", "c1", "--fallback", "automatic", check=True)
    data = admin.json("cluster", "set", "c1", "--fallback", "manual")
    assert data["ok"] and data["ssh_connections"] == 2  # ~10 commands per server, 1 connection
    for host in ("lim2", "standby1"):
        assert f"{host}: agent release {release} already there (upload skipped)" in r.stderr
        assert f"{host}: agent reloaded" in r.stderr
        assert agent_generation(lab, host) == 8


def test_dry_run_changes_nothing(admin, lab) -> None:
    admin.build_system()
    before = all_trees(lab)
    r = admin.run("cluster", "set", "c1", "--fallback", "automatic", "--dry-run")
    assert r.returncode == 0
    assert "Dry run: nothing was changed." in r.stdout
    assert "lim2         node config generation 6 -> 7: fallback manual -> automatic" in r.stdout
    data = admin.json("cluster", "delete", "c1", "--dry-run")
    assert data["dry_run"] and data["generation_after"] == 7
    assert {"server": "standby1", "what": "leaves cluster c1: agent stopped, node config, "
            "cluster key and sync key removed"} in data["plan"]
    admin.run("server", "add", "client", lab.hosts["client"].cidr, "--dry-run", check=True)
    assert all_trees(lab) == before
    assert all(agent_generation(lab, h) == 6 for h in NODES)


def test_unreachable_server_stops_the_change_and_nothing_changes(admin, lab) -> None:
    admin.build_system()
    before, toml = all_trees(lab), system_toml(lab)
    lab.faults.cut("lim3")
    r = admin.run("cluster", "set", "c1", "--priority", "2:5")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "NOT applied: the system stays at generation 6." in r.stdout
    line = outcomes(r.stdout)["lim3"]
    assert "FAILED" in line and "server lim3 unreachable" in line and "nothing was changed" in line
    lab.faults.restore("lim3")
    assert all_trees(lab) == before and system_toml(lab) == toml
    assert all(agent_generation(lab, h) == 6 for h in NODES)


def test_failure_midway_rolls_every_node_back_byte_for_byte(admin, lab) -> None:
    admin.build_system()
    before, toml = all_trees(lab), system_toml(lab)
    # standby1's /etc/mxone goes read-only: lim2 and lim3 change, standby1 cannot.
    lab.exec("standby1", "mount --bind /etc/mxone /etc/mxone && "
             "mount -o remount,bind,ro /etc/mxone /etc/mxone")
    try:
        r = admin.run("cluster", "lock", "3", "--to", "standby")
    finally:
        lab.exec("standby1", "umount /etc/mxone")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = outcomes(r.stdout)
    assert "FAILED" in lines["standby1"] and "cannot write /etc/mxone/agent/" in lines["standby1"]
    assert "Read-only file system" in lines["standby1"]
    assert "rolled back to generation 6" in lines["standby1"]
    for host in ("lim2", "lim3"):
        assert "rolled back to generation 6" in lines[host], lines[host]
    assert "not written" in lines["lim1"]
    assert all_trees(lab) == before
    assert system_toml(lab) == toml
    assert all(agent_generation(lab, h) == 6 for h in NODES)
    assert all(x["lock"] == "none" for x in node_json(lab, "lim2")["lims"])


def test_a_rolled_back_upgrade_takes_back_the_release_it_unpacked(admin, lab,
                                                                  fake_artefact) -> None:
    admin.build_system()
    before, toml = all_trees(lab), system_toml(lab)
    new = hashlib.sha256(fake_artefact.read_bytes()).hexdigest()[:12]
    lab.exec("standby1", "mount --bind /etc/mxone /etc/mxone && "
             "mount -o remount,bind,ro /etc/mxone /etc/mxone")
    try:
        r = Admin(lab, fake_artefact).run("cluster", "set", "c1", "--fallback", "automatic")
    finally:
        lab.exec("standby1", "umount /etc/mxone")
    assert r.returncode == 2, r.stdout + r.stderr
    for host in NODES:
        assert f"{host}: agent release {new} uploaded and verified" in r.stderr, r.stdout
    lines = outcomes(r.stdout)
    assert "FAILED" in lines["standby1"] and "rolled back to generation 6" in lines["standby1"]
    # every node back on its release, the new one gone again: as before, byte for byte
    assert all_trees(lab) == before and system_toml(lab) == toml
    assert all(agent_generation(lab, h) == 6 for h in NODES)


def addresses(lab, host: str) -> list[str]:
    return sorted(lab.exec(host, "ip -o -4 addr show dev eth0 | awk '{print $4}'").stdout.split())


def test_create_configures_new_base_addresses_and_a_failed_create_removes_them(admin, lab) -> None:
    admin.build_system(clusters=False)
    lab.exec("standby1", "mkdir -p /etc/mxone")
    before = {h: addresses(lab, h) for h in ("lim2", "lim3")}
    trees, toml = all_trees(lab), system_toml(lab)
    lab.exec("standby1", "mount --bind /etc/mxone /etc/mxone && "
             "mount -o remount,bind,ro /etc/mxone /etc/mxone")
    try:
        r = admin.run("cluster", "create", "c1", "--standby", "standby1", "--lim", "2:10.77.0.52",
                      "--lim", "3:10.77.0.53:2", "--timers", "fast")
    finally:
        lab.exec("standby1", "umount /etc/mxone")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "new base address 10.77.0.52/24 configured on eth0" in r.stderr
    assert {h: addresses(lab, h) for h in ("lim2", "lim3")} == before  # added, then removed
    assert all_trees(lab) == trees and system_toml(lab) == toml
    r = admin.run("cluster", "create", "c1", "--standby", "standby1", "--lim", "2:10.77.0.52",
                  "--lim", "3:10.77.0.53:2", "--timers", "fast", check=True)
    assert addresses(lab, "lim2") == ["10.77.0.12/24", "10.77.0.52/24"]
    assert addresses(lab, "lim3") == ["10.77.0.13/24", "10.77.0.53/24"]
    assert lab.exec("lim2", "sysctl -n net.ipv4.conf.eth0.promote_secondaries").stdout.strip() == "1"


def test_changed_host_key_refuses_and_leaves_every_node_as_it_was(admin, lab) -> None:
    admin.build_system()
    kh = lab.exec("lim1", ["cat", "/etc/mxone/known_hosts"]).stdout
    forged = kh.replace(lab.hosts["lim3"].host_key, lab.hosts["lim2"].host_key)
    lab.exec("lim1", "cat > /etc/mxone/known_hosts", input=forged)
    before, toml = all_trees(lab), system_toml(lab)
    r = admin.run("cluster", "set", "c1", "--fallback", "automatic", "--accept-new-host-key")
    assert r.returncode == 2
    line = outcomes(r.stdout)["lim3"]
    assert "HOST KEY CHANGED" in line and "remove the line for lim3" in line
    assert all_trees(lab) == before and system_toml(lab) == toml


def test_unknown_host_key_on_server_add_then_accepted(admin, lab) -> None:
    lab.exec("lim1", "grep -v '^client' /etc/mxone/known_hosts > /tmp/kh-$$ || true; true")
    admin.build_system(clusters=False)
    r = admin.run("server", "add", "client", lab.hosts["client"].cidr)
    assert r.returncode == 2
    assert "host key not known yet: ssh-ed25519 SHA256:" in r.stdout
    assert "--accept-new-host-key" in r.stdout
    assert "client" not in admin.run("server", "list", check=True).stdout
    r = admin.run("server", "add", "client", lab.hosts["client"].cidr, "--accept-new-host-key")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "accepted the host key of client (10.77.0.100): ssh-ed25519 SHA256:" in r.stdout
    assert "client" in admin.run("server", "list", check=True).stdout
    assert lab.hosts["client"].host_key in lab.exec("lim1", ["cat", "/etc/mxone/known_hosts"]).stdout


def test_delete_cluster_stops_agents_and_removes_node_files(admin, lab) -> None:
    admin.build_system()
    r = admin.run("cluster", "delete", "c1")
    assert r.returncode == 0, r.stdout + r.stderr
    for host in NODES:
        assert lab.exec(host, "ls -A /etc/mxone/agent").stdout.split() == []
        st = lab.exec(host, ["/opt/mxone/agent/current/bin/mxone-agent", "ctl", "status"], check=False)
        assert st.returncode == 2  # not running
    assert lab.exec("lim1", ["test", "-e", "/etc/mxone/secrets/c1.key"], check=False).returncode == 1
    assert "generation = 7" in system_toml(lab)


def test_status_table_and_json(admin, lab) -> None:
    admin.build_system()
    data = admin.settled_status()
    c = data["clusters"][0]
    assert c["name"] == "c1" and c["healthy"]
    assert [(x["lim"], x["owner"]) for x in c["lims"]] == [(2, "regular"), (3, "regular")]
    assert {s["server"]: (s["agent"], s["generation"], s["liveness"]) for s in c["servers"]} == {
        "lim2": ("running", 6, "alive"), "lim3": ("running", 6, "alive"),
        "standby1": ("running", 6, "alive")}
    # the agent ends cleanly on SIGTERM: wait (bounded) until its process is gone
    lab.exec("lim3", "p=$(cat /run/mxone/agent.pid); kill $p; for i in $(seq 100); do "
             "kill -0 $p 2>/dev/null || exit 0; sleep 0.05; done; exit 1")
    # killed outright: its status file stays behind, but names a process that is gone
    lab.exec("lim2", "p=$(cat /run/mxone/agent.pid); kill -9 $p; for i in $(seq 100); do "
             "kill -0 $p 2>/dev/null || exit 0; sleep 0.05; done; exit 1")
    assert lab.exec("lim2", "test -s /run/mxone/status.json", check=False).returncode == 0
    lab.faults.cut("standby1")
    r = admin.run("cluster", "status", check=True)
    assert "[ATTENTION]" in r.stdout
    rows = {x.split()[0]: x for x in r.stdout.splitlines() if x.startswith("  ")}
    assert "not running" in rows["lim3"] and "unreachable" in rows["standby1"]
    assert "not running" in rows["lim2"]


def test_agent_refusing_the_reload_rolls_back_files_and_agents(fault_admin, lab) -> None:
    admin = fault_admin
    admin.build_system()
    before, toml = all_trees(lab), system_toml(lab)
    lab.exec("lim3", "touch /run/mxone/fake-refuse-reload")
    r = admin.run("cluster", "set", "c1", "--fallback", "automatic")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = outcomes(r.stdout)
    assert "failed at agent reloaded: agent refused the reload (exit 1)" in lines["lim3"]
    assert "fake agent refuses the reload (test)" in lines["lim3"]
    assert "rolled back to generation 6" in lines["lim3"] and "ROLLBACK FAILED" not in r.stdout
    assert "changed, then rolled back to generation 6 (another server failed)" in lines["lim2"]
    assert all_trees(lab) == before and system_toml(lab) == toml
    lab.exec("lim3", "rm /run/mxone/fake-refuse-reload")
    # The agents that had reloaded generation 7 were reloaded back to 6.
    assert all(agent_generation(lab, h) == 6 for h in NODES)


def test_server_lost_midway_is_rolled_back_when_it_answers_again(fault_admin, lab) -> None:
    admin = fault_admin
    admin.build_system()
    before, toml = all_trees(lab), system_toml(lab)
    lab.exec("lim3", "touch /run/mxone/fake-cut-on-reload")
    r = admin.run("cluster", "set", "c1", "--fallback", "automatic", "--timeout", "4")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = outcomes(r.stdout)
    assert "failed at agent reloaded" in lines["lim3"] and "ROLLBACK NOT FINISHED" in lines["lim3"]
    assert "/etc/mxone/pending-rollback/lim3.json" in lines["lim3"]
    assert "rolled back to generation 6" in lines["lim2"]
    assert system_toml(lab) == toml
    now = all_trees(lab)
    assert now["lim2"] == before["lim2"] and now["standby1"] == before["standby1"]
    assert now["lim3"] != before["lim3"]  # it could not be reached...
    lab.exec("lim3", "ip link set eth0 up")  # ...until now
    text = admin.run("cluster", "status", check=True).stdout
    assert "Unfinished rollbacks (a server did not answer): lim3 (to generation 6)" in text
    r = admin.run("cluster", "repair")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lim3         rolled back to generation 6" in r.stdout
    after = all_trees(lab)
    assert after["lim3"] == before["lim3"]  # byte for byte, pending journal gone on lim1
    assert after == before
    assert all(agent_generation(lab, h) == 6 for h in NODES)
