"""The agent's brain: ``decide(config, peers, local, now) -> Decision``.

The same pure function runs on every node of a cluster, regular or standby; each node
decides only its own actions, from its own view of its peers. A Decision is a tuple of
actions plus ONE sentence that explains them (also when there is nothing to do).

The rules, as a node applies them
---------------------------------
Split brain. When a regular server and the standby hear each other and both run a LIM
actively, one side stops (deactivates, in a preloaded cluster): the side named by the
config's ``split_brain_stop`` (default: the regular), unless the LIM is locked, in which
case the side it is *not* locked to; but when the two advertise different config
generations, the side with the older one stops (see :mod:`~mxone_agent.situation`). Fallback then
follows the fallback type.

Boot. A regular server starts its LIM only once it knows the standby's state: the standby
is alive (heard, so its heartbeat says whether it runs the LIM) or dead (silent for a full
detection period of local running time). An unknown standby means wait. Passive preloading
claims no address, so it does not wait.

Locks. A lock stops the cluster from *moving* a LIM; no rule ever stops or deactivates a LIM
on the server it is locked to, nor starts or activates it on the other one.

* Locked to the regular: no failover. The standby never takes it over, even when the regular
  server is dead (an operator's planned reboot). If the LIM already runs on the standby when
  it is locked, it stays there until the fallback its type allows (locking does not force
  a fallback); after that it stays on the regular server.
* Locked to the standby: no fallback. The standby keeps it whatever the fallback type or a
  manual request says. If the LIM runs on its regular server when it is locked, it stays
  there (locking does not force a failover: that would drop calls) until that server fails
  or the LIM stops there. The regular server never starts it (nor activates it) while it is
  locked. A LIM locked to the standby that runs nowhere is what the operator asked for on
  the standby, so the standby takes it over as soon as it hears that its regular server
  does not run it - the same as for a dead regular, by priority. If the standby is busy
  with a LIM of equal or higher priority, the locked LIM stays down until the standby is
  free or it is unlocked: the operator said "not on the regular server", and the agent does
  not second-guess that.
* Unlocking changes nothing by itself; the next decisions follow the fallback type:
  automatic falls back if the regular server is alive and ready, manual waits for a request.

Alarms. The standby raises "LIM is running on standby server" for each LIM it runs
actively and clears it when it stops. "Standby server is out of order" is raised by exactly
one regular server - the one with the lowest LIM number among the regular servers it sees
alive (itself included) - while the standby is dead, and cleared when the standby is heard
again or a lower-numbered regular server is alive to hold it. Nothing changes on account
of a peer whose liveness is unknown. ``LocalState.alarms`` holds the alarms this node has
raised, so a decision raises or clears each one once.

LIMs that are not this node's to run. A LIM whose service runs here although the config
does not give it to this node (the config was reloaded without it: the LIM left the
cluster, or the cluster is being deleted), or that the maintenance tool is removing from
the cluster (``LocalState.retiring``), is stopped for good: RetireLim, before anything else
in the decision (but the cleanups below), and a retiring LIM is never taken over. A node
never crashes on, nor keeps, a LIM its config does not know.

A service that died, a failed action. A LIM whose service the daemon found no longer
running here is no longer in ``LocalState.runs`` but in ``LocalState.died``: the decision
first clears what the service left behind (StopLim; RetireLim for a LIM this node may not
hold), whatever else it does - a regular server starts its LIM again in the same decision,
the standby takes it over again if its regular server is still dead. A LIM action that
failed here holds its LIM back until its retry time (``LocalState.failures``): decisions
leave that LIM alone meanwhile and say why and for how long; a held LIM never replaces one
that runs, and the next candidate is served meanwhile.

Transition kinds. Each LIM action of a Decision carries its kind (``Decision.kinds``:
failover, fallback, split-brain, stop, start, preload, retire, lease retaken, cleanup), for
the status's transitions; nobody reads it out of the sentence.

Where the rest lives: the standby's takeover and its LIM limit in :mod:`~mxone_agent.takeover`;
the fallback handshake, the hold-down and operators' orders in :mod:`~mxone_agent.fallback`
and :mod:`~mxone_agent.local_state`; a node that is behind in :mod:`~mxone_agent.situation`;
why a LIM runs nowhere in :mod:`~mxone_agent.explain`. This module keeps the names callers
import from it (``from mxone_agent.decide import decide, LocalState, ...``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mxone_agent.actions import (
    ALARM_TITLE,
    Action,
    ActivateLim,
    AlarmCode,
    AlarmKey,
    ClearAlarm,
    DeactivateLim,
    RaiseAlarm,
    RetireLim,
    StartLim,
    StopLim,
)
from mxone_agent.config import FallbackType, Lock, NodeConfig
from mxone_agent.contract import seconds
from mxone_agent.explain import explain_down
from mxone_agent.fallback import (
    ORDER_WAIT_DEFAULT,
    ORDER_WAIT_MAX,
    OrderVerdict,
    fallback_blocker,
    judge_fallback_order,
)
from mxone_agent.local_state import (
    FLAP_WINDOW,
    HOLD_DOWN_BASE,
    HOLD_DOWN_CAP,
    Failure,
    HoldDown,
    LocalState,
    frozen_map,
    hold_down,
    record_appearance,
)
from mxone_agent.model import Mode, Role, TransitionKind
from mxone_agent.peers import PeerView
from mxone_agent.situation import (
    LAPSED,
    Behind,
    Situation,
    Step,
    behind,
    split_brain_stopper,
)
from mxone_agent.takeover import standby_preloaded, standby_regular

__all__ = [
    "FLAP_WINDOW", "HOLD_DOWN_BASE", "HOLD_DOWN_CAP", "ORDER_WAIT_DEFAULT", "ORDER_WAIT_MAX",
    "Behind", "Decision", "Failure", "HoldDown", "LocalState", "OrderVerdict", "behind",
    "decide", "explain_down", "fallback_blocker", "hold_down", "judge_fallback_order",
    "record_appearance",
]


@dataclass(frozen=True)
class Decision:
    """What this node does now, and why.

    ``actions`` are applied in order by the executor. ``reason`` is one sentence, logged
    once per decision. ``hold_downs`` lists the fallback hold-downs in force on this node
    (for status). ``split_brain``: the LIMs this decision stops (or deactivates) because
    this node and a peer both ran them. ``kinds``: the transition kind of each LIM action
    (start, stop, activate, deactivate, retire) of ``actions``; see :meth:`kind`.
    """

    actions: tuple[Action, ...]
    reason: str
    hold_downs: tuple[HoldDown, ...] = ()
    split_brain: frozenset[int] = frozenset()
    kinds: Mapping[Action, TransitionKind] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", frozen_map(self.kinds))

    def kind(self, action: Action) -> TransitionKind | None:
        """The transition kind of one of this decision's LIM actions (None: an alarm)."""
        return self.kinds.get(action)


