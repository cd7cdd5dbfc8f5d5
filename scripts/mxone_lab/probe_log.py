"""Reading a probe's output: :class:`ProbeLog` answers what a test asks of it - who
answered for an alias, whether two servers ever did at once, how long the client's echo
stream had no reply (the outage)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ArpRound:
    """One ARP round for one alias: sent at ``t``, answered by ``macs`` (maybe none)."""

    t: float
    alias: str
    macs: frozenset[str]


@dataclass(frozen=True)
class Garp:
    """A gratuitous ARP for ``alias`` from ``mac``, seen at ``t`` (``op`` 1 or 2)."""

    t: float
    alias: str
    mac: str
    op: int


@dataclass(frozen=True)
class EchoReply:
    """An echo reply from ``alias``, received at ``t`` in a frame from ``mac``."""

    t: float
    alias: str
    mac: str
    seq: int


def json_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects of ``lines``; a line that is not one (torn by a kill) is skipped."""
    records = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict):
            records.append(r)
    return records


def _within(t: float, since: float | None, until: float | None) -> bool:
    return (since is None or t >= since) and (until is None or t <= until)


@dataclass(frozen=True)
class ProbeLog:
    """A probe's output, parsed; immutable. Windows (``since``/``until``) are inclusive
    ``time.monotonic()`` values; None means open. An ARP round is placed at the time its
    request was sent. Events of every kind are in time order."""

    start: dict[str, Any] | None
    summary: dict[str, Any] | None
    rounds: tuple[ArpRound, ...]
    garps: tuple[Garp, ...]
    replies: tuple[EchoReply, ...]

    @classmethod
    def parse(cls, text: str) -> ProbeLog:
        """Parse JSON lines; a torn last line (a killed probe) and unknown kinds are skipped."""
        return cls.from_records(json_records(text.splitlines()))

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> ProbeLog:
        """A log of records already decoded (one dict per line); unknown kinds are skipped."""
        start = summary = None
        rounds, garps, replies = [], [], []
        for r in records:
            kind = r.get("kind")
            if kind == "arp":
                rounds.append(ArpRound(float(r["t"]), r["alias"], frozenset(r["macs"])))
            elif kind == "icmp":
                replies.append(EchoReply(float(r["t"]), r["alias"], r["mac"], int(r["seq"])))
            elif kind == "garp":
                garps.append(Garp(float(r["t"]), r["alias"], r["mac"], int(r.get("op", 1))))
            elif kind == "start":
                start = r
            elif kind == "summary":
                summary = r
        return cls(
            start=start,
            summary=summary,
            rounds=tuple(sorted(rounds, key=lambda e: e.t)),
            garps=tuple(sorted(garps, key=lambda e: e.t)),
            replies=tuple(sorted(replies, key=lambda e: e.t)),
        )

    # -- coverage

    @property
    def complete(self) -> bool:
        """True when the probe wrote its summary (it stopped in order)."""
        return self.summary is not None

    @property
    def began(self) -> float | None:
        """When the probe started (its start line), None if that line is missing."""
        return float(self.start["t"]) if self.start else None

    @property
    def end(self) -> float | None:
        """The last moment the log covers: the summary's time, else the last event's."""
        if self.summary:
            return float(self.summary["t"])
        times = [e[-1].t for e in (self.rounds, self.garps, self.replies) if e]
        return max(times) if times else self.began

    def sent(self, alias: str) -> dict[str, int]:
        """``{"arp": n, "icmp": n}`` sent to ``alias`` (from the summary; {} without one)."""
        return dict((self.summary or {}).get("sent", {}).get(alias, {}))

    # -- selections

    def rounds_of(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> list[ArpRound]:
        return [r for r in self.rounds if r.alias == alias and _within(r.t, since, until)]

    def replies_of(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> list[EchoReply]:
        return [r for r in self.replies if r.alias == alias and _within(r.t, since, until)]

    def garps_of(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> list[Garp]:
        return [g for g in self.garps if g.alias == alias and _within(g.t, since, until)]

    # -- questions

    def two_owner_rounds(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> list[tuple[float, frozenset[str]]]:
        """``(t, macs)`` of every ARP round in which more than one MAC answered for
        ``alias``: the moments the invariant was broken (want: none)."""
        return [(r.t, r.macs) for r in self.rounds_of(alias, since, until) if len(r.macs) > 1]

    def answering_macs(
        self, alias: str, since: float | None = None, until: float | None = None
    ) -> set[str]:
        """Every MAC that answered for ``alias`` in the window, in ARP rounds or by echo
        replies (a gratuitous ARP announces, it does not answer: see :meth:`garps_of`)."""
        macs = {m for r in self.rounds_of(alias, since, until) for m in r.macs}
        return macs | {r.mac for r in self.replies_of(alias, since, until)}

    def outage(self, alias: str, since: float, until: float | None = None) -> float | None:
        """The longest time without an echo reply from ``alias`` in ``[since, until]``:
        from ``since`` to the first reply, between two consecutive replies, or from the
        last reply to ``until`` (an outage still going on counts). ``until`` defaults to,
        and never goes past, :attr:`end`. None when no reply came in the window at all
        (the alias never answered after ``since``).
        """
        end = self.end
        if until is None or (end is not None and until > end):
            until = end
        times = [r.t for r in self.replies_of(alias, since, until)]
        if not times:
            return None
        edges = [since, *times] + ([until] if until is not None else [])
        return max(b - a for a, b in itertools.pairwise(edges))

    def first_reply_from(self, alias: str, mac: str, since: float | None = None) -> float | None:
        """When the first echo reply from ``alias`` came in a frame from ``mac``."""
        return next((r.t for r in self.replies_of(alias, since) if r.mac == mac), None)

    def last_reply_from(self, alias: str, mac: str, until: float | None = None) -> float | None:
        """When the last echo reply from ``alias`` came in a frame from ``mac``."""
        times = [r.t for r in self.replies_of(alias, None, until) if r.mac == mac]
        return times[-1] if times else None

    def owner_after(self, alias: str, t: float) -> str | None:
        """The one MAC that answered every ARP round and sent every echo reply for
        ``alias`` from ``t`` on; None if a round went unanswered, several MACs answered,
        or nothing was seen after ``t``."""
        macs: set[str] = set()
        rounds = self.rounds_of(alias, since=t)
        for r in rounds:
            if len(r.macs) != 1:
                return None
            macs |= r.macs
        macs |= {r.mac for r in self.replies_of(alias, since=t)}
        return next(iter(macs)) if len(macs) == 1 else None
