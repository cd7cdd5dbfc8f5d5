"""The network configuration's requests and answers (``mxone-agent node net-*``).

``inspect`` {interface, old, new, why} or {interface, revert: true}: the plan and a
snapshot of every path (``files``) and directory (``dirs``) applying it may write; ``ok``
false with ``error`` when the node is refused. ``apply`` (the same request plus
``expect``: path -> sha256 of each file as inspected): writes the plan; refused if a file
changed since. ``restore`` {files, dirs}: puts the snapshot back.
"""

from __future__ import annotations

from typing import Any

from mxone_agent.netconfig.plan import Plan, plan_rebase, plan_revert
from mxone_agent.netconfig.write import (
    apply_plan,
    backup_dirs,
    restore,
    sha,
    snapshot,
    touched_paths,
)


class NetconfigError(Exception):
    """A request the node cannot carry out; the message says why and what to do."""


def plan_of(root: str, req: dict[str, object]) -> Plan:
    interface = str(req["interface"])
    if req.get("revert"):
        return plan_revert(root, interface)
    return plan_rebase(root, interface, str(req["old"]), str(req["new"]), str(req["why"]))


def _mapping(req: dict[str, object], key: str) -> dict[str, object]:
    value = req.get(key, {})
    if not isinstance(value, dict):
        raise NetconfigError(f"request field {key!r} must be an object, not {value!r}")
    return value


def handle(op: str, req: dict[str, object], root: str = "") -> dict[str, object]:
    """One request, answered (see the module docstring); ``root``: the file system."""
    if op not in ("inspect", "apply", "restore"):
        return {"ok": False, "error": f"unknown op {op!r}"}
    if op == "restore":
        files: dict[str, Any] = _mapping(req, "files")
        return {"ok": True, "restored": restore(root, files, _mapping(req, "dirs"))}
    plan = plan_of(root, req)
    if plan.refusal:
        return {"ok": False, "error": plan.refusal}
    if op == "inspect":
        return {"ok": True, "edits": [{"path": e.path, "format": e.fmt} for e in plan.edits],
                "notes": plan.notes, "expect": {e.path: sha(e.before) for e in plan.edits},
                "files": snapshot(root, touched_paths(plan)), "dirs": backup_dirs(root)}
    expect = _mapping(req, "expect")
    now = {e.path: sha(e.before) for e in plan.edits}
    if now != expect:
        moved = sorted(set(now) ^ set(expect) | {p for p in now if now[p] != expect.get(p)})
        return {"ok": False, "error": "network configuration changed since it was read: "
                + ", ".join(moved) + "; nothing written (start the action again)"}
    written = apply_plan(root, plan, keep_backup=not req.get("revert"))
    return {"ok": True, "written": written, "notes": plan.notes}


def answer(op: str, req: object, root: str = "") -> dict[str, object]:
    """:func:`handle`, with a request the node cannot carry out answered as a refusal
    (``{"ok": false, "error": "network configuration: ..."}``), never raised."""
    try:
        if not isinstance(req, dict):
            raise NetconfigError(f"the request must be a JSON object, not {type(req).__name__}")
        return handle(op, req, root)
    except NetconfigError as exc:
        return {"ok": False, "error": f"network configuration: {exc}"}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": f"network configuration: {type(exc).__name__}: {exc}"}
