"""Issue 8 in the lab, through the real tool on lim1 and the real agents: a LIM that leaves
its cluster while the standby runs it, and manual fallback orders while the regular server
is cut or flapping. A client probes the aliases (ARP rounds and pings) the whole time.

Each test prints its transcript (the tool's output, the probe's findings); run with ``-s``
to see it.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import pytest
from mxone_lab.probe import Prober, ProbeLog

from mxone_maintenance import orchestrate
from tests.agent_lab.cluster import eventually
from tests.orchestration.conftest import Admin

pytestmark = pytest.mark.lab

AGENT = orchestrate.AGENT_BIN
ALIAS = {2: "10.77.0.12", 3: "10.77.0.13"}
NODES = ("lim2", "lim3", "standby1")
UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
try:
    s.sendto(b"WHO", (sys.argv[1], 7100))
    print(s.recv(200).decode())
except OSError:
    print("no answer")
"""


def say(title: str, text: str = "") -> None:
    print(f"\n===== {title}\n{text.rstrip()}" if text else f"\n===== {title}")


# Each check reads an agent's status over the lab: every half second is enough.
wait = functools.partial(eventually, step=0.5)


def who(lab, lim: int) -> str:
    return lab.run_python("client", UDP, args=[ALIAS[lim]], timeout=20).stdout.strip()


def agent_status(lab, host: str) -> dict[str, Any] | None:
    r = lab.exec(host, [AGENT, "ctl", "status"], check=False, timeout=20)
    return json.loads(r.stdout) if r.returncode == 0 else None


def lim_row(st: dict[str, Any] | None, lim: int) -> dict[str, Any] | None:
    return next((x for x in (st or {}).get("lims", []) if x["lim"] == lim), None)


def addresses(lab, host: str) -> list[str]:
    out = lab.exec(host, "ip -o -4 addr show dev eth0").stdout
    return [line.split()[3] for line in out.splitlines()]


def macs(lab) -> dict[str, str]:
    return {lab.hosts[h].mac.lower(): h for h in NODES}


def timeline(log: ProbeLog, alias: str, names: dict[str, str], t0: float) -> str:
    """The ARP rounds for ``alias`` as runs of the same answer: who answered, from when."""
    lines: list[str] = []
    last: frozenset[str] | None = None
    start = count = 0
    rounds = sorted(log.rounds_of(alias), key=lambda r: r.t)
    for r in rounds + [None]:  # type: ignore[list-item]
        key = None if r is None else r.macs
        if r is not None and key == last:
            count += 1
            continue
        if last is not None:
            who_ = ", ".join(sorted(names.get(m, m) for m in last)) or "nobody"
            lines.append(f"  {alias}: from t+{start - t0:6.1f} s, {count:4d} ARP rounds answered "
                         f"by {who_}")
        if r is not None:
            last, start, count = key, r.t, 1
    two = log.two_owner_rounds(alias)
    lines.append(f"  {alias}: rounds with two answers: {len(two)}")
    return "\n".join(lines)


def tracebacks(lab) -> dict[str, list[str]]:
    out = {}
    for h in NODES:
        text = lab.exec(h, "cat /var/log/mxone/agent.log 2>/dev/null || true").stdout
        bad = [line for line in text.splitlines() if "Traceback" in line or "KeyError" in line]
        if bad:
            out[h] = bad
    return out


def lim2_on_the_standby(admin: Admin, lab) -> None:
    """c1 (LIMs 2 and 3, manual fallback, fast timers); lim2 cut until the standby runs LIM 2,
    then back: LIM 2 stays on the standby (no fallback ordered)."""
    admin.build_system()
    admin.settled_status()
    lab.faults.cut("lim2")
    wait(lambda: (lim_row(agent_status(lab, "standby1"), 2) or {}).get("here") == "active",
         60, "LIM 2 runs on standby1")
    lab.faults.restore("lim2")
    wait(lambda: next((p["liveness"] for p in (agent_status(lab, "standby1") or {}).get(
        "peers", []) if p["name"] == "lim2"), None) == "alive", 60, "standby1 hears lim2 again")
    # Cut off, lim2 kept LIM 2 (a partition); back, it yields to the standby (split brain:
    # the regular stops) - the probe starts once it has.
    wait(lambda: (lim_row(agent_status(lab, "lim2"), 2) or {}).get("here") is None, 60,
         "lim2 yields LIM 2 to the standby")
    assert who(lab, 2) == "LIM 2 on standby1"


