"""webserver_config for real, on two lab hosts that boot systemd: lim1 (LIM 1, the master)
and standby1 (its cluster's standby), with lim2 (a witness) and the client beside them.

The lab's own sshd takes keys only, so each host gets a second sshd (port 2222, password
logins, the host's own host key, ended by its PID) for the logins the seed makes with
passwords: the administrator's (sudo) and mxone_manager's (before the silent login). The
accounts live in each host's overlaid /etc and /var, never the machine's. The first tests
stop before anything is configured (a refused sudo; the management package missing); the
walk through the menus then goes to the end of the seed's directions with the real PM/SNM
stack (keepalived, PostgreSQL 15, nginx and the reference application as Debian units),
checks CheckStatus's screen, the page through the virtual IP from the client, and removes
redundancy with the CLI: master first, then standby.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pexpect
import pyte
import pytest
from mxone_lab import LabSpec

from tests.acceptance.conftest import COLS, ENTER, ROWS, Tui
from tests.conftest import systemd_lab_up

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
                    {"name": "lim2", "base_ip": "10.77.0.12", "prefix": 24, "interface": "eth0",
                     "role": "regular"},
                    {"name": "standby1", "base_ip": "10.77.0.20", "prefix": 24,
                     "interface": "eth0", "role": "standby"}],
        "lims": [{"lim": 1, "server": "lim1", "alias_ip": "10.77.0.111", "prefix": 24,
                  "interface": "eth0", "priority": 1, "lock": "none"},
                 {"lim": 2, "server": "lim2", "alias_ip": "10.77.0.112", "prefix": 24,
                  "interface": "eth0", "priority": 2, "lock": "none"}]}

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
                      probe=None, host_key_files=(work / "known_hosts",), ssh_port={PORT})
    sys.exit(cli.main(sys.argv[1:], web=web))
""")


@pytest.fixture(scope="module")
def pair_lab():
    """lim1 and standby1 booting systemd, Debian's units unmasked on both (the lab masks
    what the machine enables), lim2 and the client beside them."""
    with systemd_lab_up(LabSpec.systemd_standby().with_systemd(["lim1"])) as lab:
        for name in ("lim1", "standby1"):
            lab.exec(name, "systemctl unmask keepalived.service postgresql.service "
                           "postgresql@.service nginx.service && systemctl daemon-reload")
        yield lab


@pytest.fixture
def pair(pair_lab):
    """lim1 and standby1 with their node configs, accounts and pinned keys, and a password
    sshd on PORT on each (ended by its PID)."""
    lab = pair_lab
    hosts = lab.hosts
    for name in ("lim1", "standby1"):
        lab.exec(name, ACCOUNTS)
        lab.exec(name, f"cat > {WORK}/node.json", input=json.dumps({**NODE, "node": name}))
        peer = hosts["standby1" if name == "lim1" else "lim1"]
        lab.exec(name, f"cat > {WORK}/known_hosts", input=f"{peer.ip} {peer.host_key}\n")
    sshds = [password_sshd(lab, name) for name in ("lim1", "standby1")]
    try:
        for name, peer in (("lim1", "10.77.0.20"), ("standby1", "10.77.0.11")):
            lab.run_python(name, textwrap.dedent(f"""
                import socket, time
                for _ in range(100):
                    try:
                        socket.create_connection(("{peer}", {PORT}), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.1)
                else:
                    raise SystemExit("no sshd on {peer} port {PORT}")
            """), timeout=20)
        yield lab
    finally:
        for sshd in sshds:
            sshd.terminate()
            sshd.wait(timeout=10)
        for name in ("lim1", "standby1"):  # the hosts as built: no account of ours left
            lab.exec(name, "for u in mxone_manager mxadmin mxuser; do userdel -r $u "
                     f"2>/dev/null; done; rm -rf {WORK} /etc/mxone/web "
                     "/etc/sudoers.d/mxone-webserver-status /opt/mxone/snm", check=False)


