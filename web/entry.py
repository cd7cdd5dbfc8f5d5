"""The ``webserver_config`` command: the menus without a command, the CLI with one.

The menus take only these options: ``webserver_config [--node-config FILE] [--settings
FILE]``, and need a terminal (without one the tool says so and exits 2). urwid is imported
only when the menus are wanted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mxone_agent import paths
from mxone_web import cli, commands, settings

from mxone_maintenance.commands.base import crash_line

MENU_OPTIONS = ("--node-config", "--settings")


def no_terminal() -> str:
    """What the tool says when the menus are wanted but there is no terminal (cron, ``ssh
    host webserver_config`` without ``-t``)."""
    words = sorted(c.name.replace(".", " ") for c in commands.COMMANDS)
    return (f"{cli.PROG}: the menus need a terminal (stdin and stdout are not one here); run "
            f"them with `ssh -t`, or use a subcommand: {', '.join(words)} "
            f"(`{cli.PROG} --help` lists them all)")


def menu_options(args: Sequence[str]) -> argparse.Namespace | None:
    """The menus' options when ``args`` hold only those (else None: it is a CLI command)."""
    if any(a.startswith("-") and a.split("=", 1)[0] not in MENU_OPTIONS for a in args):
        return None
    p = argparse.ArgumentParser(prog=cli.PROG, add_help=False)
    for option in MENU_OPTIONS:
        p.add_argument(option)
    try:
        ns, rest = p.parse_known_args(list(args))
    except SystemExit:
        return None
    return None if rest else ns


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    opts = menu_options(args)
    if opts is None:
        return cli.main(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(no_terminal(), file=sys.stderr)
        return 2
    from mxone_web import tui  # urwid only for the menus

    try:
        return tui.run(cli.web_for(argparse.Namespace(
            node_config=opts.node_config or paths.NODE_JSON,
            settings=opts.settings or str(settings.SETTINGS))))
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, details in the log
        print(f"{cli.PROG}: {crash_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
