"""Every maintenance action, once, as a pure function from one system to the next.

Each action takes a valid :class:`System` and the operator's input, and returns a
:class:`Change`: the next generation of the system plus one line per effect, in the
operator's words. Nothing is written here; the orchestration applies a Change to the
nodes, and the menus, the CLI subcommands and the tests all call these same functions.

An action refuses with :class:`ActionError` when its own precondition fails (the server
is not in the system, the cluster already exists), and with ValidationError naming every
broken rule when the result would break a prerequisite. Either way nothing changed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from mxone_maintenance.errors import MxoneError
from mxone_maintenance.model import (
    Cluster,
    ClusterLim,
    FailoverBehaviour,
    Lock,
    NodeFacts,
    Role,
    Server,
    System,
    Timers,
)


class ActionError(MxoneError):
    """An action's precondition failed; ``field`` names the input it is about."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field, self.value, self.message = field, value, message
        shown = '""' if value == "" else value
        super().__init__(f"{field} = {shown}: {message}")


@dataclass(frozen=True)
class Change:
    """The next system and what the change does.

    ``removes_old_xdata``: after this change only one exchange-data version is kept
    (older versions do not fit the new cluster configuration).
    """

    before: System
    after: System
    effects: tuple[str, ...]
    removes_old_xdata: bool = False
    # A change that makes the system safer or is needed to recover (lock, unlock, fallback
    # type or priority, remove LIM, delete cluster, remove server) may be made while a
    # server is unreachable, once the operator confirms it: ``accept_behind`` names the
    # servers that may miss it (they are marked behind and brought current later).
    degradable: bool = False
    accept_behind: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewLim:
    """A LIM to put in a cluster: ``new_base_ip`` becomes the server's base address and its
    current base address becomes the LIM's alias (so nothing needs a restart)."""

    lim: int
    new_base_ip: str
    priority: int = 1


def _finish(before: System, after: System, effects: Sequence[str], *, xdata: bool = False,
            facts: dict[str, NodeFacts] | None = None, degradable: bool = False) -> Change:
    after.validated(facts)
    if xdata:
        effects = [*effects, "older exchange-data versions that no longer fit are removed; "
                   "one version is kept"]
    return Change(before, after, tuple(effects), xdata, degradable)


def _server(system: System, name: str, field: str = "server") -> Server:
    try:
        return system.server(name)
    except KeyError:
        raise ActionError(field, name, "no server with this name is in the system") from None


def _cluster(system: System, name: str) -> Cluster:
    try:
        return system.cluster(name)
    except KeyError:
        raise ActionError("cluster", name, "no cluster with this name is in the system") from None


def _replace_server(system: System, new: Server, old_name: str | None = None) -> tuple[Server, ...]:
    name = old_name or new.name
    return tuple(new if s.name == name else s for s in system.servers)


def _replace_cluster(system: System, new: Cluster | None, name: str) -> tuple[Cluster, ...]:
    return tuple(c for c in (new if c.name == name else c for c in system.clusters) if c is not None)


def _lim_server(system: System, lim: int) -> Server:
    try:
        return system.server_for_lim(lim)
    except KeyError:
        raise ActionError("LIM", lim, "no LIM server with this LIM number is in the system") from None


# ---- Server in system ------------------------------------------------------------------

def add_server(system: System, name: str, base_ip: str, interface: str = "eth0",
               lim: int | None = None) -> Change:
    """Add a server to the system: a LIM server when ``lim`` is given, else a free server."""
    if any(s.name == name for s in system.servers):
        raise ActionError("name", name, "a server with this name is already in the system")
    role = Role.LIM if lim is not None else Role.FREE
    server = Server(name, base_ip, interface, role, lim)
    after = system.next_generation(servers=(*system.servers, server))
    what = f"LIM server (LIM {lim})" if lim is not None else "free server"
    return _finish(system, after, [f"server {name} ({base_ip} on {interface}) joins the system as {what}"])


def remove_server(system: System, name: str) -> Change:
    """Remove a server that is in no cluster."""
    server = _server(system, name)
    cluster = system.cluster_of_server(name)
    if cluster is not None:
        raise ActionError("server", name, f"is in cluster {cluster.name}; remove it from the cluster first")
    after = system.next_generation(servers=tuple(s for s in system.servers if s.name != name))
    return _finish(system, after, [f"server {name} ({server.base_ip}) leaves the system"],
                   degradable=True)


# ---- Standby server in system ----------------------------------------------------------

