"""The tool's own utilities on files: validate a system config, print a node's config, list
the rules. They read files only: no server is reached and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

from mxone_maintenance import configfile, rules, store, warning_rules
from mxone_maintenance.commands.base import with_schema
from mxone_maintenance.errors import ConfigFileError, MxoneError
from mxone_maintenance.model import NodeFacts


VALIDATE_SCHEMA = RULES_SCHEMA = 1
"""The versions of the shapes `validate --json` and `rules --json` print (docs/json.md)."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The file tools' subcommands: validate, node-config, rules."""
    v = sub.add_parser(
        "validate",
        help="check a system config file against every prerequisite rule",
        description="Check a system config file: syntax, known keys, and every prerequisite "
        "rule of server redundancy. Prints every problem found, each with its line, and "
        "every warning (a value allowed that demands more of the system; exit 0 when only "
        "warnings).",
    )
    v.add_argument("file", help="the system config file (TOML)")
    v.add_argument(
        "--facts",
        metavar="FILE",
        help="the nodes' disk reports (TOML: [SERVER] free_data_bytes = N, backup_bytes = N); "
        "without it the standby-disk rule is not checked",
    )
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(tool=cmd_validate)
    n = sub.add_parser(
        "node-config",
        help="print the config an agent runs on, derived from a system config file",
        description="Print (JSON) the per-node config that the agent on NODE runs on.",
    )
    n.add_argument("file", help="the system config file (TOML)")
    n.add_argument("node", help="a server that is in a cluster")
    n.set_defaults(tool=cmd_node_config)
    r = sub.add_parser("rules", help="list every prerequisite rule")
    r.add_argument("--json", action="store_true", help="print the rules as JSON")
    r.set_defaults(tool=cmd_rules)


def _load_facts(path: str) -> dict[str, NodeFacts]:
    text = store.read_text(Path(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(path, [configfile._syntax_message(path, str(exc))]) from None
    facts: dict[str, NodeFacts] = {}
    problems: list[str] = []
    for name, table in data.items():
        keys = {"free_data_bytes", "backup_bytes"}
        if not isinstance(table, dict) or set(table) != keys or not all(
            isinstance(table[k], int) and not isinstance(table[k], bool) and table[k] >= 0
            for k in keys
        ):
            problems.append(f"{path}: [{name}] must hold exactly free_data_bytes and backup_bytes, "
                            "each a whole number of bytes")
            continue
        facts[name] = NodeFacts(table["free_data_bytes"], table["backup_bytes"])
    if problems:
        raise ConfigFileError(path, problems)
    return facts


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.file)
    facts = _load_facts(args.facts) if args.facts else None
    text = store.read_text(path)
    try:
        system = configfile.parse(text, str(path))
    except ConfigFileError as exc:
        if args.json:
            print(json.dumps(with_schema(VALIDATE_SCHEMA, {
                "file": str(path), "valid": False, "problems": list(exc.problems)}), indent=2))
        else:
            print("\n".join(exc.problems))
            print(f"{path}: {len(exc.problems)} problem(s) in the file's shape; rules not checked")
        return 1
    violations = rules.check(system, facts)
    warned = warning_rules.warnings(system, facts)
    if args.json:
        locator = configfile.Locator(text)
        print(json.dumps(with_schema(VALIDATE_SCHEMA, {
            "file": str(path),
            "valid": not violations,
            "generation": system.generation,
            **{key: [{"rule": v.rule, "field": v.field, "value": v.value, "detail": v.detail,
                      "rule_text": v.rule_text, "line": locator.line_of(v.loc)} for v in found]
               for key, found in (("violations", violations), ("warnings", warned))},
        }), indent=2, default=str))
        return 1 if violations else 0
    if violations:
        print("\n".join(configfile.describe(violations, text, str(path))))
    for line in configfile.describe(warned, text, str(path)):
        print(f"[WARNING] {line}")
    if violations:
        print(f"{path}: {len(violations)} broken rule(s)")
        return 1
    note = "" if facts is not None else "; disk rule not checked (no --facts)"
    note += f"; {len(warned)} warning(s)" if warned else ""
    print(f"{path}: valid: generation {system.generation}, {len(system.servers)} server(s), "
          f"{len(system.clusters)} cluster(s){note}")
    return 0


def cmd_node_config(args: argparse.Namespace) -> int:
    from mxone_maintenance import nodeconfig  # the agent's config types, for this tool only

    system = store.load(Path(args.file)).validated()
    configs = nodeconfig.all_nodes(system)
    if args.node not in configs:
        in_system = any(s.name == args.node for s in system.servers)
        why = "is in no cluster" if in_system else "is not in the system"
        raise MxoneError(f"node = {args.node}: {why}; nodes with a config: {', '.join(sorted(configs)) or 'none'}")
    print(json.dumps(configs[args.node].to_dict(), indent=2))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(with_schema(RULES_SCHEMA, {
            key: [{"rule": r.code, "text": r.text} for r in table]
            for key, table in (("rules", rules.RULES), ("warnings", warning_rules.WARNINGS))}),
            indent=2))
    else:
        width = max(len(r.code) for r in (*rules.RULES, *warning_rules.WARNINGS))
        for r in rules.RULES:
            print(f"{r.code:<{width}}  {r.text}")
        for r in warning_rules.WARNINGS:  # allowed, with a warning
            print(f"{r.code:<{width}}  [WARNING] {r.text}")
    return 0
