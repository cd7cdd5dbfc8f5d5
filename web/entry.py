"""The ``webserver_config`` command: the menus without a command, the CLI with one.

The menus take only these options: ``webserver_config [--node-config FILE] [--settings
FILE]``. urwid is imported only when the menus are wanted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mxone_agent import paths
from mxone_web import cli, settings

from mxone_maintenance.commands.base import crash_line

MENU_OPTIONS = ("--node-config", "--settings")


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