def decide(config: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
           now: float) -> Decision:
    """This node's actions at ``now``, and the one sentence that explains them.

    ``peers`` maps server names to views judged at ``now`` (a missing peer counts as
    unknown). Pure and deterministic: no I/O, no clock; the same inputs give the same
    Decision. Converges: once the actions are applied (``local.applied``), deciding again
    with unchanged peers gives at most the alarms that follow from what now runs here
    (an alarm about a LIM is raised only once the LIM runs), and then nothing.
    """
    c = Situation(config, peers, local, now)
    cleanup, clauses = _cleanup(c)
    more, said = _retire(c)
    actions = cleanup + more
    clauses += said
    if c.behind is not None:
        clauses.append(c.behind_clause())
    if config.role is Role.STANDBY:
        more, said = (standby_preloaded(c) if config.preloaded else standby_regular(c))
    else:
        more, said = _regular(c)
    actions += more
    clauses += said
    alarm_actions, alarm_clauses = _alarms(c, actions)
    clauses += alarm_clauses
    return Decision(actions=tuple(actions + alarm_actions),
                    reason="; ".join(clauses) + ".", hold_downs=_hold_downs(c),
                    split_brain=frozenset(c.split_brain), kinds=_kinds(c, actions, cleanup))


_LIM_ACTIONS = (StartLim, StopLim, RetireLim, ActivateLim, DeactivateLim)


