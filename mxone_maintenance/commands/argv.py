"""The command line of `mxone_maintenance`: its parser, a view of the command registry.

One subcommand per command of :mod:`mxone_maintenance.commands.registry` (its words, help
and parameters), the file tools of :mod:`mxone_maintenance.configtools`, and the global
options (:data:`GLOBAL_OPTIONS`), taken before or after the command words: each parser
has them with no default of its own, so a value given before the command is kept unless
given again after it; :func:`settle_globals` then fills in the defaults and refuses one
given to a command that has no such option. ``--version`` goes anywhere.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

from mxone_agent.version import VERSION

from mxone_maintenance import actions, configtools
from mxone_maintenance.commands import registry
from mxone_maintenance.commands.base import PROG, Kind, Param

VERSION_LINE = f"{PROG} {VERSION}"

GLOBAL_OPTIONS: dict[str, Any] = {
    "config": None, "known_hosts": None, "ssh_key": None, "accept_new_host_key": False,
    "agent_artefact": None, "timeout": 60.0, "json": False}
"""The options taken before or after the command words (destination -> default)."""


def parser() -> argparse.ArgumentParser:
    """The whole command line: every command's words, options and help."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="MX-ONE server redundancy maintenance: servers, standby servers and clusters. "
        "Without a command (or with only --config FILE) it opens the menus; --new opens "
        "them on a new, empty system.",
        parents=[_global_options()],
    )
    p.add_argument("--version", action="version", version=VERSION_LINE,
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    configtools.add_parsers(sub)
    add_system_parsers(sub)
    for each in all_parsers(p):
        if each is not p:
            each.add_argument("--version", action="version", version=VERSION_LINE,
                              help="print the version and exit")
        for action in each._actions:  # a global option given before the command stays
            if action.dest in GLOBAL_OPTIONS:
                action.default = argparse.SUPPRESS
    return p


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((dict(a.choices) for a in parser._actions
                 if isinstance(a, argparse._SubParsersAction)), {})


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for child in subparsers(parser).values():
        yield from all_parsers(child)


def _global_options() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    g = c.add_argument_group("global options (before or after the command)")
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
    g.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="the longest wait for one command on one server (default 60)")
    g.add_argument("--json", action="store_true",
                   help='print the result as one JSON object with "schema" (docs/json.md)')
    return c


def _dry_run_option() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--dry-run", action="store_true",
                   help="print what would be done, server by server, and change nothing "
                   "(no server, no file, no host key pinned)")
    return c


def _change_options() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False, parents=[_dry_run_option()])
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


def add_param(target: Any, p: Param) -> None:
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
    common, change, dry_run = _global_options(), _change_options(), _dry_run_option()
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for word, help in registry.GROUPS.items():
        g = sub.add_parser(word, help=help, description=help, parents=[common])
        g.set_defaults(group_parser=g)
        groups[word] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    for cmd in registry.COMMANDS:
        if cmd.only == "menu":
            continue
        parents = [common, change] if cmd.kind is Kind.CHANGE else (
            [common, dry_run] if cmd.plan is not None else [common])
        c = groups[cmd.group].add_parser(cmd.word, help=cmd.help, description=cmd.help,
                                         parents=parents)
        c.set_defaults(run=cmd)
        if cmd.name == "server.add":
            c.add_argument("--new", action="store_true",
                           help="start a new system: the config file does not exist yet and "
                           "this first server writes it (refused when the file exists)")
        exclusive: dict[str, Any] = {}
        for p in cmd.params:
            if p.group and p.group not in exclusive:
                exclusive[p.group] = c.add_mutually_exclusive_group()
            add_param(exclusive[p.group] if p.group else c, p)


def _leaf(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command words given (the top one when none)."""
    for word in (getattr(args, "command", None), getattr(args, "subcommand", None)):
        if word is None or word not in subparsers(parser):
            break
        parser = subparsers(parser)[word]
    return parser


def settle_globals(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Each global option given where the command takes it, the others at their default;
    one given to a command that has no such option is a usage error naming it."""
    leaf = _leaf(parser, args)
    takes = {a.dest for a in leaf._actions}
    words = " ".join(w for w in (getattr(args, "command", None),
                                 getattr(args, "subcommand", None)) if w)
    for dest, default in GLOBAL_OPTIONS.items():
        if hasattr(args, dest) and dest not in takes and leaf is not parser:
            flag = "--" + dest.replace("_", "-")
            parser.error(f"{flag}: `{words}` has no {flag} option (see `{PROG} {words} --help`)")
        if not hasattr(args, dest):
            setattr(args, dest, default)
