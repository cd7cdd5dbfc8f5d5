"""Degraded changes: a change made while a server is down, which that server misses.

Only a change that makes the system safer or is needed to recover may leave a server
behind (:func:`degraded_problem`); the operator confirms it (:data:`DEGRADED_FLAG`, or the
second confirmation in the menus). Each server that missed a change is marked behind in
``behind.json`` beside the config on LIM 1 and brought current the next time the tool
reaches it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mxone_maintenance import changeplan, store
from mxone_maintenance.actions import Change
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.service import PlanStep

DEGRADED_FLAG = "--degraded"


def behind_file(config_path: Path) -> Path:
    return config_path.parent / "behind.json"


def load_behind(path: Path) -> dict[str, dict[str, Any]]:
    """The behind marks in ``path`` (see :meth:`~mxone_maintenance.orchestrate.SshApplier.behind`); none when no file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MxoneError(f"{path}: unreadable ({exc}); it names the servers that missed a "
                         "change: repair or remove it by hand") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise MxoneError(f"{path}: not an object of server marks; repair or remove it by hand")
    return data


def save_behind(path: Path, marks: Mapping[str, Any]) -> None:
    """Write the behind marks to ``path`` (removed when there is none)."""
    if not marks:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    store.atomic_write(path, (json.dumps(marks, indent=1, sort_keys=True)
                                          + "\n").encode(), mode=0o600)


def degraded_problem(change: Change, unreachable: Mapping[str, str]) -> str | None:
    """Why this change cannot be made without the ``unreachable`` servers (None: it can,
    once the operator confirms it). Only a change that makes the system safer or is needed
    to recover may leave a server behind; a server that leaves its cluster with the change,
    or joins the system, must be reached; at least one server must get it."""
    if not unreachable:
        return None
    names = ", ".join(sorted(unreachable))
    if not change.degradable:
        return (f"{names} unreachable; this change needs every server of the system "
                "reachable (only lock, unlock, fallback type or priority, remove LIM, delete "
                "cluster and remove server can be made while a server is down)")
    before, after = changeplan.node_configs(change.before), changeplan.node_configs(change.after)
    leaving = sorted(n for n in unreachable if n in before and n not in after)
    if leaving:
        return (f"{', '.join(leaving)} unreachable and leaves its cluster with this change: "
                "a server is let go only when it can be reached (its LIM and alias are "
                "handed to it)")
    for cluster, cl, home in changeplan.leaving_lims(change):
        if cluster.standby_name in unreachable:
            return (f"{cluster.standby_name} unreachable: LIM {cl.lim} leaves cluster "
                    f"{cluster.name} and its standby must be told to let it go (else it "
                    f"takes LIM {cl.lim} over while {home.name} runs it outside the cluster); "
                    f"remove the LIM once {cluster.standby_name} can be reached")
    joining = sorted(n for n in unreachable if n not in before and n not in after)
    if joining:
        return f"{', '.join(joining)} unreachable: a server joins the system only when reached"
    if after and not set(after) - set(unreachable):
        return f"{names} unreachable: no server of the change can be reached"
    return None


def degraded_plan(change: Change, unreachable: Mapping[str, str]) -> list[PlanStep]:
    """What each unreachable server misses (for the plan shown before the confirmation)."""
    before, after = changeplan.node_configs(change.before), changeplan.node_configs(change.after)
    gen1 = change.after.generation
    steps = []
    for name in sorted(unreachable):
        cfg = after.get(name)
        missed = changeplan.summarize(before.get(name), cfg) if cfg is not None else "its leaving"
        steps.append(PlanStep(name, f"UNREACHABLE ({unreachable[name]}): misses generation "
                              f"{gen1} ({missed}); marked behind, brought to the current "
                              "generation the next time the tool reaches it"))
    return steps


def mark_behind(marks: Mapping[str, Mapping[str, Any]], change: Change,
                missed: Mapping[str, str], current: set[str]) -> dict[str, dict[str, Any]]:
    """The behind marks after a change: each server in ``missed`` (name -> what it missed)
    keeps the generation it last had and adds what it missed; each in ``current`` (it got
    the change, or left its cluster) is no longer behind."""
    after = changeplan.node_configs(change.after)
    names = {s.name for s in change.after.servers}
    out = {k: dict(v) for k, v in marks.items() if k not in current and k in names}
    for name, what in missed.items():
        old = out.get(name, {})
        out[name] = {"has": old.get("has", change.before.generation),
                     "cluster": after[name].cluster if name in after else old.get("cluster"),
                     "missed": [*old.get("missed", []), f"generation {change.after.generation}: {what}"]}
    return out


def behind_lines(marks: Mapping[str, Mapping[str, Any]], generation: int) -> list[str]:
    """Show status / list clusters: one line per server that missed changes."""
    return [f"BEHIND: {name} has generation {m.get('has')}, the system is at {generation} "
            f"(missed: {'; '.join(m.get('missed', []))}); brought current the next time the "
            "tool reaches it (any action or status refresh)"
            for name, m in sorted(marks.items())]
