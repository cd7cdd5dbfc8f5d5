"""End to end: the PM/SNM pair on two systemd hosts (lim1 the master, standby1 the
standby), keepalived, PostgreSQL 15, nginx and the reference application running as the
Debian units, driven through ``python3 -m mxone_web.stack`` on each host as root, and
seen from the client host through the virtual IP.

The tests share one lab and run in order: configure (master, then standby) and write
through the VIP; kill the master (its switch port cut, its processes SIGKILLed by PID):
the standby answers with every committed row; bring the master back (a power cycle) and
remove redundancy: two stand-alone servers, each serving its own page. The pair and its
steps are :mod:`mxone_lab.pair`'s (as in the benchmark, scripts/bench-pmsnm).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mxone_lab import Lab
from mxone_lab.pair import CLIENT, MASTER, STANDBY, VIP, Pair, spec
from mxone_web.stack import keepalived

from tests.conftest import systemd_lab_up
from tests.lab.test_lab_systemd import eventually

pytestmark = pytest.mark.lab

#: After keepalived's detection (3 adverts + skew): the promotion, the notify hook's
#: python, the first answered request - on a loaded 2-core machine.
TAKEOVER_MARGIN = 6.0


# The client's side: plain HTTP from the client host (urllib, the project's python). Not
# mxone_lab.web_client: its writes give up after 2 s (a benchmark's choice), these wait 8 s
# so that a commit held up by a vanished standby shows its whole wait; and "until" times the
# takeover from the client itself.
CLIENT_PY = r"""
import json, sys, time, urllib.error, urllib.parse, urllib.request

def get(url):
    try:
        with urllib.request.urlopen(url + "?format=json", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}

def post(url, body):
    data = urllib.parse.urlencode({"body": body}).encode()
    try:
        with urllib.request.urlopen(url + "?format=json", data=data, timeout=8) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return {"error": f"{exc.code} {exc.read().decode(errors='replace')}"}
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}

cmd, url = sys.argv[1], sys.argv[2]
if cmd == "get":
    print(json.dumps(get(url)))
elif cmd == "write":  # write rows for SECONDS, one line per answer
    prefix, seconds = sys.argv[3], float(sys.argv[4])
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
        before = time.monotonic()
        r = post(url, f"{prefix}-{n}")
        r["t"] = time.monotonic()
        r["took"] = r["t"] - before
        print(json.dumps(r), flush=True)
        time.sleep(0.05)
elif cmd == "until":  # poll GET every 50 ms until SERVER answers; the seconds it took
    server, timeout = sys.argv[3], float(sys.argv[4])
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        r = get(url)
        if r.get("server") == server:
            print(json.dumps({"after": time.monotonic() - start, "page": r}))
            break
        time.sleep(0.05)
    else:
        print(json.dumps({"after": None, "last": r}))
