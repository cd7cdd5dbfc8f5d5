"""The standby's rules: which LIM it takes over, keeps or gives back (regular and
preloaded clusters).

Takeover (standby). The standby takes over the LIM of a *dead* regular server (and a LIM
locked to the standby that runs nowhere, see Locks). With several dead, the LIM with the
highest priority (lowest value) wins; on a tie the lower LIM number.
A LIM already running on the standby keeps it against an equal or lower priority; a strictly
higher one replaces it (StopLim of the running one, then StartLim of the other, in that
order). The standby never runs two LIMs.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from mxone_agent.actions import Action, ActivateLim, DeactivateLim, StartLim, StopLim
from mxone_agent.config import LimConfig, Lock
from mxone_agent.contract import seconds
from mxone_agent.fallback import gives_back
from mxone_agent.model import Mode
from mxone_agent.situation import LAPSED, Situation, Step


def _standby_may_claim(c: Situation, lim: LimConfig) -> bool:
    """Whether the standby may take ``lim`` over: its regular server is dead, or the LIM is
    locked to the standby and its (alive) regular server does not run it. Never a LIM
    locked to its regular server.

    "Does not run it" is believed only from a heartbeat of the lock's generation or later:
    a regular server that has the lock never starts the LIM, but one on an older config may
    have started it just after its last heartbeat was sent (a new lock deployed at that very
    moment) - then both would answer. So the standby waits for a heartbeat of its own
    generation."""
    if lim.lock is Lock.REGULAR or not c.mine(lim.lim) or c.behind is not None:
        return False
    home = c.home(lim)
    return home.dead or (lim.lock is Lock.STANDBY and home.alive and not c.lags(home)
                         and not home.runs_active(lim.lim))


def _why_claim(c: Situation, lim: LimConfig) -> str:
    home = c.home(lim)
    if home.dead:
        return c.silence(home)
    return f"LIM {lim.lim} is locked to the standby and {home.name} does not run it"


def _candidates(c: Situation, exclude: Iterable[int] = ()) -> list[LimConfig]:
    """LIMs the standby may take over now, best first: highest priority, then lowest
    number. A LIM held back by a recent failure here is not one of them."""
    skip = set(exclude)
    found = [x for x in c.config.lims
             if x.lim not in skip and _standby_may_claim(c, x) and c.held(x.lim) is None]
    return sorted(found, key=lambda x: (x.priority, x.lim))


def _take(c: Situation, lim: LimConfig) -> Action:
    """The action that makes ``lim`` answer here: start it, or - its service still runs
    here, fenced - grant its lease again."""
    run = c.local.run(lim.lim)
    return ActivateLim(lim.lim) if run is not None and run.fenced else StartLim(lim.lim)


def standby_regular(c: Situation) -> Step:
    """The standby of a regular (not preloaded) cluster."""
    me = c.me
    actions: list[Action] = []
    clauses: list[str] = []
    # What runs here with its alias: answering, or fenced (its lease lapsed). A fenced LIM
    # is kept (and answers again) exactly when an answering one would be.
    running = [c.config.lim(r.lim) for r in c.local.runs
               if r.mode is Mode.ACTIVE and c.mine(r.lim)]
    fenced = {r.lim for r in c.local.runs if r.fenced}
    verdicts = {x.lim: ((False, c.waits(x.lim)) if c.held(x.lim) else
                        gives_back(c, x, fenced=x.lim in fenced)) for x in running}
    # A fenced LIM answers again only once this node knows that its regular server does
    # not run it (heard since this agent resumed, or silent for a detection period).
    unsure = {x.lim for x in running if x.lim in fenced and not c.home(x).alive
              and not c.home(x).dead}
    for x in running:
        release, clause = verdicts[x.lim]
        if release:
            actions.append(StopLim(x.lim))
            clauses.append(clause)
    staying = [x for x in running if not verdicts[x.lim][0]]
    # Only one may stay. Normally there is never more than one; this repairs a state that
    # the executor or an operator left behind. A LIM locked here is the last one let go;
    # then priority; of equals, one that answers goes before one that is fenced.
    staying.sort(key=lambda x: (x.lock is not Lock.STANDBY, x.priority, x.lim in fenced,
                                c.local.started_at.get(x.lim, c.now), x.lim))
    if len(staying) > 1:
        kept, extra = staying[0], staying[1:]
        actions += [StopLim(x.lim) for x in extra]
        clauses.append(f"{me} runs {len(running)} LIMs but may run one; it keeps LIM "
                       f"{kept.lim} (priority {kept.priority}) and stops "
                       + ", ".join(f"LIM {x.lim}" for x in extra))

    if staying:
        kept = staying[0]
        # A LIM that failed here lately never replaces one that runs.
        better = [x for x in _candidates(c, exclude=[x.lim for x in staying])
                  if x.priority < kept.priority and x.lim not in c.local.failures]
        if not better:
            clause = verdicts[kept.lim][1]
            if kept.lim in unsure:
                clause += (f"; {LAPSED}, and {me} waits to hear {kept.server} before it "
                           "answers for it again")
            elif kept.lim in fenced and c.behind is not None:
                clause += f"; {LAPSED}, and {me} does not answer for it again while behind"
            elif kept.lim in fenced and c.held(kept.lim) is None:
                actions.append(ActivateLim(kept.lim))
                clause += f"; {LAPSED}, and {me} takes it again"
            clauses.append(clause)
            return actions, clauses
        best = better[0]
        if kept.lock is Lock.STANDBY:
            clauses.append(f"{_why_claim(c, best)} but {me} keeps LIM {kept.lim}, which is "
                           f"locked to the standby, over LIM {best.lim} (priority "
                           f"{best.priority})")
            if kept.lim in fenced and kept.lim not in unsure:
                actions.append(ActivateLim(kept.lim))
        elif not c.local.ready:
            clauses.append(f"{_why_claim(c, best)}; {me} is loading and does not replace "
                           f"LIM {kept.lim} yet")
        else:
            actions += [StopLim(kept.lim), _take(c, best)]
            clauses.append(f"{_why_claim(c, best)}; {me} replaces LIM {kept.lim} (priority "
                           f"{kept.priority}) with LIM {best.lim} (priority {best.priority})")
        return actions, clauses

    waiting = [f"LIM {x.lim} (priority {x.priority}) waits: {c.waits(x.lim)}"
               for x in c.config.lims if _standby_may_claim(c, x) and c.held(x.lim)]
    candidates = _candidates(c)
    if not candidates:
        if not clauses and not waiting:
            clauses.append(_standby_idle(c))
        return actions, clauses + waiting
    best = candidates[0]
    if not c.local.ready:
        clauses.append(f"{_why_claim(c, best)}; {me} is still loading and takes over "
                       "nothing yet")
        return actions, clauses + waiting
    actions.append(_take(c, best))
    clause = f"{_why_claim(c, best)}; {me} takes over LIM {best.lim} (priority {best.priority})"
    if len(candidates) > 1:
        rest = candidates[1:]
        clause += "; " + ", ".join(f"LIM {x.lim} (priority {x.priority})" for x in rest) + (
            " stays down" if len(rest) == 1 else " stay down")
    clauses.append(clause)
    return actions, clauses + waiting


def _standby_idle(c: Situation) -> str:
    """The sentence of a standby that runs no LIM and takes none over."""
    me = c.me
    if c.behind is not None:
        return f"{me} runs no LIM and takes none over"
    regulars = [x.server for x in c.config.lims]
    locked = [x for x in c.config.lims if x.lock is Lock.REGULAR and c.home(x).dead]
    if locked:
        x = locked[0]
        return (f"{c.silence(c.home(x))} but LIM {x.lim} is locked to its regular server; {me} "
                "does not take it over")
    leaving = [x for x in c.config.lims if x.lim in c.local.retiring and not c.home(x).alive]
    if leaving:
        return (f"{me} runs no LIM; " + ", ".join(f"LIM {x.lim}" for x in leaving)
                + f" {'is' if len(leaving) == 1 else 'are'} leaving cluster {c.config.cluster}, "
                "so it takes none over")
    unknown = [r for r in regulars if not c.peer(r).alive and not c.peer(r).dead]
    if unknown:
        return (f"{me} runs no LIM; waiting to hear {', '.join(unknown)} (a peer counts as dead "
                f"only after {seconds(c.config.detection, c.config.detection)} s of silence)")
    return f"{me} runs no LIM; all {len(regulars)} regular servers are alive"


def standby_preloaded(c: Situation) -> Step:
    """The standby of a preloaded cluster (one regular server, one LIM)."""
    me = c.me
    lim = c.config.lims[0]
    n, home, run = lim.lim, c.home(lim), c.local.run(lim.lim)
    if not c.mine(n):  # leaving the cluster: _retire stops it
        return [], [] if run is not None else [
            (f"LIM {n} is leaving cluster {c.config.cluster}; {me} neither preloads nor takes "
             "it over")]
    if c.held(n):
        return [], [c.waits(n)]
    if run is not None and run.mode is Mode.ACTIVE:
        release, clause = gives_back(c, lim, fenced=run.fenced)
        if release:
            return [DeactivateLim(n)], [clause]
        if run.fenced and not home.alive and not home.dead:
            return [], [f"{clause}; {LAPSED}, and {me} waits to hear {home.name} before it "
                        "answers for it again"]
        if run.fenced and c.behind is not None:
            return [], [f"{clause}; {LAPSED}, and {me} does not answer for it again while behind"]
        if run.fenced:
            return [ActivateLim(n)], [f"{clause}; {LAPSED}, and {me} takes it again"]
        return [], [clause]
    takeover = _standby_may_claim(c, lim)
    if takeover and not c.local.ready:
        return [], [f"{_why_claim(c, lim)}; {me} is still loading and takes over nothing yet"]
    if run is None:
        if not c.local.ready:
            return [], [f"{me} is still loading; it does not load LIM {n} yet"]
        if c.behind is not None:
            return [], [f"{me} does not preload LIM {n} while behind"]
        if takeover:
            return [StartLim(n, Mode.ACTIVE)], [(
                f"{_why_claim(c, lim)}; {me} takes over LIM {n}, which was not preloaded here "
                "and starts loading now (recovery takes longer)")]
        return [StartLim(n, Mode.PRELOADED)], [f"{me} preloads LIM {n} (passive) for {home.name}"]
    if takeover:
        still = ", which is still loading (recovery takes longer)" if run.loading else ""
        return [ActivateLim(n)], [f"{_why_claim(c, lim)}; {me} activates preloaded LIM {n}{still}"]
    if home.dead and c.behind is not None:
        return [], [f"{c.silence(home)}; {me} keeps LIM {n} passive while behind"]
    if home.dead:
        return [], [(f"{c.silence(home)} but LIM {n} is locked to its regular server; {me} "
                     "keeps it passive")]
    loading = " and still loading" if run.loading else ""
    if home.runs_active(n):
        return [], [f"{me} holds LIM {n} preloaded{loading} while {home.name} runs it"]
    state = "is not heard yet" if not home.alive else "does not run it actively yet"
    return [], [f"{me} holds LIM {n} preloaded{loading}; {home.name} {state}"]
