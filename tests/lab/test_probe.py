"""The alias probe: a client's view of who answers for an alias.

Pure tests of the log analysis, the options and the frames; then the probe on the lab's
``client`` against an alias that the test moves by hand between lim2 and standby1, as the
product would (and, once, as it must never: on both at the same time).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from mxone_lab import Lab, frames, probe, probe_loop
from mxone_lab.probe import ProbeError, ProbeLog, ProbeOptions, Prober

ALIAS = "10.77.0.52"
T = TypeVar("T")

# ------------------------------------------------------------------ pure: the log

A, B = "02:77:00:00:00:0c", "02:77:00:00:00:14"
LOG = "\n".join(
    json.dumps(r)
    for r in [
        {"t": 10.0, "kind": "start", "aliases": [ALIAS], "arp_every": 0.1, "icmp_every": 0.01},
        {"t": 10.1, "kind": "arp", "alias": ALIAS, "macs": [A]},
        {"t": 10.15, "kind": "icmp", "alias": ALIAS, "mac": A, "seq": 0},
        {"t": 10.2, "kind": "arp", "alias": ALIAS, "macs": [A, B]},  # both answer
        {"t": 10.25, "kind": "icmp", "alias": ALIAS, "mac": A, "seq": 1},
        {"t": 10.3, "kind": "arp", "alias": ALIAS, "macs": [B]},
        {"t": 10.35, "kind": "garp", "alias": ALIAS, "mac": B, "op": 1},
        {"t": 10.4, "kind": "arp", "alias": ALIAS, "macs": []},  # nobody
        {"t": 10.95, "kind": "icmp", "alias": ALIAS, "mac": B, "seq": 7},  # 0.7 s gap
        {"t": 11.0, "kind": "arp", "alias": ALIAS, "macs": [B]},
        {"t": 11.05, "kind": "icmp", "alias": ALIAS, "mac": B, "seq": 8},
        {"t": 11.1, "kind": "arp", "alias": "10.77.0.53", "macs": [A]},  # another alias
        {"t": 11.3, "kind": "summary", "reason": "signal", "sent": {ALIAS: {"arp": 5}}},
    ]
)


def test_probe_log_answers_the_invariant_questions() -> None:
    log = ProbeLog.parse(LOG + '\n{"t": 11.4, "kind": "icmp", "al')  # a torn last line
    assert log.complete and log.began == 10.0 and log.end == 11.3
    assert len(log.rounds_of(ALIAS)) == 5 and len(log.replies_of(ALIAS)) == 4
    assert log.sent(ALIAS) == {"arp": 5} and log.sent("10.77.0.99") == {}

    assert log.two_owner_rounds(ALIAS) == [(10.2, frozenset({A, B}))]
    assert log.two_owner_rounds(ALIAS, since=10.25) == []
    assert log.two_owner_rounds("10.77.0.53") == []
    assert log.answering_macs(ALIAS) == {A, B}
    assert log.answering_macs(ALIAS, since=10.3) == {B}  # a GARP announces, does not answer
    assert log.answering_macs(ALIAS, since=10.4, until=10.9) == set()
    assert [(g.t, g.mac) for g in log.garps_of(ALIAS)] == [(10.35, B)]

    assert log.outage(ALIAS, since=10.0) == pytest.approx(0.7)  # between two replies
    assert log.outage(ALIAS, since=10.0, until=10.5) == pytest.approx(0.25)  # still going on
    assert log.outage(ALIAS, since=10.9) == pytest.approx(0.25)  # last reply -> end of log
    assert log.outage(ALIAS, since=10.9, until=99) == pytest.approx(0.25)  # not past the end
    assert log.outage(ALIAS, since=10.3, until=10.9) is None  # never answered in the window
    assert log.first_reply_from(ALIAS, B) == 10.95
    assert log.first_reply_from(ALIAS, A, since=10.2) == 10.25
    assert log.last_reply_from(ALIAS, A) == 10.25
    assert log.last_reply_from(ALIAS, B, until=11.0) == 10.95
    assert log.first_reply_from(ALIAS, "02:00:00:00:00:01") is None

    assert log.owner_after(ALIAS, 10.0) is None  # two MACs
    assert log.owner_after(ALIAS, 10.3) is None  # a round nobody answered
    assert log.owner_after(ALIAS, 10.5) == B
    assert log.owner_after(ALIAS, 11.2) is None  # nothing seen


def test_a_killed_probes_log_still_reads() -> None:
    cut = LOG.splitlines()[:6]
    log = ProbeLog.parse("\n".join(cut))
    assert not log.complete and log.end == 10.3 and log.sent(ALIAS) == {}
    assert ProbeLog.parse("").end is None


# -------------------------------------------------------------- pure: options, frames


def test_options_name_every_broken_rule_at_once() -> None:
    assert probe.option_problems(ProbeOptions(aliases=(ALIAS,))) == []
    bad = ProbeOptions(
        aliases=("10.77.0.300", ALIAS, ALIAS),
        arp_every=0.001,
        icmp_every=-1,
        duration=0,
        max_events=0,
        arp_sender="spy",
    )
    problems = probe.option_problems(bad)
    assert problems == [
        "alias '10.77.0.300' is not an IPv4 address",
        "aliases 10.77.0.300, 10.77.0.52, 10.77.0.52 repeat an address",
        "--arp-every 0.001 is invalid: 0 (off) or 0.02..60 s",
        "--icmp-every -1 is invalid: 0 (off) or 0.002..60 s",
        "--duration 0 is invalid: more than 0, at most 3600 s",
        "--max-events 0 is invalid: 1..10000000",
        "--arp-sender 'spy' is invalid: one of client, observer",
    ]
    with pytest.raises(ProbeError, match="--duration 0 is invalid"):
        Prober(None, "client", [ALIAS], duration=0)  # type: ignore[arg-type]


def test_aliases_outside_the_interfaces_subnet_are_refused() -> None:
    assert probe_loop.subnet_problems([ALIAS, "10.77.0.254"], "10.77.0.100", 24) == []
    assert probe_loop.subnet_problems(
        ["10.78.0.1", "10.77.0.0", "10.77.0.255", "10.77.0.100"], "10.77.0.100", 24
    ) == [
        "alias 10.78.0.1 is not in the interface's subnet 10.77.0.0/24",
        "alias 10.77.0.0 is the subnet 10.77.0.0/24's network or broadcast address",
        "alias 10.77.0.255 is the subnet 10.77.0.0/24's network or broadcast address",
        "alias 10.77.0.100 is the probing host's own address",
    ]


def test_frames_are_well_formed() -> None:
    mac = bytes.fromhex("027700000064")
    own, alias = socket.inet_aton("10.77.0.100"), socket.inet_aton(ALIAS)
    frame = frames.arp_frame(1, mac, own, alias)
    assert len(frame) == 60 and frame[:6] == b"\xff" * 6 and frame[6:12] == mac
    assert frames.parse_arp(frame) == frames.ArpSeen(1, mac, own, alias)
    assert frames.parse_arp(frame[:41]) is None

    echo = frames.echo_request(0x1234, 70000)
    assert frames.inet_checksum(echo) == 0  # a valid checksum sums to zero
    assert struct.unpack("!BBHHH", echo[:8])[3:] == (0x1234, 70000 & 0xFFFF)
    # The same echo, answered: Ethernet + a 20-byte IP header + type 0.
    ip = bytes([0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 1, 0, 0]) + alias + own
    reply = mac + bytes.fromhex("02770000000c") + b"\x08\x00" + ip + b"\x00" + echo[1:]
    assert frames.parse_echo_reply(reply) == (bytes.fromhex("02770000000c"), alias, 0x1234, 4464)
    assert frames.parse_echo_reply(frame) is None

    program = frames.echo_reply_filter(0x1234)
    drop = len(program) - 1
    assert program[drop] == (0x06, 0, 0, 0)
    for i, (code, jt, jf, _) in enumerate(program):
        if code & 0x07 == 0x05:  # a jump: both branches stay inside the program
            assert i + 1 + jt <= drop and i + 1 + jf <= drop


# ------------------------------------------------------------------------ the lab


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """``check()`` once it is truthy; fails naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


