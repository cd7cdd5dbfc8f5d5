"""The operator's walk through the real menus on lim1, keys only, with the real agent.

Servers are added (each reached first: its host key asked about in the menus, refused once
with nothing changed, then accepted), a standby converted, a cluster of LIMs 2 and 3
created, its status watched as it refreshes itself, a LIM locked and unlocked, lim2 cut off the network (LIM 2 on the
standby, the alarm raised), lim2 back and LIM 2 moved home by hand, the fallback made
automatic, and the cluster deleted (its agents stopped).
"""

from __future__ import annotations

import re
import time

import pytest
from mxone_agent.version import VERSION

from tests.acceptance.conftest import (
    AGENT,
    ENTER,
    ESC,
    Tui,
    fingerprint,
    node_state,
)

pytestmark = pytest.mark.lab

NODES = ("lim2", "lim3", "standby1")
SEED_VERSION = """
import json, sys
from pathlib import Path
from mxone_agent import xdata
lim = int(sys.argv[1])
m = xdata.write_version(Path("/var/opt/mxone/xdata"), lim, {
    "reload/extensions.json": json.dumps({"format": 1, "lim": lim, "extensions": ["4001"]}).encode(),
    "sysdb/blob": bytes(range(256)) * 48})
print(m.version)
"""


def colour(t: Tui, text: str) -> str:
    """The foreground colour of the first place ``text`` is on the screen (pyte's name)."""
    for y, line in enumerate(t.lines):
        x = line.find(text)
        if x >= 0:
            return str(t.screen.buffer[y][x].fg)
    raise AssertionError(f"{text!r} not on the screen:\n" + t.dump())


def lim_row(lim: int, server: str, alias: str, owner: str) -> re.Pattern[str]:
    """A LIM's row of the status table."""
    return re.compile(rf"^\s+{lim}\s+{server}\s+{re.escape(alias)}\s+{owner}\b", re.M)


def add_server(t: Tui, lab, name: str, cidr: str, lim: str, generation: int,
               accept: bool = True) -> None:
    """Add a server; the tool reaches it first and asks about its host key."""
    t.open("Add a server to the system")
    t.field("Server name", name)
    t.field("Base IP/prefix", cidr)
    t.field("LIM number", lim)
    t.submit()
    t.yes()
    assert answer_host_keys(t, lab, {name}, accept=accept) == {name}
    if accept:  # (refused: the caller reads the result screen)
        t.wait_for(f"Applied: system generation {generation}.")
        t.send(ENTER)


def answer_host_keys(t: Tui, lab, servers: set[str], accept: bool) -> set[str]:
    """Answer the host-key questions of ``servers`` (each checked against the lab's key)
    until the change's result shows; the servers asked about."""
    asked: set[str] = set()
    while True:
        t.wait_for(lambda s: "Accept this host key?" in s.text or "Applied: system" in s.text
                   or "The change failed" in s.text, timeout=60)
        if "Accept this host key?" not in t.text:
            return asked
        flat = t.flat
        m = re.search(r"The host key of server (\S+) is not known yet\.", flat)
        assert m, t.dump()
        name = m.group(1)
        assert name in servers and name not in asked, t.dump()
        h = lab.hosts[name]
        assert f"address: {h.ip}" in flat, t.dump()
        assert "key type: ssh-ed25519" in flat, t.dump()
        assert f"fingerprint: {fingerprint(h.host_key)}" in flat, t.dump()
        asked.add(name)
        t.button("Accept" if accept else "Refuse")
        time.sleep(0.2)


def create_cluster(t: Tui) -> None:
    t.open("Create new cluster in system")
    t.field("Cluster name", "c1")
    t.choose("(X) manual")
    t.choose("fast")
    t.tick("LIM 2 on lim2")
    t.field("new base IP of LIM 2", "10.77.0.52")
    t.tick("LIM 3 on lim3")
    t.field("new base IP of LIM 3", "10.77.0.53")
    t.field("priority of LIM 3", "2")
    t.submit()
    t.wait_for("Apply this change?")
    plan = t.flat
    assert "lim2: node config generation 5 -> 6" in plan, t.dump()
    t.yes()