def password_sshd(lab, name):
    """A second sshd on ``name`` (PORT, password logins, the host's own host key)."""
    hd = lab.state.host_dir(name)
    config = (f"ListenAddress 0.0.0.0\nPort {PORT}\nHostKey {hd / 'ssh_host_ed25519_key'}\n"
              f"PidFile {WORK}/sshd.pid\nPermitRootLogin no\nPasswordAuthentication yes\n"
              "PubkeyAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM no\n"
              "StrictModes no\nUseDNS no\n")
    lab.exec(name, f"cat > {WORK}/sshd_config", input=config)
    return lab.commands.host_popen(name, ["/usr/sbin/sshd", "-D", "-f", f"{WORK}/sshd_config",
                                          "-E", f"{WORK}/sshd.log"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)


def tool(lab, host, *argv, stdin=""):
    return lab.run_python(host, RUN, args=list(argv), input=stdin, check=False, timeout=60)


def shadows(lab):
    """mxone_manager's password hash on each server of the pair."""
    return {h: lab.exec(h, "getent shadow mxone_manager | cut -d: -f2").stdout.strip()
            for h in ("lim1", "standby1")}


def setup_master(lab, admin, admin_password):
    return tool(lab, "lim1", *MASTER, "--standby-admin", admin,
                stdin=f"{MANAGER_PW}\n{admin_password}\n{REPL_PW}\n")


MASTER = ("redundancy", "setup-master", "--vip", "10.77.0.50", "--replication-user",
          "replicator")


def test_a_refused_sudo_changes_nothing_on_either_server(pair):
    lab = pair
    before = shadows(lab)
    r = setup_master(lab, "mxuser", ADMIN_PW)  # mxuser may not use sudo
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused: sudo password of mxuser on standby1: refused by sudo" in r.stderr
    assert "nothing was changed" in r.stderr
    r = setup_master(lab, "mxadmin", "Wr0ng-Pass-1")
    assert r.returncode == 1
    assert "refused: login of mxadmin on standby1 (10.77.0.20) refused with the password given" \
        in r.stderr
    assert shadows(lab) == before


def test_master_passwords_and_silent_login_for_real(pair):
    lab = pair
    before = shadows(lab)
    r = setup_master(lab, "mxadmin", ADMIN_PW)
    # everything up to the management package was done for real; no lab host has it
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused: standby1: mxone-snm is not installed; install it" in r.stderr
    after = shadows(lab)
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


# ---- the real menus, driven by keys and read from the screen -----------------------------------

TUI_RUN = textwrap.dedent(f"""
    from pathlib import Path
    from mxone_web import context, tui
    work = Path("{WORK}")
    raise SystemExit(tui.run(context.Web(node_json=work / "node.json",
                                         system_config=work / "none.toml",
                                         host_key_files=(work / "known_hosts",),
                                         ssh_port={PORT})))
""")


class WebTui(Tui):
    """webserver_config's menus on ``host`` in a pseudo terminal (the maintenance menus'
    acceptance driver: keys in, screen text out)."""

    def __init__(self, lab, host: str) -> None:  # the driver's own spawn, on ``host``
        self.lab = lab
        env = lab.host_env(host, {"TERM": "xterm", "ESCDELAY": "25"})
        argv = lab.nsenter_argv(host) + [sys.executable, "-c", TUI_RUN]
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(ROWS, COLS),
                                   timeout=10)
        self.child.delaybeforesend = None  # as the driver's own: keys are paced by send()
        self.seen_traceback = False


