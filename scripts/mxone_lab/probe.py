"""A client that watches aliases the way phones and gateways do, and tells who answered.

The product's invariant is that at every moment at most one server answers for each alias.
This probe runs on a lab host (normally ``client``) and checks that from the outside::

    python -m mxone_lab.probe --alias 10.77.0.52 --duration 30 --out /var/tmp/p.jsonl

- **ARP rounds.** Every ``--arp-every`` s, one ARP request per alias is broadcast on an
  AF_PACKET socket. Every ARP reply for the alias (op 2, sender IP = alias) that arrives
  before the next round belongs to the round; a round records the set of distinct sender
  MACs (0, 1 or more: more is the condition the product must never produce). Who asks:

  - ``--arp-sender client`` (default): the interface's own MAC and address, a phone's own
    request. Its replies reach the client's kernel, which refreshes (after its 1 s
    ``locktime``, overwrites) its neighbour entry from them, as it would for a phone that
    asks that often: the ICMP stream then follows an alias that moved within about one
    round, gratuitous ARP or not, and with two owners it may flip between them.
  - ``--arp-sender observer``: RFC 5227 probes (sender IP 0.0.0.0) from a locally
    administered MAC made up per run. Servers answer them the same way, but the replies
    are addressed to that MAC, so the client's kernel never sees them and no server learns
    anything: the client's neighbour cache moves only by the servers' gratuitous ARP or
    its own resolution, as for a quiet phone. Use it to measure a client's outage.
- **Gratuitous ARP** seen for an alias (sender IP = target IP = alias, op 1 or 2) is
  recorded on its own, with the MAC and the time; it is never counted as a round's answer.
- **ICMP.** Every ``--icmp-every`` s, one echo request per alias goes out through the
  client's own kernel (a raw ICMP socket), so the client's neighbour cache decides which
  server gets it, as for any real client; the echo replies are captured on an AF_PACKET
  socket (a BPF filter keeps only echo replies with this probe's ICMP id), so each one is
  recorded with its source MAC.

Times are ``time.monotonic()``: the machine's clock that the test process reads too, so a
test can put its fault-injection times next to the events.

Output: JSON lines, written as they come (flushed at least every 0.1 s, so a killed probe
still leaves its data). Every line has ``"t"`` and ``"kind"``::

    {"t": 1.0, "kind": "start", "pid": 42, "interface": "eth0", "mac": "02:..", "ip": "..",
     "aliases": [...], "arp_every": 0.1, "icmp_every": 0.01, "duration": 30.0, "icmp_id": 42,
     "arp_sender": "client", "arp_mac": "02:.."}
    {"t": 1.1, "kind": "arp", "alias": "10.77.0.52", "macs": ["02:77:00:00:00:0c"]}
    {"t": 1.2, "kind": "garp", "alias": "10.77.0.52", "mac": "02:77:00:00:00:14", "op": 1}
    {"t": 1.3, "kind": "icmp", "alias": "10.77.0.52", "mac": "02:77:00:00:00:0c", "seq": 7}
    {"t": 9.9, "kind": "summary", "reason": "duration" | "signal" | "max-events",
     "events": 1234, "dropped": 0, "sent": {"10.77.0.52": {"arp": 98, "icmp": 980}},
     "send_errors": {"10.77.0.52": {"EHOSTUNREACH": 3}}, "cpu_s": 0.21}

An ``arp`` line's ``t`` is when its round's request was sent; the line is written when the
round closes (the next round starts), so lines are not strictly in time order. A round
younger than ``--arp-every`` at the stop is not written (its answers may still be on the
way). ``cpu_s`` is the probe's own CPU time, start-up included. ``seq`` is
the echo's sequence number per alias, counted from 0 without wrapping at 65536. The
``start`` line is also the first line on stdout, written once the sockets are open: a
parent can wait for it. The probe stops at ``--duration`` (a hard bound, backed by an
alarm), on SIGTERM or SIGINT, or after ``--max-events`` lines; the ``summary`` line says
which. It sends only to the given aliases, which must lie in the interface's subnet.

For tests and benchmarks: :class:`ProbeLog` (``ProbeLog.parse(text)``) answers questions
about a log, and :class:`Prober` runs the probe on a lab host for the length of a ``with``
block::

    with Prober(lab, "client", ["10.77.0.52"], duration=60) as p:
        ...inject faults...
    log = p.log()
    assert log.two_owner_rounds("10.77.0.52") == []
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mxone_lab.errors import ProbeError
from mxone_lab.probe_log import ProbeLog
from mxone_lab.probe_loop import (
    ARP_SENDERS,
    DEFAULT_MAX_EVENTS,
    MAX_DURATION,
    ProbeOptions,
    option_problems,
    run,
)
from mxone_lab.prober import Prober

__all__ = ["ProbeError", "ProbeLog", "ProbeOptions", "Prober", "main", "option_problems"]


def parse_args(argv: Sequence[str] | None = None) -> ProbeOptions:
    """The command line as :class:`ProbeOptions` (not yet checked: :func:`option_problems`)."""
    p = argparse.ArgumentParser(
        prog="python -m mxone_lab.probe",
        description="Watch aliases from a client: ARP rounds, gratuitous ARP, ICMP echo.",
    )
    p.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="A",
        help="an alias IPv4 address to watch (repeat for several)",
    )
    p.add_argument(
        "--arp-every",
        type=float,
        default=0.1,
        metavar="S",
        help="seconds between ARP rounds (0: none; default 0.1)",
    )
    p.add_argument(
        "--icmp-every",
        type=float,
        default=0.01,
        metavar="S",
        help="seconds between echo requests to each alias (0: none; default 0.01)",
    )
    p.add_argument(
        "--duration",
        type=float,
        required=True,
        metavar="S",
        help=f"stop after this many seconds (hard bound, at most {MAX_DURATION:g})",
    )
    p.add_argument(
        "--arp-sender",
        choices=ARP_SENDERS,
        default="client",
        help="who asks in ARP rounds: the client itself (default) or an observer "
        "whose answers the client's kernel never sees",
    )
    p.add_argument("--interface", default="eth0", help="the interface to probe on (eth0)")
    p.add_argument("--out", default="-", metavar="FILE", help="JSON lines go here (- = stdout)")
    p.add_argument(
        "--max-events",
        type=int,
        default=DEFAULT_MAX_EVENTS,
        metavar="N",
        help=f"stop after writing N events (default {DEFAULT_MAX_EVENTS})",
    )
    a = p.parse_args(argv)
    return ProbeOptions(
        aliases=tuple(a.alias),
        arp_every=a.arp_every,
        icmp_every=a.icmp_every,
        duration=a.duration,
        interface=a.interface,
        out=a.out,
        max_events=a.max_events,
        arp_sender=a.arp_sender,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
