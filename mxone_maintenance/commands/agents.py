"""The commands the node agents carry out: status, manual fallback, data sync, repair.

The config on LIM 1 stays as it is; each command checks its values against the system
(:attr:`~mxone_maintenance.commands.base.Command.plan`, also its dry run) before anything
is asked of an agent.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from mxone_maintenance.commands.base import (
    SILENT,
    Command,
    Context,
    Kind,
    Option,
    Param,
    Report,
    Result,
    Values,
    ok_word,
    outcome_line,
)
from mxone_maintenance.commands.changes import all_clusters, cluster_of_lim
from mxone_maintenance.model import Cluster, FallbackType, System
from mxone_maintenance.service import Outcome, Progress

# Each command loads the SSH stack (operations, orchestrate) when it runs, not before: the
# registry is read to build the CLI's parser.


@runtime_checkable
class CatchingUp(Protocol):
    """An applier that marks servers behind and brings them current (the SSH one)."""

    def behind(self) -> dict[str, dict[str, Any]]: ...

    def catch_up(self, system: System, progress: Progress | None = None) -> list[Outcome]: ...


@runtime_checkable
class RollingBack(Protocol):
    """An applier that keeps the rollbacks it could not finish."""

    def pending_rollbacks(self) -> dict[str, dict[str, Any]]: ...


# ---- Show status / cluster status ----------------------------------------------------------

def _status(ctx: Context, v: Values, report: Report, catch_up: bool = True) -> Result:
    """Servers marked behind that answer now are brought current first (a status refresh is
    one of the times the tool reaches them); those still behind are named. Without
    ``catch_up`` (the dry run) no server is changed: the status says which would be."""
    from mxone_maintenance import orchestrate, status

    agents = ctx.need_agents()
    system = ctx.system()
    applier = ctx.maintenance.applier
    caught: list[Outcome] = []
    behind: dict[str, dict[str, Any]] = {}
    if isinstance(applier, CatchingUp):
        if catch_up:
            caught = applier.catch_up(system, report)
        behind = applier.behind()
    state = agents.status(system)
    pending = applier.pending_rollbacks() if isinstance(applier, RollingBack) else {}
    rendered = status.render(state)
    behind_lines = orchestrate.behind_lines(behind, system.generation)
    lines = [outcome_line(o.server, ok_word(o.ok), o.message) for o in caught]
    lines += rendered + behind_lines
    if pending:
        lines += ["", "Unfinished rollbacks (a server did not answer): " + ", ".join(
            f"{k} (to generation {p.get('generation')})" for k, p in pending.items()),
            "  they finish with the next change or `mxone_maintenance cluster repair`"]
    data = state.to_dict()
    data["caught_up"] = [{"server": o.server, "ok": o.ok, "message": o.message} for o in caught]
    data["behind"] = behind
    data["pending_rollbacks"] = {k: p.get("generation") for k, p in pending.items()}
    if not catch_up:
        data["dry_run"] = True
        data["plan"] = [{"server": k, "what": f"bring current: generation {b.get('has')} -> "
                         f"{system.generation}"} for k, b in sorted(behind.items())]
        lines += ["", *(f"Would bring current first: {p['server']} ({p['what']})"
                        for p in data["plan"]), "Dry run: nothing was changed."]
    screen = [*(f"{o.server}: {o.message}" for o in caught), *rendered, *behind_lines]
    return Result(True, data, tuple(lines), tuple(screen))


def _status_plan(ctx: Context, v: Values) -> Result:
    return _status(ctx, v, SILENT, catch_up=False)


# ---- Move LIM from standby to regular server / cluster fallback ----------------------------

# The vendor's directions: "Manual fallback: a command has to be used to do the fallback
# to the regular server"; with automatic fallback it "will take place as soon as the regular
# server has recovered" (and a LIM unlocked on the standby "with manual fallback the user has
# to manually order the fallback"). So manual fallback is the command of a cluster whose
# fallback type is manual, on both faces.

def orders_fallback(c: Cluster) -> bool:
    """Whether the operator orders the fallback of the cluster's LIMs (fallback manual)."""
    return c.fallback == FallbackType.MANUAL


def fallback_lims(system: System) -> tuple[Option, ...]:
    """The LIMs whose fallback the operator may order: those of manual-fallback clusters."""
    return tuple(Option(f"LIM {cl.lim} of cluster {c.name}", cl.lim) for c in system.clusters
                 if orders_fallback(c) for cl in c.lims)


