"""`mxone_maintenance`: the operator's command.

The server/standby/cluster subcommands are a view of the command registry
(:mod:`mxone_maintenance.commands.registry`): their words, help and options are built by
walking it, and each runs its command. The file tools (validate, node-config, rules) are
in :mod:`mxone_maintenance.configtools`.

Exit codes: 0 success; 1 the input is refused (broken rules, a missing server, an invalid
file); 2 the command could not do its work (usage, unreadable file, a server unreachable,
rolled back, internal error); 130 interrupted. No traceback ever reaches the operator: an
unexpected error prints one line and the traceback goes to a log file named in that line
(:func:`mxone_maintenance.commands.base.explain`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mxone_maintenance import actions, configtools, store
from mxone_maintenance.commands import registry
from mxone_maintenance.commands.base import (
    EXIT_FAILED,
    EXIT_REFUSED,
    PROG,
    Command,
    Context,
    Failure,
    InputRefused,
    Kind,
    Param,
    Result,
    Values,
    crash_line,
    explain,
    ok_word,
    outcome_line,
)
from mxone_maintenance.service import Maintenance

__all__ = ["EXIT_FAILED", "EXIT_REFUSED", "PROG", "main"]

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="MX-ONE server redundancy maintenance: servers, standby servers and clusters. "
        "Without a command (or with only --config FILE) it opens the menus.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    configtools.add_parsers(sub)
    add_system_parsers(sub)
    return p


def _common_options() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    g = c.add_argument_group("common options")
    g.add_argument("--config", metavar="FILE",
                   help="the system config file (default $MXONE_SYSTEM_CONFIG or /etc/mxone/system.toml)")
    g.add_argument("--known-hosts", metavar="FILE",
                   help="the pinned SSH host keys of the servers (default /etc/mxone/known_hosts)")
    g.add_argument("--ssh-key", metavar="FILE",
                   help="the private key to log in to the servers as root (default /root/.ssh/id_ed25519)")
    g.add_argument("--accept-new-host-key", action="store_true",
                   help="pin the host key of a server never seen before (its fingerprint is "
                   "printed); a changed key is always refused")
    g.add_argument("--agent-artefact", metavar="FILE",
                   help="deploy this agent tarball instead of one built from the installed agent")
    g.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="the longest wait for one command on one server (default 60)")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    return c


def _change_options() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--dry-run", action="store_true",
                   help="print what would be done, server by server, and change nothing")
    c.add_argument("--degraded", action="store_true",
                   help="make the change although a server cannot be reached (lock, unlock, "
                   "fallback type or priority, remove LIM, delete cluster, remove server "
                   "only): the plan names what each unreachable server misses; it is marked "
                   "behind and brought current the next time the tool reaches it")
    return c


def _lim_spec(text: str) -> actions.NewLim:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(
            f"--lim = {text}: expected LIM:NEW_BASE_IP or LIM:NEW_BASE_IP:PRIORITY (e.g. 2:10.0.2.52:1)")
    try:
        lim = int(parts[0])
        priority = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--lim = {text}: LIM and PRIORITY must be whole numbers (LIM:NEW_BASE_IP[:PRIORITY])") from None
    return actions.NewLim(lim, parts[1], priority)


def _priority_spec(text: str) -> tuple[int, int]:
    try:
        lim, prio = text.split(":")
        return int(lim), int(prio)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--priority = {text}: expected LIM:PRIORITY, e.g. 2:1") from None


TYPES: dict[str, Callable[[str], Any]] = {
    "int": int, "float": float, "new-lim": _lim_spec, "lim-priority": _priority_spec}
"""How a parameter of each kind is read from its word (text: as it is)."""


def _add_param(target: Any, p: Param) -> None:
    kw: dict[str, Any] = {}
    if p.help:
        kw["help"] = p.help
    if p.kind == "flag":
        target.add_argument(p.flag, action="store_true", dest=p.name, **kw)
        return
    if p.kind in TYPES:
        kw["type"] = TYPES[p.kind]
    if p.metavar:
        kw["metavar"] = p.metavar
    if p.choices:
        kw["choices"] = p.choices
    if p.flag is None:
        target.add_argument(p.name, **kw)
        return
    if p.repeat:
        kw["action"] = "append"
    if p.required:
        kw["required"] = True
    if p.default is not None:
        kw["default"] = p.default
    target.add_argument(p.flag, dest=p.name, **kw)


def add_system_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """One subcommand per command of the registry, under its group's word."""
    common, change = _common_options(), _change_options()
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for word, help in registry.GROUPS.items():
        g = sub.add_parser(word, help=help, description=help)
        g.set_defaults(group_parser=g)
        groups[word] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    for cmd in registry.COMMANDS:
        if cmd.only == "menu":
            continue
        changes = cmd.kind is Kind.CHANGE or cmd.plan is not None
        c = groups[cmd.group].add_parser(cmd.word, help=cmd.help, description=cmd.help,
                                         parents=[common, change] if changes else [common])
        c.set_defaults(run=cmd)
        exclusive: dict[str, Any] = {}
        for p in cmd.params:
            if p.group and p.group not in exclusive:
                exclusive[p.group] = c.add_mutually_exclusive_group()
            _add_param(exclusive[p.group] if p.group else c, p)


