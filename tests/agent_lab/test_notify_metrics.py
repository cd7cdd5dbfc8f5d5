"""Notify hooks and metrics with real agents: a failover runs the standby's hook with the
transition's variables, and ``ctl metrics`` and the node_exporter textfile show the LIM on
the standby and the heartbeats counted."""

from __future__ import annotations

import json
import sys

import pytest
from mxone_lab import Lab

from tests.agent.test_metrics import parse, value
from tests.agent_lab.cluster import STANDBY, Cluster, eventually, wait_answer

pytestmark = pytest.mark.lab
MARGIN = 5.0
HOOK_LOG = "/var/log/mxone/notify-hook.log"
TEXTFILE_DIR = "/var/lib/node_exporter/textfile_collector"
RECORD = f"""#!/bin/sh
{{ echo "== $MXONE_EVENT"; env | grep '^MXONE_' | sort; }} >> {HOOK_LOG}
echo "recorded the $MXONE_EVENT ($MXONE_KIND$MXONE_ALARM) of LIM $MXONE_LIM"
"""


def events(text: str) -> list[dict[str, str]]:
    """The hook's records: one dict of MXONE_ variables per event."""
    out = []
    for block in text.split("== ")[1:]:
        lines = block.strip().splitlines()[1:]
        out.append(dict(line.split("=", 1) for line in lines))
    return out


def test_a_failover_runs_the_standbys_hook_and_shows_in_its_metrics(lab: Lab) -> None:
    # 1 s detection: a loaded machine's stall of a few tenths of a second (the hook's run
    # has none of its own) lapses no lease and refutes no peer while the metrics are read.
    cluster = Cluster(lab, regulars=("lim2",), interval=0.2, misses=5)
    lab.exec(STANDBY, "mkdir -p -m 0755 /etc/mxone/notify.d && cd /etc/mxone/notify.d && "
                      "cat > 10-record && chmod 0755 10-record && "
                      "printf '#!/bin/sh\\necho never\\n' > 20-open && chmod 0777 20-open && "
                      f"mkdir -p {TEXTFILE_DIR}", input=RECORD)
    try:
        with cluster.logs_on_failure(STANDBY):
            cluster.start()
            assert wait_answer(lab, 2, "lim2")[0]
            cluster.kill_agent("lim2")
            cluster.kill_service("lim2", 2)
            ok, out = wait_answer(lab, 2, STANDBY, timeout=cluster.detection + MARGIN)
            assert ok, out

            def recorded() -> list[dict[str, str]]:
                text = lab.exec(STANDBY, f"cat {HOOK_LOG} 2>/dev/null; true").stdout
                found = events(text)
                kinds = {e.get("MXONE_KIND") or e.get("MXONE_ALARM") for e in found}
                return found if {"failover", "lim-running-on-standby"} <= kinds else []

            found = eventually(recorded, MARGIN, "the hook recorded the failover and alarm")
            [t] = [e for e in found if e["MXONE_EVENT"] == "transition"]
            assert {k: t[k] for k in ("MXONE_CLUSTER", "MXONE_SERVER", "MXONE_LIM",
                                      "MXONE_KIND", "MXONE_FROM", "MXONE_TO",
                                      "MXONE_RESULT")} == {
                "MXONE_CLUSTER": "cluster1", "MXONE_SERVER": STANDBY, "MXONE_LIM": "2",
                "MXONE_KIND": "failover", "MXONE_FROM": "lim2", "MXONE_TO": STANDBY,
                "MXONE_RESULT": "ok"}
            assert "lim2" in t["MXONE_REASON"]
            steps = json.loads(t["MXONE_TIMELINE"])
            assert {"detected", "decided", "alias_up", "first_garp"} <= set(steps)
            [a] = [e for e in found if e["MXONE_EVENT"] == "alarm"]
            assert (a["MXONE_ALARM"], a["MXONE_ALARM_STATE"], a["MXONE_LIM"],
                    a["MXONE_SEVERITY"]) == ("lim-running-on-standby", "raised", "2", "3")
            log = cluster.log(STANDBY)
            assert "notify hook 10-record for the failover of LIM 2: done" in log
            assert ("notify hook /etc/mxone/notify.d/20-open is not run: its mode 0777 lets "
                    "group or others write it") in log
            assert "never" not in log

            def ctl_metrics() -> tuple[str, dict] | None:
                r = lab.exec(STANDBY, [sys.executable, "-m", "mxone_agent", "ctl", "metrics"])
                series = parse(r.stdout)[1]
                return (r.stdout, series) if value(
                    series, "mxone_lim_location", lim="2", server=STANDBY) == 1 else None

            text, series = eventually(ctl_metrics, MARGIN, "ctl metrics shows LIM 2 here")
            assert value(series, "mxone_lim_location", lim="2", server="lim2") == 0
            assert value(series, "mxone_heartbeats_received_total", peer="lim2") >= 5
            assert value(series, "mxone_peer_alive", peer="lim2") == 0
            assert value(series, "mxone_peer_deaths_total", peer="lim2") == 1
            assert value(series, "mxone_peer_detection_seconds", peer="lim2") >= \
                cluster.detection
            assert value(series, "mxone_transition_takeover_seconds", lim="2",
                         kind="failover") > 0
            assert value(series, "mxone_alarms_active", code="lim-running-on-standby",
                         severity="3") == 1
            assert value(series, "mxone_notify_hook_runs_total", result="ok") >= 2

            def textfile() -> dict:
                text = lab.exec(STANDBY, f"cat {TEXTFILE_DIR}/mxone_agent.prom 2>/dev/null; "
                                "true").stdout
                return parse(text)[1] if text else {}

            eventually(lambda: textfile().get(
                ("mxone_lim_location", frozenset({("lim", "2"), ("server", STANDBY)}))) == 1,
                MARGIN + 5, "the textfile shows LIM 2 on the standby")
            print("--- the hook's record on the standby:")
            print(lab.exec(STANDBY, f"cat {HOOK_LOG}").stdout)
            print("--- the standby's log of its hooks:")
            print("\n".join(x for x in log.splitlines() if "notify" in x))
            print(f"--- mxone-agent ctl metrics on {STANDBY}:")
            print(text)
    finally:
        cluster.stop_all()
        lab.exec(STANDBY, "rm -rf /var/lib/node_exporter", check=False)
