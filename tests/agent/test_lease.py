"""Self-fencing leases: their length, the nft ruleset, and the Fence on a modelled kernel.
The real kernel (nftables over netlink) is exercised in tests/agent_lab/test_fencing.py."""

from __future__ import annotations

import struct

import pytest

from mxone_agent.config import TIMER_PRESETS, Timers
from mxone_agent.lease import (
    Fence,
    LeaseError,
    RecordingLeases,
    lease_seconds,
    ruleset,
)
from mxone_agent.lease_nft import _element_list, _expiration_ms, _nla


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("preset", sorted(TIMER_PRESETS))
def test_every_preset_lease_is_shorter_than_detection(preset: str) -> None:
    for timers in TIMER_PRESETS[preset].values():
        lease = lease_seconds(timers)
        # Renewed every interval; a healthy loop may be up to 1.5 intervals late.
        assert timers.interval * 1.5 <= lease < timers.detection


def test_fastest_lease_is_under_the_detection_time() -> None:
    assert lease_seconds(Timers(0.1, 3)) == pytest.approx(0.25)
    assert lease_seconds(Timers(0.05, 2)) == pytest.approx(0.075)  # the smallest the rules take
    assert lease_seconds(Timers(60.0, 2)) == 90.0  # the largest interval the rules take


def test_bfd_lease_is_under_the_detection_time() -> None:
    """bfd (0.05 s x 3 = 0.15 s): the lease lasts 0.125 s, 25 ms under the detection time,
    and a renewal may come 75 ms (1.5 intervals) late before a healthy node loses it."""
    bfd = TIMER_PRESETS["bfd"]
    assert {t.interval for t in bfd.values()} == {0.05} and {t.misses for t in bfd.values()} == {3}
    for timers in bfd.values():
        assert lease_seconds(timers) == pytest.approx(0.125)
        assert timers.detection - lease_seconds(timers) == pytest.approx(0.025)


def test_ruleset_guards_arp_and_ip_both_ways_and_keeps_leases() -> None:
    text = ruleset(["10.77.0.13", "10.77.0.12"])
    for family in ("arp", "ip"):
        assert f"add table {family} mxone_lease" in text
        assert f"add set {family} mxone_lease leased {{ type ipv4_addr; flags timeout; }}" in text
        assert f"add element {family} mxone_lease guarded {{ 10.77.0.12, 10.77.0.13 }}" in text
        assert f"flush set {family} mxone_lease guarded" in text
    assert "flush set arp mxone_lease leased" not in text  # a repair keeps running leases
    for rule in ("arp daddr ip @guarded arp daddr ip != @leased drop",
                 "arp saddr ip @guarded arp saddr ip != @leased drop",
                 "ip daddr @guarded ip daddr != @leased drop",
                 "ip saddr @guarded ip saddr != @leased drop"):
        assert rule in text
    assert "hook prerouting priority -300" in text  # before conntrack sees the packet
    assert "add element" not in ruleset([])


def test_element_messages_carry_the_key_and_the_timeout() -> None:
    body = _element_list("10.77.0.12", 250)
    assert bytes([10, 77, 0, 12]) in body and struct.pack(">Q", 250) in body
    assert b"mxone_lease\0" in body and b"leased\0" in body
    assert struct.pack(">Q", 250) not in _element_list("10.77.0.12", None)


def test_expiration_is_read_from_an_answer() -> None:
    elem = _nla(1 | 0x8000, _nla(1, bytes([10, 77, 0, 12]))) + _nla(5, struct.pack(">Q", 180))
    body = _nla(1, b"mxone_lease\0") + _nla(3 | 0x8000, _nla(1 | 0x8000, elem))
    assert _expiration_ms(body) == 180
    assert _expiration_ms(_nla(1, b"x\0")) is None


def fence(lease: float = 0.25) -> tuple[Fence, RecordingLeases, Clock]:
    clock = Clock()
    kernel = RecordingLeases(clock=clock)
    f = Fence(kernel, lease, clock=clock)
    f.setup(["10.77.0.12"])
    return f, kernel, clock


def test_a_renewed_lease_keeps_the_alias_answering() -> None:
    f, kernel, clock = fence()
    f.grant("10.77.0.12")
    for _ in range(10):
        clock.now += 0.1
        assert f.renew_all() == []
        assert kernel.leased("10.77.0.12")
    assert f.held() == {"10.77.0.12": 0.0}


def test_a_stalled_loop_finds_its_lease_lapsed_and_cannot_extend_it() -> None:
    f, kernel, clock = fence()
    f.grant("10.77.0.12")
    clock.now += 0.3  # the loop did not run for longer than the lease
    assert not kernel.leased("10.77.0.12")
    [lapse] = f.renew_all()
    assert lapse.alias == "10.77.0.12" and lapse.unrenewed_for == pytest.approx(0.3)
    assert not f.holds("10.77.0.12") and not kernel.leased("10.77.0.12")
    assert f.renew_all() == []  # nothing is renewed any more: only a decision grants it
    f.grant("10.77.0.12")
    assert kernel.leased("10.77.0.12") and f.holds("10.77.0.12")


def test_an_unguarded_alias_is_not_fenced_and_a_guarded_one_needs_a_lease() -> None:
    f, kernel, _ = fence()
    assert kernel.leased("10.77.0.99")  # not one of this node's aliases: untouched
    assert not kernel.leased("10.77.0.12")


def test_adopting_a_running_lease_after_a_restart() -> None:
    f, kernel, clock = fence()
    kernel.grant("10.77.0.12", 250)  # an earlier agent's
    clock.now += 0.1
    restarted = Fence(kernel, 0.25, clock=clock)
    assert restarted.adopt("10.77.0.12") == pytest.approx(0.15)
    assert restarted.held()["10.77.0.12"] == pytest.approx(0.1)
    clock.now += 0.1
    assert restarted.renew_all() == []
    assert Fence(kernel, 0.25, clock=clock).adopt("10.77.0.13") is None


def test_revoke_silences_at_once_and_forget_lets_it_run_out() -> None:
    f, kernel, clock = fence()
    f.grant("10.77.0.12")
    f.revoke("10.77.0.12")
    assert not kernel.leased("10.77.0.12") and f.renew_all() == []
    f.grant("10.77.0.12")
    f.forget("10.77.0.12")
    assert kernel.leased("10.77.0.12")
    clock.now += 0.3
    assert not kernel.leased("10.77.0.12")


def test_grant_repairs_a_fence_that_was_removed() -> None:
    """An operator's `nft flush ruleset` (a firewall reload) removes the tables: the next
    grant sets them up again, with the guarded aliases."""
    f, kernel, _ = fence()
    kernel.fail.add("grant")
    with pytest.raises(LeaseError):
        f.grant("10.77.0.12")  # still failing after the repair: the error is the caller's
    assert [c[0] for c in kernel.calls].count("setup") == 2
    kernel.fail.clear()
    f.grant("10.77.0.12")
    assert kernel.guarded == {"10.77.0.12"}


def test_the_lease_length_follows_the_timers() -> None:
    f, kernel, _ = fence(lease=2.5)
    f.grant("10.77.0.12")
    assert kernel.calls[-1] == ("grant", "10.77.0.12", 2500)
    f.lease = 0.25
    f.renew_all()
    assert kernel.calls[-1] == ("renew", "10.77.0.12", 250)


def test_release_removes_the_fence() -> None:
    f, kernel, _ = fence()
    f.grant("10.77.0.12")
    f.release()
    assert kernel.released and kernel.leased("10.77.0.12") and f.held() == {}
