"""`mxone_maintenance`: the operator's command.

Exit codes: 0 success; 1 the checked input is invalid (broken rules, bad file); 2 the
command could not do its work (usage, unreadable file, internal error); 130 interrupted.
No traceback ever reaches the operator: an unexpected error prints one line and the
traceback goes to a log file named in that line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Sequence
from typing import Any
from pathlib import Path

from mxone_maintenance import configfile, rules, store
from mxone_maintenance.errors import ConfigFileError, MxoneError
from mxone_maintenance.model import NodeFacts

PROG = "mxone_maintenance"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="MX-ONE server redundancy maintenance: servers, standby servers and clusters. "
        "Without a command (or with only --config FILE) it opens the menus.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    v = sub.add_parser(
        "validate",
        help="check a system config file against every prerequisite rule",
        description="Check a system config file: syntax, known keys, and every prerequisite "
        "rule of server redundancy. Prints every problem found, each with its line.",
    )
    v.add_argument("file", help="the system config file (TOML)")
    v.add_argument(
        "--facts",
        metavar="FILE",
        help="the nodes' disk reports (TOML: [SERVER] free_data_bytes = N, backup_bytes = N); "
        "without it the standby-disk rule is not checked",
    )
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    n = sub.add_parser(
        "node-config",
        help="print the config an agent runs on, derived from a system config file",
        description="Print (JSON) the per-node config that the agent on NODE runs on.",
    )
    n.add_argument("file", help="the system config file (TOML)")
    n.add_argument("node", help="a server that is in a cluster")
    r = sub.add_parser("rules", help="list every prerequisite rule")
    r.add_argument("--json", action="store_true", help="print the rules as JSON")
    add_system_parsers(sub)
    return p


def _load_facts(path: str) -> dict[str, NodeFacts]:
    text = store.read_text(Path(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(path, [configfile._syntax_message(path, str(exc))]) from None
    facts, problems = {}, []
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
            print(json.dumps({"file": str(path), "valid": False, "problems": list(exc.problems)}, indent=2))
        else:
            print("\n".join(exc.problems))
            print(f"{path}: {len(exc.problems)} problem(s) in the file's shape; rules not checked")
        return 1
    violations = rules.check(system, facts)
    if args.json:
        print(json.dumps({
            "file": str(path),
            "valid": not violations,
            "generation": system.generation,
            "violations": [
                {"rule": v.rule, "field": v.field, "value": v.value, "detail": v.detail,
                 "rule_text": v.rule_text, "line": configfile.Locator(text).line_of(v.loc)}
                for v in violations
            ],
        }, indent=2, default=str))
        return 1 if violations else 0
    if violations:
        print("\n".join(configfile.describe(violations, text, str(path))))
        print(f"{path}: {len(violations)} broken rule(s)")
        return 1
    note = "" if facts is not None else "; disk rule not checked (no --facts)"
    print(f"{path}: valid: generation {system.generation}, {len(system.servers)} server(s), "
          f"{len(system.clusters)} cluster(s){note}")
    return 0


def cmd_node_config(args: argparse.Namespace) -> int:
    from mxone_maintenance import nodeconfig

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
        print(json.dumps([{"rule": r.code, "text": r.text} for r in rules.RULES], indent=2))
    else:
        width = max(len(r.code) for r in rules.RULES)
        for r in rules.RULES:
            print(f"{r.code:<{width}}  {r.text}")
    return 0


# ---- the system subcommands: server, standby, cluster -----------------------------------
#
# Each is a thin shell over the same core the menus use: an action from
# mxone_maintenance.actions previewed and applied through Maintenance (SshApplier), or an
# agent operation from mxone_maintenance.operations. Exit 0 done, 1 input refused (a rule,
# a missing server...), 2 the work failed (a server unreachable, rolled back...).

EXIT_REFUSED = 1
EXIT_FAILED = 2


class InputRefused(MxoneError):
    """The operator's input is refused before anything is tried (exit 1)."""


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


def _lim_spec(text: str) -> Any:
    from mxone_maintenance.actions import NewLim

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
    return NewLim(lim, parts[1], priority)


def _priority_spec(text: str) -> tuple[int, int]:
    try:
        lim, prio = text.split(":")
        return int(lim), int(prio)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--priority = {text}: expected LIM:PRIORITY, e.g. 2:1") from None


