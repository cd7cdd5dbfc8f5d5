"""`mxone_maintenance`: the operator's command.

The server/standby/cluster subcommands are a view of the command registry
(:mod:`mxone_maintenance.commands.registry`): their words, help and options are built by
walking it (:mod:`mxone_maintenance.commands.argv`), and each runs its command. The file
tools (validate, node-config, rules) are in :mod:`mxone_maintenance.configtools`.

Global options (``--config``, ``--json``, ...: :data:`~mxone_maintenance.commands.argv.
GLOBAL_OPTIONS`) go before or after the command words. Every ``--json`` output is one JSON object whose ``"schema"`` is the
version of its shape (docs/json.md), errors included.

Exit codes: 0 success; 1 the input is refused (broken rules, a missing server, an invalid
file); 2 the command could not do its work (usage, a missing or unreadable file, a server
unreachable, rolled back, internal error); 130 interrupted; 141 the reader of the output
went away (``| head``), said nothing more. No traceback ever reaches the operator: an
unexpected error prints one line and the traceback goes to a log file named in that line
(:func:`mxone_maintenance.commands.base.explain`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mxone_maintenance import store
from mxone_maintenance.commands.argv import parser as _parser  # tests walk it as cli._parser
from mxone_maintenance.commands.argv import add_param, settle_globals
from mxone_maintenance.commands.base import (
    EXIT_FAILED,
    EXIT_REFUSED,
    PROG,
    Command,
    Context,
    Failure,
    InputRefused,
    Kind,
    Result,
    Values,
    crash_line,
    error_data,
    explain,
    missing_config,
    ok_word,
    outcome_line,
    with_schema,
)
from mxone_maintenance.service import Maintenance

__all__ = ["EXIT_CLOSED_PIPE", "EXIT_FAILED", "EXIT_REFUSED", "PROG", "main"]

_add_param = add_param  # mxone_web's CLI turns its Params into options the same way

EXIT_CLOSED_PIPE = 141
"""128 + SIGPIPE: what a shell shows for a tool whose reader went away (``| head -1``)."""


class _Session:
    """One command's backend, plus the host keys it accepted (for the output)."""

    def __init__(self, args: argparse.Namespace, schema: int) -> None:
        from mxone_maintenance import operations  # the SSH stack, for this command only

        self.args = args
        self.schema = schema
        self.accepted: list[dict[str, str]] = []
        # a dry run pins no host key: a server never seen before is refused as without
        # --accept-new-host-key, and known_hosts is left as it is
        self.backend = operations.backend(
            args.config, args.known_hosts, args.ssh_key,
            accept_new_host_key=args.accept_new_host_key and not getattr(args, "dry_run", False),
            on_accept=self._accepted,
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
            print_json(self.schema, data)
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
    with _Session(args, cmd.schema) as s:
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
        warned = [str(w) for w in change.after.warnings(since=change.before)]
        data: dict[str, Any] = {
            "command": f"{args.command} {args.subcommand}", "dry_run": args.dry_run,
            "generation_before": change.before.generation, "generation_after": change.after.generation,
            "effects": list(change.effects), "warnings": warned,
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
        head += [f"[WARNING] {w}" for w in warned]  # allowed, but the operator must know
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


def print_json(schema: int, data: dict[str, Any]) -> None:
    """The one way a ``--json`` output is printed: one object, ``"schema"`` first."""
    print(json.dumps(with_schema(schema, data), indent=2, default=str))


def _print(args: argparse.Namespace, schema: int, result: Result) -> None:
    if args.json:
        print_json(schema, result.data)
    else:
        for line in result.lines:
            print(line)


def run_command(args: argparse.Namespace) -> int:
    """Run one command of the registry with the values parsed from the command line."""
    cmd: Command = args.run
    values = {p.name: getattr(args, p.name) for p in cmd.params}
    _config_there(args)
    if cmd.kind is Kind.CHANGE:
        return _run_change(args, cmd, values)
    assert cmd.run is not None
    if cmd.kind is Kind.READ:  # the config on LIM 1 only: no server is reached
        result = cmd.run(Context(Maintenance(store.config_path(args.config))), values,
                         lambda _line, _fraction: None)
        _print(args, cmd.schema, result)
        return 0 if result.ok else EXIT_FAILED
    with _Session(args, cmd.schema) as s:
        if getattr(args, "dry_run", False) and cmd.plan is not None:
            planned = cmd.plan(Context(s.maintenance, s.ops), values)
            lines = list(planned.lines)
            if "Dry run: nothing was changed." not in lines:
                lines.append("Dry run: nothing was changed.")
            s.emit({"dry_run": True, **planned.data}, lines)
            return 0
        result = cmd.run(Context(s.maintenance, s.ops), values, s.progress)
        s.emit(result.data, result.lines)
        return 0 if result.ok else EXIT_FAILED


def _config_there(args: argparse.Namespace) -> None:
    """The system config file must exist, unless ``server add --new`` starts a new system
    (and then it must not)."""
    path = store.config_path(args.config)
    if getattr(args, "new", False):
        if path.exists():
            raise InputRefused(f"--new: {path} exists already: this is not a new system "
                               "(leave out --new to add a server to it)")
    elif not path.exists():
        raise missing_config(path, args.config)


def _say(args: argparse.Namespace, exc: BaseException) -> int:
    """What the operator sees of an error (the shared mapping), and the exit code."""
    shown = explain(exc)
    if shown.failure is Failure.INTERNAL:
        shown = dataclasses.replace(shown, lines=(crash_line(exc),))
    if shown.failure is Failure.REFUSED:
        print(f"{PROG}: refused: {shown.text}", file=sys.stderr)
    elif shown.failure is Failure.UNUSABLE:
        print(shown.text, file=sys.stderr)
    else:
        print(f"{PROG}: {shown.text}", file=sys.stderr)
    if getattr(args, "json", False):  # after stderr: a closed stdout cannot hide the reason
        try:
            print(json.dumps(error_data(shown), indent=2), flush=True)
        except BrokenPipeError:  # the exit code still says what went wrong
            _stdout_to_devnull()
    return shown.exit_code


def _run(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    settle_globals(parser, args)
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
    except BrokenPipeError:
        raise  # the reader went away: nothing to explain (main)
    except (Exception, KeyboardInterrupt) as exc:  # the one guard: every error explained
        return _say(args, exc)


def _stdout_to_devnull() -> None:
    """After a closed pipe: nothing more reaches the reader, and Python's own flush at exit
    finds nothing to complain about (the Python docs' note on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout (a test's capture)
        pass


def quiet_on_closed_pipe(run: Callable[[], int]) -> int:
    """``run()``, its output flushed; when the reader went away (``| head -1``) it ends
    quietly, as a tool killed by SIGPIPE does: no error line, no traceback in the error log,
    exit code 141 (or the command's own when it failed: its reason went to stderr)."""
    code = EXIT_CLOSED_PIPE  # when run() itself meets the closed pipe
    try:
        code = run()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _stdout_to_devnull()
        return code or EXIT_CLOSED_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    return quiet_on_closed_pipe(lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
