"""The ``mxone-agent`` command.

For now it offers ``mxone-agent check-config FILE``: load a node config written by the
maintenance tool and name every problem in it. The daemon itself is not built yet; any
other subcommand says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from mxone_agent.config import ConfigError, NodeConfig, load_node_config

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_NOT_BUILT = 2


def _summary(path: str, cfg: NodeConfig) -> str:
    role = cfg.role
    lim = cfg.lim_of(cfg.node)
    runs = f", LIM {lim.lim}" if lim is not None else ""
    return (f"{path}: valid node config (format 1, generation {cfg.generation}) for {cfg.node} "
            f"({role}{runs}) in cluster {cfg.cluster}: {len(cfg.regulars)} regular server(s), "
            f"{cfg.failover} failover, {cfg.fallback} fallback, failure detection "
            f"{cfg.detection:.1f} s ({cfg.timers.misses} x {cfg.timers.interval:g} s)")


def check_config(path: str) -> int:
    """Load and validate the node config at ``path``; print the verdict. Returns the exit code."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
        return EXIT_INVALID
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        print(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
              file=sys.stderr)
        return EXIT_INVALID
    try:
        cfg = load_node_config(data)
    except ConfigError as e:
        count = len(e.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}:", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return EXIT_INVALID
    print(_summary(path, cfg))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mxone-agent``; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="mxone-agent",
        description="MX-ONE server redundancy node agent. Only 'check-config' is available "
                    "yet; the agent daemon is not built.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = sub.add_parser("check-config", help="validate a node config file and list every "
                           "problem in it (exit 1 if there is any)")
    check.add_argument("file", metavar="FILE", help="the node config (JSON) to check")
    if args and args[0] == "check-config":
        return check_config(parser.parse_args(args).file)
    if args and args[0] in ("-h", "--help"):
        parser.print_help()
        return EXIT_OK
    what = f"{args[0]}: " if args else ""
    print(f"mxone-agent: {what}the agent daemon is not built yet; the only command available "
          "is 'check-config FILE'", file=sys.stderr)
    return EXIT_NOT_BUILT


if __name__ == "__main__":
    sys.exit(main())