def _fallback_target(system: System, v: Values) -> Cluster:
    from mxone_maintenance.operations import OperationError

    cluster = cluster_of_lim(system, v["lim"])
    if not orders_fallback(cluster):
        raise OperationError(
            f"LIM = {v['lim']}: cluster {cluster.name} has fallback type {cluster.fallback}: "
            "its agents move the LIM back to its regular server as soon as that server has "
            "recovered; manual fallback is only for clusters with fallback type manual")
    return cluster


def _fallback_plan(ctx: Context, v: Values) -> Result:
    cluster, lim = _fallback_target(ctx.system(), v), v["lim"]
    wait, cancel = v.get("wait"), bool(v.get("cancel"))
    what = (f"ctl fallback {lim} --cancel" if cancel else f"ctl fallback {lim}"
            + (f" --wait {wait:g}" if wait is not None else ""))
    said = (f"withdraw the pending fallback order of LIM {lim} on standby "
            f"{cluster.standby_name}" if cancel else
            f"order standby {cluster.standby_name} of cluster {cluster.name} to hand "
            f"LIM {lim} back to its regular server once that server is ready")
    return Result(True, {"dry_run": True, "cluster": cluster.name, "lim": lim,
                         "plan": [{"server": cluster.standby_name, "what": what}]},
                  (f"Plan: {said}",))


def _fallback(ctx: Context, v: Values, report: Report) -> Result:
    from mxone_maintenance.operations import answer_lines

    system = ctx.system()
    cluster = _fallback_target(system, v)  # refused before any agent is asked
    agents = ctx.need_agents()
    how: dict[str, Any] = {}
    if v.get("wait") is not None:
        how["wait"] = v["wait"]
    if v.get("cancel"):
        how["cancel"] = True
    a = agents.fallback(system, cluster.name, v["lim"], **how)
    return Result(a.ok, {"cluster": cluster.name, "lim": v["lim"], "server": a.server,
                         "ok": a.ok, "pending": a.pending, "text": a.text},
                  tuple(answer_lines([a])))


# ---- Sync exchange data within cluster / cluster sync --------------------------------------

def _sync_cluster(system: System, v: Values) -> Cluster:
    from mxone_maintenance.operations import OperationError

    try:
        return system.cluster(v["name"])
    except KeyError:
        raise OperationError(f"cluster = {v['name']}: no cluster with this name is in the "
                             "system") from None


def _sync_order(c: Cluster) -> list[int]:
    return [cl.lim for cl in sorted(c.lims, key=lambda cl: (cl.priority, cl.lim))]


def _sync_plan(ctx: Context, v: Values) -> Result:
    system = ctx.system()
    cluster = _sync_cluster(system, v)
    plan = [{"server": system.server_for_lim(lim).name, "what": f"ctl sync {lim}"}
            for lim in _sync_order(cluster)]
    return Result(True, {"dry_run": True, "cluster": cluster.name, "plan": plan},
                  (f"Plan: sync exchange data of cluster {cluster.name}, LIM by LIM:",
                   *(f"  {p['server']:<12} {p['what']}" for p in plan)))


def _sync(ctx: Context, v: Values, report: Report) -> Result:
    from mxone_maintenance.operations import answer_lines

    agents = ctx.need_agents()
    system = ctx.system()
    cluster = _sync_cluster(system, v)
    if report is SILENT:
        answers = agents.sync(system, cluster.name)
    else:
        report(f"syncing the exchange data of {len(cluster.lims)} LIM(s) with standby "
               f"{cluster.standby_name}", 0.0)
        answers = agents.sync(system, cluster.name, progress=lambda done, of, line: report(
            f"{done}/{of}  {line}", done / of if of else 1.0))
    ok = all(a.ok for a in answers)
    lines = answer_lines(answers)
    good = sum(1 for a in answers if a.ok)
    return Result(ok, {"cluster": cluster.name, "ok": ok,
                       "lims": [{"lim": lim, "server": a.server, "ok": a.ok, "text": a.text}
                                for lim, a in zip(_sync_order(cluster), answers, strict=False)]},
                  (*lines, f"Sync of cluster {cluster.name}: " + (
                      "every LIM done." if ok else "NOT every LIM was synced (see above).")),
                  (f"Sync of exchange data in cluster {cluster.name}: {good} of {len(answers)} "
                   "LIM(s) OK.", "", *lines))


# ---- cluster repair ------------------------------------------------------------------------

