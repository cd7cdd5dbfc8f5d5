"""What is asked of the running agents: status, manual fallback, lock notices, data sync.

The menus (through mxone_menus.operations) and the CLI subcommands call these same
functions. Each call goes to every server concerned in parallel over one :class:`ssh.Pool`;
a server that does not answer is reported as such, never stops the others.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mxone_maintenance import orchestrate, ssh
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.model import Cluster, Lock, System

AGENT = orchestrate.AGENT_BIN


class OperationError(MxoneError):
    pass


@dataclass(frozen=True)
class ServerHealth:
    """One server as its own agent reports it, and as its peers see it.

    ``agent``: ``running``, ``not running``, ``unreachable`` or ``error``. ``seen_by``:
    peer name -> the liveness that peer reports for this server.
    """

    server: str
    role: str
    agent: str
    generation: int | None = None
    readiness: str = ""
    seen_by: dict[str, str] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0

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


@dataclass(frozen=True)
class AgentAnswer:
    """One agent's answer to a ctl command. ``pending``: accepted, carried out later (a
    fallback order that waits for its regular server to be ready)."""

    server: str
    ok: bool
    text: str
    pending: bool = False

    @property
    def word(self) -> str:
        """OK, PENDING or FAILED, for one line of output."""
        return "PENDING" if self.ok and self.pending else "OK" if self.ok else "FAILED"


class ClusterOperations:
    """The agent-side operations over a pool of SSH connections."""

    def __init__(self, pool: ssh.Pool) -> None:
        self.pool = pool

    # ---- status -------------------------------------------------------------------------

    def status(self, system: System) -> SystemStatus:
        """Every cluster server's status, in parallel: the agent's status file when it is
        fresh and its agent alive (no process started on the server), else ``ctl status``."""
        reach = orchestrate.targets(system)
        names = [s.name for c in system.clusters for s in system.cluster_servers(c)]
        results = self.pool.run_all([reach[n] for n in names], STATUS_COMMAND, timeout=20)
        results = _from_status_files(results)
        stale = [n for n, r in results.items() if r is None]
        if stale:
            again = self.pool.run_all([reach[n] for n in stale], [AGENT, "ctl", "status"], timeout=20)
            results.update(again)
        reports: dict[str, dict[str, Any]] = {}
        for name, r in results.items():
            if r is not None and r.ok:
                try:
                    report = json.loads(r.stdout)
                except json.JSONDecodeError:
                    continue
                if isinstance(report, dict):
                    reports[name] = report
        done = ssh.GroupResult({k: v for k, v in results.items() if v is not None})
        return SystemStatus(system.generation, tuple(
            _cluster_status(system, c, done, reports) for c in system.clusters))

    # ---- orders -------------------------------------------------------------------------

    def fallback(self, system: System, cluster: str, lim: int, wait: float | None = None,
                 cancel: bool = False) -> AgentAnswer:
        """Order the standby of ``cluster`` to hand LIM ``lim`` back to its regular server.

        The standby carries it out now, refuses it (the answer says why: the regular server
        is not heard, it is in its hold-down, the LIM is locked...), or keeps it pending
        until the regular server is ready (``pending``), for at most ``wait`` seconds (the
        agent's default when None). ``cancel`` withdraws a pending order.
        """
        c = _cluster(system, cluster)
        if lim not in c.lim_numbers():
            raise OperationError(f"LIM = {lim}: not in cluster {cluster} (its LIMs: "
                                 f"{', '.join(map(str, c.lim_numbers()))})")
        if wait is not None and cancel:
            raise OperationError("wait and cancel: give one of them (cancel withdraws a "
                                 "pending order, wait sets how long a new one may wait)")
        if wait is not None and not (isinstance(wait, int | float) and WAIT_MIN <= wait <= WAIT_MAX):
            raise OperationError(f"wait = {wait}: seconds from {WAIT_MIN:.0f} to {WAIT_MAX:.0f}")
        argv = [AGENT, "ctl", "fallback", str(lim)]
        if wait is not None:
            argv += ["--wait", f"{float(wait):g}"]
        if cancel:
            argv.append("--cancel")
        target = orchestrate.targets(system)[c.standby_name]
        r = self.pool.run(target, argv, timeout=60)
        a = _answer(c.standby_name, r)
        if a.pending:
            a = dataclasses.replace(a, text=f"{a.text}. {cancel_hint(lim)}")
        return a

    def tell_lock(self, system: System, cluster: str, lim: int, lock: str,
                  skip: set[str] | frozenset[str] = frozenset()) -> list[AgentAnswer]:
        """Tell every agent of the cluster the LIM's lock now (``none`` unlocks); ``skip``:
        servers behind (unreachable), which get the lock when brought current."""
        c = _cluster(system, cluster)
        argv = ([AGENT, "ctl", "unlock", str(lim)] if lock == Lock.NONE
                else [AGENT, "ctl", "lock", str(lim), str(lock)])
        reach = orchestrate.targets(system)
        results = self.pool.run_all([reach[s.name] for s in system.cluster_servers(c)
                                     if s.name not in skip], argv, timeout=30)
        return [_answer(name, r) for name, r in results.items()]

    def sync(self, system: System, cluster: str,
             progress: SyncProgress | None = None) -> list[AgentAnswer]:
        """Manual ordered sync: each LIM's regular server syncs the LIM's exchange data with
        the standby now (direction by the reload data's modification times), one LIM after
        the other in priority order so the standby's disk is checked for each. One answer
        per LIM (``server`` = its regular server); ``progress(done, total, line)`` after
        each. A LIM whose regular server does not answer is reported, the others go on.
        """
        c = _cluster(system, cluster)
        reach = orchestrate.targets(system)
        order = sorted(c.lims, key=lambda cl: (cl.priority, cl.lim))
        answers = []
        for done, cl in enumerate(order, start=1):
            server = system.server_for_lim(cl.lim).name
            r = self.pool.run(reach[server], [AGENT, "ctl", "sync", str(cl.lim)],
                              timeout=SYNC_TIMEOUT)
            answer = _sync_answer(server, cl.lim, r)
            answers.append(answer)
            if progress is not None:
                progress(done, len(order), f"{server:<12} {'OK' if answer.ok else 'FAILED':<7} "
                         f"{answer.text}")
        return answers


WAIT_MIN, WAIT_MAX = 1.0, 86400.0  # the agent's bounds for a fallback order's wait


def cancel_hint(lim: int) -> str:
    """How an operator withdraws a pending fallback order of ``lim``."""
    return (f"Cancel it with `mxone_maintenance cluster fallback {lim} --cancel` (menu: "
            "Cluster handling > Move LIM from standby to regular server)")


STATUS_FILE = "/run/mxone/status.json"
STATUS_FRESH_S = 5.0  # the agent rewrites it at least every 2 s
# The status file when its agent is alive: the server's clock, then the file (line 1 "pid
# written", line 2 the JSON of ctl status). Otherwise ctl status itself, which also says
# "not running" (exit 2) when no agent runs.
STATUS_COMMAND = (
    f"f={STATUS_FILE}; if read -r p t < $f 2>/dev/null && kill -0 \"$p\" 2>/dev/null; "
    f"then date +%s.%N && cat $f; else exec {AGENT} ctl status; fi")


def _from_status_files(results: ssh.GroupResult) -> dict[str, ssh.Result | None]:
    """Each answer to STATUS_COMMAND as if ``ctl status`` had printed it; None for a
    status file too old to trust (an agent that is stopped or hangs): ask it directly."""
    out: dict[str, ssh.Result | None] = {}
    for name, r in results.items():
        lines = r.stdout.split("\n", 2) if r.ok else []
        if len(lines) == 3 and lines[1].count(" ") == 1:
            try:
                age = float(lines[0]) - float(lines[1].split()[1])
            except ValueError:
                out[name] = None
                continue
            out[name] = (dataclasses.replace(r, stdout=lines[2])
                         if -STATUS_FRESH_S < age < STATUS_FRESH_S else None)
        elif r.ok and _is_number(lines[0] if lines else ""):
            out[name] = None  # the clock line without a whole file after it: ask again
        else:
            out[name] = r  # ctl status answered (or the server could not be reached)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


SyncProgress = Callable[[int, int, str], None]
"""Called after each LIM of a manual sync: LIMs done, LIMs in all, the LIM's result line."""

SYNC_TIMEOUT = 3600.0


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def sync_result_text(lim: int, result: dict[str, Any]) -> str:
    """One line for one LIM's sync result as ``ctl sync`` reports it."""
    if not result.get("ok"):
        return f"LIM {lim}: {result.get('error') or 'sync failed (no reason given)'}"
    direction = str(result.get("direction") or "none")
    if direction == "none":
        notes = result.get("notes") or ["nothing to sync"]
        return f"LIM {lim}: nothing sent, {'; '.join(map(str, notes))}"
    where = {"to-standby": "regular -> standby", "to-regular": "standby -> regular"}.get(
        direction, direction)
    return (f"LIM {lim}: {where}, version {result.get('version')}: "
            f"{int(result.get('fetched_files') or 0)} file(s) sent "
            f"({_size(int(result.get('fetched_bytes') or 0))}), "
            f"{int(result.get('reused_files') or 0)} unchanged, "
            f"in {float(result.get('seconds') or 0):.1f} s")


def _sync_answer(server: str, lim: int, r: ssh.Result) -> AgentAnswer:
    """The regular server's ``ctl sync LIM`` answer as one line (its JSON when it has one)."""
    data: Any = None
    try:
        data = json.loads(r.stdout)
    except json.JSONDecodeError:
        pass
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        mine = [x for x in data["results"] if isinstance(x, dict) and x.get("lim") == lim]
        if mine:
            return AgentAnswer(server, bool(mine[0].get("ok")), sync_result_text(lim, mine[0]))
    if r.error:  # not reached: the LIM's data waits for its regular server
        return AgentAnswer(server, False, f"LIM {lim}: {r.error}; its data is synced once "
                           f"{server} answers again")
    answer = _answer(server, r)
    return AgentAnswer(server, False, f"LIM {lim}: {answer.text}")


def cluster_of_lim(system: System, lim: int) -> Cluster:
    """The cluster LIM ``lim`` is in; OperationError naming the LIM otherwise."""
    for c in system.clusters:
        if lim in c.lim_numbers():
            return c
    raise OperationError(f"LIM = {lim}: in no cluster (a LIM must be in a cluster to be locked, "
                         "unlocked or fallen back)")


def _cluster(system: System, name: str) -> Cluster:
    try:
        return system.cluster(name)
    except KeyError:
        raise OperationError(f"cluster = {name}: no cluster with this name is in the system") from None


def _answer(server: str, r: ssh.Result) -> AgentAnswer:
    text = r.stdout.strip()
    pending = False
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            pending = data.get("pending") is True
            text = str(data.get("text") or data.get("message") or data.get("error")
                       or data.get("result") or text)
    except json.JSONDecodeError:
        pass
    if not r.ok:
        if r.error:
            text = r.error
        elif r.exit_status == 2:
            text = f"agent not running ({text or r.stderr.strip()})"
        else:
            text = f"refused (exit {r.exit_status}): {text or r.stderr.strip()}"
    return AgentAnswer(server, r.ok, text, pending=pending and r.ok)


def _cluster_status(system: System, c: Cluster, results: ssh.GroupResult,
                    reports: dict[str, dict[str, Any]]) -> ClusterStatus:
    members = list(system.cluster_servers(c))
    seen: dict[str, dict[str, str]] = {s.name: {} for s in members}
    for name, rep in reports.items():
        if name not in seen:
            continue
        for p in rep.get("peers") or []:
            if isinstance(p, dict) and p.get("name") in seen:
                seen[p["name"]][name] = str(p.get("liveness", "unknown"))
    servers = []
    for s in members:
        r = results.get(s.name)
        rep = reports.get(s.name)
        if rep is not None:
            servers.append(ServerHealth(s.name, str(s.role), "running", rep.get("generation"),
                                        str(rep.get("readiness", "")), seen[s.name],
                                        seconds=r.seconds if r else 0.0))
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
        lines.append(f"  {'server':<12} {'role':<8} {'agent':<12} {'gen':>4}  {'ready':<10} seen by peers")
        for s in c.servers:
            gen = "-" if s.generation is None else str(s.generation)
            if s.generation is not None and s.generation != c.generation:
                gen += "!"
            lines.append(f"  {s.server:<12} {s.role:<8} {s.agent:<12} {gen:>4}  "
                         f"{s.readiness or '-':<10} {s.liveness}")
            if s.error:
                lines.append(f"      {s.error}")
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


def answer_lines(answers: Sequence[AgentAnswer]) -> list[str]:
    return [f"{a.server:<12} {a.word:<7} {a.text}" for a in answers]


@dataclass
class Backend:
    """Everything a command or the menus need, wired once: the config on LIM 1, the SSH
    pool, the applier that brings the nodes along, and the agent operations."""

    maintenance: Any  # service.Maintenance
    pool: ssh.Pool
    operations: ClusterOperations

    def close(self) -> None:
        self.pool.close()


def backend(config: str | None = None, known_hosts: str | None = None, ssh_key: str | None = None,
            *, accept_new_host_key: bool = False, on_accept: Any = None,
            agent_artefact: str | None = None, cache_dir: str | None = None,
            command_timeout: float = ssh.COMMAND_TIMEOUT) -> Backend:
    """The real backend: SSH with pinned host keys, SshApplier, ClusterOperations."""
    from pathlib import Path

    from mxone_maintenance import artefact, store
    from mxone_maintenance.service import Maintenance

    path = store.config_path(config)
    pool = ssh.Pool(Path(known_hosts) if known_hosts else ssh.DEFAULT_KNOWN_HOSTS,
                    Path(ssh_key) if ssh_key else ssh.user_key_default(),
                    accept_new=accept_new_host_key, on_accept=on_accept,
                    command_timeout=command_timeout,
                    connect_timeout=min(ssh.CONNECT_TIMEOUT, command_timeout))
    if agent_artefact:
        def source() -> artefact.Artefact:
            return artefact.from_file(Path(agent_artefact))
    else:
        def source() -> artefact.Artefact:
            return artefact.build(Path(cache_dir) if cache_dir else artefact.DEFAULT_CACHE)
    applier = orchestrate.SshApplier(pool, path, source)
    return Backend(Maintenance(path, applier), pool, ClusterOperations(pool))
