"""webserver_config's SSH half for real, on two lab hosts: lim1 (LIM 1, the master) and
standby1 (its cluster's standby).

The lab's own sshd takes keys only, so standby1 gets a second sshd (port 2222, password
logins, the host's own host key, ended by its PID) for the logins the seed makes with
passwords: the administrator's (sudo) and mxone_manager's (before the silent login). The
accounts live in each host's overlaid /etc and /var, never the machine's. The PM/SNM
stack is not called: the runs stop at the management package, which no lab host has.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

pytestmark = pytest.mark.lab

WORK = "/var/lib/mxone-webtest"
PORT = 2222
MANAGER_PW = "Xk8#pq2Lz!mR"
ADMIN_PW = "Adm1n-Pass-77"
REPL_PW = "Tr4in-Sh3d-Vault"

NODE = {"format": 1, "generation": 2, "cluster": "north", "fallback": "manual",
        "failover": "regular", "timers": {"interval": 1.0, "misses": 3},
        "garp": {"burst": 3, "second_burst_after": 2.0, "refresh_interval": 30.0},
        "heartbeat_port": 7011,
        "servers": [{"name": "lim1", "base_ip": "10.77.0.11", "prefix": 24, "interface": "eth0",
                     "role": "regular"},
                    {"name": "standby1", "base_ip": "10.77.0.20", "prefix": 24,
                     "interface": "eth0", "role": "standby"}],
        "lims": [{"lim": 1, "server": "lim1", "alias_ip": "10.77.0.111", "prefix": 24,
                  "interface": "eth0", "priority": 1, "lock": "none"}]}

ACCOUNTS = f"""
set -e
mkdir -p {WORK}
id -u mxone_manager >/dev/null 2>&1 || useradd -m -d /var/lib/mxone_manager -s /bin/bash mxone_manager
id -u mxadmin >/dev/null 2>&1 || useradd -m -d /var/lib/mxadmin -s /bin/bash -G sudo mxadmin
id -u mxuser >/dev/null 2>&1 || useradd -m -d /var/lib/mxuser -s /bin/bash mxuser
printf 'mxadmin:{ADMIN_PW}\\nmxuser:{ADMIN_PW}\\n' | chpasswd
"""

RUN = textwrap.dedent(f"""
    import sys
    from pathlib import Path
    from mxone_web import cli, context
    work = Path("{WORK}")
    web = context.Web(node_json=work / "node.json", system_config=work / "none.toml",
                      settings_path=work / "pair.json", answers_path=work / "answers.json",
                      probe=None, host_key_files=(work / "known_hosts",), ssh_port={PORT})
    sys.exit(cli.main(sys.argv[1:], web=web))
""")


@pytest.fixture
def pair(lab):
    """lim1 and standby1 with their node configs, accounts and pinned keys; standby1's
    password sshd on PORT (ended by its PID)."""
    hosts = lab.hosts
    for name in ("lim1", "standby1"):
        lab.exec(name, ACCOUNTS)
        lab.exec(name, f"cat > {WORK}/node.json", input=json.dumps({**NODE, "node": name}))
        peer = hosts["standby1" if name == "lim1" else "lim1"]
        lab.exec(name, f"cat > {WORK}/known_hosts", input=f"{peer.ip} {peer.host_key}\n")
    hd = lab.state.host_dir("standby1")
    config = (f"ListenAddress 0.0.0.0\nPort {PORT}\nHostKey {hd / 'ssh_host_ed25519_key'}\n"
              f"PidFile {WORK}/sshd.pid\nPermitRootLogin no\nPasswordAuthentication yes\n"
              "PubkeyAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM no\n"
              "StrictModes no\nUseDNS no\n")
    lab.exec("standby1", f"cat > {WORK}/sshd_config", input=config)
    sshd = lab.commands.host_popen("standby1", ["/usr/sbin/sshd", "-D", "-f",
                                                f"{WORK}/sshd_config", "-E", f"{WORK}/sshd.log"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    try:
        lab.run_python("lim1", textwrap.dedent(f"""
            import socket, time
            for _ in range(100):
                try:
                    socket.create_connection(("10.77.0.20", {PORT}), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise SystemExit("no sshd on standby1 port {PORT}")
        """), timeout=20)
        yield lab
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        for name in ("lim1", "standby1"):  # the hosts as built: no account of ours left
            lab.exec(name, "for u in mxone_manager mxadmin mxuser; do userdel -r $u "
                     f"2>/dev/null; done; rm -rf {WORK} /etc/sudoers.d/mxone-webserver-status",
                     check=False)


def tool(lab, host, *argv, stdin=""):
    return lab.run_python(host, RUN, args=list(argv), input=stdin, check=False, timeout=60)


def shadow(lab, host, user="mxone_manager"):
    return lab.exec(host, f"getent shadow {user} | cut -d: -f2").stdout.strip()


MASTER = ("redundancy", "setup-master", "--vip", "10.77.0.50", "--replication-user",
          "replicator")


def test_a_refused_sudo_changes_nothing_on_either_server(pair):
    lab = pair
    before = {h: shadow(lab, h) for h in ("lim1", "standby1")}
    r = tool(lab, "lim1", *MASTER, "--standby-admin", "mxuser",
             stdin=f"{MANAGER_PW}\n{ADMIN_PW}\n{REPL_PW}\n")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused: sudo password of mxuser on standby1: refused by sudo" in r.stderr
    assert "nothing was changed" in r.stderr
    r = tool(lab, "lim1", *MASTER, "--standby-admin", "mxadmin",
             stdin=f"{MANAGER_PW}\nWr0ng-Pass-1\n{REPL_PW}\n")
    assert r.returncode == 1
    assert "refused: login of mxadmin on standby1 (10.77.0.20) refused with the password given" \
        in r.stderr
    assert {h: shadow(lab, h) for h in ("lim1", "standby1")} == before


def test_master_then_standby_passwords_and_silent_logins_for_real(pair):
    lab = pair
    before = {h: shadow(lab, h) for h in ("lim1", "standby1")}
    r = tool(lab, "lim1", *MASTER, "--standby-admin", "mxadmin",
             stdin=f"{MANAGER_PW}\n{ADMIN_PW}\n{REPL_PW}\n")
    # everything up to the management package was done for real; no lab host has it
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused: standby1: mxone-snm is not installed; install it" in r.stderr
    after = {h: shadow(lab, h) for h in ("lim1", "standby1")}
    assert all(after[h] != before[h] and after[h].startswith("$") for h in after)
    key = lab.exec("lim1", "stat -c %a /var/lib/mxone_manager/.ssh/id_ed25519").stdout.strip()
    assert key == "600"
    # the silent login lim1 -> standby1 works with the key alone, host key pinned
    r = lab.exec("lim1", f"ssh -p {PORT} -o BatchMode=yes -o StrictHostKeyChecking=yes "
                 "-i /var/lib/mxone_manager/.ssh/id_ed25519 "
                 "-o UserKnownHostsFile=/var/lib/mxone_manager/.ssh/known_hosts "
                 "mxone_manager@10.77.0.20 hostname", check=False)
    assert r.returncode == 0 and r.stdout.strip() == "standby1", r.stderr
    sudoers = lab.exec("standby1", "cat /etc/sudoers.d/mxone-webserver-status 2>/dev/null || "
                       "echo none").stdout
    assert "none" in sudoers or "redundancy status --here --json" in sudoers
