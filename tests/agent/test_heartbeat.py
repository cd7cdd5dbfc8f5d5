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
    MAX_SIZE,
    RETIRED_INCARNATIONS_KEPT,
    BadHeartbeat,
    BadReason,
    DropReason,
    Heartbeat,
    ReplayGuard,
    WeakSecret,
    decode,
    encode,
    new_incarnation,
    total_drops,
)
from mxone_agent.model import LimRun, Mode, Readiness, Role

from tests.agent.builders import CLUSTER, SECRET, active, heartbeat, passive

OTHER_SECRET = b"fedcba9876543210-other-secret!!"


def reason_of(data: bytes, secret: bytes = SECRET, cluster: str | None = CLUSTER) -> BadReason:
    with pytest.raises(BadHeartbeat) as info:
        decode(data, secret, cluster)
    assert isinstance(info.value, AgentError)
    return info.value.reason


def remac(body: bytes, secret: bytes = SECRET) -> bytes:
    """A datagram whose MAC is right for a body we built by hand."""
    return body + hmac.new(secret, body, hashlib.sha256).digest()


SAMPLE = heartbeat("lim2", [active(2), passive(3, loading=True), active(4, loading=True)],
                   incarnation=0xDEADBEEFCAFEF00D, seq=41, generation=7)


# ---- encoding -----------------------------------------------------------------------------

def test_round_trip() -> None:
    assert decode(encode(SAMPLE, SECRET), SECRET, CLUSTER) == SAMPLE


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=15)
runs = st.lists(st.builds(LimRun, st.integers(1, 0xFFFF), st.sampled_from(list(Mode)),
                          st.booleans()), max_size=10, unique_by=lambda r: r.lim)


@settings(max_examples=200)
@given(cluster=names, sender=names, incarnation=st.integers(0, 2**64 - 1),
       seq=st.integers(0, 2**64 - 1), generation=st.integers(0, 2**32 - 1),
       role=st.sampled_from(list(Role)), readiness=st.sampled_from(list(Readiness)), lims=runs)
def test_round_trip_any(cluster, sender, incarnation, seq, generation, role, readiness,
                        lims) -> None:
    hb = Heartbeat(cluster, sender, incarnation, seq, generation, role, readiness, tuple(lims))
    assert decode(encode(hb, SECRET), SECRET, cluster) == hb


def test_size_bound_for_ten_lims_and_longest_names() -> None:
    hb = Heartbeat("c" * 63, "s" * 63, 2**64 - 1, 2**64 - 1, 2**32 - 1, Role.STANDBY,
                   Readiness.READY, tuple(active(n) for n in range(1, 11)))
    data = encode(hb, SECRET)
    assert len(data) == MAX_SIZE <= 256
    assert len(encode(SAMPLE, SECRET)) < 100


def test_lim_state_bits() -> None:
    data = encode(heartbeat("lim2", [passive(2, loading=True)]), SECRET)
    body = data[:-MAC_SIZE]
    assert body[-3:] == struct.pack(">HB", 2, 0b11)


