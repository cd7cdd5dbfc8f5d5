"""The status of every cluster as the node agents report it: the data, and its text.

:meth:`mxone_maintenance.operations.ClusterOperations.status` asks the agents and builds a
:class:`SystemStatus` with :func:`cluster_status`; :func:`render` gives Show status and
``cluster status`` their lines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mxone_maintenance import ssh
from mxone_maintenance.model import Cluster, System


@dataclass(frozen=True)
class ServerHealth:
    """One server as its own agent reports it, and as its peers see it.

    ``agent``: ``running``, ``not running``, ``unreachable`` or ``error``. ``seen_by``:
    peer name -> the liveness that peer reports for this server. ``version``: the running
    agent's version (``unknown`` from an agent too old to say; empty when it did not
    answer). ``network``: the bond under its cluster interface, as the agent reads it
    (:func:`mxone_agent.bonding.read_network`; None from an older agent).
    """

    server: str
    role: str
    agent: str
    generation: int | None = None
    readiness: str = ""
    seen_by: dict[str, str] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    version: str = ""
    network: dict[str, Any] | None = None

    @property
    def liveness(self) -> str:
        """How the peers see this server, in a few words."""
        if not self.seen_by:
            return "unknown (no peer answered)"
        kinds = sorted(set(self.seen_by.values()))
        if len(kinds) == 1:
            return kinds[0]
        return ", ".join(f"{v} per {k}" for k, v in sorted(self.seen_by.items()))


@dataclass(frozen=True)
class LimStatus:
    lim: int
    server: str
    alias_ip: str
    owner: str  # regular, standby, none, unknown
    lock: str
    priority: int
    why: str | None = None  # when it runs nowhere: why, as the agent that sees it says


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    standby: str
    fallback: str
    failover: str
    generation: int
    lims: tuple[LimStatus, ...]
    servers: tuple[ServerHealth, ...]
    alarms: tuple[dict[str, Any], ...] = ()
    transitions: tuple[dict[str, Any], ...] = ()
    last_decision: str = ""
    sync: tuple[dict[str, Any], ...] = ()  # per LIM, as its regular server's agent reports it
    # The standby's manual fallback orders: pending or being carried out, then the last
    # that ended (as its agent reports them).
    fallback_orders: tuple[dict[str, Any], ...] = ()
    fallback_ended: tuple[dict[str, Any], ...] = ()
    # LIMs a server still runs although they are not its to run (being stopped for good).
    retiring: tuple[dict[str, Any], ...] = ()

    @property
    def healthy(self) -> bool:
        return all(s.agent == "running" and s.generation == self.generation for s in self.servers)

    @property
    def versions(self) -> dict[str, list[str]]:
        """Agent version -> the servers whose running agent reports it."""
        out: dict[str, list[str]] = {}
        for s in self.servers:
            if s.agent == "running":
                out.setdefault(s.version or "unknown", []).append(s.server)
        return out


@dataclass(frozen=True)
class SystemStatus:
    generation: int
    clusters: tuple[ClusterStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for c, cs in zip(out["clusters"], self.clusters, strict=True):
            for s, hs in zip(c["servers"], cs.servers, strict=True):
                s["liveness"] = hs.liveness
            c["healthy"] = cs.healthy
        return out


def cancel_hint(lim: int) -> str:
    """How an operator withdraws a pending fallback order of ``lim``."""
    return (f"Cancel it with `mxone_maintenance cluster fallback {lim} --cancel` (menu: "
            "Cluster handling > Move LIM from standby to regular server)")


def cluster_status(system: System, c: Cluster, results: ssh.GroupResult,
                    reports: dict[str, dict[str, Any]]) -> ClusterStatus:
    members = list(system.cluster_servers(c))
    seen: dict[str, dict[str, str]] = {s.name: {} for s in members}
    for name, report in reports.items():
        if name not in seen:
            continue
        for p in report.get("peers") or []:
            if isinstance(p, dict) and p.get("name") in seen:
                seen[p["name"]][name] = str(p.get("liveness", "unknown"))
    servers = []
    for s in members:
        r = results.get(s.name)
        rep = reports.get(s.name)
        if rep is not None:
            version, network = rep.get("version"), rep.get("network")
            servers.append(ServerHealth(s.name, str(s.role), "running", rep.get("generation"),
                                        str(rep.get("readiness", "")), seen[s.name],
                                        seconds=r.seconds if r else 0.0,
                                        version=version if isinstance(version, str) and version
                                        else "unknown",
                                        network=network if isinstance(network, dict) else None))
        elif r is not None and r.error:
            servers.append(ServerHealth(s.name, str(s.role), "unreachable", seen_by=seen[s.name],
                                        error=r.error, seconds=r.seconds))
        elif r is not None and r.exit_status == 2:
            servers.append(ServerHealth(s.name, str(s.role), "not running", seen_by=seen[s.name],
                                        error=(r.stdout + r.stderr).strip()[-200:], seconds=r.seconds))
        else:
            servers.append(ServerHealth(s.name, str(s.role), "error", seen_by=seen[s.name],
                                        error=(r.describe() if r else "not asked"),
                                        seconds=r.seconds if r else 0.0))
    # The standby's view of who owns each LIM wins; else any regular's.
    order = [c.standby_name] + [s.name for s in members if s.name != c.standby_name]
    views = [reports[n] for n in order if n in reports]
    lims = []
    for cl in c.lims:
        owner, why = "unknown", None
        for v in views:
            found = next((x for x in v.get("lims") or [] if isinstance(x, dict) and x.get("lim") == cl.lim), None)
            if found is not None and found.get("owner"):
                owner = str(found["owner"])
                why = str(found["why"]) if owner == "none" and found.get("why") else None
                break
        lims.append(LimStatus(cl.lim, system.server_for_lim(cl.lim).name, cl.alias_ip, owner,
                              str(cl.lock), cl.priority, why))
    alarms: dict[tuple[Any, ...], dict[str, Any]] = {}
    transitions: list[dict[str, Any]] = []
    for name in order:
        rep = reports.get(name)
        if rep is None:
            continue
        for a in rep.get("alarms") or []:
            if isinstance(a, dict):
                alarms.setdefault((a.get("code"), a.get("lim"), a.get("handle")), {**a, "reported_by": name})
        for t in rep.get("transitions") or []:
            if isinstance(t, dict):
                transitions.append({**t, "reported_by": name})
    transitions.sort(key=lambda t: str(t.get("detected", "")))
    standby_rep = reports.get(c.standby_name) or (views[0] if views else {})
    sb = reports.get(c.standby_name) or {}
    orders = tuple(o for o in sb.get("fallback_orders") or [] if isinstance(o, dict))
    ended = tuple(o for o in sb.get("fallback_orders_ended") or [] if isinstance(o, dict))
    retiring = tuple({**x, "reported_by": name} for name in order
                     for x in (reports.get(name) or {}).get("retiring") or []
                     if isinstance(x, dict) and x.get("here"))
    return ClusterStatus(c.name, c.standby_name, str(c.fallback), str(c.failover),
                         system.generation, tuple(lims), tuple(servers),
                         tuple(alarms.values()), tuple(transitions[-5:]),
                         str(standby_rep.get("last_decision", "")),
                         _sync_rows(system, c, reports), orders, ended[-1:], retiring)


def _sync_rows(system: System, c: Cluster, reports: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Each LIM's sync row from its regular server's report (none when it did not answer)."""
    rows = []
    for cl in c.lims:
        rep = reports.get(system.server_for_lim(cl.lim).name)
        sync = rep.get("sync") if rep else None
        if not isinstance(sync, dict):
            continue
        if not sync.get("enabled", True):
            rows.append({"lim": cl.lim, "disabled": sync.get("reason") or "not configured"})
            continue
        row = next((x for x in sync.get("lims") or [] if isinstance(x, dict)
                    and x.get("lim") == cl.lim), None)
        if row is not None:
            rows.append(row)
    return tuple(rows)