@pytest.mark.parametrize("how", ["remove-lim", "delete-cluster"])
def test_a_lim_on_the_standby_leaves_its_cluster_and_runs_on_its_own_server(
        admin: Admin, lab, how: str) -> None:
    lim2_on_the_standby(admin, lab)
    names = macs(lab)
    args = ("cluster", "remove-lim", "c1", "2") if how == "remove-lim" else (
        "cluster", "delete", "c1")
    with Prober(lab, "client", [ALIAS[2], ALIAS[3]], duration=240) as probe:
        t0 = time.monotonic()
        plan = admin.run(*args, "--dry-run", check=True)
        say(f"mxone_maintenance {' '.join(args)} --dry-run", plan.stdout)
        r = admin.run(*args, timeout=300)
        say(f"mxone_maintenance {' '.join(args)}  (exit {r.returncode})",
            r.stdout + "\n--- progress (stderr) ---\n" + r.stderr)
        assert r.returncode == 0, r.stdout + r.stderr
        done = time.monotonic()
        wait(lambda: who(lab, 2) == "LIM 2 on lim2", 30, "LIM 2 answers from lim2")
        time.sleep(3)  # the probe watches a while after the change
        assert f"{ALIAS[2]}/24" not in addresses(lab, "standby1")
        assert f"{ALIAS[2]}/24" in addresses(lab, "lim2")
        say("addresses on eth0 after the change", "\n".join(
            f"  {h}: {', '.join(addresses(lab, h))}" for h in NODES))
        st = agent_status(lab, "standby1")
        if how == "remove-lim":
            assert st is not None and [x["lim"] for x in st["lims"]] == [3]
            assert st["retiring"] == [] and 2 not in [x["lim"] for x in st["lims"]]
            # the other LIM still fails over
            lab.faults.cut("lim3")
            wait(lambda: who(lab, 3) == "LIM 3 on standby1", 60, "LIM 3 fails over to standby1")
            failed_over = time.monotonic()
            time.sleep(2)
        else:
            assert st is None, "the standby's agent was stopped when the cluster was deleted"
            assert f"{ALIAS[3]}/24" not in addresses(lab, "standby1")
            assert who(lab, 3) == "LIM 3 on lim3"
        log = probe.stop()
    # lim3 stays cut while the client watches: when it comes back, both it and the standby
    # run LIM 3 for a moment (a partition healing, resolved by the split-brain rule)
    lab.faults.restore("lim3")
    status = admin.run("cluster", "status", timeout=120)
    say("mxone_maintenance cluster status (after)", status.stdout)
    say("probe from the client (ARP rounds, t = 0 at the dry run; the change ended at "
        f"t+{done - t0:.1f} s)", "\n".join(timeline(log, a, names, t0) for a in ALIAS.values()))
    for a in ALIAS.values():
        assert log.two_owner_rounds(a) == [], f"two hosts answered for {a}"
    after = done + 1.0
    assert log.answering_macs(ALIAS[2], since=after) == {lab.hosts["lim2"].mac.lower()}
    if how == "remove-lim":
        assert lab.hosts["standby1"].mac.lower() in log.answering_macs(ALIAS[3],
                                                                        since=failed_over)
    else:
        assert log.answering_macs(ALIAS[3], since=after) == {lab.hosts["lim3"].mac.lower()}
    bad = tracebacks(lab)
    say("agent logs: lines with Traceback or KeyError", json.dumps(bad) if bad else "none")
    assert bad == {}


def restart_agent(lab, host: str) -> None:
    lab.exec(host, [AGENT, "node", "restart"], input="{}", timeout=60)


