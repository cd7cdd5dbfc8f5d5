"""Issue 8, a degraded change in the lab, through the real tool on lim1 and the real agents:
LIM 2 locked to lim2, lim2 cut off, LIM 2 unlocked through the menus (the plan and a second
confirmation name lim2 and what it misses); the standby takes LIM 2 over; lim2 comes back
behind and the next status refresh brings it to the current generation. A client watches
the alias (ARP rounds) and asks the LIM who it is.

The test prints its transcript (the tool's output, the screens, the probe); run with ``-s``.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from mxone_lab.probe import Prober

from tests.acceptance.conftest import ENTER, ESC, Tui
from tests.orchestration.conftest import Admin
from tests.orchestration.test_leaving_and_orders_lab import (
    ALIAS,
    agent_status,
    lim_row,
    macs,
    say,
    timeline,
    tracebacks,
    wait,
    who,
)

pytestmark = pytest.mark.lab


def generation(admin: Admin) -> int:
    return admin.json("cluster", "list")["generation"]


def node_lock(lab, host: str, lim: int) -> str:
    cfg = json.loads(lab.exec(host, "cat /etc/mxone/agent/node.json").stdout)
    return next(x["lock"] for x in cfg["lims"] if x["lim"] == lim)


def test_unlock_while_lim2_is_cut_then_lim2_is_brought_current(admin: Admin, lab,
                                                                real_artefact) -> None:
    admin.build_system()
    admin.settled_status()
    names = macs(lab)
    lock = admin.run("cluster", "lock", "2", "--to", "regular", check=True, timeout=300)
    say("mxone_maintenance cluster lock 2 --to regular", lock.stdout)
    gen0 = generation(admin)

    with Prober(lab, "client", [ALIAS[2]], duration=600) as probe:
        t0 = time.monotonic()
        lab.faults.cut("lim2")
        # Locked to lim2, LIM 2 stays there: the standby does not take it.
        time.sleep(5)
        assert (lim_row(agent_status(lab, "standby1"), 2) or {}).get("here") != "active"

        refused = admin.run("cluster", "unlock", "2", timeout=300)
        say(f"lim2 cut: mxone_maintenance cluster unlock 2  (exit {refused.returncode})",
            refused.stdout + refused.stderr)
        assert refused.returncode == 2
        assert "NOT applied: the system stays at generation" in refused.stdout
        assert re.search(r"lim2\s+FAILED\s+server lim2 unreachable: .*confirm that with "
                         r"--degraded on the command line", refused.stdout), refused.stdout
        assert generation(admin) == gen0
        dry = admin.run("cluster", "unlock", "2", "--degraded", "--dry-run", timeout=300)
        say(f"lim2 cut: mxone_maintenance cluster unlock 2 --degraded --dry-run  (exit "
            f"{dry.returncode})", dry.stdout + dry.stderr)
        assert dry.returncode == 0 and "Dry run: nothing was changed." in dry.stdout
        assert re.search(rf"lim2\s+UNREACHABLE \(.*\): misses generation {gen0 + 1} \(LIM 2 "
                         r"lock regular -> none\)", dry.stdout), dry.stdout
        assert generation(admin) == gen0

        # ---- the menus: the plan names lim2, a second screen asks again --------------------
        t = Tui(lab, real_artefact, refresh=0)
        try:
            t.open("Cluster handling", "Unlock LIM from server")
            t.pick("c1 (LIMs 2, 3")
            t.wait_for("LIM 2 on lim2 (alias 10.77.0.12, lock regular)")
            t.submit()
            t.wait_for("DEGRADED: lim2 cannot be reached:", timeout=120)
            say("menus: Unlock LIM from server, the plan", t.text)
            assert re.search(r"lim2: UNREACHABLE \(.*\): misses", t.flat), t.dump()
            t.yes()
            t.wait_for("Make this change without lim2?")
            say("menus: the second confirmation", t.text)
            assert "lim2 cannot be reached now and will MISS this change:" in t.flat
            assert f"misses generation {gen0 + 1} (LIM 2 lock regular -> none)" in t.flat
            t.yes("Make this change without lim2?")
            t.wait_for(f"Applied: system generation {gen0 + 1}.", timeout=180)
            say("menus: the result", t.text)
            assert re.search(r"lim2\s+OK\s+BEHIND: missed generation", t.text), t.dump()
            assert re.search(r"standby1\s+OK\s+agent runs generation", t.text), t.dump()
            t.send(ENTER)
            t.open("List all clusters")
            t.wait_for("BEHIND: lim2 has generation")
            say("menus: List all clusters", t.text)
            assert f"BEHIND: lim2 has generation {gen0}, the system is at {gen0 + 1}" in t.flat
            t.send(ESC)
        finally:
            t.close()
        unlocked = time.monotonic()

        # ---- the standby takes LIM 2 over --------------------------------------------------
        wait(lambda: who(lab, 2) == "LIM 2 on standby1", 90, "LIM 2 answers from standby1")
        took = time.monotonic()
        status = admin.run("cluster", "status", timeout=300)
        say("lim2 still cut: mxone_maintenance cluster status", status.stdout)
        assert re.search(r"lim2\s+FAILED\s+BEHIND: still unreachable", status.stdout)
        assert f"BEHIND: lim2 has generation {gen0}, the system is at {gen0 + 1}" in status.stdout
        listed = admin.run("cluster", "list", check=True)
        say("mxone_maintenance cluster list", listed.stdout)
        assert "BEHIND: lim2 has generation" in listed.stdout

        # ---- lim2 back: behind; the next status refresh brings it current ------------------
        lab.faults.restore("lim2")
        restored = time.monotonic()
        wait(lambda: next((p["liveness"] for p in (agent_status(lab, "standby1") or {}).get(
            "peers", []) if p["name"] == "lim2"), None) == "alive", 60, "standby1 hears lim2")
        back = agent_status(lab, "lim2")
        say("lim2 back: its agent (before the refresh)", json.dumps(
            {"generation": (back or {}).get("generation"), "lock of LIM 2 in its node.json":
             node_lock(lab, "lim2", 2)}))
        assert back is not None and back["generation"] == gen0
        status = admin.run("cluster", "status", timeout=300)
        say("lim2 back: mxone_maintenance cluster status", status.stdout + "\n--- progress "
            "(stderr) ---\n" + status.stderr)
        assert re.search(rf"lim2\s+OK\s+was behind: brought to generation {gen0 + 1} "
                         rf"\(it had {gen0}\)", status.stdout), status.stdout
        assert "BEHIND: lim2" not in status.stdout
        assert agent_status(lab, "lim2")["generation"] == gen0 + 1
        assert node_lock(lab, "lim2", 2) == "none"
        again = admin.run("cluster", "status", timeout=300)
        say("mxone_maintenance cluster status (again)", again.stdout)
        assert "was behind" not in again.stdout and "BEHIND" not in again.stdout
        assert "BEHIND" not in admin.run("cluster", "list", check=True).stdout
        # Manual fallback: LIM 2 stays on the standby; lim2 runs it no more.
        wait(lambda: (lim_row(agent_status(lab, "lim2"), 2) or {}).get("here") is None, 60,
             "lim2 does not run LIM 2")
        settled = time.monotonic()
        time.sleep(3)
        assert who(lab, 2) == "LIM 2 on standby1"
        log = probe.stop()
    say("probe from the client (ARP rounds; t = 0 at the cut; unlocked at "
        f"t+{unlocked - t0:.1f} s, the standby answered at t+{took - t0:.1f} s, lim2 restored "
        f"at t+{restored - t0:.1f} s, settled at t+{settled - t0:.1f} s)",
        timeline(log, ALIAS[2], names, t0))
    assert log.answering_macs(ALIAS[2], since=settled) == {lab.hosts["standby1"].mac.lower()}
    assert lab.hosts["standby1"].mac.lower() in log.answering_macs(ALIAS[2], since=took)
    bad = tracebacks(lab)
    say("agent logs: lines with Traceback or KeyError", json.dumps(bad) if bad else "none")
    assert bad == {}
