"""PM/SNM benchmark: the virtual IP's outage seen by an HTTP client and the committed rows
lost, over master kills and fallbacks, and the time of each of the stack's utilities.

One lab (:mod:`mxone_lab.pair`: lim1 the master, standby1 the standby, both booting
systemd with Debian's keepalived, PostgreSQL 15, nginx and the reference application).
The pair is configured (master, then standby); then each cycle is

- **kill**: lim1's switch port cut and every process of its units SIGKILLed; standby1
  takes the VIP and promotes its database;
- **fallback**: lim1 plugged in and powered on (it comes back fenced), Fallback on lim1
  (its database rejoins, then it takes the VIP back), rejoin on standby1.

During each event a client on the client host GETs ``http://VIP/mp`` every 50 ms (each
request in its own thread, 1 s timeout; at most 1200 requests, 60 s) and another writes
rows through the VIP with POSTs, one after the other. The outage is the longest gap
between two consecutive pages answered (HTTP 200), the write outage the longest gap
between two acknowledged writes; a row is committed when its POST was
acknowledged (201 with its id), and lost when the new primary does not hold it once the
event is over. Each fallback needs a kill before it, and each kill lim1 active:
``max(kills, fallbacks)`` kills run, kill i followed by a fallback when i <= fallbacks or
another kill follows.

Figures only; nothing is asserted. Exit 2 if no lab could be built, 1 if a step of the
stack failed (its output printed). Run it alone: ``flock /work/.lablock scripts/bench-pmsnm``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from mxone_lab import pair
from mxone_lab.errors import LabError
from mxone_lab.lab import Lab

POLL_SECONDS, POLL_COUNT = 60.0, 1200
BEFORE = 1.0  # the clients run this long before the event...
AFTER = 2.5  # ...and after the new server answers (a write stuck on the dead one gives up)


@dataclass
class Event:
    """One measured event: a kill or a fallback."""

    kind: str  # "kill" | "fallback"
    number: int
    outage: float | None = None  # None: no page from the expected server was seen
    write_gap: float | None = None  # longest gap between two acknowledged writes; None:
    # no write was acknowledged by the new server
    served_before: str = ""
    served_after: str = ""
    pages: int = 0  # GETs answered with a page
    written: int = 0  # POSTs sent
    acked: int = 0  # POSTs acknowledged (committed rows)
    lost: list[int] = field(default_factory=list)  # acknowledged ids the new primary lacks
    took: float = 0.0  # the event's own command(s) or the takeover, seconds


@dataclass
class Utilities:
    """Seconds each utility of the stack took (several runs of some)."""

    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.runs.setdefault(name, []).append(seconds)


def _outage(polls: list[dict[str, Any]]) -> tuple[float | None, str, str, int]:
    """(longest gap between two consecutive answered pages, first server, last server,
    pages answered) of one poller run."""
    answered = sorted((r["t"], r["server"]) for r in polls if "server" in r)
    if len(answered) < 2:
        return None, "", "", len(answered)
    gap = max(b[0] - a[0] for a, b in itertools.pairwise(answered))
    return gap, answered[0][1], answered[-1][1], len(answered)


def _write_gap(writes: list[dict[str, Any]], started: float, server: str) -> float | None:
    """The longest gap between two consecutive acknowledged writes (by their answers);
    None unless ``server`` acknowledged a write after ``started`` (the gap would not
    span the event)."""
    if not any("id" in w and w["t"] > started and w.get("server") == server for w in writes):
        return None
    acked = sorted(w["t"] for w in writes if "id" in w)
    return max((b - a for a, b in itertools.pairwise(acked)), default=None)


def _measure(p: pair.Pair, event: Event, act: Any, new_server: str) -> None:
    """Run ``act()`` while the clients poll and write; fill ``event`` in."""
    poller = p.client("poll", str(POLL_SECONDS), str(POLL_COUNT))
    writer = p.client("write", f"{event.kind}{event.number}", str(POLL_SECONDS))
    try:
        time.sleep(BEFORE)
        t0 = time.monotonic()  # the same clock as the client's (one kernel)
        act()
        p.serves(new_server, timeout=30)
        event.took = time.monotonic() - t0
        time.sleep(AFTER)
    finally:
        polls, writes = pair.records(poller), pair.records(writer)
    event.outage, event.served_before, event.served_after, event.pages = _outage(polls)
    if event.served_after != new_server:
        event.outage = None
    acked = {w["id"] for w in writes if "id" in w}
    event.write_gap = _write_gap(writes, t0, new_server)
    event.written, event.acked = len(writes), len(acked)
    rows = pair.eventually("a page with rows", lambda: p.page().get("rows"))
    stored = {r["id"] for r in rows}
    event.lost = sorted(acked - stored)


def _kill(p: pair.Pair, n: int) -> Event:
    p.synchronous(pair.MASTER)
    event = Event("kill", n)
    _measure(p, event, p.kill_master, pair.STANDBY)
    return event


def _fallback(p: pair.Pair, n: int, util: Utilities) -> Event:
    t0 = time.monotonic()
    p.bring_back()
    util.add("master back (power on, keepalived up)", time.monotonic() - t0)
    event = Event("fallback", n)

    def fall_back() -> None:
        for name, seconds in p.fall_back().items():
            util.add(name, seconds)

    _measure(p, event, fall_back, pair.MASTER)
    return event


def _time_status(p: pair.Pair, util: Utilities) -> None:
    for host in (pair.MASTER, pair.STANDBY):
        t0 = time.monotonic()
        p.status(host)
        util.add(f"status ({host})", time.monotonic() - t0)


def _time_reconfigure_fallback(p: pair.Pair, util: Utilities) -> None:
    """Reconfigure Fallback to automatic and back to manual (the VIP stays on lim1), on
    the master, then the standby."""
    for fallback in ("automatic", "manual"):
        for host, role in ((pair.MASTER, "master"), (pair.STANDBY, "standby")):
            t0 = time.monotonic()
            p.stack(host, "reconfigure-fallback", role, fallback=fallback)
            util.add(f"reconfigure fallback ({role})", time.monotonic() - t0)


def _spread(xs: list[float]) -> str:
    if not xs:
        return "no run"
    return (f"min {min(xs):.3f} s  median {statistics.median(xs):.3f} s  "
            f"max {max(xs):.3f} s  (n={len(xs)})")


def report(events: list[Event], util: Utilities, detection: float | None) -> None:
    print("\nVIP outage seen by the client (longest gap between two pages, GET every 50 ms),"
          "\nno-write: longest gap between two acknowledged writes (POSTs one after the other),"
          "\ncommitted rows lost")
    print(f"{'event':<12} {'outage s':>9} {'no-write s':>10}  {'before -> after':<20} "
          f"{'written':>7} {'acked':>6} {'lost':>5} {'took s':>7}")
    for e in events:
        outage = "none seen" if e.outage is None else f"{e.outage:.3f}"
        gap = "none after" if e.write_gap is None else f"{e.write_gap:.3f}"
        print(f"{e.kind + ' ' + str(e.number):<12} {outage:>9} {gap:>10}  "
              f"{e.served_before + ' -> ' + e.served_after:<20} {e.written:>7} "
              f"{e.acked:>6} {len(e.lost):>5} {e.took:>7.2f}")
    for kind in ("kill", "fallback"):
        mine = [e for e in events if e.kind == kind]
        if not mine:
            continue
        outages = [e.outage for e in mine if e.outage is not None]
        failed = len(mine) - len(outages)
        print(f"{kind:<9} outage:   {_spread(outages)}"
              + (f"; {failed} without a takeover seen" if failed else ""))
        print(f"{'':<9} no-write: "
              + _spread([e.write_gap for e in mine if e.write_gap is not None])
              + f"; rows acked {sum(e.acked for e in mine)}, "
              f"lost {sum(len(e.lost) for e in mine)}")
    if detection is not None:
        print(f"keepalived's detection (3 adverts + skew): {detection:.3f} s")
    print("\ntime of each utility")
    for name, xs in util.runs.items():
        print(f"  {name:<38} {_spread(xs)}")
    lost = [(e.kind, e.number, e.lost) for e in events if e.lost]
    for kind, n, ids in lost:
        print(f"LOST in {kind} {n}: rows {ids}")


def _detection() -> float | None:
    try:
        from mxone_web.stack import keepalived
    except ImportError:
        return None
    return float(keepalived.DETECTION_SECONDS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-pmsnm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5, help="master kills (default 5)")
    ap.add_argument("--fallbacks", type=int, default=5, help="fallbacks (default 5)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    cycles = max(args.kills, args.fallbacks)
    try:
        lab = Lab.up(pair.spec())
    except LabError as exc:
        print(f"bench-pmsnm: no lab: {exc}", file=sys.stderr)
        return 2
    util, events = Utilities(), []
    rc = 0
    try:
        p = pair.Pair(lab)
        can_fall_back = "fallback" in p.actions()
        if not can_fall_back:
            print("bench-pmsnm: the stack has no fallback: one kill only", file=sys.stderr)
            cycles = min(cycles, 1)
        for role, seconds in p.configure().items():
            util.add(f"configure {role}", seconds)
        p.serves(pair.MASTER)
        _time_status(p, util)
        if "reconfigure-fallback" in p.actions():
            _time_reconfigure_fallback(p, util)
        for i in range(1, cycles + 1):
            events.append(_kill(p, i))
            print(f"  kill {i}: outage {events[-1].outage}, lost {events[-1].lost}", flush=True)
            if can_fall_back and (i <= args.fallbacks or i < cycles):
                events.append(_fallback(p, i, util))
                print(f"  fallback {i}: outage {events[-1].outage}, lost {events[-1].lost}",
                      flush=True)
                _time_status(p, util)
        if events and events[-1].kind == "kill":
            p.bring_back()
        for host, role in ((pair.MASTER, "master"), (pair.STANDBY, "standby")):
            t0 = time.monotonic()
            p.stack(host, "remove", role)
            util.add(f"remove {role}", time.monotonic() - t0)
    except LabError as exc:
        print(f"bench-pmsnm: {exc}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("bench-pmsnm: interrupted", file=sys.stderr)
        rc = 130
    finally:
        lab.down()
    report(events, util, _detection())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"events": [asdict(e) for e in events], "utilities": util.runs}, f,
                      indent=2)
    return rc


if __name__ == "__main__":
    sys.exit(main())