"""


def client(lab: Lab, *args: str, timeout: float = 60.0) -> Any:
    r = lab.exec(CLIENT, [sys.executable, "-c", CLIENT_PY, *args], timeout=timeout)
    return [json.loads(line) for line in r.stdout.splitlines()]


def committed(answers: list[dict[str, Any]]) -> set[int]:
    return {a["id"] for a in answers if "id" in a}


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """The lab with lim1 and standby1 booting systemd, Debian's units unmasked on both (the
    lab masks what the machine enables), configured as a pair: master first."""
    with systemd_lab_up(spec()) as lab:
        p = Pair(lab)
        started = time.monotonic()
        p.configure()
        print(f"\n[pmsnm] both servers configured in {time.monotonic() - started:.1f} s")
        yield p


def test_configured_pair_serves_the_vip_from_the_master_with_sync_replication(
    pair: Pair,
) -> None:
    lab = pair.lab
    first = eventually("the VIP answers from lim1",
                       lambda: (p := pair.page(VIP)).get("server") == MASTER and p)
    assert first["role"] == "primary" and first["package"] == "mxone_snm-7.0.0.0.70"
    answers = client(lab, "write", f"http://{VIP}/mp", "before", "1.0")
    ids = committed(answers)
    assert ids and all(a.get("server") == MASTER for a in answers), answers
    st = eventually("standby1 streams synchronously",
                    lambda: (s := pair.status(MASTER))["replication"] == "streaming (sync)" and s)
    assert st["keepalived_running"] and st["holds_vip"] and st["db_role"] == "primary"
    assert st["replication_peer"] == STANDBY
    sb = pair.status(STANDBY)
    assert sb["db_role"] == "standby" and sb["keepalived_running"] and not sb["holds_vip"]
    assert sb["replication"] == "streaming" and sb["replication_peer"] == MASTER
    # remote_apply: every committed row is already readable on the standby.
    on_standby = pair.page("10.77.0.20")
    assert on_standby["server"] == STANDBY and on_standby["role"] == "standby"
    assert ids <= {r["id"] for r in on_standby["rows"]}
    journal = lab.exec(MASTER, "journalctl -t mxone-web --no-pager -o cat").stdout
    assert "became MASTER" in journal and "synchronous replication on" in journal


def test_standby_away_degrades_to_asynchronous_and_back_both_logged(pair: Pair) -> None:
    lab = pair.lab
    lab.faults.cut(STANDBY)
    t0 = time.monotonic()
    # Commits wait for the vanished standby at most the watcher's grace period, then go on.
    answers = client(lab, "write", f"http://{VIP}/mp", "degraded", "6.0")
    waits = [a["took"] for a in answers]
    assert committed(answers) and answers[-1].get("server") == MASTER, answers[-3:]

    def journal() -> str:
        return lab.exec(MASTER, "journalctl -t mxone-web --no-pager -o cat").stdout

    eventually("lim1 logs the degradation", lambda: "degraded to asynchronous" in journal())
    assert pair.status(MASTER)["replication"] == "no standby connected"
    lab.faults.restore(STANDBY)
    eventually("standby1 streams synchronously again",
               lambda: pair.status(MASTER)["replication"] == "streaming (sync)", timeout=45)
    assert journal().count("synchronous replication on") == 2
    # Cut off, standby1 heard no master and took the VIP alone, but never promoted.
    sb = pair.status(STANDBY)
    assert sb["db_role"] == "standby" and not sb["holds_vip"], sb
    print(f"\n[pmsnm] standby away and back: {time.monotonic() - t0:.1f} s; "
          f"{len(committed(answers))} rows committed meanwhile, the longest commit "
          f"{max(waits):.2f} s")
    assert max(waits) < 8.0
    # Every row committed while asynchronous reached the standby once it streamed again.
    assert committed(answers) <= {r["id"] for r in pair.page("10.77.0.20")["rows"]}


def test_master_killed_the_standby_answers_with_every_committed_row(pair: Pair) -> None:
    lab = pair.lab
    eventually("standby1 streams synchronously",
               lambda: pair.status(MASTER)["replication"] == "streaming (sync)")
    writer = lab.popen(CLIENT, [sys.executable, "-c", CLIENT_PY, "write", f"http://{VIP}/mp",
                                "during", str(keepalived.DETECTION_SECONDS + TAKEOVER_MARGIN + 3)],
                       stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the writer is committing rows on lim1 when it dies
    t0 = time.monotonic()
    pids = pair.kill_master()  # its units' PIDs read, then its port cut, then they are killed
    assert len(pids) >= 5, pids
    took = client(lab, "until", f"http://{VIP}/mp", STANDBY, "30")[0]
    assert took["after"] is not None, took
    outage = time.monotonic() - t0
    out, _ = writer.communicate(timeout=60)
    answers = [json.loads(line) for line in out.splitlines()]
    ids = committed(answers)
    bound = keepalived.DETECTION_SECONDS + TAKEOVER_MARGIN
    print(f"\n[pmsnm] VIP answered from {STANDBY} {outage:.2f} s after the kill "
          f"(bound {bound:.2f} s); {len(ids)} rows committed by the writer")
    assert outage < bound
    after = pair.page(VIP)
    assert after["server"] == STANDBY and after["role"] == "primary"
    stored = {r["id"] for r in after["rows"]}
    lost = {i for i in ids if i not in stored}
    assert not lost, f"committed rows lost in the failover: {sorted(lost)}"
    new = client(lab, "write", f"http://{VIP}/mp", "after", "0.5")
    assert committed(new) and all(a.get("server") == STANDBY for a in new), new
    journal = lab.exec(STANDBY, "journalctl -t mxone-web --no-pager -o cat").stdout
    assert "promoting the standby database" in journal


def test_master_back_fallback_returns_the_vip_with_nothing_lost(pair: Pair) -> None:
    lab = pair.lab
    # Plugged in, then powered on (the power cycle also ends the connections its killed
    # processes left, retransmitting from the VIP, which would keep its old network
    # namespace alive).
    t0 = time.monotonic()
    pair.bring_back()
    print(f"\n[pmsnm] lim1 back (power cycle, keepalived running) in "
          f"{time.monotonic() - t0:.1f} s")
    # Manual fallback: the old primary comes back fenced and the VIP stays on standby1.
    assert pair.page(VIP)["server"] == STANDBY
    before = {r["id"] for r in pair.page(VIP)["rows"]}
    t0 = time.monotonic()
    writer = lab.popen(CLIENT, [sys.executable, "-c", CLIENT_PY, "write", f"http://{VIP}/mp",
                                "fallback", "25"], stdout=subprocess.PIPE, text=True)
    out = pair.stack(MASTER, "fallback", "master")
    took = time.monotonic() - t0
    assert "rewound" in out or "base backup" in out, out
    pair.stack(STANDBY, "rejoin", "standby")
    writer.terminate()
    answers = [json.loads(line) for line in writer.communicate(timeout=30)[0].splitlines()]
    after = pair.page(VIP)
    assert after["server"] == MASTER and after["role"] == "primary", after
    stored = {r["id"] for r in after["rows"]}
    lost = (before | committed(answers)) - stored
    assert not lost, f"committed rows lost in the fallback: {sorted(lost)}"
    eventually("standby1 streams synchronously from lim1",
               lambda: pair.status(MASTER)["replication"] == "streaming (sync)")
    assert pair.status(STANDBY)["db_role"] == "standby"
    print(f"\n[pmsnm] fallback on lim1 took {took:.1f} s; {len(committed(answers))} rows "
          "committed by the writer meanwhile, none lost")


def test_remove_leaves_two_stand_alone_servers(pair: Pair) -> None:
    lab = pair.lab
    assert pair.page(VIP)["server"] == MASTER
    pair.stack(MASTER, "remove", "master")
    pair.stack(STANDBY, "remove", "standby")
    for host, address in ((MASTER, "10.77.0.11"), (STANDBY, "10.77.0.20")):
        st = pair.status(host)
        assert not st["keepalived_running"] and not st["holds_vip"], st
        assert st["db_role"] == "primary"
        assert lab.exec(host, ["systemctl", "is-enabled", "keepalived"],
                        check=False).stdout.strip() == "disabled"
        p = pair.page(address)
        assert p["server"] == host and p["role"] == "primary", p
        wrote = client(lab, "write", f"http://{address}/mp", f"alone-{host}", "0.2")
        assert committed(wrote) and all(a.get("server") == host for a in wrote), wrote
    assert "error" in pair.page(VIP)