def test_fallback_orders_while_lim2_is_cut_and_while_it_flaps(admin: Admin, lab) -> None:
    admin.build_system()
    admin.settled_status()
    names = macs(lab)
    sb_mac, lim2_mac = lab.hosts["standby1"].mac.lower(), lab.hosts["lim2"].mac.lower()
    lab.faults.cut("lim2")
    wait(lambda: (lim_row(agent_status(lab, "standby1"), 2) or {}).get("here") == "active",
         60, "LIM 2 runs on standby1")
    refused = admin.run("cluster", "fallback", "2", timeout=120)
    say(f"lim2 cut: mxone_maintenance cluster fallback 2  (exit {refused.returncode})",
        refused.stdout)
    assert refused.returncode != 0 and "FAILED" in refused.stdout
    assert "fallback of LIM 2 refused: lim2 missed" in refused.stdout
    pending = admin.run("cluster", "fallback", "2", "--wait", "600", timeout=120)
    say(f"lim2 cut: mxone_maintenance cluster fallback 2 --wait 600  (exit "
        f"{pending.returncode})", pending.stdout)
    assert pending.returncode == 0 and "PENDING" in pending.stdout
    assert "fallback of LIM 2 waits for lim2 to be ready: lim2 missed" in pending.stdout
    status = admin.run("cluster", "status", timeout=120)
    say("lim2 cut: mxone_maintenance cluster status", status.stdout)
    assert "Fallback of LIM 2 waits for lim2 to be ready: lim2 missed" in status.stdout
    cancel = admin.run("cluster", "fallback", "2", "--cancel", timeout=120)
    say(f"mxone_maintenance cluster fallback 2 --cancel  (exit {cancel.returncode})",
        cancel.stdout)
    assert cancel.returncode == 0 and "fallback of LIM 2 cancelled" in cancel.stdout

    with Prober(lab, "client", [ALIAS[2]], duration=400) as probe:
        t0 = time.monotonic()
        lab.faults.restore("lim2")
        wait(lambda: next((p["liveness"] for p in (agent_status(lab, "standby1") or {}).get(
            "peers", []) if p["name"] == "lim2"), None) == "alive", 60, "standby1 hears lim2")
        # Cut off, lim2 kept LIM 2 (a partition); back, it yields to the standby (split
        # brain, the regular stops): from then on only the standby may answer until the order.
        wait(lambda: (lim_row(agent_status(lab, "lim2"), 2) or {}).get("here") is None, 60,
             "lim2 yields LIM 2 to the standby")
        healed = time.monotonic()
        # lim2 flaps: its agent restarts twice. Coming back was its first reappearance; each
        # restart is one more, and the standby's hold-down for LIM 2 doubles: 30 s, 60 s.
        for hold in (30.0, 60.0):
            restart_agent(lab, "lim2")
            wait(lambda hold=hold: (lim_row(agent_status(lab, "standby1"), 2) or {}).get(
                "hold_down_s") == hold, 60, f"standby1 holds LIM 2 down for {hold:g} s")
        flapped = time.monotonic()
        order = admin.run("cluster", "fallback", "2", timeout=120)
        say(f"lim2 back, then its agent restarted twice: mxone_maintenance cluster fallback 2  "
            f"(exit {order.returncode})", order.stdout)
        assert order.returncode == 0 and "PENDING" in order.stdout
        assert "fallback of LIM 2 waits for lim2 to be ready: lim2 came back 3 times" in order.stdout
        status = admin.run("cluster", "status", timeout=120)
        say("lim2 flapping: mxone_maintenance cluster status", status.stdout)
        assert "Fallback of LIM 2 waits for lim2 to be ready: lim2 came back 3 times" in status.stdout
        # While the hold-down lasts LIM 2 stays on the standby; then the order is carried out.
        watched = []
        last_waiting = flapped
        deadline = time.monotonic() + 200
        while True:
            st = agent_status(lab, "standby1")
            row = lim_row(st, 2) or {}
            orders = (st or {}).get("fallback_orders", [])
            watched.append((round(time.monotonic() - t0, 1), row.get("here"),
                            row.get("hold_down_left_s"), orders[0]["state"] if orders else None))
            if orders and orders[0]["waits_for"]:
                assert row.get("here") == "active", (row, orders)
                last_waiting = time.monotonic()
            if not orders and row.get("owner") == "regular":
                break
            assert time.monotonic() < deadline, watched[-5:]
            time.sleep(1.0)
        handed = time.monotonic()
        wait(lambda: who(lab, 2) == "LIM 2 on lim2", 30, "LIM 2 answers from lim2")
        time.sleep(2)
        log = probe.stop()
    say("standby1 while the order waited (t, LIM 2 here, hold-down left, order)",
        "\n".join(str(w) for w in watched[::5] + watched[-2:]))
    ended = (agent_status(lab, "standby1") or {}).get("fallback_orders_ended", [])
    fallback = [t for t in (agent_status(lab, "standby1") or {}).get("transitions", [])
                if t["lim"] == 2 and t["kind"] == "fallback"]
    say("standby1: the order's end and the fallback transition",
        json.dumps(ended[-1:], indent=1) + "\n" + json.dumps(fallback[-1:], indent=1))
    assert fallback and "manual fallback of LIM 2 ordered and lim2 is ready" in fallback[-1]["reason"]
    say(f"probe from the client (t = 0 when lim2's network came back; lim2 had yielded LIM 2 "
        f"(split brain of the healed partition) at t+{healed - t0:.1f} s; flapping ended at "
        f"t+{flapped - t0:.1f} s; the order was last seen waiting at t+{last_waiting - t0:.1f} "
        f"s; LIM 2 seen on lim2 at t+{handed - t0:.1f} s)",
        timeline(log, ALIAS[2], names, t0))
    assert log.two_owner_rounds(ALIAS[2], since=healed) == []
    # until the last moment the standby still ran LIM 2 with the order waiting, only it answered
    assert log.answering_macs(ALIAS[2], since=healed, until=last_waiting - 0.3) == {sb_mac}
    assert lim2_mac in log.answering_macs(ALIAS[2], since=handed)
    bad = tracebacks(lab)
    say("agent logs: lines with Traceback or KeyError", json.dumps(bad) if bad else "none")
    assert bad == {}
