"""A LIM server's new base address survives a reboot; its old one (the alias) does not come
back on its own; leaving the cluster, or a rollback, puts its network files back.

lim2 boots a real systemd whose systemd-networkd brings up its addresses from lim2's own
/etc/systemd/network at every boot (``HostSpec(systemd=True, networkd=True)``); lim1 runs
mxone_maintenance; standby1 is the standby. ``Lab.reboot`` power-cycles lim2 with its
disks kept. The test prints a transcript of what an operator would see (``pytest -s``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from mxone_lab import HostSpec, Lab, LabSpec
from mxone_lab.lab import NETWORK_FILE

from tests.agent_lab.cluster import eventually
from tests.orchestration.conftest import Admin, tree_digest

pytestmark = pytest.mark.lab

SPEC = LabSpec(hosts=(HostSpec("lim1", 11), HostSpec("lim2", 12, systemd=True, networkd=True),
                      HostSpec("standby1", 20), HostSpec("client", 100)))
NET_DIRS = ("/etc/systemd/network", "/etc/network", "/etc/NetworkManager/system-connections",
            "/etc/sysconfig/network", "/etc/mxone/netconfig")
AGENT = "/opt/mxone/agent/current/bin/mxone-agent"


@pytest.fixture(scope="module")
def netlab() -> Iterator[Lab]:
    from tests.conftest import systemd_lab_up

    with systemd_lab_up(SPEC) as lab:
        yield lab


@pytest.fixture
def say(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    def out(text: str) -> None:
        with capsys.disabled():
            print(text, flush=True)
    return out


def net_files(lab: Lab, host: str) -> dict[str, str]:
    """Path -> sha256 and mode of every file of the host's network configuration (and of
    the tool's copies of them)."""
    out: dict[str, str] = {}
    for d in NET_DIRS:
        out |= tree_digest(lab, host, d)
    return out


def networkd_addresses(lab: Lab) -> dict[str, str]:
    """lim2's eth0 addresses -> who configured them, as systemd-networkd sees it ('static':
    from lim2's own network files; 'foreign': added by someone else, i.e. the agent)."""
    data = json.loads(lab.exec("lim2", ["networkctl", "status", "eth0", "--json=short"]).stdout)
    return {".".join(map(str, a["Address"])) + f"/{a['PrefixLength']}": a["ConfigSource"]
            for a in data.get("Addresses", []) if a.get("Family") == 2}


def owner(admin: Admin) -> str:
    data = admin.json("cluster", "status", timeout=120)
    return next(x["owner"] for c in data["clusters"] for x in c["lims"] if x["lim"] == 2)


def lim2_alive(admin: Admin) -> bool:
    data = admin.json("cluster", "status", timeout=120)
    row = next(s for c in data["clusters"] for s in c["servers"] if s["server"] == "lim2")
    return row["agent"] == "running" and row["liveness"] == "alive"


def show(say: Callable[[str], None], lab: Lab, host: str, command: str) -> str:
    out = lab.exec(host, command).stdout
    say(f"{host}# {command}\n" + "".join(f"    {x}\n" for x in out.rstrip().splitlines()))
    return out


def tool(say: Callable[[str], None], admin: Admin, *args: str, check: bool = True,
         keep: Callable[[str], bool] = lambda line: True) -> str:
    r = admin.run(*args, check=check)
    lines = [x for x in (r.stderr + r.stdout).splitlines() if x.strip() and keep(x)]
    say("lim1# mxone_maintenance " + " ".join(args) + "\n"
        + "".join(f"    {x}\n" for x in lines))
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def admin(netlab: Lab, real_artefact) -> Admin:
    """lim1 (LIM 1), lim2 (LIM 2) and standby1 (standby) in the system, no cluster yet."""
    lab = netlab
    admin = Admin(lab, real_artefact, servers=("lim1", "lim2", "standby1"))
    admin.run("server", "add", "lim1", lab.hosts["lim1"].cidr, "--lim", "1", "--new", check=True)
    admin.run("server", "add", "lim2", lab.hosts["lim2"].cidr, "--lim", "2", check=True)
    admin.run("server", "add", "standby1", lab.hosts["standby1"].cidr, check=True)
    admin.run("standby", "convert", "standby1", check=True)
    return admin