def _kinds(c: Situation, actions: Sequence[Action],
           cleanup: Sequence[Action]) -> dict[Action, TransitionKind]:
    """The transition kind of each LIM action: ``cleanup`` clears what a dead service left;
    the others are named by what this node is and does."""
    cfg = c.config
    standby_alive = cfg.role is Role.REGULAR and c.peer(cfg.standby.name).alive
    fenced = {r.lim for r in c.local.runs if r.fenced}
    out: dict[Action, TransitionKind] = {}
    for a in actions:
        if not isinstance(a, _LIM_ACTIONS):
            continue
        split = a.lim in c.split_brain
        if a in cleanup:
            kind = TransitionKind.CLEANUP
        elif isinstance(a, RetireLim):
            kind = TransitionKind.RETIRE
        elif isinstance(a, ActivateLim) and a.lim in fenced:
            kind = TransitionKind.LEASE_RETAKEN
        elif cfg.role is Role.STANDBY:
            kind = (TransitionKind.FAILOVER if isinstance(a, StartLim | ActivateLim)
                    else TransitionKind.SPLIT_BRAIN if split else TransitionKind.FALLBACK)
        elif isinstance(a, StopLim | DeactivateLim):
            kind = TransitionKind.SPLIT_BRAIN if split else TransitionKind.STOP
        elif isinstance(a, StartLim) and a.mode is Mode.PRELOADED:
            kind = TransitionKind.PRELOAD
        else:
            kind = TransitionKind.FALLBACK if standby_alive else TransitionKind.START
        out[a] = kind
    return out


def _cleanup(c: Situation) -> Step:
    """Clear what the service of a LIM that died here left behind (its lease, alias and
    block), before anything else: StopLim for a LIM this node may hold (it may start it
    again in the same decision), RetireLim for one it may not. A failure hold does not
    delay this: nothing answers for the LIM here any more."""
    actions: list[Action] = []
    clauses: list[str] = []
    for n in sorted(c.local.died):
        dead = f"the service of LIM {n} is no longer running on {c.me}"
        if c.may_hold(n):
            actions.append(StopLim(n))
            clauses.append(f"{dead}; {c.me} clears its lease and alias")
        else:
            actions.append(RetireLim(n))
            clauses.append(f"{dead}; {c.me} clears its lease and alias for good")
    return actions, clauses


def _retire(c: Situation) -> Step:
    """Stop for good every LIM that runs here but is not this node's to run (see the module
    docstring): one RetireLim each, before any other action of the decision."""
    actions: list[Action] = []
    clauses: list[str] = []
    for r in c.local.runs:
        n = r.lim
        if c.mine(n):
            continue
        if n in c.local.retiring:
            why = f"LIM {n} is leaving cluster {c.config.cluster}"
        elif c.known(n):
            why = f"LIM {n} belongs to {c.config.lim(n).server}, not to {c.me}"
        else:
            why = (f"LIM {n} runs on {c.me} but the config of cluster {c.config.cluster} "
                   f"(generation {c.config.generation}) does not name it")
        if c.held(n):
            clauses.append(f"{why}; {c.waits(n)}")
            continue
        actions.append(RetireLim(n))
        clauses.append(f"{why}; {c.me} stops it for good and removes its alias")
    return actions, clauses