def convert_to_standby(system: System, name: str) -> Change:
    server = _server(system, name)
    if server.role != Role.FREE:
        raise ActionError("server", name, f"is a {server.role} server; only a free server can become standby")
    after = system.next_generation(servers=_replace_server(system, dataclasses.replace(server, role=Role.STANDBY)))
    return _finish(system, after, [f"server {name} becomes a standby server"])


def convert_to_free(system: System, name: str) -> Change:
    server = _server(system, name)
    if server.role != Role.STANDBY:
        raise ActionError("server", name, f"is a {server.role} server, not a standby server")
    cluster = system.cluster_of_server(name)
    if cluster is not None:
        raise ActionError("server", name, f"is the standby of cluster {cluster.name}; delete the cluster first")
    after = system.next_generation(servers=_replace_server(system, dataclasses.replace(server, role=Role.FREE)))
    return _finish(system, after, [f"standby server {name} becomes a free server"])


# ---- Cluster handling ------------------------------------------------------------------

def _rebase(system: System, new_lims: Sequence[NewLim]) -> tuple[list[Server], list[ClusterLim], list[str]]:
    """Swap addresses for LIMs entering a cluster: the new IP becomes the base address and
    the old base address becomes the alias, on the same subnet."""
    servers, lims, effects = [], [], []
    for n in new_lims:
        server = _lim_server(system, n.lim)
        old = server.interface_address()
        try:
            new_ip = ipaddress.IPv4Address(n.new_base_ip)
        except ValueError:
            raise ActionError(f"new base IP of LIM {n.lim}", n.new_base_ip,
                              "not an IPv4 address (dotted quad, no prefix)") from None
        servers.append(dataclasses.replace(server, base_ip=f"{new_ip}/{old.network.prefixlen}"))
        lims.append(ClusterLim(n.lim, str(old.ip), n.priority))
        effects.append(f"LIM {n.lim} on {server.name}: base address becomes {new_ip}, "
                       f"the old base {old.ip} becomes its alias (priority {n.priority})")
    return servers, lims, effects


def create_cluster(system: System, name: str, standby: str, lims: Sequence[NewLim],
                   fallback: str = "manual", timers: Timers | None = None,
                   facts: dict[str, NodeFacts] | None = None) -> Change:
    if any(c.name == name for c in system.clusters):
        raise ActionError("cluster name", name, "a cluster with this name already exists")
    if not lims:
        raise ActionError("LIMs", "none", "a cluster needs at least one regular LIM")
    _server(system, standby, "standby server")
    new_servers, cluster_lims, effects = _rebase(system, lims)
    servers = system.servers
    for s in new_servers:
        servers = tuple(s if x.name == s.name else x for x in servers)
    cluster = Cluster(name, (standby,), tuple(cluster_lims), fallback=fallback,
                      timers=timers or Timers())
    after = system.next_generation(servers=servers, clusters=(*system.clusters, cluster))
    return _finish(system, after, [
        f"cluster {name} is created with standby {standby}, fallback {fallback}", *effects,
    ], xdata=True, facts=facts)


def add_lim(system: System, cluster_name: str, lim: NewLim,
            facts: dict[str, NodeFacts] | None = None) -> Change:
    cluster = _cluster(system, cluster_name)
    if cluster.failover == FailoverBehaviour.PRELOADED:
        raise ActionError("cluster", cluster_name, "is preloaded (one regular + one standby only); "
                          "delete and re-create it to add LIMs")
    new_servers, cluster_lims, effects = _rebase(system, [lim])
    servers = tuple(new_servers[0] if s.name == new_servers[0].name else s for s in system.servers)
    new_cluster = dataclasses.replace(cluster, lims=(*cluster.lims, *cluster_lims))
    after = system.next_generation(servers=servers, clusters=_replace_cluster(system, new_cluster, cluster_name))
    return _finish(system, after, [f"LIM {lim.lim} joins cluster {cluster_name}", *effects],
                   xdata=True, facts=facts)


def _restore_base(system: System, cl: ClusterLim) -> tuple[Server, str]:
    """The LIM server with its alias back as base address (the reverse of joining)."""
    server = system.server_for_lim(cl.lim)
    prefix = server.interface_address().network.prefixlen
    restored = dataclasses.replace(server, base_ip=f"{cl.alias_ip}/{prefix}")
    return restored, (f"LIM {cl.lim} on {server.name}: alias {cl.alias_ip} becomes its base "
                      f"address again; {server.address} is no longer used")