def test_a_configuration_the_tool_cannot_change_is_refused_first(netlab: Lab, admin: Admin,
                                                                 say) -> None:
    """lim2 also has a netplan file bringing up 10.77.0.12: the create is refused before
    anything changes, naming that file."""
    lab = netlab
    netplan = "/etc/netplan/01-netcfg.yaml"
    lab.exec("lim2", f"mkdir -p /etc/netplan && cat > {netplan}", input=(
        "network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses: [10.77.0.12/24]\n"))
    try:
        before, etc_mxone = net_files(lab, "lim2"), tree_digest(lab, "lim2")
        say("\n===== lim2 with a netplan file")
        text = tool(say, admin, "cluster", "create", "c1", "--standby", "standby1", "--lim",
                    "2:10.77.0.52", "--timers", "fast", check=False,
                    keep=lambda x: "NOT applied" in x or x.lstrip().startswith(("lim2 ",
                                                                                  "standby1 ")))
        assert "NOT applied" in text
        assert (f"its network configuration cannot follow: 10.77.0.12 is brought up at boot by "
                f"network configuration the tool cannot change: {netplan}: a netplan file, a "
                "format the tool does not change") in text
        assert "nothing was changed" in text
        assert net_files(lab, "lim2") == before and tree_digest(lab, "lim2") == etc_mxone
        assert lab.addresses("lim2") == ["10.77.0.12/24"]
    finally:
        lab.exec("lim2", "rm -rf /etc/netplan")


