"""``webserver_config redundancy ...``: every step and utility as a subcommand.

A view of :data:`mxone_web.commands.COMMANDS`, with the maintenance tool's conventions:
``--json`` prints the result as one JSON object, ``"schema"`` first (docs/json.md; an
error too, in the maintenance tool's shape), ``--dry-run`` checks every answer and prints the
plan, changing nothing; exit 0 done, 1 refused (nothing changed), 2 failed, 130
interrupted; no traceback reaches the operator (the shared
:func:`~mxone_maintenance.commands.base.explain`). Passwords are never arguments: each is
asked at a prompt (twice where it is set) or, when stdin is not a terminal, read from
stdin one line each, in the order ``--help`` lists them.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mxone_agent import paths
from mxone_web import commands, settings
from mxone_web.commands import WebCommand
from mxone_web.context import Web
from mxone_web.errors import Refused

from mxone_maintenance.cli import (  # a Param as an option, the JSON printer, a closed pipe
    _add_param,
    _stdout_to_devnull,
    print_json,
    quiet_on_closed_pipe,
)
from mxone_maintenance.commands.base import Failure, Values, crash_line, error_data, explain

PROG = "webserver_config"


def _common() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    g = c.add_argument_group("common options")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    g.add_argument("--node-config", metavar="FILE", default=paths.NODE_JSON,
                   help=f"this server's node config (default {paths.NODE_JSON})")
    g.add_argument("--settings", metavar="FILE", default=str(settings.SETTINGS),
                   help=f"the pair settings of this server (default {settings.SETTINGS})")
    return c


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="PM/SNM web server configuration. "
                                "Without a command it opens the menus.")
    sub = p.add_subparsers(dest="group", metavar="COMMAND")
    common = _common()
    groups = {}
    for word, help in commands.GROUPS.items():
        g = sub.add_parser(word, help=help, description=help)
        g.set_defaults(group_parser=g)
        groups[word] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    for cmd in commands.COMMANDS:
        said = cmd.help
        if cmd.secrets:
            said += ". Passwords, asked (or read from stdin, one line each, in this order): " \
                + "; ".join(s.prompt for s in cmd.secrets)
        c = groups[cmd.group].add_parser(cmd.word, help=cmd.help, description=said,
                                         parents=[common])
        c.set_defaults(run=cmd)
        if cmd.plan is not None:
            c.add_argument("--dry-run", action="store_true",
                           help="check every answer and print the plan; change nothing")
        for param in cmd.params:
            _add_param(c, param)
    return p


def read_secrets(cmd: WebCommand, stdin: TextIO, tty: bool) -> dict[str, str]:
    """Each secret of ``cmd``: asked twice at a prompt where it is set, or one stdin line."""
    found: dict[str, str] = {}
    for s in cmd.secrets:
        if tty:
            found[s.name] = getpass.getpass(f"{s.prompt}: ")
            if s.twice:
                found[f"{s.name}_again"] = getpass.getpass(f"{s.prompt} (again): ")
        else:
            line = stdin.readline()
            if not line:
                raise Refused(f"{s.prompt}: not given (stdin ended; give one line per "
                              "password, in the order --help lists them)")
            found[s.name] = line.rstrip("\n")
    return found


def web_for(args: argparse.Namespace) -> Web:
    path = Path(args.settings)
    return Web(node_json=Path(args.node_config), settings_path=path,
               answers_path=path.with_name(settings.MASTER_ANSWERS.name))


def _emit(args: argparse.Namespace, cmd: WebCommand, data: dict[str, Any],
          lines: Sequence[str]) -> None:
    if args.json:
        print_json(cmd.schema, data)
    else:
        for line in lines:
            print(line)


def run(args: argparse.Namespace, web: Web | None = None) -> int:
    cmd: WebCommand = args.run
    values: dict[str, Any] = {p.name: getattr(args, p.name) for p in cmd.params}
    values.update(read_secrets(cmd, sys.stdin, sys.stdin.isatty()))
    web = web or web_for(args)
    v: Values = values
    if getattr(args, "dry_run", False) and cmd.plan is not None:
        planned = cmd.plan(web, v)
        _emit(args, cmd, planned.data, [*planned.lines, "Dry run: nothing was changed."])
        return 0

    def progress(line: str, fraction: float) -> None:
        if not args.json:
            print(f"[{fraction * 100:3.0f}%] {line}", file=sys.stderr, flush=True)

    result = cmd.run(web, v, progress)
    _emit(args, cmd, result.data, result.lines)
    return 0 if result.ok else 2


def _said(args: argparse.Namespace, exc: BaseException) -> int:
    """Every error, told on stderr and, with ``--json``, as the shared error object on stdout
    (``{"schema": 1, "ok": false, "failure": ..., "lines": [...]}``)."""
    shown = explain(exc)
    if shown.failure is Failure.INTERNAL:
        shown = dataclasses.replace(shown, lines=(crash_line(exc),))
    if shown.failure is Failure.REFUSED:
        print(f"{PROG}: refused: {shown.text}", file=sys.stderr)
    else:
        print(f"{PROG}: {shown.text}", file=sys.stderr)
    if getattr(args, "json", False):  # after stderr: a closed stdout cannot hide the reason
        try:
            print(json.dumps(error_data(shown), indent=2), flush=True)
        except BrokenPipeError:  # the exit code still says what went wrong
            _stdout_to_devnull()
    return shown.exit_code


def main(argv: Sequence[str] | None = None, web: Web | None = None) -> int:
    """The command line; a reader that went away (``| head``) ends it quietly, as it does
    ``mxone_maintenance`` (exit 141, or the command's own code when it failed)."""
    return quiet_on_closed_pipe(lambda: _main(argv, web))


def _main(argv: Sequence[str] | None, web: Web | None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        if getattr(args, "run", None) is not None:
            return run(args, web)
        if getattr(args, "group_parser", None) is not None:
            args.group_parser.print_help()
            return 2
        p.print_help()
        return 2
    except BrokenPipeError:
        raise  # the reader went away: nothing to explain (main)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one guard: every error explained
        return _said(args, exc)
