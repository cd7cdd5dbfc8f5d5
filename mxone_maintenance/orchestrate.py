"""Bring every node of the system to a new generation over SSH, or leave all at the old one.

:class:`SshApplier` implements the :class:`~mxone_maintenance.service.Applier` protocol.
Applying a change runs in phases, each in parallel over the servers it touches:

1. connect: every touched server is reached and its host key checked before anything is
   changed; a server that cannot be reached stops the change with nothing changed anywhere
   (unless the operator confirmed a degraded change: :mod:`~mxone_maintenance.degraded`);
   so does one that lacks what the agent needs (its Python, nft, ssh:
   :mod:`~mxone_maintenance.preflight`);
2. snapshot: the tool's agent release is unpacked on each node beside the others (upload
   skipped when the node has it, checksum verified on the node; never ``current`` yet): all
   node operations run from it (:mod:`~mxone_maintenance.nodecalls`). Then each node's
   agent files (node.json, node.json.prev, cluster.key), the ``current`` release link and
   whether the agent runs are read, for the rollback; so are the network configuration
   files of a server whose base address changes or that leaves its cluster
   (:mod:`mxone_agent.netconfig`) - one the tool cannot change stops the change here,
   naming the file; then every LIM that leaves its cluster is let go by the standby's agent
   (``ctl retire``, waited for) - if it is not, the change stops here with nothing changed
   and the retire order is taken back (:mod:`~mxone_maintenance.phases`);
3. change (:mod:`~mxone_maintenance.nodechange`): a new base address is added at run time
   and written into the server's network configuration (the old one, now the alias, no
   longer comes up at boot); write cluster.key and node.json atomically (old node.json kept
   as node.json.prev), switch ``current``, start or reload the agent, and wait until ``ctl
   status`` reports the new generation; a server leaving every cluster gets its agent
   stopped, keeps running its own LIM on the LIM's alias (``mxone-agent leave``: any other
   LIM there is stopped, the fence removed), its node.json and key removed and its network
   configuration put back as before the cluster;
4. if any server failed (or the operator pressed Ctrl-C): every server already changed is
   put back to its snapshot, byte for byte, and its agent to its previous state;
   system.toml is not written. A server that cannot be reached for its rollback keeps its
   rollback in a journal on LIM 1 (:mod:`~mxone_maintenance.rollback`), finished before
   any later change touches it, or by ``cluster repair``. A change refused after step 1, or
   rolled back, removes again the release it unpacked where it was not there before
   (except on a server whose rollback is in the journal);
5. on full success only: system.toml is written on LIM 1 (store.save), and the
   node.json.prev files are removed.

A node needs nothing but python3 and sshd: its side is ``mxone-agent node OP``
(:mod:`mxone_agent.node`) of the release the tool deploys.
"""

from __future__ import annotations

import fcntl
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mxone_agent import paths
from mxone_maintenance import (
    catchup,
    changeplan,
    degraded,
    keys,
    nodecalls,
    nodechange,
    phases,
    preflight,
    rollback,
    ssh,
    store,
    synckeys,
)
from mxone_maintenance.actions import Change
from mxone_maintenance.artefact import Artefact
from mxone_maintenance.degraded import (
    DEGRADED_FLAG,
    behind_file,
    behind_lines,
    degraded_plan,
    degraded_problem,
    load_behind,
)
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.keys import OrchestrationError
from mxone_maintenance.model import System
from mxone_maintenance.nodecalls import targets
from mxone_maintenance.service import ApplyResult, Outcome, PlanStep, Progress

__all__ = ["AGENT_BIN", "DEGRADED_FLAG", "OrchestrationError", "SshApplier", "behind_file",
           "behind_lines", "degraded_plan", "degraded_problem", "load_behind", "targets"]

AGENT_BIN = paths.AGENT_BIN
DEFAULT_SECRETS = Path("/etc/mxone/secrets")
DEFAULT_LOCK = Path("/run/lock/mxone_maintenance.lock")  # one change at a time on LIM 1
VERIFY_TIMEOUT = 20.0