def test_master_and_standby_configuration_through_the_menus(pair):
    lab = pair
    t = WebTui(lab, "lim1")
    try:
        t.wait_for("MX-ONE Web Server Configuration - lim1")
        t.open("Redundancy")
        t.yes("Continue?")
        t.wait_for("System is automatically fetching details of master and its standby")
        assert "Standby:       standby1 10.77.0.20" in t.text
        t.yes("Continue?")
        # mxone_manager's password: pwquality's own refusals, then a good one
        t.wait_for("Enter the new or existing password for", flat=True)
        for bad, said in (("abc", "The password is shorter than 8 characters"),
                          ("abcdefgh", "The password fails the dictionary check - it is too simplistic/systematic")):
            t.field("provide password:", bad)
            t.field("Retype new password:", bad)
            t.submit()
            t.wait_for(f"BAD PASSWORD: {said}", flat=True)
        t.field("provide password:", MANAGER_PW)
        t.field("Retype new password:", MANAGER_PW)
        t.submit()
        # the standby's sudo password: a wrong one refused on the form
        t.wait_for("[sudo] password:")
        t.field("administrator account:", "mxadmin")
        t.field("[sudo] password:", "Wr0ng-Pass-1")
        t.submit()
        t.wait_for("refused with the password given; nothing was changed", flat=True)
        t.field("[sudo] password:", ADMIN_PW)
        t.submit()
        t.wait_for("password of mxone_manager set on standby1", timeout=30)
        t.send(ENTER)
        t.yes("Set up the silent login now?")
        t.wait_for("silent login mxone_manager@lim1 -> mxone_manager@standby1: works",
                   timeout=30, flat=True)
        t.send(ENTER)
        # seed step 12: the standby has no management package: offered, installed
        t.wait_for("Install mxone-snm on standby1 now?", timeout=30)
        assert "standby1: mxone-snm is not installed" in t.flat, t.dump()
        t.button("Yes")
        t.wait_for("standby1: mxone-snm-7.0.0.0.70", timeout=60, flat=True)
        t.send(ENTER)
        t.field("Virtual IP:", "10.77.0.100")  # the client's address: answered on the wire
        t.submit()
        t.wait_for("virtual IP = 10.77.0.100: in use: answered on eth0", flat=True, timeout=10)
        t.field("Virtual IP:", "10.77.0.50")
        t.submit()
        t.field("Replication user name:", "replicator")
        t.field("Replication role password:", REPL_PW)
        t.field("Retype password:", REPL_PW)
        t.submit()
        t.yes("Configure now?")
        t.wait_for("lim1: PM/SNM redundancy configured as master", timeout=180, flat=True)
        say("webserver_config on lim1: the master configuration's result", t.text)
    finally:
        t.close()
    assert lab.exec("lim1", "stat -c %a /etc/mxone/web/settings.json").stdout.strip() == "600"

    t = WebTui(lab, "standby1")
    try:
        t.wait_for("MX-ONE Web Server Configuration - standby1")
        t.open("Redundancy")
        t.yes("Continue?")
        t.yes("Continue?")
        t.field("password of mxone_manager:", MANAGER_PW)
        t.submit()
        t.yes("Set up the silent login now?")
        t.wait_for("silent login mxone_manager@standby1 -> mxone_manager@lim1: works",
                   timeout=30, flat=True)
        t.send(ENTER)
        t.field("Virtual IP:", "10.77.0.50")
        t.submit()
        t.field("Replication user name:", "replicator")
        t.field("Replication role password:", "Wr0ng-Repl-Pass9")
        t.submit()
        t.wait_for("replication password: differs from the one given on the master (lim1)",
                   flat=True, timeout=30)
        t.field("Replication role password:", REPL_PW)
        t.submit()
        t.wait_for("Re-start webserver now?")
        assert "SNM" in t.text
        t.button("Yes")
        t.wait_for("standby1: PM/SNM redundancy configured as standby", timeout=240, flat=True)
        say("webserver_config on standby1: the standby configuration's result", t.text)
    finally:
        t.close()

    # CheckStatus, on the master, through the menus
    t = WebTui(lab, "lim1")
    try:
        t.wait_for("MX-ONE Web Server Configuration - lim1")
        t.open("Redundancy")
        t.open("CheckStatus")
        t.wait_for("Checking servers in system, please wait", timeout=60)
        t.wait_for(lambda s: s.flat.count("Keepalived (Redundancy) is") >= 2, timeout=60)
        say("webserver_config on lim1: Redundancy > CheckStatus", t.text)
        flat = t.flat
        assert flat.count("Keepalived (Redundancy) is running") == 2, t.dump()
        assert flat.count("mxone_snm-7.0.0.0.70") == 2, t.dump()
        assert "database primary: streaming (sync) with standby1" in flat, t.dump()
        assert "database standby" in flat and "virtual IP 10.77.0.50: held here" in flat
    finally:
        t.close()

    # the client: the page through the virtual IP, a row written there
    page = client_get(lab, "http://10.77.0.50/mp")
    assert "lim1" in page, page

    # Remove Redundancy with the CLI: the standby first is refused, then master, standby
    r = tool(lab, "standby1", "redundancy", "remove")
    assert r.returncode != 0 and "master" in r.stderr, r.stdout + r.stderr
    for host in ("lim1", "standby1"):
        r = tool(lab, host, "redundancy", "remove")
        say(f"webserver_config redundancy remove on {host} (exit {r.returncode})",
            r.stdout + r.stderr)
        assert r.returncode == 0, r.stdout + r.stderr
    for host, ip in (("lim1", "10.77.0.11"), ("standby1", "10.77.0.20")):
        assert host in client_get(lab, f"http://{ip}/mp")
        assert lab.exec(host, "systemctl is-enabled keepalived", check=False).stdout.strip() \
            == "disabled"


def client_get(lab, url: str) -> str:
    """The page at ``url`` as the client host reads it (bounded)."""
    return lab.exec("client", ["python3", "-c", (
        "import sys, urllib.request; "
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"),
        url], timeout=20).stdout


def say(title: str, text: str) -> None:
    print(f"\n==== {title} ====\n{text}")