def add_alias(lab: Lab, host: str) -> None:
    lab.exec(host, ["ip", "addr", "add", f"{ALIAS}/24", "dev", "eth0"])


def del_alias(lab: Lab, host: str, check: bool = True) -> None:
    lab.exec(host, ["ip", "addr", "del", f"{ALIAS}/24", "dev", "eth0"], check=check)


@pytest.fixture
def alias_on_lim2(lab: Lab) -> Any:
    """ALIAS on lim2; afterwards removed wherever a test put it."""
    add_alias(lab, "lim2")
    yield lab
    for host in ("lim2", "standby1"):
        del_alias(lab, host, check=False)


@pytest.mark.lab
def test_one_owner_answers_every_round_and_every_echo(alias_on_lim2: Lab) -> None:
    lab = alias_on_lim2
    lim2 = lab.hosts["lim2"].mac
    with Prober(lab, "client", [ALIAS], duration=30) as p:
        assert p.start_record["mac"] == lab.hosts["client"].mac
        wait_for(lambda: len(p.log().rounds_of(ALIAS)) >= 10, "10 ARP rounds")
    log = p.log()

    assert log.complete and log.summary is not None and log.summary["reason"] == "signal"
    rounds, replies = log.rounds_of(ALIAS), log.replies_of(ALIAS)
    assert len(rounds) >= 10 and log.sent(ALIAS)["arp"] >= len(rounds)
    assert {r.macs for r in rounds} == {frozenset({lim2})}
    assert len(replies) >= 0.9 * log.sent(ALIAS)["icmp"]
    assert {r.mac for r in replies} == {lim2}
    seqs = [r.seq for r in replies]
    assert seqs == sorted(set(seqs))
    assert log.two_owner_rounds(ALIAS) == []
    assert log.owner_after(ALIAS, log.began or 0) == lim2
    assert log.garps_of(ALIAS) == []