def add_system_parsers(sub: Any) -> None:
    common, change = _common_options(), _change_options()

    def group(name: str, help: str) -> Any:
        g = sub.add_parser(name, help=help, description=help)
        g.set_defaults(group_parser=g)
        return g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")

    def cmd(parent: Any, name: str, help: str, run: Any, *, changes: bool = True) -> argparse.ArgumentParser:
        c = parent.add_parser(name, help=help, description=help,
                              parents=[common, change] if changes else [common])
        c.set_defaults(run=run)
        return c

    srv = group("server", "servers in the system: add, remove, list")
    c = cmd(srv, "add", "add a server to the system (a LIM server with --lim, else a free server); "
            "its SSH host key is checked and pinned", cmd_server_add)
    c.add_argument("name", metavar="NAME")
    c.add_argument("base_ip", metavar="BASE_IP/PREFIX", help="e.g. 10.0.2.12/24")
    c.add_argument("--interface", default="eth0", help="the network interface (default eth0)")
    c.add_argument("--lim", type=int, metavar="N", help="the LIM number it runs")
    c = cmd(srv, "remove", "remove a server that is in no cluster", cmd_server_remove)
    c.add_argument("name", metavar="NAME")
    cmd(srv, "list", "list the servers of the system", cmd_server_list, changes=False)

    sb = group("standby", "standby servers: convert a free server, free a standby")
    c = cmd(sb, "convert", "make a free server a standby server", cmd_standby_convert)
    c.add_argument("name", metavar="NAME")
    c = cmd(sb, "free", "make a standby server (in no cluster) a free server", cmd_standby_free)
    c.add_argument("name", metavar="NAME")

    cl = group("cluster", "clusters: create, change, delete, status, lock, fallback")
    cmd(cl, "list", "list the clusters and their LIMs", cmd_cluster_list, changes=False)
    cmd(cl, "status", "ask every agent of every cluster for its status", cmd_cluster_status,
        changes=False)
    c = cmd(cl, "create", "create a cluster of regular LIMs and one standby", cmd_cluster_create)
    c.add_argument("name", metavar="NAME")
    c.add_argument("--standby", required=True, metavar="SERVER", help="the standby server")
    c.add_argument("--lim", type=_lim_spec, action="append", required=True, dest="lims",
                   metavar="N:NEW_IP[:PRIORITY]",
                   help="a LIM to put in the cluster: its new base address (the current one "
                   "becomes its alias) and its priority (default 1); repeat per LIM")
    c.add_argument("--fallback", choices=("manual", "automatic"), default="manual")
    c.add_argument("--timers", metavar="PRESET", default="mxone",
                   help="failure detection preset: mxone (default), fast, fastest")
    c = cmd(cl, "add-lim", "add a LIM to a cluster", cmd_cluster_add_lim)
    c.add_argument("name", metavar="CLUSTER")
    c.add_argument("lim", type=_lim_spec, metavar="N:NEW_IP[:PRIORITY]")
    c = cmd(cl, "remove-lim", "remove a LIM from a cluster (the last one removes the cluster)",
            cmd_cluster_remove_lim)
    c.add_argument("name", metavar="CLUSTER")
    c.add_argument("lim", type=int, metavar="LIM")
    c = cmd(cl, "delete", "delete a cluster; its standby stays a standby server", cmd_cluster_delete)
    c.add_argument("name", metavar="CLUSTER")
    c = cmd(cl, "set", "change a cluster's fallback type or LIM priorities", cmd_cluster_set)
    c.add_argument("name", metavar="CLUSTER")
    c.add_argument("--fallback", choices=("manual", "automatic"))
    c.add_argument("--priority", type=_priority_spec, action="append", metavar="LIM:PRIORITY",
                   help="a LIM's new priority (lower value = runs first on the standby); repeatable")
    c = cmd(cl, "preloaded", "change a cluster (one LIM + standby) to preloaded failover",
            cmd_cluster_preloaded)
    c.add_argument("name", metavar="CLUSTER")
    c = cmd(cl, "lock", "lock a LIM to its regular server or to the standby", cmd_cluster_lock)
    c.add_argument("lim", type=int, metavar="LIM")
    c.add_argument("--to", required=True, choices=("regular", "standby"))
    c = cmd(cl, "unlock", "unlock a LIM", cmd_cluster_unlock)
    c.add_argument("lim", type=int, metavar="LIM")
    c = cmd(cl, "fallback", "move a LIM that runs on the standby back to its regular server: "
            "carried out once that server is ready, refused with the reason, or left pending "
            "(shown in `cluster status`)", cmd_cluster_fallback)
    c.add_argument("lim", type=int, metavar="LIM")
    how = c.add_mutually_exclusive_group()
    how.add_argument("--wait", type=float, metavar="SECONDS",
                     help="let the order wait this long for the regular server to be ready "
                     "(also when it is down now); default: the agent's (600 s), and an order "
                     "for a server that is not heard is refused")
    how.add_argument("--cancel", action="store_true", help="withdraw a pending order")
    c = cmd(cl, "sync", "sync exchange data between each LIM's regular server and the standby "
            "now (manual ordered sync), one LIM after the other", cmd_cluster_sync)
    c.add_argument("name", metavar="CLUSTER")
    cmd(cl, "repair", "finish the rollbacks that could not reach a server (kept on LIM 1)",
        cmd_cluster_repair, changes=False)


