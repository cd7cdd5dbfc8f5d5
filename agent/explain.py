"""Why a LIM runs nowhere, as far as this node can tell: one sentence per LIM, for the
status (:func:`explain_down`). Pure, like ``decide``."""

from __future__ import annotations

from collections.abc import Mapping

from mxone_agent.config import Lock, NodeConfig
from mxone_agent.contract import seconds
from mxone_agent.local_state import LocalState
from mxone_agent.model import Role
from mxone_agent.peers import PeerView
from mxone_agent.situation import LAPSED, Situation


def explain_down(config: NodeConfig, peers: Mapping[str, PeerView], local: LocalState,
                 now: float) -> dict[int, str]:
    """Why each LIM that runs nowhere (as far as this node can tell) runs nowhere: one
    sentence per LIM, for status. The standby explains every LIM of the cluster; a
    regular server its own. Pure, like :func:`decide`."""
    c = Situation(config, peers, local, now)
    me = c.me
    out: dict[int, str] = {}
    standby = config.role is Role.STANDBY
    for x in config.lims:
        n = x.lim
        here = local.run(n)
        if here is not None and here.active:
            continue
        if not standby and x.server != me:
            continue
        other = c.home(x) if standby else c.peer(config.standby.name)
        if other.runs_active(n):
            continue
        if n in local.retiring:
            out[n] = f"LIM {n} is leaving cluster {config.cluster}: {me} does not run it"
            continue
        if not other.alive and not other.dead:
            out[n] = f"{other.name} is not heard yet (it counts as dead only after " \
                     f"{seconds(config.detection, config.detection)} s of silence)"
        elif (f := local.held(n, now)) is not None:
            out[n] = f"{f.reason}; tried again in {max(0.0, f.retry_at - now):.0f} s"
        elif c.behind is not None:
            out[n] = c.behind_clause()
        elif here is not None and here.fenced:
            out[n] = f"{LAPSED[4:].capitalize()} on {me}; {me} answers for it again once " \
                     "its decision says it owns it"
        elif standby and c.lags(other):
            out[n] = (f"{c.lag_clause(other)}: it starts nothing while {me} is alive, until the "
                      f"maintenance tool brings it to generation {config.generation}")
        elif not local.ready:
            out[n] = f"{me} is still loading"
        elif not standby:
            out[n] = (f"LIM {n} is locked to the standby, and {other.name} does not run it"
                      if x.lock is Lock.STANDBY else f"{me} is starting LIM {n}")
        elif other.alive:
            out[n] = f"{other.name} is back and about to run LIM {n}"
        elif x.lock is Lock.REGULAR:
            out[n] = f"{other.name} is down and LIM {n} is locked to its regular server"
        else:
            busy = [config.lim(k) for k in local.active_lims() if c.known(k)]
            if busy:
                b = busy[0]
                out[n] = (f"{other.name} is down and {me} runs LIM {b.lim} (priority "
                          f"{b.priority}), which LIM {n} (priority {x.priority}) does not "
                          "replace: the standby runs one LIM")
            else:
                out[n] = f"{other.name} is down; {me} is taking LIM {n} over"
    return out