def _regular(c: Situation) -> Step:
    """A regular server: it only ever runs, stops or waits for its own LIM."""
    me, cfg = c.me, c.config
    lim = cfg.lim_of(me)
    assert lim is not None  # a valid config gives every regular server one LIM
    n, run, sb = lim.lim, c.local.run(lim.lim), c.peer(cfg.standby.name)
    if not c.mine(n):  # never on a regular server (the control socket refuses it)
        return [], [] if run is not None else [f"LIM {n} is leaving cluster {cfg.cluster}"]
    if c.held(n):
        return [], [c.waits(n)]
    standby_runs = sb.runs_active(n)
    # The standby holds the LIM while it has its alias, answering or fenced: a fenced one
    # it may take again, so the regular starts only once the standby has let go of it.
    standby_holds = (r := sb.runs(n)) is not None and r.mode is Mode.ACTIVE
    if run is not None and run.active:
        if standby_runs:
            side, why = split_brain_stopper(c, lim, sb)
            both = f"{me} and {sb.name} both run LIM {n} (split brain)"
            if side is Role.REGULAR:
                verb, act = ("deactivates", DeactivateLim(n)) if cfg.preloaded else ("stops",
                                                                                     StopLim(n))
                then = ("it stays on the standby while locked" if lim.lock is Lock.STANDBY
                        else f"{cfg.fallback} fallback follows")
                c.split_brain.add(n)
                return [act], [f"{both}; {me} {verb} it because {why}; {then}"]
            return [], [f"{both}; {sb.name} is the side that stops, because {why}"]
        note = {"alive": "", "dead": f"; {c.silence(sb)}"}.get(str(sb.liveness),
                                                                f"; {sb.name} is not heard yet")
        return [], [f"{me} runs LIM {n}{note}"]

    fenced = run is not None and run.fenced
    lag = c.behind
    # Behind, it runs its LIM only while no other server can answer for it: the standby dead.
    may_run = lim.lock is not Lock.STANDBY and (
        sb.dead or (sb.alive and not standby_holds and lag is None))
    if not c.local.ready:
        return [], [f"{me} is still loading; it starts nothing yet"]
    if may_run:
        why = c.silence(sb) if sb.dead else f"{sb.name} does not run LIM {n}"
        if lag is not None:
            why += f", so no other server can answer for LIM {n}"
        if run is None:
            return [StartLim(n, Mode.ACTIVE)], [f"{why}; {me} starts LIM {n}"]
        if fenced:
            return [ActivateLim(n)], [f"{why}; LIM {n}'s {LAPSED[4:]}, and {me} takes it again"]
        still = ", which is still loading (recovery takes longer)" if run.loading else ""
        return [ActivateLim(n)], [f"{why}; {me} activates LIM {n}{still}"]

    if fenced and not sb.alive and not sb.dead:
        return [], [f"LIM {n}'s {LAPSED[4:]}; {me} waits to hear {sb.name} before it answers "
                    f"for it again (at most {seconds(cfg.detection, cfg.detection)} s)"]
    holds_fenced = standby_holds and not standby_runs
    if lag is not None:
        if fenced and standby_runs:
            verb, act = ("keeps it passive", DeactivateLim(n)) if cfg.preloaded else (
                "stops its service", StopLim(n))
            return [act], [f"{sb.name} runs LIM {n} and LIM {n}'s {LAPSED[4:]}; {me} {verb}"]
        state = (f"{sb.name} runs LIM {n}" if standby_runs else
                 f"{sb.name} holds LIM {n} but its lease there lapsed" if holds_fenced else
                 f"{sb.name} is not heard yet" if not sb.alive else
                 f"LIM {n} is locked to the standby" if lim.lock is Lock.STANDBY else
                 f"{sb.name} is alive and does not run LIM {n}")
        kept = f"LIM {n}'s {LAPSED[4:]} and {me} keeps it silent" if fenced else \
            f"{me} does not run LIM {n}"
        return [], [f"{state}; {kept} while behind"]
    if fenced and not holds_fenced:
        verb, act = ("keeps it passive", DeactivateLim(n)) if cfg.preloaded else (
            "stops its service", StopLim(n))
        whose = f"{sb.name} runs LIM {n}" if standby_runs else f"LIM {n} is locked to the standby"
        return [act], [f"{whose} and LIM {n}'s {LAPSED[4:]}; {me} {verb}"]
    if lim.lock is Lock.STANDBY:
        wait = f"LIM {n} is locked to the standby; {me} does not run it actively"
    elif holds_fenced:
        wait = (f"{sb.name} holds LIM {n} but its lease there lapsed; {me} waits for {sb.name} "
                "to take it again or let it go")
    elif not sb.alive:
        wait = (f"{me} waits to hear {sb.name} before it runs LIM {n} actively (at most "
                f"{seconds(cfg.detection, cfg.detection)} s)")
    elif cfg.fallback is FallbackType.AUTOMATIC:
        wait = f"{sb.name} runs LIM {n}; {me} waits for the automatic fallback"
    else:
        wait = f"{sb.name} runs LIM {n}; {me} waits for a manual fallback to be ordered"
    if run is None and cfg.preloaded:
        return [StartLim(n, Mode.PRELOADED)], [f"{wait}; it preloads LIM {n} (passive) meanwhile"]
    return [], [wait]