@pytest.mark.parametrize("field, value", [
    ("cluster", ""), ("sender", "x" * 64), ("incarnation", -1), ("seq", 2**64),
    ("generation", 2**32), ("incarnation", True),
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


def test_new_incarnations_differ() -> None:
    values = {new_incarnation() for _ in range(50)}
    assert len(values) == 50 and all(0 <= v < 2**64 for v in values)


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
    data[-MAC_SIZE - 1] ^= 0x01  # the last LIM's state byte
    assert reason_of(bytes(data)) is BadReason.BAD_MAC
    data = bytearray(encode(SAMPLE, SECRET))
    data[-1] ^= 0x80  # the MAC itself
    assert reason_of(bytes(data)) is BadReason.BAD_MAC


def test_wrong_secret_is_bad_mac() -> None:
    assert reason_of(encode(SAMPLE, OTHER_SECRET)) is BadReason.BAD_MAC


def test_wrong_cluster() -> None:
    other = heartbeat("lim2")
    data = encode(Heartbeat("cluster2", "lim2", 1, 1, 1, Role.REGULAR, Readiness.READY), SECRET)
    assert reason_of(data) is BadReason.WRONG_CLUSTER
    assert decode(data, SECRET).cluster == "cluster2"  # no cluster expected: not checked
    assert decode(encode(other, SECRET), SECRET, CLUSTER) == other


@pytest.mark.parametrize("cut", [0, 3, 5, 10, 20, 40, -MAC_SIZE, -1])
def test_truncated(cut: int) -> None:
    data = encode(SAMPLE, SECRET)
    assert reason_of(data[:cut]) is BadReason.TRUNCATED


def test_trailing_bytes_are_malformed() -> None:
    assert reason_of(encode(SAMPLE, SECRET) + b"\0") is BadReason.MALFORMED


def test_bad_magic_is_malformed() -> None:
    assert reason_of(b"XXXX" + encode(SAMPLE, SECRET)[4:]) is BadReason.MALFORMED


def test_bad_version() -> None:
    data = bytearray(encode(SAMPLE, SECRET))
    data[4] = 2
    assert reason_of(bytes(data)) is BadReason.BAD_VERSION


def test_authentic_nonsense_is_malformed() -> None:
    body = encode(heartbeat("lim2", [active(2)]), SECRET)[:-MAC_SIZE]
    assert reason_of(remac(body[:-1] + b"\x04")) is BadReason.MALFORMED  # unknown state bit
    assert reason_of(remac(body[:-3] + b"\x00\x00\x00")) is BadReason.MALFORMED  # LIM 0
    role_at = len(body) - 3 - 3
    assert reason_of(remac(body[:role_at] + b"\x07" + body[role_at + 1:])) is BadReason.MALFORMED


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

def test_sequence_must_rise() -> None:
    g = ReplayGuard.empty()
    ok, g = g.admit(heartbeat("lim2", seq=5))
    assert ok
    ok, g = g.admit(heartbeat("lim2", seq=6))
    assert ok
    for seq in (6, 5, 1):
        ok, g = g.admit(heartbeat("lim2", seq=seq))
        assert not ok
    assert g.count(DropReason.REPLAYED) == 3
    ok, g = g.admit(heartbeat("lim2", seq=100))  # gaps are fine: lost datagrams
    assert ok and g.last_seq == 100


def test_replayed_datagram_is_refused_and_counted() -> None:
    data = encode(heartbeat("lim2", seq=9), SECRET)
    g = ReplayGuard.empty()
    hb, g = g.receive(data, SECRET, CLUSTER)
    assert hb is not None and hb.seq == 9
    hb, g = g.receive(data, SECRET, CLUSTER)
    assert hb is None and g.count(DropReason.REPLAYED) == 1


def test_reordered_older_datagram_is_refused() -> None:
    older, newer = (encode(heartbeat("lim2", seq=s), SECRET) for s in (10, 11))
    g = ReplayGuard.empty()
    hb, g = g.receive(newer, SECRET, CLUSTER)
    assert hb is not None
    hb, g = g.receive(older, SECRET, CLUSTER)
    assert hb is None and g.count(DropReason.REPLAYED) == 1


def test_restart_with_new_incarnation_is_accepted() -> None:
    g = ReplayGuard.empty()
    _, g = g.admit(heartbeat("lim2", incarnation=111, seq=5000))
    ok, g = g.admit(heartbeat("lim2", incarnation=222, seq=1))
    assert ok and (g.incarnation, g.last_seq) == (222, 1)
    assert g.retired == (111,)


def test_old_incarnation_after_a_newer_one_is_refused() -> None:
    g = ReplayGuard.empty()
    _, g = g.admit(heartbeat("lim2", incarnation=111, seq=5))
    _, g = g.admit(heartbeat("lim2", incarnation=222, seq=1))
    ok, g = g.admit(heartbeat("lim2", incarnation=111, seq=6))
    assert not ok and g.count(DropReason.REPLAYED) == 1 and g.incarnation == 222


def test_a_bounded_number_of_old_incarnations_is_kept() -> None:
    g = ReplayGuard.empty()
    for inc in range(1, RETIRED_INCARNATIONS_KEPT + 3):
        ok, g = g.admit(heartbeat("lim2", incarnation=inc))
        assert ok
    assert len(g.retired) == RETIRED_INCARNATIONS_KEPT
    for inc in range(3, RETIRED_INCARNATIONS_KEPT + 2):
        assert not g.admit(heartbeat("lim2", incarnation=inc))[0]


def test_forged_and_malformed_are_counted_apart() -> None:
    g = ReplayGuard.empty()
    hb, g = g.receive(encode(SAMPLE, OTHER_SECRET), SECRET, CLUSTER)
    assert hb is None
    hb, g = g.receive(b"garbage", SECRET, CLUSTER)
    assert hb is None
    hb, g = g.receive(encode(SAMPLE, SECRET)[:30], SECRET, CLUSTER)
    assert hb is None
    assert (g.count(DropReason.FORGED), g.count(DropReason.MALFORMED),
            g.count(DropReason.REPLAYED)) == (1, 2, 0)
    assert g.incarnation is None  # nothing was accepted
    assert total_drops([g, g]) == {DropReason.FORGED: 2, DropReason.MALFORMED: 4,
                                   DropReason.REPLAYED: 0}


def test_guard_is_immutable() -> None:
    g = ReplayGuard.empty()
    ok, g2 = g.admit(heartbeat("lim2", seq=1))
    assert ok and g.incarnation is None and g2.incarnation == 1