@contextmanager
def _one_change_at_a_time(lock_path: Path, config_path: Path) -> Iterator[int | None]:
    """Hold the lock of changes on LIM 1; yields the generation of the config on disk, or
    None when another mxone_maintenance holds the lock."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield store.load(config_path).generation if config_path.exists() else 0


class SshApplier:
    """Applies changes to every node over SSH, then writes system.toml on LIM 1.

    ``artefact``: a callable returning the agent artefact to deploy (built lazily, once).
    ``secrets_dir``: the cluster keys on LIM 1 (default: ``secrets/`` beside the config).
    ``local_name``: this server's name, for the plan line about system.toml.
    ``checks``: what each node must have before anything changes (:func:`preflight.check`).

    Every server in a cluster gets each new generation (also when its own config did not
    change), so that every agent reports the system's generation and a node that missed a
    change shows in the status.
    """

    def __init__(self, pool: ssh.Pool, config_path: Path, artefact: Callable[[], Artefact],
                 *, secrets_dir: Path | None = None, local_name: str | None = None,
                 verify_timeout: float = VERIFY_TIMEOUT, lock_path: Path = DEFAULT_LOCK,
                 checks: Callable[[ssh.Pool, list[ssh.Target]], dict[str, str]] = preflight.check
                 ) -> None:
        self.pool = pool
        self.config_path = config_path
        self._artefact_source = artefact
        self._artefact: Artefact | None = None
        # Beside the config: /etc/mxone/secrets for the default /etc/mxone/system.toml.
        self.secrets_dir = secrets_dir or config_path.parent / DEFAULT_SECRETS.name
        self.keys = keys.ClusterKeys(self.secrets_dir)
        self.journal = rollback.Journal(config_path)
        self.local_name = local_name or socket.gethostname()
        self.verify_timeout = verify_timeout
        self.lock_path = lock_path
        self.checks = checks
        self.calls = nodecalls.NodeCalls(pool, self.artefact)

    def artefact(self) -> Artefact:
        if self._artefact is None:
            self._artefact = self._artefact_source()
        return self._artefact

    def plan(self, change: Change) -> list[PlanStep]:
        return changeplan.plan_steps(change, self.local_name, self.config_path)

    # ---- apply --------------------------------------------------------------------------

    def apply(self, change: Change, progress: Progress) -> ApplyResult:
        """Bring every node to ``change.after`` or leave all at ``change.before`` (see module)."""
        with _one_change_at_a_time(self.lock_path, self.config_path) as on_disk:
            if on_disk is None:
                return ApplyResult(change.before.generation, (Outcome(
                    self.local_name, False, f"another mxone_maintenance is applying a change "
                    f"(it holds {self.lock_path}); nothing was changed: wait for it to finish "
                    f"and start the action again"),))
            if on_disk != change.before.generation:
                return ApplyResult(on_disk, (Outcome(
                    self.local_name, False, f"{self.config_path} is at generation {on_disk}, this "
                    f"change was made from {change.before.generation}; nothing was changed: "
                    f"start the action again"),))
            return self._apply_locked(change, progress)

    def _apply_locked(self, change: Change, progress: Progress) -> ApplyResult:
        before_cfg = changeplan.node_configs(change.before)
        after_cfg = changeplan.node_configs(change.after)
        gen0, gen1 = change.before.generation, change.after.generation
        reach = nodecalls.targets(change.before, change.after)
        new_keys: list[Path] = []
        secrets = self._cluster_keys(change.after, new_keys)
        sync_keys = self._sync_keys(change.after, new_keys)
        nodes = {name: nodechange.Node(reach[name], cfg, secrets[cfg.cluster], sync_keys[cfg.cluster])
                 for name, cfg in after_cfg.items()}
        for name in before_cfg:
            if name not in nodes:
                nodes[name] = nodechange.Node(reach[name], None, None)
        tracker = nodechange.Tracker(progress, total=max(1, len(nodes)) * 7 + 1)
        missed: dict[str, str] = {}  # server -> what it misses (a confirmed degraded change)
        # A server joining the system is reached (and its host key checked) before it is
        # written into the system: what cannot be reached is not added.
        joining = sorted({s.name for s in change.after.servers}
                         - {s.name for s in change.before.servers} - set(nodes))

        def fail_all_untouched(why: Mapping[str, str]) -> ApplyResult:
            self.keys.forget(new_keys)
            self._take_back_releases([n.target for n in nodes.values()], tracker)
            outcomes = []
            for name in [*nodes, *(n for n in joining if n in why)]:
                if name in why:
                    outcomes.append(Outcome(name, False, f"{why[name]}; nothing was changed"))
                else:
                    outcomes.append(Outcome(name, True, f"not changed (stays at generation {gen0})"))
            outcomes.append(Outcome(self.local_name, False, f"{self.config_path} not written: "
                                    f"the system stays at generation {gen0}"))
            tracker("stopped before any change", 1.0)
            return ApplyResult(gen0, tuple(outcomes))

        if joining:
            tracker("reaching the new server " + ", ".join(joining), 0)
            errors = self.pool.connect_all(reach[n] for n in joining)
            if errors:
                return fail_all_untouched({k: f"{v} (a server joins the system only once this "
                                           "server can reach it over SSH)" for k, v in errors.items()})
        if nodes:
            tracker("connecting to " + ", ".join(nodes), 0)
            errors = self.pool.connect_all(n.target for n in nodes.values())
            tracker.add(len(nodes))
            if errors:
                why = {k: str(v) for k, v in errors.items()}
                problem = degraded.degraded_problem(change, why)
                if problem is not None or not set(why) <= set(change.accept_behind):
                    hint = "" if problem is not None else (
                        " (this change can be made without it: it then misses this change, "
                        "is marked behind and is brought current the next time the tool "
                        f"reaches it; confirm that with {degraded.DEGRADED_FLAG} on the command line, "
                        "or the second confirmation in the menus)")
                    if problem is not None and change.degradable:
                        hint = f" ({problem})"
                    return fail_all_untouched({k: v + hint for k, v in why.items()})
                # A degraded change, confirmed: the unreachable servers miss it.
                for name in why:
                    missed[name] = (f"{changeplan.summarize(before_cfg.get(name), after_cfg[name])} "
                                    f"(unreachable: {why[name]})")
                    del nodes[name]
                tracker(f"{', '.join(sorted(why))} unreachable: marked behind", None)
            if lacking := self.checks(self.pool, [n.target for n in nodes.values()]):
                return fail_all_untouched(lacking)
            finished = self.finish_rollbacks(reach, set(nodes))
            if finished:
                tracker("finished an earlier rollback on " + ", ".join(finished.succeeded)
                        if finished.succeeded else "earlier rollbacks unfinished", None)
            if not finished.ok:
                return fail_all_untouched({
                    k: f"an earlier rollback is unfinished here and still fails: {r.describe()}"
                    for k, r in finished.failed.items()})
            # Every node operation runs from the tool's release, so every node touched
            # needs it: unpacked (additive, never `current` yet) before its snapshot.
            try:
                art = self.artefact()
            except MxoneError as exc:
                return fail_all_untouched({k: f"no agent to deploy: {exc}" for k in nodes})
            snaps = self.pool.each([n.target for n in nodes.values()],
                                   lambda t: self._call(t, "snapshot", {}))
            tracker.add(len(nodes))
            bad = {k: f"cannot read its agent files: {r.describe()}" for k, r in snaps.items()
                   if not r.ok}
            if bad:
                return fail_all_untouched(bad)
            for name, r in snaps.items():
                nodes[name].snapshot = json.loads(r.stdout)
            if short := phases.disk_problems(change, nodes):
                return fail_all_untouched(short)
            for name, base in phases.missing_base_addresses(nodes).items():
                nodes[name].add_base = base
            if refused := phases.inspect_network_configs(self.pool, self._call, change, nodes):
                return fail_all_untouched(refused)

            if refused := self._hand_back_leaving_lims(change, nodes, tracker):
                return fail_all_untouched(refused)
            try:
                results = self.pool.each([n.target for n in nodes.values()],
                                         lambda t: self._change_node(nodes[t.name], art, gen1,
                                                                     tracker))
            except KeyboardInterrupt:
                # Ctrl-C: the servers' steps in flight have finished (the pool waits for
                # them); put everything back rather than leave a half-applied change.
                return self._roll_back(nodes, gen0, gen1, new_keys, tracker,
                                       local_error="interrupted by the operator; "
                                       f"{self.config_path} not written")
            if not results.ok:
                return self._with_missed(self._roll_back(nodes, gen0, gen1, new_keys, tracker),
                                         missed, gen0)

        old_marks = self.behind()
        marks = degraded.mark_behind(old_marks, change, missed, set(nodes))
        try:
            tracker(f"{self.local_name}: writing {self.config_path}", None)
            if marks != old_marks:  # first: a server is never behind unmarked
                degraded.save_behind(self.behind_path, marks)
            store.save(self.config_path, change.after)
        except (OSError, MxoneError) as exc:
            cause = exc.strerror if isinstance(exc, OSError) else str(exc)
            if marks != old_marks:
                try:
                    degraded.save_behind(self.behind_path, old_marks)
                except OSError:
                    pass
            result = self._roll_back(nodes, gen0, gen1, new_keys, tracker,
                                     local_error=f"cannot write {self.config_path}: {cause}")
            return self._with_missed(result, missed, gen0)
        self.keys.drop_unused(change)
        self.calls.keep_unpacked()
        if nodes:
            self.pool.each([n.target for n in nodes.values()],
                           lambda t: self._call(t, "commit", {}))
        xdata_outcomes: list[Outcome] = []
        if change.removes_old_xdata:
            tracker("removing older exchange-data versions that no longer fit", None)
            xdata_outcomes = phases.keep_newest_xdata(self.pool, change, reach)
        tracker("done", 1.0)
        outcomes = []
        for name, n in nodes.items():
            if n.config is None:
                outcomes.append(Outcome(name, True, "left its cluster: agent stopped, node config "
                                        "and cluster key removed" + "".join(
                                            f"; {line}" for line in n.said)))
            else:
                outcomes.append(Outcome(name, True, f"agent runs generation {gen1} "
                                        f"({n.config.role} in cluster {n.config.cluster})"
                                        + "".join(f"; {line}" for line in n.said)))
        for name in joining:
            outcomes.append(Outcome(name, True, "reached over SSH, host key pinned"))
        for name, what in sorted(missed.items()):
            outcomes.append(Outcome(name, True, f"BEHIND: missed generation {gen1} ({what}); "
                                    "brought current the next time the tool reaches it"))
        outcomes.append(Outcome(self.local_name, True,
                                f"system config generation {gen1} written to {self.config_path}"))
        return ApplyResult(gen1, tuple(outcomes + xdata_outcomes))

    # ---- one node: the seams the phases are handed (replaced in unit tests) -------------

    def _call(self, target: ssh.Target, op: str, request: Mapping[str, Any],
              timeout: float | None = None) -> ssh.Result:
        return self.calls.call(target, op, request, timeout)

    def _change_node(self, node: nodechange.Node, art: Artefact | None, gen1: int,
                     tracker: nodechange.Tracker) -> ssh.Result:
        changer = nodechange.NodeChanger(self.pool, self._call, self.calls.uploaded,
                                         self.verify_timeout)
        return changer.change(node, art, gen1, tracker)

    def _undo(self, t: ssh.Target, plan: Mapping[str, Any]) -> ssh.Result:
        return rollback.undo(self._call, t, plan)

    def _hand_back_leaving_lims(self, change: Change, nodes: Mapping[str, nodechange.Node],
                                tracker: nodechange.Tracker) -> dict[str, str]:
        return phases.hand_back_leaving_lims(self.pool, self._call, change, nodes, tracker)

    # ---- rollback -----------------------------------------------------------------------

    def _roll_back(self, nodes: dict[str, nodechange.Node], gen0: int, gen1: int, new_keys: list[Path],
                   tracker: nodechange.Tracker, local_error: str = "") -> ApplyResult:
        tracker(f"rolling back to generation {gen0}", None)
        changed = [n for n in nodes.values() if n.changed]
        plans = {n.target.name: rollback.undo_plan(n, gen0) for n in changed}
        undone = self.pool.each([n.target for n in changed], lambda t: self._undo(t, plans[t.name]))
        untouched = [n for n in nodes.values() if n.retired_lims and not n.changed]
        self.pool.each([n.target for n in untouched], lambda t: self._call(
            t, "unretire", {"lims": nodes[t.name].retired_lims}))
        self.keys.forget(new_keys)
        # A server whose rollback is kept in the journal keeps the release until it is done.
        self._take_back_releases([n.target for name, n in nodes.items()
                                  if name not in undone.failed], tracker)
        outcomes = []
        for name, n in nodes.items():
            r = undone.get(name)
            if r is not None and not r.ok:
                self.journal.keep(name, plans[name])
                back = (f"ROLLBACK NOT FINISHED ({r.describe()}); it is kept in "
                        f"{self.journal.dir / (name + '.json')} and finished as soon as {name} "
                        f"answers again (next change, or `mxone_maintenance cluster repair`)")
            else:
                back = f"rolled back to generation {gen0}"
            if n.error:
                outcomes.append(Outcome(name, False, f"failed at {n.error}; {back}"))
            elif r is None:
                outcomes.append(Outcome(name, True, f"not changed (stays at generation {gen0})"))
            else:
                outcomes.append(Outcome(name, r.ok, f"changed, then {back} (another server failed)"))
        outcomes.append(Outcome(self.local_name, False, local_error or
                                f"{self.config_path} not written: the system stays at generation {gen0}"))
        tracker("rolled back", 1.0)
        return ApplyResult(gen0, tuple(outcomes))

    def _take_back_releases(self, targets: list[ssh.Target], tracker: nodechange.Tracker) -> None:
        """A refused or rolled-back change leaves no release it unpacked (NodeCalls)."""
        for name, r in sorted(self.calls.remove_unpacked(targets).failed.items()):
            tracker(f"{name}: agent release {self.artefact().release} unpacked for this change "
                    f"left there, unused: {r.describe()}", None)

    @staticmethod
    def _with_missed(result: ApplyResult, missed: Mapping[str, str], gen0: int) -> ApplyResult:
        return ApplyResult(result.generation, (*result.outcomes[:-1], *(
            Outcome(name, True, f"unreachable, not changed (stays at generation {gen0})")
            for name in sorted(missed)), *result.outcomes[-1:]))

    @property
    def journal_dir(self) -> Path:
        return self.journal.dir

    def pending_rollbacks(self) -> dict[str, dict[str, Any]]:
        """Server -> the rollback that could not reach it (kept on LIM 1 until finished)."""
        return self.journal.pending()

    def finish_rollbacks(self, reach: Mapping[str, ssh.Target],
                         only: set[str] | None = None) -> ssh.GroupResult:
        """Finish every pending rollback (of the servers in ``only``); journal removed on success."""
        return self.journal.finish(self.pool, self._undo, reach, only)

    # ---- servers behind: they missed a confirmed degraded change ------------------------

    @property
    def behind_path(self) -> Path:
        return behind_file(self.config_path)

    def behind(self) -> dict[str, dict[str, Any]]:
        """Server -> its behind mark (``has``: the generation it last got, ``cluster``,
        ``missed``: what it missed), kept on LIM 1 beside the config."""
        return load_behind(self.behind_path)

    def unreachable(self, change: Change) -> dict[str, str]:
        """The servers the change touches that cannot be reached now (name -> why).

        A server that answers with a host key other than the pinned one is not "down": it
        is refused by the change itself (HOST KEY CHANGED, or asked about when unknown),
        never left behind as if it were unreachable."""
        nodes = set(changeplan.node_configs(change.before)) | set(changeplan.node_configs(change.after))
        reach = nodecalls.targets(change.before, change.after)
        errors = self.pool.connect_all(reach[n] for n in sorted(nodes))
        return {k: str(v) for k, v in errors.items() if not isinstance(v, ssh.HostKeyError)}

    def catch_up(self, system: System, progress: Progress | None = None) -> list[Outcome]:
        """Bring every server marked behind that answers now to the system's generation
        (its node config, keys and agent as in any change, all or nothing on that server);
        one that does not answer stays behind, one that cannot be brought current safely is
        refused with the reason and stays behind. Skipped (empty answer) while another
        change runs or when the config moved on meanwhile."""
        if not self.behind():
            return []
        with _one_change_at_a_time(self.lock_path, self.config_path) as on_disk:
            if on_disk != system.generation:
                return []
            steps = catchup.Steps(self._call, self._change_node, self._undo,
                                  self.finish_rollbacks, self.calls)
            return catchup.catch_up(system, self.behind(), progress, pool=self.pool,
                                    steps=steps, keys=self.keys, journal=self.journal,
                                    behind_path=self.behind_path, artefact=self.artefact)

    # ---- cluster keys on LIM 1 ----------------------------------------------------------

    def _cluster_keys(self, system: System, created: list[Path]) -> dict[str, str]:
        return self.keys.cluster_keys(system, created)

    def _sync_keys(self, system: System, created: list[Path]) -> dict[str, synckeys.SyncKey]:
        return self.keys.sync_keys(system, created)
