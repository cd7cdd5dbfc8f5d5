"""Heartbeat wire format: round trip, MAC, refusals, size, and the replay guard."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxone_agent import AgentError
from mxone_agent.heartbeat import (
    MAC_SIZE,
    HEARD_CAP_MS,
    MAX_SIZE,
    PROTOCOL_VERSION,
    READS,
    BadHeartbeat,
    BadReason,
    DropReason,
    Heartbeat,
    ReplayGuard,
    WeakSecret,
    decode,
    encode,
    next_incarnation,
    total_drops,
)
from mxone_agent.model import LimRun, Mode, Readiness, Role

from tests.agent.builders import CLUSTER, SECRET, active, fenced, heartbeat, passive

OTHER_SECRET = b"fedcba9876543210-other-secret!!"


def reason_of(data: bytes, secret: bytes = SECRET, cluster: str | None = CLUSTER,
              **kw: str) -> BadReason:
    with pytest.raises(BadHeartbeat) as info:
        decode(data, secret, cluster, **kw)
    assert isinstance(info.value, AgentError)
    return info.value.reason


def remac(body: bytes, secret: bytes = SECRET) -> bytes:
    """A datagram whose MAC is right for a body we built by hand."""
    return body + hmac.new(secret, body, hashlib.sha256).digest()


def hb_to(receiver: str = "sb", *, incarnation: int = 7, seq: int = 1, echo: int = 5,
          sender: str = "lim2") -> Heartbeat:
    return Heartbeat(cluster=CLUSTER, sender=sender, receiver=receiver, incarnation=incarnation,
                     seq=seq, echo=echo, generation=1, role=Role.REGULAR,
                     readiness=Readiness.READY)


SAMPLE = Heartbeat(CLUSTER, "lim2", 0xDEADBEEFCAFEF00D, 41, 7, Role.REGULAR, Readiness.READY,
                   (active(2), passive(3, loading=True), active(4, loading=True), fenced(5)),
                   receiver="sb", echo=0x1122334455667788)


# ---- encoding -----------------------------------------------------------------------------

def test_round_trip() -> None:
    assert decode(encode(SAMPLE, SECRET), SECRET, CLUSTER) == SAMPLE


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=15)
runs = st.lists(st.one_of(
    st.builds(LimRun, st.integers(1, 0xFFFF), st.sampled_from(list(Mode)), st.booleans()),
    st.builds(LimRun, st.integers(1, 0xFFFF), st.just(Mode.ACTIVE), st.booleans(),
              st.just(True))), max_size=10, unique_by=lambda r: r.lim)
u64 = st.integers(0, 2**64 - 1)


@settings(max_examples=200)
@given(cluster=names, sender=names, receiver=names, incarnation=u64, seq=u64, echo=u64,
       generation=st.integers(0, 2**32 - 1), role=st.sampled_from(list(Role)),
       readiness=st.sampled_from(list(Readiness)), lims=runs)
def test_round_trip_any(cluster, sender, receiver, incarnation, seq, echo, generation, role,
                        readiness, lims) -> None:
    hb = Heartbeat(cluster, sender, incarnation, seq, generation, role, readiness, tuple(lims),
                   receiver=receiver, echo=echo)
    assert decode(encode(hb, SECRET), SECRET, cluster, sender=sender, receiver=receiver) == hb


def test_size_bound_for_ten_lims_ten_peers_and_longest_names() -> None:
    hb = Heartbeat("c" * 63, "s" * 63, 2**64 - 1, 2**64 - 1, 2**32 - 1, Role.STANDBY,
                   Readiness.READY, tuple(active(n) for n in range(1, 11)), receiver="r" * 63,
                   echo=2**64 - 1, heard=tuple((f"{n}" * 63, HEARD_CAP_MS) for n in range(10)))
    data = encode(hb, SECRET)
    assert len(data) == MAX_SIZE == 951
    assert len(encode(SAMPLE, SECRET)) < 120


def test_version_and_lim_state_bits() -> None:
    data = encode(Heartbeat(CLUSTER, "lim2", 1, 1, 1, Role.REGULAR, Readiness.READY,
                            (passive(2, loading=True), fenced(3))), SECRET)
    assert data[4] == PROTOCOL_VERSION == 3
    body = data[:-MAC_SIZE]
    assert body[-7:] == struct.pack(">HBHBB", 2, 0b011, 3, 0b100, 0)  # no peer heard
    assert not fenced(3).active and fenced(3).describe() == "fenced"


WITNESS = Heartbeat(CLUSTER, "lim2", 9, 3, 1, Role.REGULAR, Readiness.READY, (active(2),),
                    receiver="sb", echo=4, heard=(("sb", 120), ("lim1", 80)))


def test_the_witness_view_travels_in_version_3_in_name_order() -> None:
    assert WITNESS.heard == (("lim1", 80), ("sb", 120))
    back = decode(encode(WITNESS, SECRET), SECRET, CLUSTER)
    assert back == WITNESS and back.version == 3
    assert back.heard_ms("lim1") == 80 and back.heard_ms("lim3") is None
    body = encode(WITNESS, SECRET)[:-MAC_SIZE]
    assert body.endswith(b"\x02\x04lim1" + struct.pack(">H", 80) + b"\x02sb"
                         + struct.pack(">H", 120))


def test_a_version_2_peer_is_read_and_answered_in_version_2() -> None:
    assert READS == (2, 3)
    old = Heartbeat(CLUSTER, "lim2", 9, 3, 1, Role.REGULAR, Readiness.READY, (active(2),),
                    receiver="sb", echo=4, heard=WITNESS.heard, version=2)
    data = encode(old, SECRET)
    assert data[4] == 2 and data == encode(
        Heartbeat(CLUSTER, "lim2", 9, 3, 1, Role.REGULAR, Readiness.READY, (active(2),),
                  receiver="sb", echo=4, version=2), SECRET)  # no room for the view in v2
    back = decode(data, SECRET, CLUSTER)
    assert back.version == 2 and back.heard == () and back.lims == (active(2),)


@pytest.mark.parametrize("heard, why", [
    ((("lim1", 1), ("lim1", 2)), "names a peer twice"),
    ((("lim2", 1),), "not a peer's name"),  # the sender itself
    ((("", 1),), "not a peer's name"),
    ((("lim1", -1),), "is not 0 to 65535 ms"),
    ((("lim1", HEARD_CAP_MS + 1),), "is not 0 to 65535 ms"),
    (tuple((f"p{n}", 1) for n in range(17)), "too long"),
])
def test_a_bad_witness_view_is_refused_at_construction(heard, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Heartbeat(CLUSTER, "lim2", 1, 1, 1, Role.REGULAR, Readiness.READY, heard=heard)


def test_an_authentic_but_bad_witness_view_is_malformed() -> None:
    body = encode(WITNESS, SECRET)[:-MAC_SIZE]
    view = b"\x02\x04lim1" + struct.pack(">H", 80) + b"\x02sb" + struct.pack(">H", 120)
    head = body[:-len(view)]
    swapped = b"\x02\x02sb" + struct.pack(">H", 120) + b"\x04lim1" + struct.pack(">H", 80)
    assert reason_of(remac(head + swapped)) is BadReason.MALFORMED  # not in name order
    twice = b"\x02\x02sb" + struct.pack(">H", 1) + b"\x02sb" + struct.pack(">H", 2)
    assert reason_of(remac(head + twice)) is BadReason.MALFORMED
    assert reason_of(remac(head + b"\x03" + view[1:])) is BadReason.TRUNCATED
    assert reason_of(remac(head + b"\x01\x02\xff\xfe" + struct.pack(">H", 1))) is \
        BadReason.MALFORMED  # not UTF-8


def test_only_an_active_lim_can_be_fenced() -> None:
    with pytest.raises(ValueError):
        LimRun(2, Mode.PRELOADED, fenced=True)


@pytest.mark.parametrize("field, value", [
    ("cluster", ""), ("sender", "x" * 64), ("receiver", ""), ("incarnation", -1),
    ("seq", 2**64), ("echo", 2**64), ("generation", 2**32), ("incarnation", True),
])
def test_invalid_heartbeat_is_refused_at_construction(field: str, value) -> None:
    args = dict(cluster=CLUSTER, sender="lim2", incarnation=1, seq=1, generation=1,
                role=Role.REGULAR, readiness=Readiness.READY)
    args[field] = value
    with pytest.raises(ValueError):
        Heartbeat(**args)


def test_a_lim_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError):
        heartbeat("lim2", [active(2), passive(2)])


def test_weak_secret() -> None:
    with pytest.raises(WeakSecret):
        encode(SAMPLE, b"short")
    with pytest.raises(WeakSecret):
        decode(encode(SAMPLE, SECRET), b"")


def test_incarnations_rise_across_restarts_and_lost_state() -> None:
    wall = 1_796_000_000_000_000  # microseconds
    first = next_incarnation(0, wall)
    assert first == wall
    assert next_incarnation(first, wall - 5_000_000) == first + 1  # the clock went back
    assert next_incarnation(first, wall + 10) == wall + 10
    assert next_incarnation(0, 0) == 1  # never 0: 0 means "not known" in an echo
    with pytest.raises(ValueError):
        next_incarnation(2**64 - 1, wall)


# ---- refusals -------------------------------------------------------------------------------

def test_every_flipped_bit_is_refused() -> None:
    data = encode(SAMPLE, SECRET)
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BadHeartbeat):
            decode(bytes(flipped), SECRET, CLUSTER)


def test_flipped_bit_in_content_is_bad_mac() -> None:
    data = bytearray(encode(SAMPLE, SECRET))
    data[-MAC_SIZE - 2] ^= 0x01  # the last LIM's state byte (before the empty view)
    assert reason_of(bytes(data)) is BadReason.BAD_MAC
    data = bytearray(encode(SAMPLE, SECRET))
    data[-1] ^= 0x80  # the MAC itself
    assert reason_of(bytes(data)) is BadReason.BAD_MAC


def test_wrong_secret_is_bad_mac() -> None:
    assert reason_of(encode(SAMPLE, OTHER_SECRET)) is BadReason.BAD_MAC


def test_wrong_cluster() -> None:
    data = encode(Heartbeat("cluster2", "lim2", 1, 1, 1, Role.REGULAR, Readiness.READY), SECRET)
    assert reason_of(data) is BadReason.WRONG_CLUSTER
    assert decode(data, SECRET).cluster == "cluster2"  # no cluster expected: not checked


def test_sender_and_receiver_are_checked_before_any_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    """A datagram that names a sender who does not live at its source address, or that is
    for another server, is refused without spending an HMAC on it."""
    data = encode(hb_to("sb"), OTHER_SECRET)  # not even authentic
    computed = []
    real = hmac.new
    monkeypatch.setattr(hmac, "new", lambda *a, **k: computed.append(1) or real(*a, **k))
    assert reason_of(data, sender="lim3", receiver="sb") is BadReason.WRONG_SOURCE
    assert reason_of(data, sender="lim2", receiver="lim4") is BadReason.MISDIRECTED
    assert computed == []
    assert reason_of(data, sender="lim2", receiver="sb") is BadReason.BAD_MAC
    assert computed == [1]


@pytest.mark.parametrize("cut", [0, 3, 5, 10, 20, 40, -MAC_SIZE, -1])
def test_truncated(cut: int) -> None:
    data = encode(SAMPLE, SECRET)
    assert reason_of(data[:cut]) is BadReason.TRUNCATED


def test_trailing_bytes_are_malformed() -> None:
    assert reason_of(encode(SAMPLE, SECRET) + b"\0") is BadReason.MALFORMED


def test_bad_magic_is_malformed() -> None:
    assert reason_of(b"XXXX" + encode(SAMPLE, SECRET)[4:]) is BadReason.MALFORMED


def test_an_unread_version_is_refused() -> None:
    data = bytearray(encode(SAMPLE, SECRET))
    for version in (1, 4):
        data[4] = version
        assert reason_of(bytes(data)) is BadReason.BAD_VERSION


def test_authentic_nonsense_is_malformed() -> None:
    lims = encode(heartbeat("lim2", [active(2)]), SECRET)[:-MAC_SIZE - 1]  # up to the LIMs

    def signed(body: bytes) -> bytes:
        return remac(body + b"\x00")  # no peer heard

    assert reason_of(signed(lims[:-1] + b"\x08")) is BadReason.MALFORMED  # unknown state bit
    assert reason_of(signed(lims[:-1] + b"\x05")) is BadReason.MALFORMED  # fenced + preloaded
    assert reason_of(signed(lims[:-3] + b"\x00\x00\x00")) is BadReason.MALFORMED  # LIM 0
    role_at = len(lims) - 3 - 3
    assert reason_of(signed(lims[:role_at] + b"\x07" + lims[role_at + 1:])) is \
        BadReason.MALFORMED


def test_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    decode(encode(SAMPLE, SECRET), SECRET, CLUSTER)
    assert len(calls) == 1


# ---- replay guard ------------------------------------------------------------------------------

MINE = 5  # the receiving agent's incarnation in these tests


def test_sequence_must_rise() -> None:
    g = ReplayGuard.empty()
    for seq, refused in ((5, None), (6, None), (6, DropReason.REPLAYED),
                         (5, DropReason.REPLAYED), (1, DropReason.REPLAYED), (100, None)):
        verdict, g = g.admit(hb_to(seq=seq), MINE)
        assert verdict is refused, seq
    assert g.count(DropReason.REPLAYED) == 3 and g.last == (7, 100)  # gaps: lost datagrams


def test_replayed_datagram_is_refused_and_counted() -> None:
    data = encode(hb_to(seq=9), SECRET)
    g = ReplayGuard.empty()
    hb, g = g.receive(data, SECRET, CLUSTER, mine=MINE, sender="lim2", receiver="sb")
    assert hb is not None and hb.seq == 9
    hb, g = g.receive(data, SECRET, CLUSTER, mine=MINE, sender="lim2", receiver="sb")
    assert hb is None and g.count(DropReason.REPLAYED) == 1


def test_restart_with_a_higher_incarnation_is_accepted_and_older_ones_never_again() -> None:
    g = ReplayGuard.empty()
    _, g = g.admit(hb_to(incarnation=111, seq=5000), MINE)
    verdict, g = g.admit(hb_to(incarnation=222, seq=1), MINE)
    assert verdict is None and (g.known, g.last) == (222, (222, 1))
    for inc in (111, 1, 221):
        verdict, g = g.admit(hb_to(incarnation=inc, seq=9999), MINE)
        assert verdict is DropReason.REPLAYED
    assert g.known == 222


def test_a_datagram_for_an_earlier_incarnation_of_this_agent_is_stale() -> None:
    """After this agent restarts (MINE rises), what peers sent to the one before - or a
    recording of it - is not accepted; the sender's incarnation is learned from it (only
    upwards) so that this agent echoes it and the peer can answer the new one."""
    g = ReplayGuard.empty()
    verdict, g = g.admit(hb_to(incarnation=222, seq=50, echo=MINE - 1), MINE)
    assert verdict is DropReason.STALE and g.known == 222 and g.last is None
    verdict, g = g.admit(hb_to(incarnation=111, seq=60, echo=MINE - 1), MINE)
    assert verdict is DropReason.REPLAYED and g.known == 222  # never learned downwards
    verdict, g = g.admit(hb_to(incarnation=222, seq=51, echo=MINE), MINE)
    assert verdict is None


def test_forged_and_malformed_are_counted_apart() -> None:
    g = ReplayGuard.empty()
    for data in (encode(hb_to(), OTHER_SECRET), b"garbage", encode(hb_to(), SECRET)[:30],
                 encode(hb_to("lim4"), SECRET)):
        hb, g = g.receive(data, SECRET, CLUSTER, mine=MINE, sender="lim2", receiver="sb")
        assert hb is None
    assert {r: g.count(r) for r in DropReason} == {
        DropReason.FORGED: 1, DropReason.MALFORMED: 2, DropReason.REPLAYED: 1,
        DropReason.STALE: 0}
    assert g.last is None and g.known == 0  # nothing was accepted or learned
    assert total_drops([g, g])[DropReason.MALFORMED] == 4


def test_guard_is_immutable() -> None:
    g = ReplayGuard.empty()
    verdict, g2 = g.admit(hb_to(seq=1), MINE)
    assert verdict is None and g.last is None and g2.last == (7, 1)


# ---- no recording can be replayed ---------------------------------------------------------------

class Agent:
    """One side of the protocol, as the daemon runs it: a persisted rising incarnation, a
    guard per peer, and datagrams that echo what it learned of the peer."""

    def __init__(self, name: str, peer: str) -> None:
        self.name, self.peer = name, peer
        self.incarnation, self.seq = 0, 0
        self.guard = ReplayGuard.empty()
        self.restart()

    def restart(self) -> None:
        self.incarnation = next_incarnation(self.incarnation, 0)  # persisted; clock ignored
        self.seq, self.guard = 0, ReplayGuard.empty()

    def send(self) -> bytes:
        self.seq += 1
        return encode(Heartbeat(CLUSTER, self.name, self.incarnation, self.seq, 1, Role.REGULAR,
                                Readiness.READY, receiver=self.peer, echo=self.guard.known),
                      SECRET)

    def receive(self, data: bytes) -> bool:
        hb, self.guard = self.guard.receive(data, SECRET, CLUSTER, mine=self.incarnation,
                                            sender=self.peer, receiver=self.name)
        return hb is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.just(("exchange",)), st.just(("restart", "a")),
                          st.just(("restart", "b")),
                          st.tuples(st.just("replay"), st.integers(0, 10**6))),
                min_size=1, max_size=60))
def test_no_recording_is_ever_accepted_and_replays_change_nothing(events) -> None:
    """Both sides exchange heartbeats, restart at will, and an attacker replays any
    datagram it recorded at least one heartbeat earlier, to either side, in any order. No
    replay is ever accepted, and no genuine datagram that would have been accepted without
    the replays is refused with them: replays cannot make a live peer look dead. (A replay
    may teach a node its peer's *current* incarnation a moment early - true information,
    which only ever makes a genuine heartbeat acceptable sooner.)"""

    def run(with_replays: bool) -> list[tuple[str, bool]]:
        a, b = Agent("lim2", "sb"), Agent("sb", "lim2")
        nodes = {"a": a, "b": b}
        recorded: list[tuple[Agent, bytes]] = []  # (receiver, datagram)
        outcome = []
        for ev in events:
            if ev[0] == "exchange":
                for sender, receiver in ((a, b), (b, a)):
                    data = sender.send()
                    outcome.append((sender.name, receiver.receive(data)))
                    recorded.append((receiver, data))
            elif ev[0] == "restart":
                nodes[ev[1]].restart()
            elif with_replays and len(recorded) > 2:
                # anything but the newest exchange: recorded at least one interval ago
                target, data = recorded[ev[1] % (len(recorded) - 2)]
                assert not target.receive(data), "a replayed datagram was accepted"
                other = b if target is a else a
                assert not other.receive(data), "a datagram was accepted by its sender"
        return outcome

    attacked, clean = run(with_replays=True), run(with_replays=False)
    assert [who for who, _ in attacked] == [who for who, _ in clean]
    lost = [i for i, ((_, got), (_, want)) in enumerate(zip(attacked, clean)) if want and not got]
    assert lost == [], "replays made genuine heartbeats refused"


def test_the_handshake_after_both_sides_restart_takes_two_exchanges() -> None:
    a, b = Agent("lim2", "sb"), Agent("sb", "lim2")
    assert b.receive(a.send()) is False and a.receive(b.send()) is True  # b learns a first
    assert b.receive(a.send()) is True
    a.restart()
    b.restart()
    assert [b.receive(a.send()), a.receive(b.send()), b.receive(a.send())] == [False, True, True]