def remove_lim(system: System, cluster_name: str, lim: int) -> Change:
    """Remove a LIM from a cluster; removing the last LIM removes the cluster."""
    cluster = _cluster(system, cluster_name)
    if lim not in cluster.lim_numbers():
        raise ActionError("LIM", lim, f"is not in cluster {cluster_name}")
    restored, effect = _restore_base(system, cluster.cluster_lim(lim))
    remaining = tuple(cl for cl in cluster.lims if cl.lim != lim)
    new_cluster = dataclasses.replace(cluster, lims=remaining) if remaining else None
    effects = [f"LIM {lim} leaves cluster {cluster_name}", effect]
    if new_cluster is None:
        effects.append(f"it was the last LIM: cluster {cluster_name} is removed")
    after = system.next_generation(servers=_replace_server(system, restored),
                                   clusters=_replace_cluster(system, new_cluster, cluster_name))
    return _finish(system, after, effects, xdata=True, degradable=True)


def delete_cluster(system: System, cluster_name: str) -> Change:
    cluster = _cluster(system, cluster_name)
    servers = system.servers
    effects = [f"cluster {cluster_name} is deleted; standby {cluster.standby_name} stays a standby server"]
    for cl in cluster.lims:
        restored, effect = _restore_base(system, cl)
        servers = tuple(restored if s.name == restored.name else s for s in servers)
        effects.append(effect)
    after = system.next_generation(servers=servers, clusters=_replace_cluster(system, None, cluster_name))
    return _finish(system, after, effects, xdata=True, degradable=True)


def change_fallback_or_priority(system: System, cluster_name: str, fallback: str | None = None,
                                priorities: dict[int, int] | None = None) -> Change:
    cluster = _cluster(system, cluster_name)
    effects = []
    new = cluster
    if fallback is not None and fallback != cluster.fallback:
        new = dataclasses.replace(new, fallback=fallback)
        effects.append(f"cluster {cluster_name}: fallback {cluster.fallback} -> {fallback}")
    for lim, priority in (priorities or {}).items():
        if lim not in cluster.lim_numbers():
            raise ActionError("LIM", lim, f"is not in cluster {cluster_name}")
        old = cluster.cluster_lim(lim).priority
        if priority != old:
            new = dataclasses.replace(new, lims=tuple(
                dataclasses.replace(cl, priority=priority) if cl.lim == lim else cl for cl in new.lims))
            effects.append(f"LIM {lim}: priority {old} -> {priority}")
    if not effects:
        raise ActionError("cluster", cluster_name, "nothing to change: the values are the current ones")
    after = system.next_generation(clusters=_replace_cluster(system, new, cluster_name))
    return _finish(system, after, effects, xdata=True, degradable=True)


def change_to_preloaded(system: System, cluster_name: str) -> Change:
    cluster = _cluster(system, cluster_name)
    if cluster.failover == FailoverBehaviour.PRELOADED:
        raise ActionError("cluster", cluster_name, "is already preloaded")
    new = dataclasses.replace(cluster, failover=FailoverBehaviour.PRELOADED)
    after = system.next_generation(clusters=_replace_cluster(system, new, cluster_name))
    return _finish(system, after, [
        f"cluster {cluster_name}: failover behaviour regular -> preloaded "
        f"(the LIM is loaded on {cluster.standby_name} too; to undo, delete the cluster)",
    ], xdata=True)


def set_lock(system: System, cluster_name: str, lim: int, lock: str) -> Change:
    """Lock a LIM to its regular server or to the standby, or unlock it (``none``)."""
    cluster = _cluster(system, cluster_name)
    if lim not in cluster.lim_numbers():
        raise ActionError("LIM", lim, f"is not in cluster {cluster_name}")
    old = cluster.cluster_lim(lim).lock
    if old == lock:
        raise ActionError("lock", lock, f"LIM {lim} already has this lock")
    new = dataclasses.replace(cluster, lims=tuple(
        dataclasses.replace(cl, lock=lock) if cl.lim == lim else cl for cl in cluster.lims))
    after = system.next_generation(clusters=_replace_cluster(system, new, cluster_name))
    words = {Lock.NONE: "unlocked", Lock.REGULAR: "locked to its regular server",
             Lock.STANDBY: "locked to the standby server"}
    return _finish(system, after, [f"LIM {lim} is {words.get(lock, lock)}"],  # type: ignore[call-overload]
                   degradable=True)
