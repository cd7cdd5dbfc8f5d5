"""The `mxone_maintenance` command: the menus without a command, the CLI with one.

The console script lives here, not in mxone_maintenance, because imports go one way:
the menus use the core, the core never imports the menus.

The menus take only options (no command word)::

    mxone_maintenance [--config FILE] [--known-hosts FILE] [--ssh-key FILE]
                      [--agent-artefact FILE] [--status-refresh SECONDS] [--new]

They open on the system config file, which must exist; ``--new`` opens them on a new, empty
system instead (refused when the file exists), and its first change writes the file. They
need a terminal: without one (cron, ``ssh host mxone_maintenance`` without ``-t``) the tool
says so and names the subcommands instead.

A server whose SSH host key the tool has never seen is shown in the menus (address, key
type, SHA256 fingerprint) and pinned only when the operator accepts it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mxone_maintenance import cli, store
from mxone_maintenance.commands import registry
from mxone_maintenance.commands.base import EXIT_FAILED, EXIT_REFUSED, crash_line, missing_config

MENU_OPTIONS = ("--config", "--known-hosts", "--ssh-key", "--agent-artefact", "--status-refresh",
                "--new")


def _menu_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli.PROG, add_help=False)
    p.add_argument("--config")
    p.add_argument("--known-hosts")
    p.add_argument("--ssh-key")
    p.add_argument("--agent-artefact")
    p.add_argument("--status-refresh", type=float)
    p.add_argument("--new", action="store_true")
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


def no_terminal() -> str:
    """What the tool says when the menus are wanted but there is no terminal."""
    words = ", ".join(" ".join(c.name.split(".")) for c in registry.COMMANDS if c.only != "menu")
    return (f"{cli.PROG}: the menus need a terminal (stdin and stdout are not one here); "
            f"run them with `ssh -t`, or use a subcommand: {words} "
            f"(`{cli.PROG} --help` lists them all)")


def _refusal(opts: argparse.Namespace) -> tuple[str, int] | None:
    """Why the menus do not open on this config file, and the exit code (None: they do)."""
    path = store.config_path(opts.config)
    if opts.new and path.exists():
        return (f"{cli.PROG}: refused: --new: {path} exists already: this is not a new system "
                "(leave out --new to open the menus on it)", EXIT_REFUSED)
    if not opts.new and not path.exists():
        return "\n".join(missing_config(path, opts.config).problems), EXIT_FAILED
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    opts = menu_options(args)
    if opts is None:
        return cli.main(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(no_terminal(), file=sys.stderr)
        return EXIT_FAILED
    refused = _refusal(opts)
    if refused is not None:
        print(refused[0], file=sys.stderr)
        return refused[1]
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
