"""Bringing current the servers that missed a change (marked behind by a degraded change):
each one that answers now gets the system's generation - its node config, keys and agent as
in any change, all or nothing on that server."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mxone_maintenance import changeplan, degraded, nodecalls, nodechange, rollback, ssh
from mxone_maintenance.artefact import Artefact
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.keys import ClusterKeys
from mxone_maintenance.model import System
from mxone_maintenance.service import Outcome, Progress


@dataclass(frozen=True)
class Steps:
    """The applier's work on one node, as the catch-up is handed it."""

    call: nodechange.Call
    change_node: Callable[[nodechange.Node, Artefact | None, int, nodechange.Tracker],
                          ssh.Result]
    undo: rollback.Undo
    finish_rollbacks: Callable[[Mapping[str, ssh.Target], set[str]], ssh.GroupResult]
    releases: nodecalls.NodeCalls
    """Who unpacked which agent release: a server that is not brought current gets no
    release left behind by the catch-up (unless its rollback waits in the journal)."""


def catch_up(system: System, marks: Mapping[str, Mapping[str, Any]], progress: Progress | None,
             *, pool: ssh.Pool, steps: Steps, keys: ClusterKeys, journal: rollback.Journal,
             behind_path: Path, artefact: Callable[[], Artefact]) -> list[Outcome]:
    """Bring every server marked behind (``marks``) that answers now to ``system``'s
    generation, all or nothing on each (see ``SshApplier.catch_up``); an outcome for each
    server marked."""
    gen = system.generation
    cfgs = changeplan.node_configs(system)
    reach = nodecalls.targets(system)
    outcomes: list[Outcome] = []
    refused = {}
    for name, m in marks.items():
        cfg = cfgs.get(name)
        if cfg is None:
            refused[name] = (f"{name} is behind but in no cluster now: the tool cannot "
                             "bring it current; remove its line from "
                             f"{behind_path} once its agent is stopped by hand")
        elif m.get("cluster") not in (None, cfg.cluster):
            refused[name] = (f"{name} fell behind in cluster {m.get('cluster')} and is in "
                             f"cluster {cfg.cluster} now: not brought current; remove it "
                             "from its cluster and add it again")
    for name, why in refused.items():
        outcomes.append(Outcome(name, False, f"BEHIND, refused: {why}"))
    wanted = [n for n in marks if n not in refused and n in reach]
    if not wanted:
        return outcomes
    tracker = nodechange.Tracker(progress or (lambda _l, _f: None), total=len(wanted) * 7 + 1)
    tracker("reaching the servers behind: " + ", ".join(wanted), 0)
    errors = pool.connect_all(reach[n] for n in wanted)
    for name in wanted:
        if name in errors:
            outcomes.append(Outcome(name, False, f"BEHIND: still unreachable ({errors[name]}); "
                                    f"stays at generation {marks[name].get('has')}"))
    ready = [n for n in wanted if n not in errors]
    if not ready:
        return outcomes
    created: list[Path] = []
    secrets, syncs = keys.cluster_keys(system, created), keys.sync_keys(system, created)
    if created:  # a new key would differ from the one its peers hold: never deployed
        keys.forget(created)
        return outcomes + [Outcome(n, False, "BEHIND, refused: the cluster keys of its "
                                   f"cluster are missing in {keys.secrets_dir} (they were "
                                   "created with the cluster); stays behind")
                           for n in ready]
    finished = steps.finish_rollbacks(reach, set(ready))
    for name, r in finished.failed.items():
        outcomes.append(Outcome(name, False, "BEHIND: an earlier rollback is unfinished here "
                                f"and still fails: {r.describe()}; stays behind"))
    ready = [n for n in ready if n not in finished.failed]
    nodes = {n: nodechange.Node(reach[n], cfgs[n], secrets[cfgs[n].cluster],
                               syncs[cfgs[n].cluster])
             for n in ready}
    try:
        art = artefact()
    except MxoneError as exc:
        return outcomes + [Outcome(n, False, f"BEHIND: no agent to deploy: {exc}")
                           for n in ready]

    journaled: set[str] = set()

    def one(t: ssh.Target) -> ssh.Result:
        node = nodes[t.name]
        r = steps.call(t, "snapshot", {})
        if not r.ok:
            return dataclasses.replace(r, error=f"cannot read its agent files: {r.describe()}")
        node.snapshot = json.loads(r.stdout)
        done = steps.change_node(node, art, gen, tracker)
        if done.ok:
            pool.each([t], lambda t2: steps.call(t2, "commit", {}))
            return done
        plan = rollback.undo_plan(node, int(marks[t.name].get("has") or 0))
        undone = steps.undo(t, plan) if node.changed else None
        if undone is not None and not undone.ok:
            journal.keep(t.name, plan)
            journaled.add(t.name)  # its pending undo runs from the release: it stays
            return dataclasses.replace(done, error=f"{done.describe()}; ROLLBACK NOT "
                                       f"FINISHED ({undone.describe()}), kept in "
                                       f"{journal.dir / (t.name + '.json')}")
        return dataclasses.replace(done, error=f"{done.describe()}; put back as it was")

    results = pool.each([nodes[n].target for n in ready], one)
    current = {n for n, r in results.items() if r.ok}
    not_current = [nodes[n].target for n in results if n not in current and n not in journaled]
    for name, r in sorted(steps.releases.remove_unpacked(not_current).failed.items()):
        tracker(f"{name}: agent release {art.release} unpacked for the catch-up left there, "
                f"unused: {r.describe()}", None)
    steps.releases.keep_unpacked()
    if current:
        left = {k: v for k, v in degraded.load_behind(behind_path).items() if k not in current}
        degraded.save_behind(behind_path, left)
    for name, r in results.items():
        if r.ok:
            outcomes.append(Outcome(name, True, f"was behind: brought to generation {gen} "
                                    f"(it had {marks[name].get('has')})"))
        else:
            outcomes.append(Outcome(name, False, f"BEHIND: not brought current: "
                                    f"{r.describe()}; stays behind"))
    tracker("done", 1.0)
    return outcomes
