"""The agent as the systemd unit the tool deploys, on a lab host that boots systemd.

mxone_maintenance on lim1 builds a cluster of lim2 (a plain host: the agent runs as a
daemon) and standby1 (systemd 252 as PID 1: the tool installs and enables
mxone-agent.service). Shown under real systemd, in this order: the unit is active only
once the agent is ready; it survives three WatchdogSec at every preset; a frozen loop
(SIGSTOP) is killed and restarted by the watchdog; kill -9 is followed by a restart; and
the journal holds the agent's failover sentences.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mxone_lab import Lab

from tests.agent_lab.cluster import eventually
from tests.orchestration.conftest import Admin

pytestmark = pytest.mark.lab
SB = "standby1"
UNIT = "mxone-agent.service"
AGENT = "/opt/mxone/agent/current/bin/mxone-agent"
NODE = "/etc/mxone/agent/node.json"
WATCHDOG_S = 10.0  # the deployed unit's WatchdogSec


@pytest.fixture(scope="module")
def deployed(systemd_lab_module: Lab, real_artefact: Path) -> Iterator[Admin]:
    lab = systemd_lab_module
    admin = Admin(lab, real_artefact, servers=("lim1", "lim2", SB))
    admin.run("server", "add", "lim1", lab.hosts["lim1"].cidr, "--lim", "1", "--new", check=True)
    admin.run("server", "add", "lim2", lab.hosts["lim2"].cidr, "--lim", "2", check=True)
    admin.run("server", "add", SB, lab.hosts[SB].cidr, check=True)
    admin.run("standby", "convert", SB, check=True)
    admin.run("cluster", "create", "c1", "--standby", SB, "--lim", "2:10.77.0.52",
              "--timers", "fast", check=True)
    yield admin


def show(lab: Lab, *props: str) -> dict[str, str]:
    out = lab.exec(SB, ["systemctl", "show", UNIT, "-p", ",".join(props)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def main_pid(lab: Lab) -> int:
    return int(show(lab, "MainPID")["MainPID"])


def agent_answers(lab: Lab) -> bool:
    return lab.exec(SB, [AGENT, "ctl", "status"], check=False, timeout=20).returncode == 0


def journal(lab: Lab) -> str:
    return lab.exec(SB, ["journalctl", "-u", UNIT, "--no-pager", "-o", "cat"]).stdout


def test_the_tool_installs_the_unit_and_it_runs(deployed: Admin) -> None:
    lab = deployed.lab
    props = show(lab, "ActiveState", "SubState", "Type", "WatchdogUSec", "UnitFileState",
                 "NRestarts")
    assert props == {"ActiveState": "active", "SubState": "running", "Type": "notify",
                     "WatchdogUSec": "10s", "UnitFileState": "enabled", "NRestarts": "0"}
    assert agent_answers(lab)
    status = deployed.settled_status()
    assert [x["owner"] for c in status["clusters"] for x in c["lims"]] == ["regular"]


def test_active_only_once_ready(deployed: Admin) -> None:
    """Type=notify: while systemd still says "activating" the agent may not answer yet;
    from the moment it says "active" the control socket answers."""
    lab = deployed.lab
    lab.exec(SB, ["systemctl", "restart", "--no-block", UNIT])
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = lab.exec(SB, ["systemctl", "is-active", UNIT], check=False).stdout.strip()
        answers = agent_answers(lab) if state == "active" else None
        seen.append((state, answers))
        if state == "active":
            break
    assert seen[-1] == ("active", True), seen
    assert ("activating", None) in seen or len(seen) == 1, seen


PRESETS = (("mxone", 5.0, 12), ("fast", 1.0, 3), ("fastest", 0.1, 3))


def test_survives_a_watchdog_period_at_every_preset(deployed: Admin) -> None:
    """At every preset - also at the mxone one, whose 5 s heartbeat interval is half the
    unit's WatchdogSec - the agent pings on its own clock and is never killed: one full
    watchdog period (and a second more) at each preset, one after the other, with the same
    process throughout (a missed ping ends the agent within one period)."""
    lab = deployed.lab
    pid, restarts = main_pid(lab), show(lab, "NRestarts")["NRestarts"]
    for name, interval, misses in PRESETS:
        for host in ("lim2", SB):  # both nodes, so that they agree on detection
            doc = json.loads(lab.exec(host, ["cat", NODE]).stdout)
            doc["timers"] = {"interval": interval, "misses": misses}
            lab.exec(host, f"cat > {NODE}.tmp && mv {NODE}.tmp {NODE}", input=json.dumps(doc))
            lab.exec(host, [AGENT, "ctl", "reload"])
        assert json.loads(lab.exec(SB, [AGENT, "ctl", "status"]).stdout)["detection_s"] == \
            interval * misses, name
        time.sleep(WATCHDOG_S + 1)
        props = show(lab, "ActiveState", "SubState", "MainPID", "NRestarts")
        assert props == {"ActiveState": "active", "SubState": "running", "MainPID": str(pid),
                         "NRestarts": restarts}, (name, journal(lab)[-2000:])
    assert "Watchdog timeout" not in journal(lab)


def test_a_frozen_loop_is_killed_and_restarted_by_the_watchdog(deployed: Admin) -> None:
    lab = deployed.lab
    pid = main_pid(lab)
    restarts = int(show(lab, "NRestarts")["NRestarts"])
    lab.exec(SB, ["kill", "-STOP", str(pid)])
    eventually(lambda: main_pid(lab) not in (0, pid) and show(lab, "SubState")["SubState"] ==
               "running", WATCHDOG_S + 15, "a new agent after the watchdog fired", step=0.5)
    assert int(show(lab, "NRestarts")["NRestarts"]) == restarts + 1
    assert re.search(r"Watchdog timeout \(limit 10s\)", lab.exec(
        SB, ["journalctl", "-u", UNIT, "--no-pager"]).stdout)
    eventually(lambda: agent_answers(lab), 10, "the restarted agent answers")


def test_kill_9_is_followed_by_a_restart(deployed: Admin) -> None:
    lab = deployed.lab
    pid = main_pid(lab)
    restarts = int(show(lab, "NRestarts")["NRestarts"])
    lab.exec(SB, ["kill", "-KILL", str(pid)])
    eventually(lambda: main_pid(lab) not in (0, pid) and show(lab, "SubState")["SubState"] ==
               "running", 15, "a new agent after kill -9", step=0.3)
    assert int(show(lab, "NRestarts")["NRestarts"]) == restarts + 1
    eventually(lambda: agent_answers(lab), 10, "the restarted agent answers")


PACKAGE_UNIT = "/usr/lib/systemd/system/mxone-agent.service"
# The same file where /lib is /usr/lib (Debian 12): systemd may name it by either path.
PACKAGE_UNITS = (PACKAGE_UNIT, PACKAGE_UNIT.removeprefix("/usr"))
OLD_UNIT = "/etc/systemd/system/mxone-agent.service"
DROP_IN = "/etc/systemd/system/mxone-agent.service.d/site.conf"
# The unit the first deployers wrote to /etc/systemd/system (one this project shipped).
OLD_FALLBACK = ("[Unit]\nDescription=MX-ONE server redundancy agent\n"
                "After=network-online.target\n\n[Service]\n"
                "ExecStart=/opt/mxone/agent/current/bin/mxone-agent run --log "
                "/var/log/mxone/agent.log\nRestart=always\nRestartSec=2\n\n[Install]\n"
                "WantedBy=multi-user.target\n")


def test_the_unit_is_a_package_unit_and_hardened(deployed: Admin) -> None:
    lab = deployed.lab
    props = show(lab, "FragmentPath", "ProtectSystem", "RestrictAddressFamilies",
                 "ProtectKernelModules", "ProtectClock", "LockPersonality", "ExecStart")
    assert props["FragmentPath"] in PACKAGE_UNITS
    assert lab.exec(SB, ["test", "-e", OLD_UNIT], check=False).returncode == 1
    assert props["ProtectSystem"] == "yes" and props["LockPersonality"] == "yes"
    assert props["ProtectKernelModules"] == "yes" and props["ProtectClock"] == "yes"
    assert set(props["RestrictAddressFamilies"].split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"}
    assert "--log" not in props["ExecStart"]
    report = lab.exec(SB, ["systemd-analyze", "security", "--no-pager", UNIT]).stdout
    print("\n".join(report.splitlines()[-1:]))
    score = float(re.search(r"Overall exposure level for mxone-agent.service: ([\d.]+)",
                            report).group(1))  # type: ignore[union-attr]
    assert score < 9.6  # 9.6 without any hardening
    assert agent_answers(lab)


def test_a_redeploy_keeps_the_drop_in_and_removes_an_old_copy_of_ours(deployed: Admin) -> None:
    """The admin's `systemctl edit` drop-in survives; the copy the first deployers wrote to
    /etc/systemd/system (it would shadow the package unit) is removed when it is ours, and
    an admin's own file there is left in place with a warning."""
    lab = deployed.lab
    lab.exec(SB, f"mkdir -p {DROP_IN.rsplit('/', 1)[0]} && cat > {DROP_IN}",
             input="[Service]\nEnvironment=MXONE_SITE=kept\n")
    lab.exec(SB, f"cat > {OLD_UNIT}", input=OLD_FALLBACK)
    lab.exec(SB, ["systemctl", "daemon-reload"])
    lab.exec(SB, ["systemctl", "stop", UNIT])  # the next change starts it: the unit is installed
    try:
        deployed.run("cluster", "lock", "2", "--to", "regular", check=True, timeout=300)
        assert lab.exec(SB, ["test", "-e", OLD_UNIT], check=False).returncode == 1
        props = show(lab, "FragmentPath", "DropInPaths", "Environment", "ActiveState")
        assert props["FragmentPath"] in PACKAGE_UNITS
        assert props["DropInPaths"] == DROP_IN and "MXONE_SITE=kept" in props["Environment"]
        assert props["ActiveState"] == "active"

        # An admin's own full copy: left, and the change says so.
        lab.exec(SB, f"cat > {OLD_UNIT}", input=OLD_FALLBACK + "# mine\n")
        lab.exec(SB, ["systemctl", "daemon-reload"])
        lab.exec(SB, ["systemctl", "stop", UNIT])
        r = deployed.run("cluster", "unlock", "2", check=True, timeout=300)
        assert lab.exec(SB, ["cat", OLD_UNIT]).stdout.endswith("# mine\n")
        assert f"standby1: WARNING: {OLD_UNIT} is not a unit this tool wrote: left in place" \
            in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        lab.exec(SB, ["rm", "-rf", OLD_UNIT, DROP_IN.rsplit("/", 1)[0]])
        lab.exec(SB, ["systemctl", "daemon-reload"])
        lab.exec(SB, ["systemctl", "restart", UNIT])
    eventually(lambda: agent_answers(lab), 15, "the agent answers under the package unit")
    assert show(lab, "FragmentPath")["FragmentPath"] in PACKAGE_UNITS


def test_the_journal_has_the_failover_sentences(deployed: Admin) -> None:
    lab = deployed.lab
    eventually(lambda: agent_answers(lab), 10, "the agent answers")
    lab.faults.cut("lim2")
    try:
        eventually(lambda: "takes over LIM 2" in journal(lab), 30,
                   "the standby's takeover in the journal", step=0.5)
    finally:
        lab.faults.restore("lim2")
    text = journal(lab)
    assert re.search(r"lim2 missed \d+ heartbeats \([\d.]+ s\); standby1 takes over LIM 2", text)
    assert "standby1 raises the alarm 'LIM is running on standby server' for LIM 2" in text
