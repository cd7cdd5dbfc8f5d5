"""The standby giving a LIM back to its regular server: whether it does now, and why
(:func:`gives_back`), and operators' manual fallback orders.

Fallback handshake (through heartbeats, no extra messages). A regular server starts its LIM
only when it hears that the standby does *not* run it (or the standby has been silent for a
full detection period). So a fallback is: the standby stops the LIM (regular cluster) or
deactivates it (preloaded), and says so in its next heartbeat; the regular, hearing that,
starts (activates) it. The standby releases a LIM only when its regular server is alive,
says it is ready, and - automatic fallback - the hold-down is over, or - manual fallback -
an operator's request for that LIM is pending in ``LocalState.fallback_requests``.

Manual fallback orders (:func:`judge_fallback_order`). An operator's order is refused when
it cannot be carried out (not the standby, the LIM does not run here, it is locked to the
standby, it is leaving the cluster), and says why. Otherwise it is carried out only once
the regular server is *ready for it* (:func:`fallback_blocker`): alive, its agent ready,
past its hold-down, running its current agent for at least one detection period without a
restart, no failure holding the LIM back here and - preloaded - its copy of the LIM loaded.
In a manual cluster an order for a regular server that is alive but not ready yet waits
(pending, with an expiry the daemon keeps, and can be cancelled); one for a server that is
not heard is refused unless the operator asked it to wait. In an automatic cluster an order
is carried out when the automatic fallback may happen now, and refused with the reason
otherwise (the hold-down's remaining time, say): the automatic fallback follows by itself.
The daemon drops an order once the LIM no longer holds its alias on the standby (a fenced
LIM, whose lease lapsed while the loop stalled, still does), when it expires, or when it is
cancelled.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mxone_agent.config import FallbackType, LimConfig, Lock, NodeConfig
from mxone_agent.local_state import FLAP_WINDOW, LocalState
from mxone_agent.model import Role
from mxone_agent.peers import PeerView
from mxone_agent.situation import LAPSED, Situation, split_brain_stopper

ORDER_WAIT_DEFAULT = 600.0
"""Seconds a manual fallback order waits for its regular server to be ready, unless the
operator gives another wait."""
ORDER_WAIT_MAX = 86400.0
"""The longest wait an operator may give a fallback order."""


def gives_back(c: Situation, lim: LimConfig, fenced: bool = False) -> tuple[bool, str]:
    """Whether the standby gives ``lim`` (running here, actively or fenced) back now, and
    why. A fenced LIM that is kept is made to answer again by the caller."""
    me, n, home = c.me, lim.lim, c.home(lim)
    verb = "deactivates" if c.config.preloaded else "stops"
    start = "activate" if c.config.preloaded else "start"
    if fenced and home.runs_active(n):
        return True, f"{home.name} runs LIM {n}; {me} {verb} its copy, whose {LAPSED[4:]}"
    if home.runs_active(n):
        side, why = split_brain_stopper(c, lim, home)
        both = f"{home.name} and {me} both run LIM {n} (split brain)"
        if side is Role.STANDBY:
            c.split_brain.add(n)
            return True, f"{both}; {me} {verb} it because {why}"
        return False, f"{both}; {home.name} is the side that stops, because {why}"
    if c.behind is not None:
        return False, f"{me} keeps LIM {n}"
    requested = n in c.local.fallback_requests
    if requested and c.config.fallback is FallbackType.MANUAL and lim.lock is not Lock.STANDBY:
        blocked = _blocker(c, lim)
        if blocked is not None:
            return False, (f"the ordered fallback of LIM {n} waits for {home.name} to be "
                           f"ready: {blocked}")
        return True, (f"manual fallback of LIM {n} ordered and {home.name} is ready: {me} "
                      f"{verb} it so that {home.name} can {start} it")
    if not home.alive:
        state = "down" if home.dead else "not heard yet"
        return False, f"{me} runs LIM {n} for {home.name}, which is {state}"
    if not home.ready:
        return False, f"{home.name} is back but still loading; {me} keeps LIM {n}"
    if c.lags(home):
        return False, (f"{c.lag_clause(home)}; {me} keeps LIM {n} until the maintenance tool "
                       f"brings {home.name} to generation {c.config.generation}")
    if lim.lock is Lock.STANDBY:
        if requested:
            return False, f"manual fallback of LIM {n} refused: it is locked to the standby"
        return False, (f"LIM {n} is locked to the standby; {me} keeps it although "
                       f"{home.name} is back")
    loading = ""
    if c.config.preloaded:
        run = home.runs(n)
        if run is None:
            loading = f" (it has not loaded LIM {n} yet: recovery takes longer)"
        elif run.loading:
            loading = f" (its LIM {n} is still loading: recovery takes longer)"
    if c.config.fallback is FallbackType.AUTOMATIC:
        hd = c.hold_down(lim)
        if hd.remaining > 0:
            return False, (f"{home.name} came back {hd.appearances} times within "
                           f"{FLAP_WINDOW / 60:.0f} min; automatic fallback of LIM {n} is held "
                           f"down for {hd.seconds:.0f} s ({hd.remaining:.0f} s left)")
        return True, (f"{home.name} is back and ready; automatic fallback: {me} {verb} LIM {n} "
                      f"so that {home.name} can {start} it{loading}")
    return False, f"{home.name} is back; LIM {n} stays on {me} until a manual fallback is ordered"


def _blocker(c: Situation, lim: LimConfig) -> str | None:
    """Why ``lim``'s regular server is not ready to be handed the LIM by an operator's
    order now (None: it is). See :func:`fallback_blocker`."""
    n, home = lim.lim, c.home(lim)
    if not home.alive:
        return c.silence(home) if home.dead else f"{home.name} is not heard yet"
    if not home.ready:
        return f"{home.name} is alive but its agent is still loading"
    if c.behind is not None:
        return c.behind_clause()
    if c.lags(home):
        return (f"{c.lag_clause(home)}, and a server that is behind starts nothing until the "
                "maintenance tool brings it to the current generation")
    if c.held(n):
        return c.waits(n)
    hd = c.hold_down(lim)
    if hd.remaining > 0:
        return (f"{home.name} came back {hd.appearances} times within "
                f"{FLAP_WINDOW / 60:.0f} min, so it is held down for {hd.seconds:.0f} s "
                f"({hd.remaining:.0f} s left)")
    latest = max(c.local.appearances.get(n, ()), default=None)
    settle = c.config.detection
    if latest is not None and c.now - latest < settle:
        return (f"{home.name} came back {c.now - latest:.1f} s ago and must run "
                f"{settle:.1f} s without a restart first")
    if c.config.preloaded:
        run = home.runs(n)
        if run is None:
            return f"{home.name} has not loaded LIM {n} yet"
        if run.loading:
            return f"{home.name} is still loading LIM {n}"
    return None


def fallback_blocker(config: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
                     lim: int, now: float) -> str | None:
    """Why the regular server of ``lim`` may not be handed it by an operator's order now,
    one clause; None when it may.

    Ready means: alive; its agent ready; no failure holding ``lim`` back on this node; past
    its hold-down (a flapping server gets none of its LIM, whatever the fallback type);
    running for at least one detection period since it last came back (a restart is a
    reappearance); and, in a preloaded cluster, its copy of the LIM loaded. Pure.
    """
    return _blocker(Situation(config, peers, local, now), config.lim(lim))


@dataclass(frozen=True)
class OrderVerdict:
    """The answer to an operator's fallback order.

    ``accepted`` false: refused, ``text`` says why and what to do. Accepted and not
    ``pending``: the fallback happens now. ``pending``: it waits for the regular server to
    be ready (``text`` says for what) for at most ``wait`` seconds.
    """

    accepted: bool
    text: str
    pending: bool = False
    wait: float | None = None


def judge_fallback_order(config: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
                         lim: int, now: float, wait: float | None = None) -> OrderVerdict:
    """Whether an operator's order to hand LIM ``lim`` back to its regular server is refused,
    carried out now or left pending, and the sentence that says so (see the module
    docstring). ``wait``: seconds the operator lets it wait (None: the default in a manual
    cluster for a server that is alive, a refusal for one that is not heard). Pure."""
    c = Situation(config, peers, local, now)
    me = config.node
    if config.role is not Role.STANDBY:
        return OrderVerdict(False, f"{me} is a regular server; order a fallback on the standby")
    if not c.known(lim):
        return OrderVerdict(False, f"LIM {lim} is not in cluster {config.cluster}")
    x = config.lim(lim)
    home = c.home(x)
    if lim in local.retiring:
        return OrderVerdict(False, f"LIM {lim} is leaving cluster {config.cluster}; it runs on "
                            f"{home.name} once it has left")
    # A fenced LIM (its lease lapsed in a stall) is still the standby's to give back.
    if lim not in local.alias_lims():
        return OrderVerdict(False, f"LIM {lim} does not run on {me}: there is nothing to hand "
                            f"back to {home.name}")
    if x.lock is Lock.STANDBY:
        return OrderVerdict(False, f"LIM {lim} is locked to the standby; unlock it before "
                            "ordering a fallback")
    if config.fallback is FallbackType.AUTOMATIC:
        hd = c.hold_down(x)
        if not home.alive or not home.ready:
            state = "not heard" if not home.alive else "alive but its agent is still loading"
            return OrderVerdict(False, f"fallback of LIM {lim} refused: {home.name} is {state}; "
                                f"the automatic fallback hands LIM {lim} back once {home.name} "
                                "is ready")
        if (why := _blocker(c, x)) is not None and (c.behind is not None or c.lags(home)):
            return OrderVerdict(False, f"fallback of LIM {lim} refused: {why}; the automatic "
                                f"fallback hands LIM {lim} back once both are at the current "
                                "generation")
        if hd.remaining > 0:
            return OrderVerdict(False, f"fallback of LIM {lim} refused: {home.name} came back "
                                f"{hd.appearances} times within {FLAP_WINDOW / 60:.0f} min and "
                                f"is held down for {hd.seconds:.0f} s; {hd.remaining:.0f} s are "
                                f"left, then the automatic fallback hands LIM {lim} back")
        return OrderVerdict(True, f"fallback of LIM {lim} ordered: {home.name} is ready and "
                            f"{me} hands LIM {lim} back to it now")
    why = _blocker(c, x)
    if why is None:
        return OrderVerdict(True, f"fallback of LIM {lim} ordered: {home.name} is ready and {me} "
                            f"hands LIM {lim} back to it now")
    if not home.alive and wait is None:
        return OrderVerdict(False, f"fallback of LIM {lim} refused: {why}; LIM {lim} stays on "
                            f"{me}. Order it again once {home.name} is back, or order it with "
                            f"a wait to have it carried out as soon as {home.name} is ready")
    seconds = ORDER_WAIT_DEFAULT if wait is None else wait
    hd = c.hold_down(x)
    if hd.remaining > seconds:
        return OrderVerdict(False, f"fallback of LIM {lim} refused: {why}, which is more than "
                            f"the order's wait of {seconds:.0f} s; order it again with a longer "
                            "wait or after the hold-down")
    return OrderVerdict(True, f"fallback of LIM {lim} waits for {home.name} to be ready: {why}; "
                        f"it is carried out once {home.name} is ready, or dropped after "
                        f"{seconds:.0f} s", pending=True, wait=seconds)