class _Session:
    """One command's backend, plus the host keys it accepted (for the output)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from mxone_maintenance import operations  # the SSH stack, for this command only

        self.args = args
        self.accepted: list[dict[str, str]] = []
        self.backend = operations.backend(
            args.config, args.known_hosts, args.ssh_key,
            accept_new_host_key=args.accept_new_host_key, on_accept=self._accepted,
            agent_artefact=args.agent_artefact, command_timeout=args.timeout)
        self.maintenance = self.backend.maintenance
        self.ops = self.backend.operations

    def _accepted(self, unknown: Any) -> None:
        self.accepted.append({"server": unknown.server, "address": unknown.address,
                              "key_type": unknown.key_type, "fingerprint": unknown.fingerprint})
        if not self.args.json:
            print(f"accepted the host key of {unknown.server} ({unknown.address}): "
                  f"{unknown.key_type} {unknown.fingerprint}")

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.backend.close()

    def emit(self, data: dict[str, Any], lines: Sequence[str]) -> None:
        if self.args.json:
            if self.accepted:
                data["accepted_host_keys"] = self.accepted
            print(json.dumps(data, indent=2, default=str))
        else:
            for line in lines:
                print(line)

    def progress(self, line: str, fraction: float) -> None:
        if not self.args.json:
            print(f"[{fraction * 100:3.0f}%] {line}", file=sys.stderr, flush=True)


def _run_change(args: argparse.Namespace, cmd: Command, values: Values) -> int:
    """Preview, plan, (dry run or) apply a change command, then tell the agents."""
    from mxone_maintenance import orchestrate

    assert cmd.change is not None
    with _Session(args) as s:
        change = s.maintenance.preview(cmd.change, values)
        plan = s.maintenance.plan(change)
        unreachable: dict[str, str] = {}
        if args.degraded:
            if not change.degradable:
                raise InputRefused(
                    "--degraded: this change needs every server of the system reachable (only "
                    "lock, unlock, fallback type or priority, remove LIM, delete cluster and "
                    "remove server can be made while a server is down)")
            applier = s.maintenance.applier
            unreachable = applier.unreachable(change) if isinstance(
                applier, orchestrate.SshApplier) else {}
            if unreachable:
                problem = orchestrate.degraded_problem(change, unreachable)
                if problem is not None:
                    raise InputRefused(f"{problem}; nothing was changed")
                plan = [p for p in plan if p.server not in unreachable]
                plan += orchestrate.degraded_plan(change, unreachable)
                change = dataclasses.replace(change, accept_behind=tuple(sorted(unreachable)))
        data: dict[str, Any] = {
            "command": f"{args.command} {args.subcommand}", "dry_run": args.dry_run,
            "generation_before": change.before.generation, "generation_after": change.after.generation,
            "effects": list(change.effects),
            "plan": [{"server": p.server, "what": p.what} for p in plan],
        }
        head = [f"Plan: generation {change.before.generation} -> {change.after.generation}"]
        head += [f"  {p.server:<12} {p.what}" for p in plan]
        if change.removes_old_xdata:
            head.append("  Note: older exchange-data versions are removed; one version is kept.")
        if unreachable:
            data["unreachable"] = dict(unreachable)
            head.append(f"  DEGRADED: {', '.join(sorted(unreachable))} cannot be reached and "
                        "will miss this change (confirmed by --degraded)")
        if args.dry_run:
            s.emit(data, [*head, "Dry run: nothing was changed."])
            return 0
        result = s.maintenance.apply(change, s.progress)
        data["ok"] = result.ok
        data["generation"] = result.generation
        data["ssh_connections"] = s.backend.pool.connects
        data["outcomes"] = [{"server": o.server, "ok": o.ok, "message": o.message}
                            for o in result.outcomes]
        lines = [*head, "", (f"Applied: system generation {result.generation}." if result.ok else
                             f"NOT applied: the system stays at generation {result.generation}.")]
        lines += [f"  {outcome_line(o.server, ok_word(o.ok), o.message)}" for o in result.outcomes]
        ok = result.ok
        if result.ok and cmd.tell is not None:
            behind = s.maintenance.applier.behind() if isinstance(
                s.maintenance.applier, orchestrate.SshApplier) else {}
            answers = cmd.tell(s.ops, change.after, values, frozenset(behind))
            data["agents"] = [{"server": a.server, "ok": a.ok, "text": a.text} for a in answers]
            lines += ["Agents:", *(f"  {outcome_line(a.server, ok_word(a.ok), a.text)}"
                                   for a in answers)]
            ok = ok and all(a.ok for a in answers)
            data["ok"] = ok
        s.emit(data, lines)
        return 0 if ok else EXIT_FAILED


def _print(args: argparse.Namespace, result: Result) -> None:
    if args.json:
        print(json.dumps(result.data, indent=2, default=str))
    else:
        for line in result.lines:
            print(line)


def run_command(args: argparse.Namespace) -> int:
    """Run one command of the registry with the values parsed from the command line."""
    cmd: Command = args.run
    values = {p.name: getattr(args, p.name) for p in cmd.params}
    if cmd.kind is Kind.CHANGE:
        return _run_change(args, cmd, values)
    assert cmd.run is not None
    if cmd.kind is Kind.READ:  # the config on LIM 1 only: no server is reached
        result = cmd.run(Context(Maintenance(store.config_path(args.config))), values,
                         lambda _line, _fraction: None)
        _print(args, result)
        return 0 if result.ok else EXIT_FAILED
    with _Session(args) as s:
        if getattr(args, "dry_run", False) and cmd.plan is not None:
            planned = cmd.plan(s.maintenance.system().validated(), values)
            s.emit(planned.data, [*planned.lines, "Dry run: nothing was changed."])
            return 0
        result = cmd.run(Context(s.maintenance, s.ops), values, s.progress)
        s.emit(result.data, result.lines)
        return 0 if result.ok else EXIT_FAILED


def _say(args: argparse.Namespace, exc: BaseException) -> int:
    """What the operator sees of an error (the shared mapping), and the exit code."""
    shown = explain(exc)
    if shown.failure is Failure.REFUSED:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "refused": str(exc).splitlines()}, indent=2))
        print(f"{PROG}: refused: {exc}", file=sys.stderr)
    elif shown.failure is Failure.UNUSABLE:
        print(shown.text, file=sys.stderr)
    elif shown.failure is Failure.INTERNAL:
        print(f"{PROG}: {crash_line(exc)}", file=sys.stderr)
    else:
        print(f"{PROG}: {shown.text}", file=sys.stderr)
    return shown.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "tool", None) is not None:
            return int(args.tool(args))
        if getattr(args, "run", None) is not None:
            return run_command(args)
        if getattr(args, "group_parser", None) is not None:
            args.group_parser.print_help()
            return 2
        parser.print_help()
        return 2
    except (Exception, KeyboardInterrupt) as exc:  # the one guard: every error explained
        return _say(args, exc)


if __name__ == "__main__":
    sys.exit(main())