class _Session:
    """One command's backend, plus the host keys it accepted (for the output)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from mxone_maintenance import operations

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


def _run_change(args: argparse.Namespace, action: Any, *params: Any,
                after_apply: Any = None, **kw: Any) -> int:
    with _Session(args) as s:
        change = s.maintenance.preview(action, *params, **kw)
        plan = s.maintenance.plan(change)
        unreachable: dict[str, str] = {}
        if args.degraded:
            from mxone_maintenance import orchestrate

            if not change.degradable:
                raise InputRefused(
                    "--degraded: this change needs every server of the system reachable (only "
                    "lock, unlock, fallback type or priority, remove LIM, delete cluster and "
                    "remove server can be made while a server is down)")
            applier = s.maintenance.applier
            unreachable = applier.unreachable(change) if hasattr(applier, "unreachable") else {}
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
        lines += [f"  {o.server:<12} {'OK' if o.ok else 'FAILED':<7} {o.message}"
                  for o in result.outcomes]
        ok = result.ok
        if result.ok and after_apply is not None:
            answers = after_apply(s, change)
            data["agents"] = [{"server": a.server, "ok": a.ok, "text": a.text} for a in answers]
            lines += ["Agents:", *(f"  {a.server:<12} {'OK' if a.ok else 'FAILED':<7} {a.text}"
                                   for a in answers)]
            ok = ok and all(a.ok for a in answers)
            data["ok"] = ok
        s.emit(data, lines)
        return 0 if ok else EXIT_FAILED


def cmd_server_add(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    # The applier reaches the new server (and checks its host key) before adding it.
    return _run_change(args, actions.add_server, args.name, args.base_ip, args.interface, args.lim)


def cmd_server_remove(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    return _run_change(args, actions.remove_server, args.name)


def cmd_standby_convert(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    return _run_change(args, actions.convert_to_standby, args.name)


def cmd_standby_free(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    return _run_change(args, actions.convert_to_free, args.name)


def cmd_cluster_create(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions
    from mxone_maintenance.model import TIMER_PRESETS, Timers

    if args.timers not in TIMER_PRESETS:
        raise InputRefused(f"--timers = {args.timers}: not a timer preset (one of "
                           f"{', '.join(TIMER_PRESETS)})")
    return _run_change(args, actions.create_cluster, args.name, args.standby, args.lims,
                       args.fallback, Timers(preset=args.timers))


def cmd_cluster_add_lim(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    return _run_change(args, actions.add_lim, args.name, args.lim)


def cmd_cluster_remove_lim(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    return _run_change(args, actions.remove_lim, args.name, args.lim)


def cmd_cluster_delete(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    return _run_change(args, actions.delete_cluster, args.name)


def cmd_cluster_set(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    if args.fallback is None and not args.priority:
        raise InputRefused("cluster set: give --fallback and/or --priority LIM:PRIORITY")
    return _run_change(args, actions.change_fallback_or_priority, args.name, args.fallback,
                       dict(args.priority or []))


def cmd_cluster_preloaded(args: argparse.Namespace) -> int:
    from mxone_maintenance import actions

    return _run_change(args, actions.change_to_preloaded, args.name)


def _lock(args: argparse.Namespace, lock: str) -> int:
    from mxone_maintenance import actions, operations

    system = store.load(store.config_path(args.config)).validated()
    cluster = operations.cluster_of_lim(system, args.lim).name
    return _run_change(args, actions.set_lock, cluster, args.lim, lock,
                       after_apply=lambda s, change: s.ops.tell_lock(
                           change.after, cluster, args.lim, lock,
                           skip=set(s.maintenance.applier.behind())))


def cmd_cluster_lock(args: argparse.Namespace) -> int:
    return _lock(args, args.to)


def cmd_cluster_unlock(args: argparse.Namespace) -> int:
    return _lock(args, "none")


def cmd_cluster_fallback(args: argparse.Namespace) -> int:
    from mxone_maintenance import operations

    with _Session(args) as s:
        system = s.maintenance.system().validated()
        cluster = operations.cluster_of_lim(system, args.lim)
        wait, cancel = getattr(args, "wait", None), getattr(args, "cancel", False)
        if args.dry_run:
            what = (f"ctl fallback {args.lim} --cancel" if cancel else f"ctl fallback {args.lim}"
                    + (f" --wait {wait:g}" if wait is not None else ""))
            said = (f"withdraw the pending fallback order of LIM {args.lim} on standby "
                    f"{cluster.standby_name}" if cancel else
                    f"order standby {cluster.standby_name} of cluster {cluster.name} to hand "
                    f"LIM {args.lim} back to its regular server once that server is ready")
            s.emit({"dry_run": True, "cluster": cluster.name, "lim": args.lim,
                    "plan": [{"server": cluster.standby_name, "what": what}]},
                   [f"Plan: {said}", "Dry run: nothing was changed."])
            return 0
        a = s.ops.fallback(system, cluster.name, args.lim, wait=wait, cancel=cancel)
        s.emit({"cluster": cluster.name, "lim": args.lim, "server": a.server, "ok": a.ok,
                "pending": a.pending, "text": a.text}, [f"{a.server:<12} {a.word:<7} {a.text}"])
        return 0 if a.ok else EXIT_FAILED


def cmd_cluster_sync(args: argparse.Namespace) -> int:
    from mxone_maintenance import operations

    with _Session(args) as s:
        system = s.maintenance.system().validated()
        try:
            cluster = system.cluster(args.name)
        except KeyError:
            raise operations.OperationError(f"cluster = {args.name}: no cluster with this name "
                                            "is in the system") from None
        order = sorted(cluster.lims, key=lambda cl: (cl.priority, cl.lim))
        if args.dry_run:
            plan = [{"server": system.server_for_lim(cl.lim).name, "what": f"ctl sync {cl.lim}"}
                    for cl in order]
            s.emit({"dry_run": True, "cluster": cluster.name, "plan": plan},
                   [f"Plan: sync exchange data of cluster {cluster.name}, LIM by LIM:"]
                   + [f"  {p['server']:<12} {p['what']}" for p in plan]
                   + ["Dry run: nothing was changed."])
            return 0

        def progress(done: int, total: int, line: str) -> None:
            if not args.json:
                print(f"[{done}/{total}] {line}", file=sys.stderr, flush=True)

        answers = s.ops.sync(system, cluster.name, progress)
        ok = all(a.ok for a in answers)
        s.emit({"cluster": cluster.name, "ok": ok,
                "lims": [{"lim": cl.lim, "server": a.server, "ok": a.ok, "text": a.text}
                         for cl, a in zip(order, answers, strict=True)]},
               operations.answer_lines(answers)
               + [f"Sync of cluster {cluster.name}: " + ("every LIM done." if ok else
                                                         "NOT every LIM was synced (see above).")])
        return 0 if ok else EXIT_FAILED


def _system(args: argparse.Namespace) -> Any:
    from mxone_maintenance.model import System

    path = store.config_path(args.config)
    return store.load(path) if path.exists() else System(generation=0)


def cmd_server_list(args: argparse.Namespace) -> int:
    system = _system(args)
    rows = [{"name": s.name, "base_ip": s.base_ip, "interface": s.interface, "role": str(s.role),
             "lim": s.lim, "cluster": (c.name if (c := system.cluster_of_server(s.name)) else None)}
            for s in system.servers]
    if args.json:
        print(json.dumps({"generation": system.generation, "servers": rows}, indent=2))
        return 0
    print(f"{'name':<12} {'base IP':<18} {'iface':<6} {'role':<8} {'LIM':>4}  cluster")
    for r in rows:
        print(f"{r['name']:<12} {r['base_ip']:<18} {r['interface']:<6} {r['role']:<8} "
              f"{'' if r['lim'] is None else r['lim']:>4}  {r['cluster'] or '-'}")
    print(f"{len(rows)} server(s), system generation {system.generation}")
    return 0


def cmd_cluster_list(args: argparse.Namespace) -> int:
    system = _system(args)
    rows = [{"name": c.name, "standby": c.standby_name, "fallback": str(c.fallback),
             "failover": str(c.failover), "timers": c.timers.preset or
             f"{c.timers.misses} x {c.timers.interval} s",
             "lims": [{"lim": cl.lim, "server": system.server_for_lim(cl.lim).name,
                       "alias_ip": cl.alias_ip, "priority": cl.priority, "lock": str(cl.lock)}
                      for cl in c.lims]} for c in system.clusters]
    from mxone_maintenance import orchestrate

    behind = orchestrate.load_behind(orchestrate.behind_file(store.config_path(args.config)))
    if args.json:
        print(json.dumps({"generation": system.generation, "clusters": rows, "behind": behind},
                         indent=2))
        return 0
    for r in rows:
        print(f"cluster {r['name']}: standby {r['standby']}, fallback {r['fallback']}, "
              f"failover {r['failover']}, timers {r['timers']}")
        for lim in r["lims"]:
            print(f"  LIM {lim['lim']:>3} on {lim['server']:<12} alias {lim['alias_ip']:<15} "
                  f"priority {lim['priority']} lock {lim['lock']}")
    for line in orchestrate.behind_lines(behind, system.generation):
        print(line)
    print(f"{len(rows)} cluster(s), system generation {system.generation}")
    return 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    from mxone_maintenance import operations, orchestrate

    with _Session(args) as s:
        system = s.maintenance.system().validated()
        applier = s.maintenance.applier
        caught = applier.catch_up(system, s.progress)
        status = s.ops.status(system)
        pending = applier.pending_rollbacks()
        behind = applier.behind()
        lines = [f"{o.server:<12} {'OK' if o.ok else 'FAILED':<7} {o.message}" for o in caught]
        lines += operations.render(status)
        lines += orchestrate.behind_lines(behind, system.generation)
        if pending:
            lines += ["", "Unfinished rollbacks (a server did not answer): " + ", ".join(
                f"{k} (to generation {v.get('generation')})" for k, v in pending.items()),
                "  they finish with the next change or `mxone_maintenance cluster repair`"]
        data = status.to_dict()
        data["caught_up"] = [{"server": o.server, "ok": o.ok, "message": o.message}
                             for o in caught]
        data["behind"] = behind
        data["pending_rollbacks"] = {k: v.get("generation") for k, v in pending.items()}
        s.emit(data, lines)
    return 0


def cmd_cluster_repair(args: argparse.Namespace) -> int:
    from mxone_maintenance import orchestrate

    with _Session(args) as s:
        applier = s.maintenance.applier
        pending = applier.pending_rollbacks()
        if not pending:
            s.emit({"ok": True, "finished": {}}, ["No unfinished rollback."])
            return 0
        system = s.maintenance.system()
        res = applier.finish_rollbacks(orchestrate.targets(system))
        s.emit({"ok": res.ok and len(res) == len(pending),
                "finished": {k: {"ok": r.ok, "error": r.describe()} for k, r in res.items()}},
               [f"{k:<12} {'rolled back to generation %s' % pending[k].get('generation') if r.ok else 'FAILED: ' + r.describe()}"
                for k, r in res.items()])
        return 0 if res.ok and len(res) == len(pending) else EXIT_FAILED


def run_system_command(args: argparse.Namespace) -> int:
    """Run a server/standby/cluster subcommand; refused input exits 1, failures 2."""
    from mxone_maintenance.actions import ActionError
    from mxone_maintenance.errors import ValidationError
    from mxone_maintenance.operations import OperationError

    try:
        return int(args.run(args))
    except (ActionError, ValidationError, InputRefused, OperationError) as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "refused": str(exc).splitlines()}, indent=2))
        print(f"{PROG}: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def log_internal_error() -> str:
    directory = Path("/var/log/mxone") if os.access("/var/log", os.W_OK) else Path(tempfile.gettempdir())
    try:
        directory.mkdir(parents=True, exist_ok=True)
        log = directory / "mxone_maintenance-errors.log"
        with log.open("a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
            f.write(traceback.format_exc())
        return str(log)
    except OSError:
        return "(could not write the error log)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "node-config":
            return cmd_node_config(args)
        if args.command == "rules":
            return cmd_rules(args)
        if getattr(args, "run", None) is not None:
            return run_system_command(args)
        if getattr(args, "group_parser", None) is not None:
            args.group_parser.print_help()
            return 2
        parser.print_help()
        return 2
    except ConfigFileError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    except MxoneError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last guard: one line for the operator, details in the log
        log = log_internal_error()
        print(f"{PROG}: internal error: {type(exc).__name__}: {exc} (details in {log})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
