"""The commands that change the system: servers, standby servers, clusters, locks.

Each turns the operator's values into one pure action of :mod:`mxone_maintenance.actions`;
the offers say what the system offers now (the menus' pick lists), the action still decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mxone_agent import contract

from mxone_maintenance import actions
from mxone_maintenance.actions import Change, NewLim
from mxone_maintenance.commands.base import (
    PRIORITY_RULE,
    Command,
    InputRefused,
    Kind,
    Option,
    Param,
    Values,
    whole,
)
from mxone_maintenance.model import (
    TIMER_PRESETS,
    Cluster,
    FailoverBehaviour,
    FallbackType,
    Lock,
    Role,
    Server,
    System,
    Timers,
)
from mxone_maintenance.warning_rules import is_short

if TYPE_CHECKING:
    from mxone_maintenance.operations import AgentAnswer, ClusterOperations

FALLBACK_TYPES = (FallbackType.MANUAL.value, FallbackType.AUTOMATIC.value)
_WARNED = [f"{p} ({min(t.detection for t in per.values()):g} s)"
           for p, per in contract.TIMER_PRESETS.items()
           if is_short(min(t.detection for t in per.values()))]
TIMERS_HELP = ("failure detection preset: " + ", ".join(
    f"{p} (default)" if p == "mxone" else p for p in TIMER_PRESETS)
    + (f"; {', '.join(_WARNED)} is allowed with a warning: it demands a dedicated, low-loss "
       "LAN, servers not overloaded and real-time scheduling for the agent's loop"
       if _WARNED else ""))


# ---- what the system offers now ------------------------------------------------------------

def server_label(s: Server) -> str:
    what = f"LIM {s.lim}" if s.role == Role.LIM else str(s.role)
    return f"{s.name} ({s.base_ip}, {what})"


def unclustered(system: System, role: str) -> list[Server]:
    """The servers of ``role`` that are in no cluster."""
    return [s for s in system.servers if s.role == role and system.cluster_of_server(s.name) is None]


def cluster_label(c: Cluster) -> str:
    lims = ", ".join(str(n) for n in c.lim_numbers())
    return f"{c.name} (LIMs {lims}; standby {c.standby_name}; fallback {c.fallback}; {c.failover})"


def lim_options(system: System, cluster: Cluster, locked: bool | None = None) -> tuple[Option, ...]:
    """The LIMs of ``cluster`` (only the locked ones, or only the unlocked, when asked)."""
    options = []
    for cl in cluster.lims:
        if locked is not None and (cl.lock != Lock.NONE) != locked:
            continue
        name = system.server_for_lim(cl.lim).name
        options.append(Option(f"LIM {cl.lim} on {name} (alias {cl.alias_ip}, lock {cl.lock})", cl.lim))
    return tuple(options)


def _servers(servers: list[Server]) -> tuple[Option, ...]:
    return tuple(Option(server_label(s), s.name) for s in servers)


def _clusters(clusters: list[Cluster]) -> tuple[Option, ...]:
    return tuple(Option(cluster_label(c), c.name) for c in clusters)


def removable_servers(system: System) -> tuple[Option, ...]:
    return _servers([s for s in system.servers if system.cluster_of_server(s.name) is None])


def free_servers(system: System) -> tuple[Option, ...]:
    return _servers([s for s in system.servers if s.role == Role.FREE])


def free_standbys(system: System) -> tuple[Option, ...]:
    return _servers(unclustered(system, Role.STANDBY))


def free_lims(system: System) -> tuple[Option, ...]:
    return tuple(Option(server_label(s), s.lim) for s in
                 sorted(unclustered(system, Role.LIM), key=lambda s: s.lim or 0))


def timer_presets(_system: System) -> tuple[Option, ...]:
    """Every timer preset with the failure detection it gives (per failover behaviour when
    they differ); one the rules warn of says so."""
    options = []
    for name, per in contract.TIMER_PRESETS.items():
        seconds = {b: t.detection for b, t in per.items()}
        when = (f"{min(seconds.values()):g} s" if len(set(seconds.values())) == 1 else
                ", ".join(f"{d:g} s {b}" for b, d in seconds.items()))
        warned = is_short(min(seconds.values()))
        options.append(Option(f"{name}: detection in {when}"
                              + ("; allowed with a warning" if warned else ""), name))
    return tuple(options)


def all_clusters(system: System) -> tuple[Option, ...]:
    return _clusters(list(system.clusters))


def clusters_taking_lims(system: System) -> tuple[Option, ...]:
    """Clusters a LIM may join: a preloaded cluster is one LIM and its standby only."""
    return _clusters([c for c in system.clusters if c.failover != FailoverBehaviour.PRELOADED])


def clusters_for_preloaded(system: System) -> tuple[Option, ...]:
    """Clusters of one LIM + standby that are not preloaded yet."""
    return _clusters([c for c in system.clusters
                      if len(c.lims) == 1 and c.failover != FailoverBehaviour.PRELOADED])


# ---- the parameters they share -------------------------------------------------------------

CLUSTER = Param("name", metavar="CLUSTER", offer=all_clusters)
LIM = Param("lim", kind="int", metavar="LIM")
NEW_LIM = Param("lim", kind="new-lim", metavar="N:NEW_IP[:PRIORITY]", offer=free_lims)


def _name(v: Values) -> str:
    return str(v["name"])


# ---- Server in system ----------------------------------------------------------------------

def _add_server(system: System, v: Values) -> Change:
    return actions.add_server(system, v["name"], v["base_ip"], v["interface"], v.get("lim"))


def _create(system: System, v: Values) -> Change:
    timers = v["timers"]
    if timers not in TIMER_PRESETS:
        raise InputRefused(f"--timers = {timers}: not a timer preset (one of "
                           f"{', '.join(TIMER_PRESETS)})")
    return actions.create_cluster(system, _name(v), v["standby"], list(v["lims"]),
                                  v["fallback"], Timers(preset=timers))


def _set(system: System, v: Values) -> Change:
    priorities = dict(v.get("priority") or [])
    if v.get("fallback") is None and not priorities:
        raise InputRefused("cluster set: give --fallback and/or --priority LIM:PRIORITY")
    return actions.change_fallback_or_priority(system, _name(v), v.get("fallback"), priorities)


def lock_of(v: Values) -> str:
    """The lock a lock/unlock command sets (``none`` unlocks)."""
    return str(v.get("to") or Lock.NONE.value)


def cluster_of_lim(system: System, lim: int) -> Cluster:
    """The cluster LIM ``lim`` is in; refused (OperationError) naming the LIM otherwise."""
    from mxone_maintenance import operations

    return operations.cluster_of_lim(system, lim)


def _set_lock(system: System, v: Values) -> Change:
    cluster = cluster_of_lim(system, v["lim"]).name
    return actions.set_lock(system, cluster, v["lim"], lock_of(v))


def _tell_lock(agents: ClusterOperations, system: System, v: Values,
               skip: frozenset[str]) -> list[AgentAnswer]:
    """Every agent of the LIM's cluster learns its lock now; servers behind (``skip``) get
    it when they are brought current."""
    cluster = cluster_of_lim(system, v["lim"]).name
    if skip:
        return agents.tell_lock(system, cluster, v["lim"], lock_of(v), skip=set(skip))
    return agents.tell_lock(system, cluster, v["lim"], lock_of(v))


SERVER_COMMANDS = (
    Command("server.add", "add a server to the system (a LIM server with --lim, else a free "
            "server); its SSH host key is checked and pinned", Kind.CHANGE, (
                Param("name", metavar="NAME"),
                Param("base_ip", "e.g. 10.0.2.12/24", metavar="BASE_IP/PREFIX"),
                Param("interface", "the network interface (default eth0)", flag="--interface",
                      default="eth0", metavar="INTERFACE"),
                Param("lim", "the LIM number it runs", kind="int", flag="--lim", metavar="N"),
            ), change=_add_server),
    Command("server.remove", "remove a server that is in no cluster", Kind.CHANGE,
            (Param("name", metavar="NAME", offer=removable_servers),),
            change=lambda s, v: actions.remove_server(s, _name(v))),
)

STANDBY_COMMANDS = (
    Command("standby.convert", "make a free server a standby server", Kind.CHANGE,
            (Param("name", metavar="NAME", offer=free_servers),),
            change=lambda s, v: actions.convert_to_standby(s, _name(v))),
    Command("standby.free", "make a standby server (in no cluster) a free server", Kind.CHANGE,
            (Param("name", metavar="NAME", offer=free_standbys),),
            change=lambda s, v: actions.convert_to_free(s, _name(v))),
)

CLUSTER_CHANGES = (
    Command("cluster.create", "create a cluster of regular LIMs and one standby", Kind.CHANGE, (
        Param("name", metavar="NAME"),
        Param("standby", "the standby server", flag="--standby", required=True, metavar="SERVER",
              offer=free_standbys),
        Param("lims", "a LIM to put in the cluster: its new base address (the current one "
              "becomes its alias) and its priority (default 1); repeat per LIM", kind="new-lim",
              flag="--lim", required=True, repeat=True, metavar="N:NEW_IP[:PRIORITY]",
              offer=free_lims),
        Param("fallback", flag="--fallback", choices=FALLBACK_TYPES, default="manual"),
        Param("timers", TIMERS_HELP, flag="--timers", metavar="PRESET", default="mxone",
              offer=timer_presets),
    ), change=_create),
    Command("cluster.add-lim", "add a LIM to a cluster", Kind.CHANGE,
            (Param("name", metavar="CLUSTER", offer=clusters_taking_lims), NEW_LIM),
            change=lambda s, v: actions.add_lim(s, _name(v), v["lim"])),
    Command("cluster.remove-lim", "remove a LIM from a cluster (the last one removes the "
            "cluster)", Kind.CHANGE, (CLUSTER, LIM),
            change=lambda s, v: actions.remove_lim(s, _name(v), v["lim"])),
    Command("cluster.delete", "delete a cluster; its standby stays a standby server",
            Kind.CHANGE, (CLUSTER,), change=lambda s, v: actions.delete_cluster(s, _name(v))),
    Command("cluster.set", "change a cluster's fallback type or LIM priorities", Kind.CHANGE, (
        CLUSTER,
        Param("fallback", flag="--fallback", choices=FALLBACK_TYPES),
        Param("priority", "a LIM's new priority (lower value = runs first on the standby); "
              "repeatable", kind="lim-priority", flag="--priority", repeat=True,
              metavar="LIM:PRIORITY"),
    ), change=_set),
    Command("cluster.preloaded", "change a cluster (one LIM + standby) to preloaded failover",
            Kind.CHANGE, (Param("name", metavar="CLUSTER", offer=clusters_for_preloaded),),
            change=lambda s, v: actions.change_to_preloaded(s, _name(v))),
    Command("cluster.lock", "lock a LIM to its regular server or to the standby", Kind.CHANGE, (
        LIM, Param("to", flag="--to", required=True, choices=(Lock.REGULAR.value, Lock.STANDBY.value)),
    ), change=_set_lock, tell=_tell_lock),
    Command("cluster.unlock", "unlock a LIM", Kind.CHANGE, (LIM,), change=_set_lock,
            tell=_tell_lock),
)


def new_lim(lim: int, ip: str, priority_text: str, field: str) -> NewLim:
    """A LIM entering a cluster, from a form's text (the priority a whole number)."""
    return NewLim(lim, ip.strip(), whole(priority_text, field, PRIORITY_RULE))