def render(status: SystemStatus) -> list[str]:
    """The status as text lines: a table per cluster, then alarms and the last failover."""
    if not status.clusters:
        return [f"System generation {status.generation}: no cluster configured."]
    lines = [f"System generation {status.generation}, {len(status.clusters)} cluster(s)."]
    for c in status.clusters:
        lines += ["", f"Cluster {c.name}: standby {c.standby}, fallback {c.fallback}, "
                  f"failover {c.failover}" + ("" if c.healthy else "  [ATTENTION]")]
        lines.append(f"  {'LIM':>4}  {'server':<12} {'alias':<15} {'runs on':<9} {'lock':<8} prio")
        for lim in c.lims:
            lines.append(f"  {lim.lim:>4}  {lim.server:<12} {lim.alias_ip:<15} {lim.owner:<9} "
                         f"{lim.lock:<8} {lim.priority}")
            if lim.why:
                lines.append(f"        LIM {lim.lim} runs nowhere: {lim.why}")
        lines.append(f"  {'server':<12} {'role':<8} {'agent':<12} {'version':<9} {'gen':>4}  "
                     f"{'ready':<10} seen by peers")
        for s in c.servers:
            gen = "-" if s.generation is None else str(s.generation)
            if s.generation is not None and s.generation != c.generation:
                gen += "!"
            lines.append(f"  {s.server:<12} {s.role:<8} {s.agent:<12} {s.version or '-':<9} "
                         f"{gen:>4}  {s.readiness or '-':<10} {s.liveness}")
            if s.error:
                lines.append(f"      {s.error}")
            lines += network_lines(s.server, s.network)
        if len(versions := c.versions) > 1:
            lines.append(mixed_versions_text(versions))
        if c.alarms:
            lines.append("  Active alarms:")
            for a in c.alarms:
                lines.append(f"    {a.get('code', '?')} {a.get('severity', '')} {a.get('name', '')}"
                             f"{' LIM ' + str(a['lim']) if a.get('lim') is not None else ''}: "
                             f"{a.get('text', '')} (since {a.get('raised_at', '?')})")
        else:
            lines.append("  No active alarms.")
        for row in c.sync:
            lines.append("  " + sync_status_text(row))
        for o in c.fallback_orders:
            text = str(o.get("text") or f"fallback of LIM {o.get('lim')} is ordered")
            lines.append(f"  {text[:1].upper()}{text[1:]}" + (
                f" ({cancel_hint(int(o['lim']))})" if o.get("state") == "pending"
                and isinstance(o.get("lim"), int) else ""))
        for o in c.fallback_ended:
            lines.append(f"  Last fallback order: LIM {o.get('lim')}, ordered {o.get('ordered_at')}, "
                         f"ended {o.get('ended_at')}: {o.get('outcome')}")
        for x in c.retiring:
            lines.append(f"  {x.get('reported_by')} is stopping LIM {x.get('lim')} for good "
                         f"({x.get('why')}); it still runs there ({x.get('here')})")
        if c.transitions:
            t = c.transitions[-1]
            lines.append(f"  Last transition: LIM {t.get('lim')} {t.get('kind', '')} "
                         f"({t.get('reason', '')}): detected {t.get('detected')}, decided "
                         f"{t.get('decided')}, alias up {t.get('alias_up')}, first GARP "
                         f"{t.get('first_garp')}, service up {t.get('service_up')}")
        if c.last_decision:
            lines.append(f"  Last decision: {c.last_decision}")
    return lines


