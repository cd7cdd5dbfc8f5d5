"""The agent as the systemd unit the tool deploys, on a lab host that boots systemd.

mxone_maintenance on lim1 builds a cluster of lim2 (a plain host: the agent runs as a
daemon) and standby1 (systemd 252 as PID 1: the tool installs and enables
mxone-agent.service). Shown under real systemd, in this order: the unit is active only
once the agent is ready; it survives three WatchdogSec at every preset; a frozen loop
(SIGSTOP) is killed and restarted by the watchdog; kill -9 is followed by a restart; the
unit is a hardened package unit, and a redeploy keeps the administrator's drop-in. Last,
lim2 is cut off: the standby's failover is in ``journalctl -u mxone-agent``, each sentence
with its syslog priority and the fields MXONE_CLUSTER, MXONE_NODE and MXONE_LIM
(``journalctl -u mxone-agent MXONE_LIM=2`` shows the LIM's story and nothing else); a
notify hook in /etc/mxone/notify.d records the same failover; and after a restart ``ctl
status`` still lists it among its transitions (read back from the state dir).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
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


def journalctl(lab: Lab, *args: str) -> str:
    return lab.exec(SB, ["journalctl", "-u", UNIT, "--no-pager", *args]).stdout


def entries(lab: Lab, *matches: str) -> list[dict[str, str]]:
    out = journalctl(lab, "-o", "json", *matches)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


HOOK = """#!/bin/sh
{ echo "== $MXONE_EVENT"; env | grep '^MXONE_' | sort; } >> /var/opt/mxone/notify-record
echo "recorded the $MXONE_EVENT of LIM $MXONE_LIM"
"""


def takeovers(lab: Lab) -> list[dict[str, str]]:
    """The standby's takeovers of LIM 2 in the journal, oldest first."""
    return [x for x in entries(lab, "MXONE_LIM=2") if "takes over LIM 2" in x["MESSAGE"]]


def status(lab: Lab) -> dict:
    return json.loads(lab.exec(SB, [AGENT, "ctl", "status"], timeout=20).stdout)


def test_the_failover_is_in_the_journal_filterable_by_lim_and_kept_across_a_restart(
        deployed: Admin, capsys: pytest.CaptureFixture[str]) -> None:
    lab = deployed.lab
    eventually(lambda: lab.exec(SB, [AGENT, "ctl", "status"], check=False,
                                timeout=20).returncode == 0, 30, "the agent answers")
    started = eventually(lambda: [e for e in entries(lab, "SYSLOG_IDENTIFIER=mxone-agent")
                                  if "of cluster c1 started" in e["MESSAGE"]],
                         20, "the agent's start in the journal")
    e = started[0]
    # Sent natively: the entry's fields are the agent's, not a line of stderr.
    assert (e["PRIORITY"], e["MXONE_CLUSTER"], e["MXONE_NODE"]) == ("6", "c1", SB)
    assert e["_TRANSPORT"] == "journal" and "MXONE_LIM" not in e
    assert e["MESSAGE"].startswith(f"{SB} (standby) of cluster c1 started")

    # lim2 heard alive first (the agent may have just been restarted): then its silence is
    # a failover of a server that was there, as a site sees it.
    eventually(lambda: [p for p in status(lab)["peers"]
                        if p["name"] == "lim2" and p["liveness"] == "alive"],
               20, "standby1 hears lim2 alive", step=0.3)
    lab.exec(SB, ["sh", "-c", "install -d -m 0755 /etc/mxone/notify.d && cat > "
                  "/etc/mxone/notify.d/10-record && chmod 0755 /etc/mxone/notify.d/10-record"],
             input=HOOK)
    # Earlier tests of this module may have failed LIM 2 over already: this one is new.
    before = len(takeovers(lab))
    cut_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")  # as the transitions say it
    lab.faults.cut("lim2")
    try:
        eventually(lambda: len(takeovers(lab)) > before, 30,
                   "the standby's takeover under MXONE_LIM=2", step=0.5)
    finally:
        lab.faults.restore("lim2")
    text = journal(lab)
    assert re.search(r"lim2 missed \d+ heartbeats \([\d.]+ s\); standby1 takes over LIM 2", text)
    assert "standby1 raises the alarm 'LIM is running on standby server' for LIM 2" in text
    by_lim = journalctl(lab, "-o", "cat", "MXONE_LIM=2")
    assert f"{SB} declares lim2 dead" in by_lim
    assert f"{SB} takes over LIM 2" in by_lim
    assert "of cluster c1 started" not in by_lim  # not about LIM 2: not under its field
    takeover = takeovers(lab)[-1]
    assert takeover["PRIORITY"] == "6"
    assert takeover["MXONE_CLUSTER"] == "c1" and takeover["_TRANSPORT"] == "journal"
    assert entries(lab, "MXONE_LIM=3") == []

    failover = eventually(lambda: [t for t in status(lab)["transitions"]
                                   if t["lim"] == 2 and t["kind"] == "failover"
                                   and t["decided"] > cut_at],
                          20, "the failover among the transitions")
    # The hook ran for this very failover: its timeline is the transition's.
    record = eventually(lambda: lab.exec(SB, ["cat", "/var/opt/mxone/notify-record"],
                                         check=False).stdout, 20, "the hook's record")
    hook_env = dict(line.split("=", 1) for line in record.splitlines() if "=" in line)
    assert hook_env["MXONE_EVENT"] in ("transition", "alarm")
    assert "MXONE_KIND=failover" in record and "MXONE_LIM=2" in record
    assert "MXONE_FROM=lim2" in record and f"MXONE_TO={SB}" in record
    decided = failover[-1]["decided"]
    assert f'"decided": "{decided}"' in record
    hook_log = eventually(lambda: [x for x in journalctl(lab, "-o", "cat").splitlines()
                                   if "notify hook 10-record for the failover of LIM 2" in x],
                          20, "the hook's run in the journal")
    assert "recorded the transition of LIM 2" in hook_log[0]
    lines = lab.exec(SB, ["cat", "/var/opt/mxone/agent/timeline.jsonl"]).stdout.splitlines()
    assert any(json.loads(x)["decided"] == decided for x in lines)
    pid = lab.exec(SB, ["systemctl", "show", "-p", "MainPID", "--value", UNIT]).stdout.strip()
    lab.exec(SB, ["systemctl", "restart", UNIT])
    assert lab.exec(SB, ["systemctl", "show", "-p", "MainPID", "--value",
                         UNIT]).stdout.strip() != pid
    eventually(lambda: lab.exec(SB, [AGENT, "ctl", "status"], check=False,
                                timeout=20).returncode == 0, 30, "the restarted agent answers")
    assert failover[-1] in status(lab)["transitions"]

    shown = journalctl(lab, "-o", "short-precise", "MXONE_LIM=2")
    verbose = takeovers(lab)[-1]
    with capsys.disabled():
        print(f"\n$ journalctl -u {UNIT} MXONE_LIM=2\n{shown}")
        print("fields of the takeover's entry: " + json.dumps(
            {k: v for k, v in verbose.items() if not k.startswith("__")}, indent=1))
        print(f"\n$ cat /var/opt/mxone/notify-record   # the notify hook's output\n{record}")
        print("the hook's run in the journal: " + hook_log[0])
        print("after the restart, ctl status transitions: "
              + json.dumps(status(lab)["transitions"], indent=1))
