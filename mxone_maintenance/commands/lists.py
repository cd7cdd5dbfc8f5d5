"""The lists: every server, every cluster, read from the config on LIM 1 (no agent asked).

Each gives one result: the JSON the CLI prints, the CLI's text lines and the menus' table.
"""

from __future__ import annotations

from typing import Any

from mxone_maintenance.commands.base import Command, Context, Kind, Report, Result, Table, Values
from mxone_maintenance.model import Cluster, Server, System


def _cluster_of(system: System, s: Server) -> Cluster | None:
    try:
        return system.cluster_of_server(s.name)
    except KeyError:  # a config read as written may name a server twice
        return None


def servers(system: System) -> Result:
    """Every server: its role, LIM, addresses, cluster, priority and lock."""
    rows: list[dict[str, Any]] = []
    cells = []
    for s in system.servers:
        c = _cluster_of(system, s)
        rows.append({"name": s.name, "base_ip": s.base_ip, "interface": s.interface,
                     "role": str(s.role), "lim": s.lim, "cluster": c.name if c else None})
        cl = c.cluster_lim(s.lim) if c and s.lim is not None and s.lim in c.lim_numbers() else None
        cells.append((s.name, str(s.role), "" if s.lim is None else str(s.lim), str(s.base_ip),
                      cl.alias_ip if cl else "", s.interface, c.name if c else "",
                      str(cl.priority) if cl else "", str(cl.lock) if cl else ""))
    lines = [f"{'name':<12} {'base IP':<18} {'iface':<6} {'role':<8} {'LIM':>4}  cluster"]
    lines += [f"{r['name']:<12} {r['base_ip']:<18} {r['interface']:<6} {r['role']:<8} "
              f"{'' if r['lim'] is None else r['lim']:>4}  {r['cluster'] or '-'}" for r in rows]
    summary = f"{len(rows)} server(s), system generation {system.generation}"
    table = Table(("Server", "Role", "LIM", "Base IP", "Alias IP", "Iface", "Cluster", "Prio",
                   "Lock"), tuple(cells), summary)
    return Result(True, {"generation": system.generation, "servers": rows},
                  (*lines, summary), table=table)


def _timers(c: Cluster, cli: bool) -> str:
    if c.timers.preset:
        return c.timers.preset
    return (f"{c.timers.misses} x {c.timers.interval} s" if cli
            else f"{c.timers.interval}s x {c.timers.misses}")


def clusters(system: System, behind: dict[str, dict[str, Any]]) -> Result:
    """Every cluster with its LIMs; ``behind``: the servers that missed a change."""
    from mxone_maintenance import orchestrate

    rows: list[dict[str, Any]] = [{"name": c.name, "standby": c.standby_name, "fallback": str(c.fallback),
             "failover": str(c.failover), "timers": _timers(c, True),
             "lims": [{"lim": cl.lim, "server": system.server_for_lim(cl.lim).name,
                       "alias_ip": cl.alias_ip, "priority": cl.priority, "lock": str(cl.lock)}
                      for cl in c.lims]} for c in system.clusters]
    lines = []
    for r in rows:
        lines.append(f"cluster {r['name']}: standby {r['standby']}, fallback {r['fallback']}, "
                     f"failover {r['failover']}, timers {r['timers']}")
        lines += [f"  LIM {lim['lim']:>3} on {lim['server']:<12} alias {lim['alias_ip']:<15} "
                  f"priority {lim['priority']} lock {lim['lock']}" for lim in r["lims"]]
    lines += orchestrate.behind_lines(behind, system.generation)
    lines.append(f"{len(rows)} cluster(s), system generation {system.generation}")
    cells = []
    for c in system.clusters:
        timers = _timers(c, False)
        for cl in c.lims:
            s = system.server_for_lim(cl.lim)
            cells.append((c.name, s.name, "regular", str(cl.lim), s.base_ip, cl.alias_ip,
                          str(cl.priority), str(cl.lock), str(c.fallback), str(c.failover), timers))
        s = system.server(c.standby_name)
        cells.append((c.name, s.name, "standby", "", s.base_ip, "", "", "", str(c.fallback),
                      str(c.failover), timers))
    table = Table(("Cluster", "Server", "Role", "LIM", "Base IP", "Alias IP", "Prio", "Lock",
                   "Fallback", "Failover", "Timers"), tuple(cells),
                  f"{len(system.clusters)} cluster(s)")
    return Result(True, {"generation": system.generation, "clusters": rows, "behind": behind},
                  tuple(lines), table=table)


def _servers(ctx: Context, v: Values, report: Report) -> Result:
    return servers(ctx.maintenance.system())


def _clusters(ctx: Context, v: Values, report: Report) -> Result:
    return clusters(ctx.maintenance.system(), ctx.behind())


LIST_COMMANDS = (
    Command("server.list", "list the servers of the system", Kind.READ, run=_servers),
    Command("cluster.list", "list the clusters and their LIMs", Kind.READ, run=_clusters),
)
