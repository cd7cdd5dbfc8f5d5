"""What is asked of the running agents: status, manual fallback, lock notices, data sync.

The commands (:mod:`mxone_maintenance.commands`) make these calls for the CLI and the
menus alike; the status they gather is rendered by :mod:`mxone_maintenance.status`. Each call goes to every server concerned in parallel over one :class:`ssh.Pool`;
a server that does not answer is reported as such, never stops the others.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mxone_agent import paths
from mxone_maintenance import artefact, orchestrate, ssh, status, store
from mxone_maintenance.errors import OperationError as OperationError  # re-exported
from mxone_maintenance.model import Cluster, Lock, System
from mxone_maintenance.service import Maintenance
from mxone_maintenance.status import SystemStatus, cancel_hint

AGENT = orchestrate.AGENT_BIN


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
        results = _from_status_files(
            self.pool.run_all([reach[n] for n in names], STATUS_COMMAND, timeout=20))
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
            status.cluster_status(system, c, done, reports) for c in system.clusters))

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


STATUS_FILE = paths.STATUS
STATUS_FRESH_S = 5.0  # the agent rewrites it at least every 2 s


def status_command(status_file: str = STATUS_FILE) -> str:
    """The status file when its agent is alive: the server's clock, then the file (line 1
    "pid written", line 2 the JSON of ctl status, one line). Otherwise ctl status itself,
    which also says "not running" (exit 2) when no agent runs.

    Shell builtins only on that path (the clock from bash's EPOCHREALTIME where it has it):
    no process is started on the server for a status it has already written.
    """
    return (f"f={status_file}; if {{ read -r p t && IFS= read -r j; }} < $f 2>/dev/null && "
            f"kill -0 \"$p\" 2>/dev/null; then printf '%s\\n%s %s\\n%s\\n' "
            f"\"${{EPOCHREALTIME:-$(date +%s.%N)}}\" \"$p\" \"$t\" \"$j\"; "
            f"else exec {AGENT} ctl status; fi")


STATUS_COMMAND = status_command()


def _from_status_files(results: ssh.GroupResult) -> dict[str, ssh.Result | None]:
    """Each answer to STATUS_COMMAND as if ``ctl status`` had printed it; None for a
    status file too old to trust (an agent that is stopped or hangs): ask it directly."""
    out: dict[str, ssh.Result | None] = {}
    for name, r in results.items():
        lines = r.stdout.split("\n", 2) if r.ok else []
        if len(lines) == 3 and lines[1].count(" ") == 1:
            try:
                # EPOCHREALTIME has the locale's decimal point (a comma in some)
                age = float(lines[0].replace(",", ".")) - float(lines[1].split()[1])
            except ValueError:
                out[name] = None
                continue
            out[name] = (dataclasses.replace(r, stdout=lines[2])
                         if -STATUS_FRESH_S < age < STATUS_FRESH_S else None)
        elif r.ok and _is_number(lines[0].replace(",", ".") if lines else ""):
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


def answer_lines(answers: Sequence[AgentAnswer]) -> list[str]:
    """The agents' answers, one line each: server, OK/PENDING/FAILED, the answer."""
    return [f"{a.server:<12} {a.word:<7} {a.text}" for a in answers]


@dataclass
class Backend:
    """Everything a command or the menus need, wired once: the config on LIM 1, the SSH
    pool, the applier that brings the nodes along, and the agent operations."""

    maintenance: Maintenance
    pool: ssh.Pool
    operations: ClusterOperations

    def close(self) -> None:
        self.pool.close()


def backend(config: str | None = None, known_hosts: str | None = None, ssh_key: str | None = None,
            *, accept_new_host_key: bool = False, on_accept: Any = None,
            agent_artefact: str | None = None, cache_dir: str | None = None,
            command_timeout: float = ssh.COMMAND_TIMEOUT) -> Backend:
    """The real backend: SSH with pinned host keys, SshApplier, ClusterOperations."""
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
