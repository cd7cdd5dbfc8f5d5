"""The `mxone_maintenance` command: the menus without a command, the CLI with one.

The console script lives here, not in mxone_maintenance, because imports go one way:
the menus use the core, the core never imports the menus.

The menus take only options (no command word)::

    mxone_maintenance [--config FILE] [--known-hosts FILE] [--ssh-key FILE]
                      [--agent-artefact FILE] [--status-refresh SECONDS]

A server whose SSH host key the tool has never seen is shown in the menus (address, key
type, SHA256 fingerprint) and pinned only when the operator accepts it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mxone_maintenance import cli
from mxone_maintenance.commands.base import crash_line

MENU_OPTIONS = ("--config", "--known-hosts", "--ssh-key", "--agent-artefact", "--status-refresh")


def _menu_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli.PROG, add_help=False)
    p.add_argument("--config")
    p.add_argument("--known-hosts")
    p.add_argument("--ssh-key")
    p.add_argument("--agent-artefact")
    p.add_argument("--status-refresh", type=float)
    return p


def menu_options(args: Sequence[str]) -> argparse.Namespace | None:
    """The menus' options when ``args`` hold only those (else None: it is a CLI command)."""
    if any(a.startswith("-") and a.split("=", 1)[0] not in MENU_OPTIONS for a in args):
        return None
    parser = _menu_parser()
    try:
        ns, rest = parser.parse_known_args(list(args))
    except SystemExit:
        return None
    if rest:
        return None
    if ns.status_refresh is not None and ns.status_refresh < 0:
        return None
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    opts = menu_options(args)
    if opts is None:
        return cli.main(args)
    from mxone_maintenance import operations
    from mxone_menus import app  # urwid is imported only when the menus are wanted
    from mxone_maintenance.hostkeys import ask_before_pinning
    from mxone_menus.operations import AgentOperations

    try:
        backend = operations.backend(opts.config, opts.known_hosts, opts.ssh_key,
                                     agent_artefact=opts.agent_artefact)
        try:
            host_keys = ask_before_pinning(backend.pool)
            return app.run(backend.maintenance,
                           AgentOperations(backend.maintenance, backend.operations),
                           host_keys=host_keys, status_refresh=opts.status_refresh)
        finally:
            backend.close()
    except Exception as exc:  # the last guard: one line for the operator, details in the log
        print(f"{cli.PROG}: {crash_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