@pytest.mark.lab
def test_two_servers_answering_for_one_alias_are_reported(alias_on_lim2: Lab) -> None:
    lab = alias_on_lim2
    lim2, sb = lab.hosts["lim2"].mac, lab.hosts["standby1"].mac
    with Prober(lab, "client", [ALIAS], duration=30) as p:
        wait_for(lambda: len(p.log().rounds_of(ALIAS)) >= 5, "5 ARP rounds")
        t_adding = time.monotonic()
        add_alias(lab, "standby1")  # the state the product must never produce
        t_both = time.monotonic()
        wait_for(lambda: len(p.log().rounds_of(ALIAS, since=t_both)) >= 5, "5 more rounds")
        t_removing = time.monotonic()
        del_alias(lab, "standby1")
        t_one = time.monotonic()
        wait_for(lambda: len(p.log().rounds_of(ALIAS, since=t_one)) >= 5, "5 more rounds")
    log = p.log()

    assert log.two_owner_rounds(ALIAS, until=t_adding) == []
    # Rounds that started once both held the alias and ended before one let it go.
    both = log.rounds_of(ALIAS, since=t_both, until=t_removing - 0.1)
    assert len(both) >= 4
    assert log.two_owner_rounds(ALIAS, since=t_both, until=t_removing - 0.1) == [
        (r.t, frozenset({lim2, sb})) for r in both
    ]
    assert log.answering_macs(ALIAS) == {lim2, sb}
    assert log.owner_after(ALIAS, t_both) is None
    assert log.two_owner_rounds(ALIAS, since=t_one) == []
    assert log.owner_after(ALIAS, t_one) == lim2


@pytest.mark.lab
def test_gratuitous_arp_moves_the_client_and_outage_measures_the_gap(alias_on_lim2: Lab) -> None:
    lab = alias_on_lim2
    lim2, sb = lab.hosts["lim2"].mac, lab.hosts["standby1"].mac
    # observer: the probe's own ARP never moves the client's cache, only the GARP does.
    with Prober(lab, "client", [ALIAS], duration=30, arp_sender="observer") as p:
        wait_for(lambda: len(p.log().replies_of(ALIAS)) >= 20, "20 echo replies from lim2")
        t_del = time.monotonic()
        del_alias(lab, "lim2")
        add_alias(lab, "standby1")
        t_added = time.monotonic()
        wait_for(lambda: len(p.log().rounds_of(ALIAS, since=t_added)) >= 3, "3 rounds")
        t_garp = time.monotonic()
        lab.run_python(
            "standby1", f"from mxone_lab import frames; frames.announce('eth0', {ALIAS!r})"
        )
        wait_for(lambda: len(p.log().replies_of(ALIAS, since=t_garp)) >= 20, "20 echo replies")
    log = p.log()

    assert log.start is not None and log.start["arp_sender"] == "observer"
    last_lim2, first_sb = log.last_reply_from(ALIAS, lim2), log.first_reply_from(ALIAS, sb)
    assert last_lim2 is not None and first_sb is not None
    assert last_lim2 < t_added < t_garp < first_sb
    # standby1 answers ARP at once, but the client keeps sending to lim2 until the GARP.
    assert {r.macs for r in log.rounds_of(ALIAS, since=t_added)} == {frozenset({sb})}
    assert log.replies_of(ALIAS, since=t_added, until=t_garp) == []
    assert [g.mac for g in log.garps_of(ALIAS)] == [sb, sb, sb]
    assert {r.mac for r in log.replies_of(ALIAS, since=first_sb)} == {sb}
    gap = log.outage(ALIAS, since=t_del - 0.1)  # lim2 still answered then
    assert gap is not None and gap == pytest.approx(first_sb - last_lim2, abs=1e-6)
    assert gap >= t_garp - t_added
    assert log.owner_after(ALIAS, t_added) == sb
    assert log.two_owner_rounds(ALIAS) == []


