"""The agent's log in the journal and its timeline on disk, on a lab host booting systemd.

mxone_maintenance on lim1 builds cluster c1 of lim2 (LIM 2, a plain host) and standby1
(systemd 252 as PID 1, the agent as mxone-agent.service). lim2 is cut off: the standby's
failover is in ``journalctl -u mxone-agent``, each sentence with its syslog priority and
the fields MXONE_CLUSTER, MXONE_NODE and MXONE_LIM - ``journalctl -u mxone-agent
MXONE_LIM=2`` shows the LIM's story and nothing else. The agent is restarted: ``ctl
status`` still lists the failover among its transitions (read back from the state dir).
"""

from __future__ import annotations

import json

import pytest
from mxone_lab import Lab

from tests.agent_lab.cluster import eventually
from tests.orchestration.conftest import Admin, real_artefact  # noqa: F401 (a fixture)
# The cluster of the systemd lab's own tests: lim2 and standby1 (systemd) in c1.
from tests.orchestration.test_systemd_lab import AGENT, SB, UNIT, deployed  # noqa: F401

pytestmark = pytest.mark.lab


def journalctl(lab: Lab, *args: str) -> str:
    return lab.exec(SB, ["journalctl", "-u", UNIT, "--no-pager", *args]).stdout


def entries(lab: Lab, *matches: str) -> list[dict[str, str]]:
    out = journalctl(lab, "-o", "json", *matches)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


HOOK = """#!/bin/sh
{ echo "== $MXONE_EVENT"; env | grep '^MXONE_' | sort; } >> /var/opt/mxone/notify-record
echo "recorded the $MXONE_EVENT of LIM $MXONE_LIM"
"""


def status(lab: Lab) -> dict:
    return json.loads(lab.exec(SB, [AGENT, "ctl", "status"], timeout=20).stdout)


def test_the_failover_is_in_the_journal_filterable_by_lim_and_kept_across_a_restart(
        deployed: Admin, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
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

    lab.exec(SB, ["sh", "-c", "install -d -m 0755 /etc/mxone/notify.d && cat > "
                  "/etc/mxone/notify.d/10-record && chmod 0755 /etc/mxone/notify.d/10-record"],
             input=HOOK)
    lab.faults.cut("lim2")
    try:
        eventually(lambda: "takes over LIM 2" in journalctl(lab, "-o", "cat", "MXONE_LIM=2"),
                   30, "the standby's takeover under MXONE_LIM=2", step=0.5)
    finally:
        lab.faults.restore("lim2")
    by_lim = journalctl(lab, "-o", "cat", "MXONE_LIM=2")
    assert f"{SB} declares lim2 dead" in by_lim
    assert f"{SB} takes over LIM 2" in by_lim
    assert "of cluster c1 started" not in by_lim  # not about LIM 2: not under its field
    takeover = [x for x in entries(lab, "MXONE_LIM=2") if "takes over LIM 2" in x["MESSAGE"]]
    assert takeover and takeover[0]["PRIORITY"] == "6"
    assert takeover[0]["MXONE_CLUSTER"] == "c1" and takeover[0]["_TRANSPORT"] == "journal"
    assert entries(lab, "MXONE_LIM=3") == []

    failover = eventually(lambda: [t for t in status(lab)["transitions"]
                                   if t["lim"] == 2 and t["kind"] == "failover"],
                          20, "the failover among the transitions")
    # The hook ran for this very failover: its timeline is the transition's.
    record = eventually(lambda: lab.exec(SB, ["cat", "/var/opt/mxone/notify-record"],
                                         check=False).stdout, 20, "the hook's record")
    hook_env = dict(line.split("=", 1) for line in record.splitlines() if "=" in line)
    assert hook_env["MXONE_EVENT"] in ("transition", "alarm")
    assert "MXONE_KIND=failover" in record and "MXONE_LIM=2" in record
    assert "MXONE_FROM=lim2" in record and f"MXONE_TO={SB}" in record
    decided = failover[0]["decided"]
    assert f'"decided": "{decided}"' in record
    hook_log = eventually(lambda: [x for x in journalctl(lab, "-o", "cat").splitlines()
                                   if "notify hook 10-record for the failover of LIM 2" in x],
                          20, "the hook's run in the journal")
    assert "recorded the transition of LIM 2" in hook_log[0]
    lines = lab.exec(SB, ["cat", "/var/opt/mxone/agent/timeline.jsonl"]).stdout.splitlines()
    assert any(json.loads(x)["decided"] == failover[0]["decided"] for x in lines)
    pid = lab.exec(SB, ["systemctl", "show", "-p", "MainPID", "--value", UNIT]).stdout.strip()
    lab.exec(SB, ["systemctl", "restart", UNIT])
    assert lab.exec(SB, ["systemctl", "show", "-p", "MainPID", "--value",
                         UNIT]).stdout.strip() != pid
    eventually(lambda: lab.exec(SB, [AGENT, "ctl", "status"], check=False,
                                timeout=20).returncode == 0, 30, "the restarted agent answers")
    assert failover[0] in status(lab)["transitions"]

    shown = journalctl(lab, "-o", "short-precise", "MXONE_LIM=2")
    verbose = [x for x in entries(lab, "MXONE_LIM=2") if "takes over" in x["MESSAGE"]][0]
    with capsys.disabled():
        print(f"\n$ journalctl -u {UNIT} MXONE_LIM=2\n{shown}")
        print("fields of the takeover's entry: " + json.dumps(
            {k: v for k, v in verbose.items() if not k.startswith("__")}, indent=1))
        print(f"\n$ cat /var/opt/mxone/notify-record   # the notify hook's output\n{record}")
        print("the hook's run in the journal: " + hook_log[0])
        print("after the restart, ctl status transitions: "
              + json.dumps(status(lab)["transitions"], indent=1))
