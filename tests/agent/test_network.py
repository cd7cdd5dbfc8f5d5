"""The ARP frames the agent sends, checked by scapy; the reply parser."""

from __future__ import annotations

from scapy.layers.l2 import ARP, Ether

from mxone_agent.arp import arp_frame, arp_reply_from, garp_frame, probe_frame

MAC = "02:aa:bb:cc:dd:01"


def test_gratuitous_arp_is_what_scapy_builds() -> None:
    ours = garp_frame(MAC, "10.77.0.52")
    theirs = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC) / ARP(
        op=1, hwsrc=MAC, psrc="10.77.0.52", hwdst="00:00:00:00:00:00", pdst="10.77.0.52"))
    assert ours == theirs and len(ours) == 42
    parsed = Ether(ours)
    assert parsed[ARP].psrc == parsed[ARP].pdst == "10.77.0.52"


def test_probe_has_no_sender_address() -> None:
    arp = Ether(probe_frame(MAC, "10.77.0.52"))[ARP]
    assert arp.op == 1 and arp.psrc == "0.0.0.0" and arp.pdst == "10.77.0.52"
    assert arp.hwsrc == MAC


def test_reply_parser_takes_replies_for_the_target_only() -> None:
    target = bytes([10, 77, 0, 52])
    reply = bytes(Ether(dst=MAC, src="02:00:00:00:00:99") / ARP(
        op=2, hwsrc="02:00:00:00:00:99", psrc="10.77.0.52", hwdst=MAC, pdst="0.0.0.0"))
    assert arp_reply_from(reply, target) == "02:00:00:00:00:99"
    assert arp_reply_from(reply, bytes([10, 77, 0, 53])) is None
    assert arp_reply_from(arp_frame(1, MAC, "10.77.0.52", "10.77.0.1"), target) is None
    assert arp_reply_from(b"\x00" * 20, target) is None