def test_operator_walk_through_the_menus(lab, tui_factory) -> None:
    t = tui_factory(refresh=1.0, extra=("--new",))  # a new system: no config file yet
    t.wait_for("1. Server in system")
    assert t.generation() == 0

    # ---- servers and the standby: each is reached first, its host key asked about ----------
    t.open("Server in system")
    # refused once: nothing is added, nothing pinned, nothing changes anywhere
    before = node_state(lab)
    add_server(t, lab, "lim1", lab.hosts["lim1"].cidr, "1", 1, accept=False)
    t.wait_for("The change failed on some servers:")
    assert "refused by the operator; the key was not pinned and the action was cancelled" \
        in t.flat, t.dump()
    t.send(ENTER)
    assert t.generation() == 0
    assert node_state(lab) == before
    assert lab.exec("lim1", "cat /etc/mxone/known_hosts 2>/dev/null || true").stdout == ""
    for i, name in enumerate(("lim1", "lim2", "lim3"), start=1):
        add_server(t, lab, name, lab.hosts[name].cidr, str(i), i)
    add_server(t, lab, "standby1", lab.hosts["standby1"].cidr, "", 4)
    pinned = lab.exec("lim1", ["cat", "/etc/mxone/known_hosts"]).stdout
    for name in ("lim1", *NODES):
        assert lab.hosts[name].host_key in pinned
    t.open("List servers")
    t.wait_for(re.compile(r"standby1\s+free\s+10\.77\.0\.20/24"))
    t.send(ENTER)
    t.send(ESC)
    t.open("Standby server in system", "Convert a free server to standby server")
    t.wait_for("standby1 (10.77.0.20/24, free)")
    t.submit()
    t.yes()
    t.wait_for("Applied: system generation 5.")
    t.send(ENTER)
    t.back_to_main()

    # ---- a cluster (the host keys are pinned: no question) ----------------------------------
    t.open("Cluster handling")
    create_cluster(t)
    assert answer_host_keys(t, lab, set(NODES), accept=True) == set()
    t.wait_for("Applied: system generation 6.", timeout=120)
    t.send(ENTER)

    # ---- Show status: both LIMs on their regular servers; it refreshes itself --------------
    t.open("Show status")
    t.wait_for(lambda s: bool(lim_row(2, "lim2", "10.77.0.12", "regular").search(s.text)
                              and lim_row(3, "lim3", "10.77.0.13", "regular").search(s.text)),
               timeout=60)
    stamp = re.search(r"refreshed at (\d\d:\d\d:\d\d)", t.text)
    assert stamp, t.dump()
    t.wait_for(lambda s: (m := re.search(r"refreshed at (\d\d:\d\d:\d\d)", s.text)) is not None
               and m.group(1) != stamp.group(1), timeout=15)
    assert "every 1 s; r refreshes now" in t.flat
    t.send(ESC)
    t.wait_for(re.compile(r"\d+\. Show status"))

    # ---- lock LIM 2 to its regular server, then unlock it ----------------------------------
    t.open("Lock LIM to server")
    t.pick("c1 (LIMs 2, 3")
    t.choose("LIM 2 on lim2")
    t.choose("its regular server")
    t.submit()
    t.yes()
    t.wait_for("Applied: system generation 7.", timeout=120)
    t.wait_for(re.compile(r"Agents:.*standby1\s+OK", re.S))
    t.send(ENTER)
    t.open("Unlock LIM from server")
    t.pick("c1 (LIMs 2, 3")
    t.wait_for("LIM 2 on lim2 (alias 10.77.0.12, lock regular)")
    t.submit()
    t.yes()
    t.wait_for("Applied: system generation 8.", timeout=120)
    t.send(ENTER)

    # ---- lim2 cut off: LIM 2 runs on the standby, the alarm is raised ----------------------
    lab.faults.cut("lim2")
    t.wait_for(re.compile(r"\b2\. Show status"))
    t.send("2")  # Show status by its number
    t.wait_for(lambda s: bool(lim_row(2, "lim2", "10.77.0.12", "standby").search(s.text))
               and "LIM is running on standby server" in s.text, timeout=60)
    assert lim_row(3, "lim3", "10.77.0.13", "regular").search(t.text), t.dump()
    # the states in colour: the cluster needs attention (yellow), lim2 cannot be reached
    # and the major alarm (red)
    assert colour(t, "[ATTENTION]") == "brightbrown", t.dump()
    assert colour(t, "LIM is running on standby server") == "brightred", t.dump()
    lim2 = re.search(r"^\s+lim2\s+lim\s+(unreachable|not running|error)\b", t.text, re.M)
    assert lim2 and colour(t, lim2.group(1)) == "brightred", t.dump()
    t.send(ESC)

    # ---- lim2 back; manual fallback moves LIM 2 home ---------------------------------------
    lab.faults.restore("lim2")
    t.open("Show status")
    # lim2 heard again; it may run LIM 2 too for a moment (split brain, the agents settle
    # it: lim2 stops); fallback manual: LIM 2 stays on the standby.
    back = re.compile(rf"^\s+lim2\s+lim\s+running\s+{re.escape(VERSION)}\s+8\s+\S+\s+alive", re.M)
    t.wait_for(lambda s: bool(back.search(s.text)
                              and lim_row(2, "lim2", "10.77.0.12", "standby").search(s.text)),
               timeout=60)
    t.send(ESC)
    t.open("Move LIM from standby to regular server")
    t.pick("c1 (LIMs 2, 3")
    t.pick("LIM 2 on lim2")
    t.pick("Now: as soon as lim2 is ready")
    t.yes("Move LIM 2 from standby standby1 back to lim2 now (manual fallback)?")
    # carried out now, or pending for the moments lim2 needs to count as ready
    t.wait_for(re.compile(r"standby1\s+(OK|PENDING)"), timeout=90)
    t.send(ENTER)
    t.open("Show status")
    t.wait_for(lambda s: bool(lim_row(2, "lim2", "10.77.0.12", "regular").search(s.text))
               and "No active alarms." in s.text, timeout=60)
    t.send(ESC)

    # ---- fallback automatic ----------------------------------------------------------------
    t.open("Change fallback type or priority")
    t.pick("c1 (LIMs 2, 3")
    t.choose("automatic")
    t.submit()
    t.yes()
    t.wait_for("Applied: system generation 9.", timeout=120)
    t.send(ENTER)
    t.open("List all clusters")
    t.wait_for(re.compile(r"c1\s+lim2\s+regular\s+2\s+10\.77\.0\.52/24\s+10\.77\.0\.12\s+1\s+none\s+automatic"))
    t.send(ENTER)

    # ---- sync exchange data: one result line per LIM ---------------------------------------
    for n, host in ((2, "lim2"), (3, "lim3")):
        lab.run_python(host, SEED_VERSION, args=[str(n)])
    t.open("Sync exchange data within cluster")
    t.pick("c1 (LIMs 2, 3")
    t.yes("(LIMs 2, 3) and standby standby1 now?")
    t.wait_for("Sync of exchange data in cluster c1:", timeout=180)
    assert "Sync of exchange data in cluster c1: 2 of 2 LIM(s) OK." in t.flat, t.dump()
    assert re.search(r"lim2 OK LIM 2: ", t.flat) and re.search(r"lim3 OK LIM 3: ", t.flat), t.dump()
    t.send(ENTER)

    # ---- delete the cluster: every agent stops ---------------------------------------------
    t.open("Delete cluster in system")
    t.pick("c1 (LIMs 2, 3")
    t.submit()
    t.yes()
    t.wait_for("Applied: system generation 10.", timeout=120)
    for host in NODES:
        st = lab.exec(host, [AGENT, "ctl", "status"], check=False)
        assert st.returncode == 2, (host, st.stdout, st.stderr)  # not running
        assert lab.exec(host, "ls -A /etc/mxone/agent").stdout.split() == []
    assert t.exit() == 0




def test_sync_exchange_data_in_the_menus(lab, admin, tui_factory) -> None:
    """Sync exchange data within cluster: a result line per LIM, OK, after a progress bar."""
    admin.build_system()  # c1: LIMs 2 and 3 (lim2, lim3), standby1; host keys pinned
    admin.settled_status()
    versions = {n: lab.run_python(host, SEED_VERSION, args=[str(n)]).stdout.strip()
                for n, host in ((2, "lim2"), (3, "lim3"))}
    t = tui_factory()
    t.open("Cluster handling", "Sync exchange data within cluster")
    t.pick("c1 (LIMs 2, 3")
    t.yes("(LIMs 2, 3) and standby standby1 now?")
    t.wait_for("Sync of exchange data in cluster c1:", timeout=180)
    flat = t.flat
    assert "Sync of exchange data in cluster c1: 2 of 2 LIM(s) OK." in flat, t.dump()
    assert re.search(r"lim2 OK LIM 2: ", flat) and re.search(r"lim3 OK LIM 3: ", flat), t.dump()
    for n in (2, 3):
        listed = lab.exec("standby1", ["ls", "/var/opt/mxone/xdata"], check=False).stdout
        assert versions[n] in listed, (versions, listed)
    assert t.exit() == 0