@pytest.mark.lab
def test_cutting_the_owner_off_grows_the_outage(alias_on_lim2: Lab) -> None:
    lab = alias_on_lim2
    lim2 = lab.hosts["lim2"].mac
    with Prober(lab, "client", [ALIAS], duration=30) as p:
        wait_for(lambda: len(p.log().replies_of(ALIAS)) >= 20, "20 echo replies from lim2")
        # Not "now": a window with no reply at all has no outage (None), only a silence.
        since = p.start_record["t"]
        lab.faults.cut("lim2")
        t_cut = time.monotonic()

        def outage_past(seconds: float) -> float | None:
            log = p.log()
            gap = log.outage(ALIAS, since=since)
            return gap if gap is not None and gap > seconds else None

        first = wait_for(lambda: outage_past(0.3), "an outage of 0.3 s")
        later = wait_for(lambda: outage_past(first + 0.3), "the outage growing by 0.3 s")
        t_restoring = time.monotonic()
        lab.faults.restore("lim2")
        wait_for(lambda: p.log().first_reply_from(ALIAS, lim2, since=t_restoring), "lim2 again")
    log = p.log()

    assert later > first
    cut_rounds = log.rounds_of(ALIAS, since=t_cut, until=t_restoring - 0.1)
    assert len(cut_rounds) >= 5 and {r.macs for r in cut_rounds} == {frozenset()}
    assert log.answering_macs(ALIAS, since=t_cut, until=t_restoring) == set()
    assert log.owner_after(ALIAS, t_cut) is None
    gap = log.outage(ALIAS, since=since)
    assert gap is not None and gap >= max(later, t_restoring - t_cut)
    back = log.first_reply_from(ALIAS, lim2, since=t_restoring)
    assert back is not None and log.owner_after(ALIAS, back) == lim2


def run_probe(lab: Lab, *args: str, timeout: float = 15) -> Any:
    return lab.exec(
        "client", [sys.executable, "-m", "mxone_lab.probe", *args], check=False, timeout=timeout
    )


@pytest.mark.lab
def test_the_probe_refuses_aliases_off_its_subnet(lab: Lab) -> None:
    r = run_probe(lab, "--alias", "10.78.0.1", "--alias", "10.77.0.100", "--duration", "1")
    assert r.returncode == 2 and r.stdout == ""
    assert "alias 10.78.0.1 is not in the interface's subnet 10.77.0.0/24" in r.stderr
    assert "alias 10.77.0.100 is the probing host's own address" in r.stderr


@pytest.mark.lab
def test_the_probe_stops_at_its_duration_and_its_event_cap(alias_on_lim2: Lab) -> None:
    lab = alias_on_lim2
    t0 = time.monotonic()
    r = run_probe(lab, "--alias", ALIAS, "--duration", "0.5")  # JSON lines on stdout
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0]["kind"] == "start" and lines[-1]["kind"] == "summary"
    assert lines[-1]["reason"] == "duration" and lines[-1]["events"] == len(lines) - 2
    assert t0 < lines[0]["t"] and 0.5 <= lines[-1]["t"] - lines[0]["t"] < 1.5
    assert {e["kind"] for e in lines[1:-1]} == {"arp", "icmp"}

    r = run_probe(lab, "--alias", ALIAS, "--duration", "10", "--max-events", "5")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[-1]["reason"] == "max-events" and lines[-1]["events"] == 5
    assert len(lines) == 5 + 2


@pytest.mark.lab
def test_a_probe_killed_outright_leaves_its_data(alias_on_lim2: Lab) -> None:
    lab = alias_on_lim2
    with Prober(lab, "client", [ALIAS], duration=30) as p:
        wait_for(lambda: len(p.log().replies_of(ALIAS)) >= 20, "20 echo replies")
        assert p.pid is not None
        os.kill(p.pid, signal.SIGKILL)  # the PID this test started, nothing else
        time.sleep(0.2)
    log = p.log()
    assert not log.complete
    assert len(log.replies_of(ALIAS)) >= 20
    assert log.owner_after(ALIAS, log.began or 0) == lab.hosts["lim2"].mac
