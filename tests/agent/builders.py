"""Small builders for agent tests: a cluster config, heartbeats, peer views, local states.

The reference cluster: regular servers lim2, lim3, lim4 (LIMs 2, 3, 4; priorities 1, 2, 2
unless given) on 10.77.0.0/24 and the standby ``sb``; heartbeat every 1 s, 3 misses, so a
peer is dead after 3.0 s. Decisions are taken at NOW.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mxone_agent.actions import AlarmCode
from mxone_agent.config import NodeConfig, Timers, load_node_config
from mxone_agent.decide import Failure, LocalState
from mxone_agent.heartbeat import Heartbeat
from mxone_agent.model import LimRun, Mode, Readiness, Role
from mxone_agent.peers import Liveness, PeerView

NOW = 1000.0
TIMERS = Timers(interval=1.0, misses=3)
STANDBY = "sb"
CLUSTER = "cluster1"
SECRET = b"0123456789abcdef-cluster1-secret"


def server_of(lim: int) -> str:
    return f"lim{lim}"


def config_dict(node: str = STANDBY, *, lims: Sequence[tuple[int, int]] = ((2, 1), (3, 2), (4, 2)),
                failover: str = "regular", fallback: str = "automatic",
                split_brain_stop: str | None = "regular", locks: Mapping[int, str] | None = None,
                timers: Timers = TIMERS, generation: int = 1) -> dict[str, Any]:
    """A valid format-1 document; ``lims`` are (LIM number, priority) pairs."""
    locks = locks or {}
    servers = [{"name": server_of(n), "base_ip": f"10.77.0.{30 + n}", "prefix": 24,
                "interface": "eth0", "role": "regular"} for n, _ in lims]
    servers.append({"name": STANDBY, "base_ip": "10.77.0.90", "prefix": 24,
                    "interface": "eth0", "role": "standby"})
    doc: dict[str, Any] = {
        "format": 1, "generation": generation, "node": node, "cluster": CLUSTER,
        "fallback": fallback, "failover": failover,
        "timers": {"interval": timers.interval, "misses": timers.misses},
        "garp": {"burst": 3, "second_burst_after": 2.0, "refresh_interval": 30.0},
        "heartbeat_port": 7011, "servers": servers,
        "lims": [{"lim": n, "server": server_of(n), "alias_ip": f"10.77.0.{10 + n}",
                  "prefix": 24, "interface": "eth0", "priority": p,
                  "lock": locks.get(n, "none")} for n, p in lims],
    }
    if split_brain_stop is not None:
        doc["split_brain_stop"] = split_brain_stop
    return doc


def cluster_config(node: str = STANDBY, **kw: Any) -> NodeConfig:
    return load_node_config(config_dict(node, **kw))


def preloaded_config(node: str = STANDBY, **kw: Any) -> NodeConfig:
    return cluster_config(node, lims=((2, 1),), failover="preloaded", **kw)


def active(lim: int, loading: bool = False) -> LimRun:
    return LimRun(lim, Mode.ACTIVE, loading)


def passive(lim: int, loading: bool = False) -> LimRun:
    return LimRun(lim, Mode.PRELOADED, loading)


def fenced(lim: int, loading: bool = False) -> LimRun:
    """An active LIM whose lease lapsed: its service runs, its alias does not answer."""
    return LimRun(lim, Mode.ACTIVE, loading, fenced=True)


def heartbeat(sender: str, runs: Iterable[LimRun] = (), *, ready: bool = True,
              incarnation: int = 1, seq: int = 1, generation: int = 1) -> Heartbeat:
    return Heartbeat(cluster=CLUSTER, sender=sender, incarnation=incarnation, seq=seq,
                     generation=generation,
                     role=Role.STANDBY if sender == STANDBY else Role.REGULAR,
                     readiness=Readiness.READY if ready else Readiness.LOADING, lims=tuple(runs))


def alive(name: str, runs: Iterable[LimRun] = (), *, ready: bool = True,
          incarnation: int = 1, generation: int = 1) -> PeerView:
    """A peer heard half a second ago, advertising config ``generation``."""
    return PeerView(name, Liveness.ALIVE, NOW - 0.5,
                    heartbeat(name, runs, ready=ready, incarnation=incarnation,
                              generation=generation))


def dead(name: str, silent: float | None = 3.5, runs: Iterable[LimRun] = (), *,
         generation: int = 1) -> PeerView:
    """A peer judged dead: last heard ``silent`` seconds ago (None: never heard)."""
    if silent is None:
        return PeerView(name, Liveness.DEAD)
    return PeerView(name, Liveness.DEAD, NOW - silent,
                    heartbeat(name, runs, generation=generation))


def unknown(name: str) -> PeerView:
    return PeerView.unknown(name)


def peers(*views: PeerView) -> dict[str, PeerView]:
    return {v.name: v for v in views}


def local(*runs: LimRun, ready: bool = True, requests: Iterable[int] = (),
          appearances: Mapping[int, Sequence[float]] | None = None,
          alarms: Iterable[tuple[AlarmCode, int | None]] | None = None,
          standby: bool = False, failures: Mapping[int, Failure] | None = None,
          retiring: Iterable[int] = (), died: Iterable[int] = ()) -> LocalState:
    """A local state; with ``standby`` the LIM-on-standby alarms of its runs with an alias
    (active or fenced) are held; ``retiring``: LIMs the maintenance tool is removing;
    ``died``: LIMs whose service was found dead here."""
    if alarms is None:
        alarms = [(AlarmCode.LIM_ON_STANDBY, r.lim) for r in runs
                  if r.mode is Mode.ACTIVE] if standby else []
    return LocalState(runs=tuple(runs), readiness=Readiness.READY if ready else Readiness.LOADING,
                      started_at={r.lim: NOW - 100.0 for r in runs},
                      fallback_requests=frozenset(requests), appearances=appearances or {},
                      alarms=frozenset(alarms), failures=failures or {},
                      retiring=frozenset(retiring), died=frozenset(died))


def failed(lim: int, left: float = 4.0,
           why: str = "the service did not start") -> dict[int, Failure]:
    """A failure of an action on ``lim`` that holds it back for ``left`` more seconds."""
    return {lim: Failure(f"LIM {lim}: {why}", NOW + left)}


@dataclass(frozen=True)
class Case:
    """One row of a decide() table: a node's view in, the actions and the sentence out
    (``says``: fragments of the sentence, or the whole sentence); ``kinds``: the transition
    kind of each LIM action, where a table asserts them."""

    id: str
    node: str
    peers: dict[str, PeerView]
    local: LocalState
    actions: tuple[Any, ...]
    says: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    preloaded: bool = False
    kinds: tuple[Any, ...] = ()


def case_config(case: Case) -> NodeConfig:
    builder = preloaded_config if case.preloaded else cluster_config
    return builder(case.node, **case.config)
