"""The witness view: what each node tells its peers of the others, and what a node learns
from its peers of one it cannot hear itself (the PM/SNM pair's hook asks it before it
promotes a database). Pure: the link is fed datagrams and a clock by hand."""

from __future__ import annotations

from mxone_agent import heartbeat as hbmod
from mxone_agent.heartbeat_link import HeartbeatLink
from mxone_agent.model import Readiness, Role

from tests.agent.builders import CLUSTER, SECRET, cluster_config

NODE = cluster_config("sb")  # peers lim2, lim3, lim4 at 10.77.0.32-34
IP = {s.name: str(s.base_ip) for s in NODE.servers}


def link() -> HeartbeatLink:
    return HeartbeatLink(lambda: NODE, lambda: SECRET, lambda: None, lambda name, now: None)


def from_peer(lk: HeartbeatLink, sender: str, seq: int, heard=(), version: int = 3) -> bytes:
    return hbmod.encode(hbmod.Heartbeat(
        CLUSTER, sender, 7, seq, 1, Role.REGULAR, Readiness.READY, receiver="sb",
        echo=lk.incarnation, heard=heard, version=version), SECRET)


class Sent:
    """The link's socket: what it would send, decoded per receiver."""

    def __init__(self) -> None:
        self.by: dict[str, bytes] = {}

    def sendto(self, data: bytes, flags: int, addr: tuple[str, int]) -> None:
        self.by[next(n for n, ip in IP.items() if ip == addr[0])] = data


def test_a_peer_cut_off_from_this_node_is_seen_through_its_witnesses() -> None:
    lk = link()
    lk.incarnation, lk.resumed = 3, 100.0
    # lim3 last heard lim2 80 ms before it sent; lim4 heard lim2 2.5 s before it sent.
    lk.accept(from_peer(lk, "lim3", 1, heard=(("lim2", 80), ("sb", 10))), IP["lim3"], 101.0)
    lk.accept(from_peer(lk, "lim4", 1, heard=(("lim2", 2500),)), IP["lim4"], 101.2)
    assert not lk.alive("lim2")
    assert lk.heard_by("lim2", 101.5) == {"lim3": 0.58, "lim4": 2.8}
    assert lk.heard_by("lim3", 101.5) == {}  # nobody reported lim3
    rows = {r["name"]: r for r in lk.status(101.5)}
    assert rows["lim2"]["heard_by_s_ago"] == {"lim3": 0.58, "lim4": 2.8}
    assert rows["lim3"]["protocol"] == 3 and rows["lim2"]["protocol"] is None


def test_each_peer_is_told_what_this_node_hears_of_the_others_in_its_own_version() -> None:
    lk = link()
    lk.incarnation, lk.resumed = 3, 100.0
    lk.accept(from_peer(lk, "lim3", 1), IP["lim3"], 100.5)
    lk.accept(from_peer(lk, "lim2", 1, version=2), IP["lim2"], 100.9)
    sent = Sent()
    lk.udp = sent  # type: ignore[assignment]
    lk.send((), Readiness.READY)
    to3 = hbmod.decode(sent.by["lim3"], SECRET, CLUSTER)
    to2 = hbmod.decode(sent.by["lim2"], SECRET, CLUSTER)
    to4 = hbmod.decode(sent.by["lim4"], SECRET, CLUSTER)
    assert to2.version == 2 and to2.heard == ()  # an old agent reads version 2 only
    assert to3.version == to4.version == 3
    assert [n for n, _ in to3.heard] == ["lim2"]  # not lim3 itself; lim4 never heard
    assert [n for n, _ in to4.heard] == ["lim2", "lim3"]


def test_evidence_from_before_the_loop_resumed_is_not_passed_on() -> None:
    lk = link()
    lk.incarnation, lk.resumed = 3, 100.0
    lk.accept(from_peer(lk, "lim3", 1), IP["lim3"], 100.5)
    assert [n for n, _ in lk.witness_view(101.0)] == ["lim3"]
    assert lk.witness_view(101.0)[0][1] == 500
    lk.resumed = 102.0  # the loop stalled: what it heard before says nothing of now
    assert lk.witness_view(102.1) == ()


def test_a_long_silence_is_reported_as_the_cap() -> None:
    lk = link()
    lk.incarnation, lk.resumed = 3, 0.0
    lk.accept(from_peer(lk, "lim3", 1), IP["lim3"], 1.0)
    assert lk.witness_view(1.0 + 3600) == (("lim3", hbmod.HEARD_CAP_MS),)


def test_a_version_2_agent_that_never_read_us_is_answered_in_version_2() -> None:
    lk = link()
    lk.incarnation, lk.resumed = 3, 100.0
    old = hbmod.encode(hbmod.Heartbeat(
        CLUSTER, "lim2", 7, 1, 1, Role.REGULAR, Readiness.READY, receiver="sb", echo=0,
        version=2), SECRET)  # it dropped our version-3 datagrams: it echoes nothing yet
    lk.accept(old, IP["lim2"], 100.5)
    assert lk.drops[hbmod.DropReason.STALE] == 1 and lk.speaks["lim2"] == 2
    sent = Sent()
    lk.udp = sent  # type: ignore[assignment]
    lk.send((), Readiness.READY)
    to2 = hbmod.decode(sent.by["lim2"], SECRET, CLUSTER)
    assert to2.version == 2 and to2.echo == 7  # now it can learn this incarnation
    recorded = from_peer(lk, "lim3", 5, version=2)  # lim3 before its upgrade
    lk.accept(recorded, IP["lim3"], 100.6)
    lk.accept(from_peer(lk, "lim3", 6), IP["lim3"], 100.7)  # upgraded
    assert lk.speaks["lim3"] == 3
    lk.accept(recorded, IP["lim3"], 100.8)  # replayed: refused, and changes nothing
    assert lk.drops[hbmod.DropReason.REPLAYED] == 1 and lk.speaks["lim3"] == 3