def mixed_versions_text(versions: dict[str, list[str]]) -> str:
    """The one line that flags agents of different versions in a cluster, the version most
    servers run first."""
    parts = [f"{v} on {', '.join(names)}" for v, names in
             sorted(versions.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    return f"  [ATTENTION] agents of different versions: {'; '.join(parts)} - redeploy"


def _slave_text(x: object) -> str:
    if not isinstance(x, dict):
        return "unknown"
    failures = x.get("link_failures")
    said = str(x.get("mii_status") or "unknown")
    if said != "up" and isinstance(failures, int) and failures > 0:
        said += f" ({failures} link failure{'' if failures == 1 else 's'})"
    return f"{x.get('name', '?')} {said}"


def network_lines(server: str, network: dict[str, Any] | None) -> list[str]:
    """The bond under a server's cluster interface (nothing when there is none): one line
    of its state, then a [WARNING] line per way its redundancy is degraded."""
    bond = (network or {}).get("bond")
    if network is None or not isinstance(bond, dict):
        return []
    name = str(bond.get("name") or "?")
    head = f"{network.get('interface')} over {name}" if network.get("over") else name
    mode = str(bond.get("mode") or "unknown")
    if bond.get("mii_status") != "up":
        mode += f", {bond.get('mii_status') or 'unknown'}"
    if bond.get("active_slave"):
        mode += f", active {bond['active_slave']}"
    slaves = bond.get("slaves")
    listed = ", ".join(_slave_text(x) for x in slaves) if isinstance(slaves, list) else ""
    out = [f"      {head}: {mode}; {listed or 'no slaves'}"]
    for why in bond.get("degraded") or []:
        out.append(f"      [WARNING] {server}: network redundancy degraded: {why}")
    return out


def sync_status_text(row: dict[str, Any]) -> str:
    """One LIM's exchange-data sync, as its regular server's agent reports it."""
    lim = row.get("lim")
    if row.get("disabled"):
        return f"Exchange data LIM {lim}: sync off ({row['disabled']})"
    if row.get("last_error") and (row.get("failures") or 0) > 0:
        return (f"Exchange data LIM {lim}: LAST SYNC FAILED ({row.get('last_error_at')}): "
                f"{row.get('last_error')}; next attempt {row.get('next_attempt') or '-'}")
    if row.get("last_success"):
        return (f"Exchange data LIM {lim}: synced {row.get('last_success')} "
                f"({row.get('last_direction')}, version {row.get('last_version')})")
    return f"Exchange data LIM {lim}: not synced yet"


