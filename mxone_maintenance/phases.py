"""The phases of a change around each node's own change: what is checked on the nodes
before anything changes (a missing base address, the standby-disk rule, the network
configuration, the LIMs that leave their cluster let go by the standby) and what is done
once the change holds (older exchange-data versions removed)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from mxone_agent import paths
from mxone_maintenance import changeplan, nodechange, rules, ssh
from mxone_maintenance.actions import Change
from mxone_maintenance.model import NodeFacts
from mxone_maintenance.nodechange import Call
from mxone_maintenance.service import Outcome


def missing_base_addresses(nodes: Mapping[str, nodechange.Node]) -> dict[str, dict[str, Any]]:
    """Servers whose (new) base address is not on their interface yet, and that address.

    Joining a cluster gives a LIM server a new base address (the one the operator
    entered); its old base address becomes the LIM's alias. The tool configures the new
    address itself at run time, so nothing needs a restart (the agent sends its
    heartbeats from it), and writes it into the server's network configuration
    (:meth:`~mxone_maintenance.nodechange.NodeChanger.write_network_config`).
    """
    missing = {}
    for name, n in nodes.items():
        have = n.snapshot.get("addresses")
        if n.config is None or have is None:
            continue
        me = n.config.local
        if [me.interface, str(me.base_ip)] not in [list(x) for x in have]:
            missing[name] = {"interface": me.interface, "address": str(me.base_ip),
                             "prefix": me.prefix}
    return missing


def disk_problems(change: Change, nodes: Mapping[str, nodechange.Node]) -> dict[str, str]:
    """The standby-disk rule for the clusters of ``change.after``, on the disk facts the
    nodes reported in their snapshots: the standby needs room for two backups of each of
    its regular servers (what exchange data already uses on the standby counts as room,
    since the cluster's backups replace it). Server -> refusal, for each standby short of it.
    """
    facts = {}
    for name, n in nodes.items():
        x = n.snapshot.get("xdata")
        if n.config is None or not isinstance(x, dict):
            continue
        own = n.config.lim_of(name)
        backup = int((x.get("newest") or {}).get(str(own.lim), 0)) if own else 0
        facts[name] = NodeFacts(int(x.get("free", 0)) + int(x.get("used", 0)), backup)
    return {str(v.value): f"refused by the standby-disk rule: {v.detail} (exchange-data "
            "versions of the regular servers, as they report them)"
            for v in rules.check(change.after, facts) if v.rule == "standby-disk"}


def inspect_network_configs(pool: ssh.Pool, call: Call, change: Change,
                            nodes: Mapping[str, nodechange.Node]) -> dict[str, str]:
    """Read, on every server whose base address changes or that leaves its cluster,
    the network configuration files the change will write (for the rollback), before
    anything changes; server -> refusal for each whose configuration the tool cannot
    change (the message names the file to change by hand)."""
    for name, n in nodes.items():
        n.net_request = changeplan.network_request(change, name, leaves=n.config is None)
    asked = {name: n for name, n in nodes.items() if n.net_request is not None}
    results = pool.each(
        [n.target for n in asked.values()],
        lambda t: call(t, "net-inspect", asked[t.name].net_request or {}))
    refused = {}
    for name, r in results.items():
        if r.ok:
            asked[name].net = json.loads(r.stdout)
        else:
            refused[name] = f"its network configuration cannot follow: {r.describe()}"
    return refused


def hand_back_leaving_lims(pool: ssh.Pool, call: Call, change: Change,
                           nodes: Mapping[str, nodechange.Node],
                           tracker: nodechange.Tracker) -> dict[str, str]:
    """Before any config changes: every LIM that leaves its cluster is stopped for good
    wherever it runs but on its own server - on the standby, whose agent is told to let
    it go (``ctl retire``) and is waited for - so no config that no longer names a LIM
    is ever deployed beside a running copy of it. Its regular server then takes it (the
    fallback handshake) or, at the latest, runs it when it leaves (``mxone-agent
    leave``). Server -> refusal when a LIM could not be let go; what was let go is then
    taken back (nothing was changed)."""
    work: dict[str, list[int]] = {}
    cut_off: dict[str, str] = {}
    for cluster, cl, home in changeplan.leaving_lims(change):
        sb = cluster.standby_name
        work.setdefault(sb, []).append(cl.lim)
        if sb not in nodes:  # unreachable: a degraded change would leave it behind
            cut_off[home.name] = (
                f"LIM {cl.lim} leaves cluster {cluster.name}, but {sb}, its standby, cannot "
                f"be told to let it go: once {home.name}'s agent stops, {sb} would take "
                f"LIM {cl.lim} over while {home.name} runs it outside the cluster (two "
                f"servers on {cl.alias_ip}); remove the LIM once {sb} can be reached")
    if cut_off:
        return cut_off
    work = {k: v for k, v in work.items() if k in nodes and nodes[k].snapshot.get("running")}
    if not work:
        return {}
    tracker("stopping the LIMs that leave their cluster where they run on the standby: "
            + ", ".join(f"LIM {', '.join(map(str, v))} on {k}" for k, v in work.items()), None)
    done = pool.each([nodes[k].target for k in work], lambda t: call(
        t, "retire-lims", {"lims": work[t.name], "timeout": changeplan.HAND_BACK_TIMEOUT},
        timeout=changeplan.HAND_BACK_TIMEOUT + 30))
    for name in work:
        nodes[name].retired_lims = list(work[name])
        r = done.get(name)
        if r is not None and r.ok:
            for line in json.loads(r.stdout).get("said") or []:
                tracker(f"{name}: {line}", None)
    if done.ok:
        return {}
    pool.each([nodes[k].target for k in work],
                   lambda t: call(t, "unretire", {"lims": work[t.name]}))
    for name in work:
        nodes[name].retired_lims = []
    return {name: (f"{r.describe()}: move the LIM back to its regular server first "
                   "(`mxone_maintenance cluster fallback LIM`), then try again")
            for name, r in done.failed.items()}


def keep_newest_xdata(pool: ssh.Pool, change: Change, reach: Mapping[str, ssh.Target]
                      ) -> list[Outcome]:
    """After a change whose older exchange-data versions no longer fit: every server of
    the clusters it touched keeps only the newest valid version of each of their LIMs.

    Runs once the new generation is in place, so a failed change never loses data; a
    server that cannot do it is reported (its versions stay until the next such change).
    """
    work: dict[str, set[int]] = {}
    before = {c.name: c for c in change.before.clusters}
    after = {c.name: c for c in change.after.clusters}
    for name in sorted(set(before) | set(after)):
        if before.get(name) == after.get(name):
            continue
        lims = {cl.lim for sysm in (change.before, change.after)
                for c in sysm.clusters if c.name == name for cl in c.lims}
        for sysm in (change.before, change.after):
            if name in {c.name for c in sysm.clusters}:
                for srv in sysm.cluster_servers(sysm.cluster(name)):
                    work.setdefault(srv.name, set()).update(lims)
    argv = {n: [paths.AGENT_BIN, "xdata", "keep-newest", *map(str, sorted(lims))]
            for n, lims in work.items()}
    results = pool.each([reach[n] for n in work],
                             lambda t: pool.run(t, argv[t.name], timeout=120))
    outcomes = []
    for name, r in results.items():
        removed: list[str] = []
        if r.ok:
            try:
                removed = [v for vs in json.loads(r.stdout)["removed"].values() for v in vs]
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                r = dataclasses.replace(r, ok=False, error=f"unexpected answer {r.stdout[-200:]!r}")
        if not r.ok:
            outcomes.append(Outcome(name, True, "older exchange-data versions NOT removed ("
                                    f"{r.describe()}); they are removed at the next change "
                                    "that needs it"))
        elif removed:
            outcomes.append(Outcome(name, True, "older exchange-data versions removed (the "
                                    "newest valid one of each LIM kept): " + ", ".join(removed)))
        else:
            outcomes.append(Outcome(name, True, "no older exchange-data version to remove"))
    return outcomes