def test_new_base_address_survives_a_reboot(netlab: Lab, admin: Admin, say) -> None:
    lab = netlab
    say("\n===== lim2 before the cluster")
    show(say, lab, "lim2", f"cat {NETWORK_FILE}; ip -4 -o addr show dev eth0")
    original = net_files(lab, "lim2")
    assert original and not any(p.startswith("/etc/mxone/netconfig") for p in original)

    # ---- a create that fails on the standby is rolled back: lim2's files as before
    say("===== a cluster create that fails on standby1 (its /etc/mxone read-only)")
    lab.exec("standby1", "mkdir -p /etc/mxone && mount --bind /etc/mxone /etc/mxone && "
             "mount -o remount,bind,ro /etc/mxone /etc/mxone")
    try:
        text = tool(say, admin, "cluster", "create", "c1", "--standby", "standby1", "--lim",
                    "2:10.77.0.52", "--timers", "fast", "--fallback", "automatic", check=False,
                    keep=lambda x: "lim2" in x or "NOT applied" in x or "standby1" in x)
    finally:
        lab.exec("standby1", "umount /etc/mxone")
    assert "lim2: new base address 10.77.0.52 written to " + NETWORK_FILE in text
    assert "NOT applied" in text
    assert net_files(lab, "lim2") == original  # byte for byte, the tool's copy gone too
    say("    lim2's network files: as before (sha256 and mode of each compared)")

    # ---- the create that works
    say("===== cluster create")
    text = tool(say, admin, "cluster", "create", "c1", "--standby", "standby1", "--lim",
                "2:10.77.0.52", "--timers", "fast", "--fallback", "automatic",
                keep=lambda x: "base address" in x or x.startswith("Applied"))
    assert f"lim2: new base address 10.77.0.52 written to {NETWORK_FILE}" in text
    conf = show(say, lab, "lim2", f"cat {NETWORK_FILE}")
    active = [x.strip() for x in conf.splitlines() if x.strip() and not x.startswith("#")]
    assert "Address=10.77.0.52/24" in active and "KeepConfiguration=static" in active
    assert "Address=10.77.0.12/24" not in active
    # The file as it was is kept by the tool (outside the networkd directory).
    backup = tree_digest(lab, "lim2", "/etc/mxone/netconfig/etc/systemd/network")
    assert backup[f"/etc/mxone/netconfig{NETWORK_FILE}"] == original[NETWORK_FILE]
    eventually(lambda: owner(admin) == "regular", 60, "LIM 2 runs on lim2")

    # ---- reboot: the new base comes back from lim2's own config; LIM 2 falls back
    say("===== reboot lim2 (automatic fallback)")
    lab.reboot("lim2")
    say(f"    lim2 rebooted: systemd is PID 1 again ({lab.hosts['lim2'].boot_seconds} s to boot)")
    show(say, lab, "lim2", "systemctl is-active systemd-networkd mxone-agent")
    addrs = networkd_addresses(lab)
    say(f"    networkd's view of lim2's eth0: {addrs}")
    assert addrs.get("10.77.0.52/24") == "static"  # brought up from lim2's own file
    assert addrs.get("10.77.0.12/24") in (None, "foreign")  # the alias: never networkd's
    eventually(lambda: lim2_alive(admin), 60, "lim2's agent runs again")
    eventually(lambda: owner(admin) == "regular", 60, "LIM 2 back on lim2 (automatic)")
    show(say, lab, "lim2", "ip -4 -o addr show dev eth0")
    tool(say, admin, "cluster", "status", keep=lambda x: "LIM 2" in x or "lim2" in x)

    # ---- locked to the standby: after a reboot nothing but the agent could bring the
    # alias up on lim2, and the agent must not. The OS does not either.
    say("===== LIM 2 locked to standby1, reboot lim2")
    admin.run("cluster", "lock", "2", "--to", "standby", check=True)
    lab.reboot("lim2")
    eventually(lambda: lim2_alive(admin), 60, "lim2's agent runs again")
    eventually(lambda: owner(admin) == "standby", 60, "LIM 2 on standby1 (locked there)")
    eventually(lambda: "10.77.0.12/24" in lab.addresses("standby1"), 30,
               "the alias 10.77.0.12 up on standby1")
    show(say, lab, "standby1", "ip -4 -o addr show dev eth0")
    lim2_addrs = show(say, lab, "lim2", "ip -4 -o addr show dev eth0")
    assert lab.addresses("lim2") == ["10.77.0.52/24"], lim2_addrs
    assert networkd_addresses(lab) == {"10.77.0.52/24": "static"}
    say("    the alias 10.77.0.12 is on standby1 only: lim2 came up with 10.77.0.52 alone")
    admin.run("cluster", "unlock", "2", check=True)
    eventually(lambda: owner(admin) == "regular", 60, "LIM 2 back on lim2 once unlocked")

    # ---- a delete that fails midway: lim2's files stay as the cluster has them
    clustered = net_files(lab, "lim2")
    say("===== a cluster delete that fails on standby1 (its /etc/mxone read-only)")
    lab.exec("standby1", "mount --bind /etc/mxone /etc/mxone && "
             "mount -o remount,bind,ro /etc/mxone /etc/mxone")
    try:
        text = tool(say, admin, "cluster", "delete", "c1", check=False,
                    keep=lambda x: "lim2" in x or "NOT applied" in x or "standby1" in x)
    finally:
        lab.exec("standby1", "umount /etc/mxone")
    assert "NOT applied" in text
    assert net_files(lab, "lim2") == clustered
    say("    lim2's network files: as the cluster has them (compared)")

    # ---- delete: lim2's network files as before the cluster, byte for byte
    say("===== cluster delete")
    text = tool(say, admin, "cluster", "delete", "c1",
                keep=lambda x: "lim2" in x or x.startswith("Applied"))
    assert f"lim2: network configuration put back as before the cluster ({NETWORK_FILE})" in text
    show(say, lab, "lim2", f"cat {NETWORK_FILE}")
    assert net_files(lab, "lim2") == original
    say("    lim2's network files: byte for byte as before the cluster; "
        "/etc/mxone/netconfig gone")
