"""What a change does to the nodes, decided before anything is touched: the plan shown to
the operator, each node's new config, the LIMs that leave their cluster, and the servers'
own network configuration. Pure: no SSH, no files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mxone_agent import config as agent_config
from mxone_maintenance import nodeconfig
from mxone_maintenance.actions import Change
from mxone_maintenance.model import Cluster, ClusterLim, Server, System
from mxone_maintenance.service import PlanStep

HAND_BACK_TIMEOUT = 30.0  # a LIM leaving its cluster must be stopped on the standby by then


def node_configs(system: System) -> dict[str, agent_config.NodeConfig]:
    """Server -> its node config, for every server in a cluster of ``system``."""
    if not system.clusters:
        return {}
    return nodeconfig.all_nodes(system)


def summarize(before: agent_config.NodeConfig | None, after: agent_config.NodeConfig) -> str:
    """What changes in one node's config, in a few words."""
    def lims(c: agent_config.NodeConfig) -> str:
        return ", ".join(f"LIM {x.lim}@{x.server}" for x in c.lims)

    if before is None:
        return (f"joins cluster {after.cluster} as {after.role}; LIMs {lims(after)}; fallback "
                f"{after.fallback}; {after.failover} failover; detection "
                f"{after.timers.misses} x {after.timers.interval:g} s")
    diffs = []
    if before.cluster != after.cluster:
        diffs.append(f"cluster {before.cluster} -> {after.cluster}")
    if before.role != after.role:
        diffs.append(f"role {before.role} -> {after.role}")
    if lims(before) != lims(after):
        diffs.append(f"LIMs {lims(before)} -> {lims(after)}")
    for x in after.lims:
        old = next((y for y in before.lims if y.lim == x.lim), None)
        if old is not None and old.lock != x.lock:
            diffs.append(f"LIM {x.lim} lock {old.lock} -> {x.lock}")
        if old is not None and old.priority != x.priority:
            diffs.append(f"LIM {x.lim} priority {old.priority} -> {x.priority}")
        if old is not None and old.alias_ip != x.alias_ip:
            diffs.append(f"LIM {x.lim} alias {old.alias_ip} -> {x.alias_ip}")
    if before.fallback != after.fallback:
        diffs.append(f"fallback {before.fallback} -> {after.fallback}")
    if before.failover != after.failover:
        diffs.append(f"failover {before.failover} -> {after.failover}")
    if before.timers != after.timers:
        diffs.append(f"timers {before.timers.misses} x {before.timers.interval:g} s -> "
                     f"{after.timers.misses} x {after.timers.interval:g} s")
    if [dataclasses.astuple(s) for s in before.servers] != [dataclasses.astuple(s) for s in after.servers]:
        if not any(d.startswith("LIMs") for d in diffs):
            diffs.append("server addresses change")
    return "; ".join(diffs) or "no change but the generation"


def plan_steps(change: Change, local_name: str, config_path: Path) -> list[PlanStep]:
    """What a change does, server by server, in the order it is done; system.toml last."""
    before, after = node_configs(change.before), node_configs(change.after)
    gen0, gen1 = change.before.generation, change.after.generation
    steps = [PlanStep(name, "reached over SSH first, its host key checked (a key never "
                      "seen before is shown for you to accept)")
             for name in sorted({s.name for s in change.after.servers}
                                - {s.name for s in change.before.servers} - set(after))]
    for name, cfg in after.items():
        steps.append(PlanStep(name, f"node config generation {gen0} -> {gen1}: "
                              f"{summarize(before.get(name), cfg)}"))
        if name not in before:
            steps.append(PlanStep(name, f"cluster key of {cfg.cluster} written; sync key "
                                  "written and authorized for exchange-data sync only; "
                                  "agent installed (if missing) and started"))
        else:
            steps.append(PlanStep(name, "agent reloads; it must report generation "
                                  f"{gen1}"))
    for name in before:
        if name not in after:
            steps.append(PlanStep(name, f"leaves cluster {before[name].cluster}: agent "
                                  "stopped, node config, cluster key and sync key removed"))
    steps[:0] = leaving_plan(change)
    steps.extend(network_plan(change))
    steps.append(PlanStep(local_name, f"system config generation {gen1} written to "
                          f"{config_path}" + (" once every server above succeeded"
                                                   if steps else "")))
    return steps