def _alarms(c: Situation, actions: Sequence[Action]) -> Step:
    """Raise and clear this node's alarms to match what runs here *now*.

    "LIM is running on standby server" is raised once the LIM runs on the standby (a
    takeover that fails raises nothing) and cleared once it no longer does: alarms follow
    the state the executor reports, never the state a decision hopes for. A fenced LIM
    (its alias silent for a while) keeps an alarm it has, and gets none it had not.
    """
    held = c.local.alarms
    out_of_order = (AlarmCode.STANDBY_OUT_OF_ORDER, None)
    desired: set[AlarmKey] = set()
    clauses: list[str] = []
    sb_name = c.config.standby.name
    if c.config.role is Role.STANDBY:
        # A LIM that is not this node's any more keeps the alarm it has until it has stopped.
        desired = {(AlarmCode.LIM_ON_STANDBY, r.lim) for r in c.local.runs if (
            (AlarmCode.LIM_ON_STANDBY, r.lim) in held and (r.fenced or not c.mine(r.lim)))
            or (c.mine(r.lim) and r.active)}
    else:
        sb = c.peer(sb_name)
        if sb.dead:
            mine = c.config.lim_of(c.me)
            live = [x.lim for x in c.config.lims if x.server != c.me and c.home(x).alive]
            if mine is not None and all(mine.lim < other for other in live):
                desired.add(out_of_order)
        elif not sb.alive and out_of_order in held:
            desired.add(out_of_order)  # unknown: no change

    # No alarm is raised for a LIM this very decision stops.
    stopping = {a.lim for a in actions if isinstance(a, StopLim | RetireLim | DeactivateLim)}
    raise_ = sorted((k for k in desired - held if k[1] not in stopping), key=str)
    clear = sorted(held - desired, key=str)
    actions_out: list[Action] = []
    for code, lim in raise_:
        if code is AlarmCode.STANDBY_OUT_OF_ORDER:
            text = f"{ALARM_TITLE[code]}: {sb_name} is not heard"
            clauses.append(f"{c.me} raises the alarm '{ALARM_TITLE[code]}'")
        else:
            text = f"{ALARM_TITLE[code]}: LIM {lim} runs on {c.me}"
            clauses.append(f"{c.me} raises the alarm '{ALARM_TITLE[code]}' for LIM {lim}")
        actions_out.append(RaiseAlarm(code, lim, text))
    for code, lim in clear:
        actions_out.append(ClearAlarm(code, lim))
        if code is AlarmCode.STANDBY_OUT_OF_ORDER:
            why = f"{sb_name} is heard again" if c.peer(sb_name).alive else \
                "a regular server with a lower LIM number holds it"
            clauses.append(f"{c.me} clears the alarm '{ALARM_TITLE[code]}' ({why})")
        else:
            clauses.append(f"{c.me} clears the alarm '{ALARM_TITLE[code]}' for LIM {lim}")
    return actions_out, clauses


def _hold_downs(c: Situation) -> tuple[HoldDown, ...]:
    if c.config.role is not Role.STANDBY or c.config.fallback is not FallbackType.AUTOMATIC:
        return ()
    out = []
    for n in c.local.active_lims():
        if c.known(n):
            hd = c.hold_down(c.config.lim(n))
            if hd.seconds > 0:
                out.append(hd)
    return tuple(out)