def undo_steps(plan: dict[str, Any]) -> list[str]:
    """What finishing one kept rollback does on its server, in order (as
    :func:`mxone_maintenance.rollback.undo` does it): the files it puts back, byte for byte,
    and what happens to the agent."""
    snap = plan.get("snapshot") or {}
    steps = []
    if not snap.get("running"):
        steps.append("stop the agent the change started and remove its fence")
    network = plan.get("network") or {}
    if network:
        steps.append("put back the network files: " + ", ".join(
            sorted({*network.get("files", {}), *network.get("dirs", {})})))
    files = sorted({*(snap.get("files") or {}), *(snap.get("dirs") or {})})
    steps.append("put back, byte for byte: " + (", ".join(files) or "(no file)"))
    if plan.get("remove_base"):
        steps.append(f"remove the base address {plan['remove_base']}")
    if plan.get("unretire") and snap.get("running") and not plan.get("retired"):
        steps.append("let the agent take LIM(s) " + ", ".join(map(str, plan["unretire"]))
                     + " again")
    if plan.get("switched"):
        steps.append(f"switch the agent release back to {snap.get('current')}")
    if snap.get("running") and (plan.get("switched") or plan.get("retired")):
        steps.append("restart the agent")
    elif snap.get("running") and plan.get("agent_changed"):
        steps.append("reload the agent")
    return steps


def _pending(ctx: Context) -> dict[str, dict[str, Any]]:
    from mxone_maintenance import orchestrate

    applier = ctx.maintenance.applier
    if not isinstance(applier, orchestrate.SshApplier):
        raise NotImplementedError("rollbacks are finished over SSH")
    return applier.pending_rollbacks()


def _repair_plan(ctx: Context, v: Values) -> Result:
    pending = _pending(ctx)
    plan = [{"server": k, "what": f"roll back to generation {p.get('generation')}",
             "steps": undo_steps(p)} for k, p in pending.items()]
    lines = [f"Plan: finish {len(plan)} unfinished rollback(s)" if plan else
             "No unfinished rollback."]
    for p in plan:
        lines.append(f"  {p['server']:<12} {p['what']}")
        lines += [f"  {'':<12}   {step}" for step in p["steps"]]
    return Result(True, {"dry_run": True, "plan": plan}, tuple(lines))


def _repair(ctx: Context, v: Values, report: Report) -> Result:
    from mxone_maintenance import orchestrate

    applier = ctx.maintenance.applier
    pending = _pending(ctx)
    assert isinstance(applier, orchestrate.SshApplier)
    if not pending:
        return Result(True, {"ok": True, "finished": {}}, ("No unfinished rollback.",))
    res = applier.finish_rollbacks(orchestrate.targets(ctx.maintenance.system()))
    ok = res.ok and len(res) == len(pending)
    return Result(ok, {"ok": ok, "finished": {k: {"ok": r.ok, "error": r.describe()}
                                              for k, r in res.items()}},
                  tuple(f"{k:<12} " + (f"rolled back to generation {pending[k].get('generation')}"
                                       if r.ok else "FAILED: " + r.describe())
                        for k, r in res.items()))


# A manual fallback order is a command of the cluster's standby; the LIM names its cluster.
FALLBACK_LIM = Param("lim", kind="int", metavar="LIM", offer=fallback_lims)

AGENT_COMMANDS = (
    Command("cluster.status", "ask every agent of every cluster for its status (a server "
            "marked behind that answers is brought current first)", Kind.AGENT,
            plan=_status_plan, run=_status),
    Command("cluster.fallback", "move a LIM that runs on the standby back to its regular "
            "server (manual fallback, clusters with fallback type manual): carried out once "
            "that server is ready, refused with the reason, or left pending (shown in "
            "`cluster status`)", Kind.AGENT, (
                FALLBACK_LIM,
                Param("wait", "let the order wait this long for the regular server to be ready "
                      "(also when it is down now); default: the agent's (600 s), and an order "
                      "for a server that is not heard is refused", kind="float", flag="--wait",
                      metavar="SECONDS", group="how"),
                Param("cancel", "withdraw a pending order", kind="flag", flag="--cancel",
                      group="how"),
            ), plan=_fallback_plan, run=_fallback),
    Command("cluster.sync", "sync exchange data between each LIM's regular server and the "
            "standby now (manual ordered sync), one LIM after the other", Kind.AGENT,
            (Param("name", metavar="CLUSTER", offer=all_clusters),), plan=_sync_plan, run=_sync),
    Command("cluster.repair", "finish the rollbacks that could not reach a server (kept on "
            "LIM 1)", Kind.AGENT, plan=_repair_plan, run=_repair, only="cli",
            why="the real utility has no menu item for it: an unfinished rollback also "
            "finishes with the next change; `cluster status` names it and this command"),
)