def leaving_lims(change: Change) -> list[tuple[Cluster, ClusterLim, Server]]:
    """The LIMs that leave their cluster in ``change`` (remove LIM, delete cluster): each
    with its cluster and its regular server as they are before the change."""
    after = {c.name: c for c in change.after.clusters}
    out = []
    for c in change.before.clusters:
        kept = after.get(c.name)
        for cl in c.lims:
            if kept is None or cl.lim not in kept.lim_numbers():
                out.append((c, cl, change.before.server_for_lim(cl.lim)))
    return out


def leaving_plan(change: Change) -> list[PlanStep]:
    """What becomes of each LIM that leaves its cluster, and of its server's addresses."""
    steps = []
    gone = {c.name for c in change.before.clusters} - {c.name for c in change.after.clusters}
    for c, cl, home in leaving_lims(change):
        n, sb = cl.lim, c.standby_name
        steps.append(PlanStep(sb, f"first, before any config changes: LIM {n} leaves cluster "
                              f"{c.name}; if it runs on {sb} now, {sb} stops it and removes its "
                              f"alias {cl.alias_ip} (calls to LIM {n} drop until {home.name} runs "
                              f"it, a few seconds) and takes it over no more; the change stops "
                              f"with nothing changed if {sb} still runs it after "
                              f"{HAND_BACK_TIMEOUT:.0f} s"))
        steps.append(PlanStep(home.name, f"LIM {n} then runs on {home.name} outside any "
                              f"cluster (started there if it does not run), reachable at "
                              f"{cl.alias_ip}, the address its phones and gateways use, which "
                              f"is its base address again; {home.address}, its base address in "
                              f"the cluster, is no longer used (it stays up on {home.name} until "
                              "its network is restarted)"))
    for name in sorted(gone):
        sb = change.before.cluster(name).standby_name
        steps.append(PlanStep(sb, f"holds no LIM once cluster {name} is deleted (any LIM still "
                              "on it is stopped and its alias removed); its own base address "
                              "stays"))
    return steps


def network_request(change: Change, name: str, leaves: bool) -> dict[str, Any] | None:
    """What server ``name``'s own network configuration needs in ``change`` (a
    :mod:`mxone_agent.netconfig` request), or None.

    A server that stays in (or joins) a cluster with a new base address gets it written in
    place of its old one, which is now its LIM's alias; a server leaving its cluster
    (``leaves``) gets the tool's earlier change undone.
    """
    old, new = server_named(change.before, name), server_named(change.after, name)
    if leaves:
        server = old or new
        return {"interface": server.interface, "revert": True} if server else None
    if old is None or new is None or old.address == new.address:
        return None
    cluster = change.after.cluster_of_server(name)
    why = (f"base address {new.address} replaces {old.address}, now the alias of LIM {new.lim}"
           + (f" in cluster {cluster.name}" if cluster else "") + ", which only the agent "
           "brings up; undone when the LIM leaves the cluster")
    return {"interface": new.interface, "old": old.address, "new": new.address, "why": why}


def network_plan(change: Change) -> list[PlanStep]:
    """The plan's lines about the servers' own network configuration."""
    before, after = node_configs(change.before), node_configs(change.after)
    steps = []
    for name in after:
        req = network_request(change, name, leaves=False)
        if req is not None:
            steps.append(PlanStep(name, f"base address {req['old']} -> {req['new']}: "
                                  f"{req['new']} added on {req['interface']} and written into the "
                                  f"server's network configuration in place of {req['old']}, so "
                                  f"that it comes back after a reboot and {req['old']} (the alias) "
                                  "comes up only by the agent; refused before any change if that "
                                  "configuration is in a form the tool cannot change"))
    for name in before:
        old = server_named(change.before, name)
        if name not in after and old is not None and old.role == "lim":
            steps.append(PlanStep(name, "network configuration put back as it was before the "
                                  "cluster (the tool's change for its base address undone)"))
    return steps


def server_named(system: System, name: str) -> Server | None:
    return next((s for s in system.servers if s.name == name), None)
