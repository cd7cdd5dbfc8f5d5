"""The ``mxone-agent`` command: its parser, and each subcommand handed to the module that
does the work (the package's map: :mod:`mxone_agent`).

* ``mxone-agent check-config FILE`` - load a node config and name every problem in it
  (:mod:`mxone_agent.config`).
* ``mxone-agent run [--config F] [--secret F] [--state-dir D] [--daemon --pidfile F]
  [--log F|journal|stderr] [--control SOCK]`` - the agent. In the foreground by default;
  ``--daemon`` double-forks and writes the pidfile (atomically) once the control socket
  listens, so an existing pidfile means the agent is ready. Under systemd (NOTIFY_SOCKET)
  it sends READY=1 and watchdog pings, and logs to the journal; where else the log goes:
  :mod:`mxone_agent.agent_log`. Exit 1 with a clear message when it cannot start. The
  agent itself: :class:`mxone_agent.daemon.Agent`.
* ``mxone-agent ctl metrics`` prints the agent's metrics, Prometheus text format
  (:mod:`mxone_agent.metrics`).
* ``mxone-agent ctl status | fallback LIM [--wait SECONDS] [--cancel] | lock LIM
  regular|standby | unlock LIM | retire LIM [--cancel] | reload | sync [LIM]`` - talk to
  the running agent over its control socket (root only, mode 0600); prints the JSON
  answer. Exit 0 done, 1 refused (``{"ok": false, "error": ...}``), 2 the agent is not
  running. ``fallback`` is carried out now, refused with the reason, or left pending
  (``"pending": true``) until the regular server is ready, for at most ``--wait`` seconds
  (see ``fallback.judge_fallback_order``); ``--cancel`` withdraws a pending one. ``retire``
  (the maintenance tool, before a LIM leaves the cluster): stop the LIM here for good and
  take it over no more. ``sync`` syncs the LIM's exchange data now (without
  LIM: every LIM this node is regular for), waits for it and answers ``{"ok": bool,
  "results": [{"lim", "ok", "direction", "version", "fetched_files", "fetched_bytes",
  "reused_files", "seconds", "notes" | "error"}]}``; exit 0 when every LIM synced.
  The client side: :mod:`mxone_agent.control_client`; the agent's side:
  :mod:`mxone_agent.control_service`.
* ``mxone-agent service start|stop|status|data_backup --lim N ...`` - the reference
  Service Node, and a data backup of its live data (:mod:`mxone_agent.service_node`).
* ``mxone-agent xdata serve [--root D] REQUEST...`` - the peer side of a sync (an SSH
  forced command); ``mxone-agent xdata keep-newest [--root D] LIM...`` - keep only the
  newest valid version of each LIM, print ``{"removed": {"<lim>": [versions]}}``
  (:mod:`mxone_agent.xdata_serve`).
* ``mxone-agent unit`` - print the systemd unit file to install (:mod:`mxone_agent.sdnotify`).
* ``mxone-agent fence show | release [--config F] [--state-dir D]`` - the self-fencing
  leases of this node (:mod:`mxone_agent.lease`, :mod:`mxone_agent.lease_nft`): ``show``
  prints the guarded aliases and the time left on each lease (JSON); ``release`` removes
  the fence when the node leaves its cluster, so that its addresses answer as plain
  addresses again. ``release`` is refused while an agent runs (it would set the fence up
  again), and on a standby that still holds a LIM's alias (that alias stays silent). Exit
  0 done, 1 refused.
* ``mxone-agent leave [--config F] [--state-dir D]`` - this node leaves its cluster (the
  maintenance tool runs it once the agent is stopped): a regular server keeps its own LIM
  running (started if need be) on the LIM's alias as a plain address, every other LIM
  here is stopped and its alias removed, and the fence is removed
  (:mod:`mxone_agent.leave`). Prints ``{"ok", "done": [lines]}`` (or ``"error"``); exit 0
  done, 1 refused or failed.
* ``mxone-agent node OP`` - the maintenance tool's operations on this node (snapshot,
  write, switch, start, stop, add-base, retire, net-apply, ...), run over SSH with a JSON
  request on stdin; one JSON answer on stdout (:mod:`mxone_agent.node.cli`).

``mxone-agent --version`` prints the version; every subcommand has ``--help``
(:mod:`mxone_agent.command_line`, the parser). The agent needs only the standard library
and pyroute2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mxone_agent import paths
from mxone_agent.errors import AgentError

if TYPE_CHECKING:
    from mxone_agent.config import NodeConfig
# The node config and the control client are imported where they are used: the reference
# service's commands (run on the takeover path) need neither.

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_REFUSED = 1
EXIT_NOT_RUNNING = 2
EXIT_NOT_BUILT = 2  # kept for callers of the check-config-only version

DEFAULT_PIDFILE = paths.PIDFILE
CTL_TIMEOUT = 10.0
CTL_SYNC_TIMEOUT = 2 * 3600.0 + 120.0
"""``ctl sync`` waits for the transfer (bounded by ``sync.timeout`` on the agent's side)."""


def _summary(path: str, cfg: NodeConfig) -> str:
    from mxone_agent.contract import seconds

    role = cfg.role
    lim = cfg.lim_of(cfg.node)
    runs = f", LIM {lim.lim}" if lim is not None else ""
    return (f"{path}: valid node config (format 1, generation {cfg.generation}) for {cfg.node} "
            f"({role}{runs}) in cluster {cfg.cluster}: {len(cfg.regulars)} regular server(s), "
            f"{cfg.failover} failover, {cfg.fallback} fallback, failure detection "
            f"{seconds(cfg.detection, cfg.detection)} s ({cfg.timers.misses} x {cfg.timers.interval:g} s)")


def check_config(path: str) -> int:
    """Load and validate the node config at ``path``; print the verdict. Returns the exit code."""
    from mxone_agent.config import ConfigError, load_node_config

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


# ---- run -------------------------------------------------------------------------------------

def _write_pidfile(path: str) -> None:
    from pathlib import Path

    from mxone_agent.files import atomic_write

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # In /run: a crash loses the file with the process anyway, no directory fsync.
    atomic_write(Path(path), f"{os.getpid()}\n".encode("ascii"), sync_directory=False)


def _daemonize() -> int | None:
    """Double fork. Returns the read end of a pipe in the daemon (None in the parent, which
    has waited for the daemon to say it is ready or failed and exits with that)."""
    r, w = os.pipe()
    if os.fork():
        os.close(w)
        with os.fdopen(r, "rb") as f:
            word = f.read()
        sys.exit(EXIT_OK if word == b"ok" else EXIT_INVALID)
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    return w


def run(args: argparse.Namespace) -> int:
    from mxone_agent import agent_log, daemon
    from mxone_agent.config import ConfigError
    from mxone_agent.network import LinuxNetwork

    dest = agent_log.destination(args.log, args.daemon, os.environ)
    handler = agent_log.set_up(dest)
    try:
        agent = daemon.Agent(args.config, args.secret, args.state_dir, args.control,
                             LinuxNetwork, run_dir=args.run_dir, alarm_file=args.alarm_file,
                             notify_dir=args.notify_dir, metrics_file=args.metrics_file)
    except (AgentError, ConfigError) as e:
        print(f"mxone-agent: cannot start: {e}", file=sys.stderr)
        return EXIT_INVALID
    agent_log.set_context(handler, agent.config.cluster, agent.config.node)
    ready_fd = _daemonize() if args.daemon else None
    if ready_fd is not None and dest.kind == agent_log.STDERR:
        os.dup2(os.open(os.devnull, os.O_RDWR), 2)

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            agent.reload_flag = True
        else:
            agent.stop_flag = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        agent.start()
    except (AgentError, OSError) as e:
        logging.getLogger("mxone_agent").error("cannot start: %s", e)
        print(f"mxone-agent: cannot start: {e}", file=sys.stderr)
        if ready_fd is not None:
            os.write(ready_fd, b"fail")
        return EXIT_INVALID

    def ready() -> None:
        if args.daemon:
            _write_pidfile(args.pidfile)
        if ready_fd is not None:
            os.write(ready_fd, b"ok")
            os.close(ready_fd)

    try:
        agent.run(on_ready=ready)
    finally:
        agent.close()
        if args.daemon:
            try:
                with open(args.pidfile, encoding="ascii") as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(args.pidfile)
            except OSError:
                pass
    return EXIT_OK


# ---- ctl -------------------------------------------------------------------------------------

def fence(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mxone_agent import node_files
    from mxone_agent.config import ConfigError
    from mxone_agent.control_client import ctl_request
    from mxone_agent.lease import GUARDED, TABLE, LeaseError
    from mxone_agent.lease_nft import NftLeases
    from mxone_agent.model import Role

    kernel = NftLeases()
    record = Path(args.state_dir) / node_files.FENCE_RECORD
    if args.action == "show":
        import subprocess

        r = subprocess.run(["nft", "-j", "list", "set", "arp", TABLE, GUARDED],
                           capture_output=True, text=True, timeout=10, check=False)
        if r.returncode != 0:
            print(json.dumps({"fence": False, "guarded": [], "leases": {}}))
            return EXIT_OK
        guarded: list[str] = []
        for item in json.loads(r.stdout).get("nftables", []):
            guarded += [str(e) for e in item.get("set", {}).get("elem", [])]
        leases = {a: kernel.remaining(a) for a in sorted(guarded)}
        try:
            cluster = record.read_text(encoding="utf-8").strip()
        except OSError:
            cluster = None
        print(json.dumps({"fence": True, "cluster": cluster, "guarded": sorted(guarded),
                          "leases": {a: left for a, left in leases.items() if left}}, indent=2))
        return EXIT_OK
    try:
        ctl_request(args.control, {"cmd": "status"}, timeout=CTL_TIMEOUT)
    except (ConnectionError, OSError, ValueError):
        pass
    else:
        print("mxone-agent: the agent runs and would set the fence up again; stop it first",
              file=sys.stderr)
        return EXIT_REFUSED
    try:
        cfg = node_files.read_config(args.config)
    except (AgentError, ConfigError):
        cfg = None  # no config left: nothing says this node holds a LIM of a cluster
    if cfg is not None and cfg.role is Role.STANDBY:
        from mxone_agent.network import LinuxNetwork

        net = LinuxNetwork()
        try:
            held = [x for x in cfg.lims if net.has_alias(cfg.local.interface, x.alias_ip)]
        finally:
            net.close()
        if held:
            print("mxone-agent: the fence stays: " + ", ".join(
                f"LIM {x.lim}'s alias {x.alias_ip} is still on {cfg.local.interface}"
                for x in held) + "; it stays silent until that LIM is stopped here",
                file=sys.stderr)
            return EXIT_REFUSED
    try:
        kernel.release()
    except LeaseError as e:
        print(f"mxone-agent: {e}", file=sys.stderr)
        return EXIT_REFUSED
    record.unlink(missing_ok=True)
    print("fence removed: this node's addresses answer as plain addresses")
    return EXIT_OK


def leave(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mxone_agent import leave as leave_mod
    from mxone_agent import node_files
    from mxone_agent.config import ConfigError
    from mxone_agent.control_client import ctl_request
    from mxone_agent.lease import LeaseError
    from mxone_agent.lease_nft import NftLeases
    from mxone_agent.network import LinuxNetwork, NetworkError

    try:
        ctl_request(args.control, {"cmd": "status"}, timeout=CTL_TIMEOUT)
    except (ConnectionError, OSError, ValueError):
        pass
    else:
        print(json.dumps({"ok": False, "error": "the agent runs; stop it before the node "
                          "leaves its cluster"}))
        return EXIT_REFUSED
    record = Path(args.state_dir) / node_files.FENCE_RECORD
    kernel = NftLeases()

    def release_fence() -> None:
        kernel.release()
        record.unlink(missing_ok=True)

    try:
        cfg = node_files.read_config(args.config)
    except (AgentError, ConfigError) as e:
        try:
            release_fence()
        except LeaseError as le:
            print(json.dumps({"ok": False, "error": f"no usable node config ({e}); {le}"}))
            return EXIT_REFUSED
        print(json.dumps({"ok": True, "done": [(f"no usable node config ({e}): no LIM to "
                                                "keep or stop; fence removed")]}))
        return EXIT_OK
    held, problems = node_files.read_held(Path(args.state_dir) / node_files.HELD_LIMS)
    mine = {x.lim for x in cfg.lims}
    retired = {n: x for n, (x, _doc) in held.items() if n not in mine}
    net = LinuxNetwork()
    try:
        done = leave_mod.leave(cfg, retired, net, release_fence, run_dir=args.run_dir,
                               xdata_root=cfg.sync_settings.xdata_root)
    except (AgentError, NetworkError, LeaseError) as e:
        print(json.dumps({"ok": False, "error": str(e), "notes": problems}))
        return EXIT_REFUSED
    finally:
        net.close()
    (Path(args.state_dir) / node_files.HELD_LIMS).unlink(missing_ok=True)
    print(json.dumps({"ok": True, "done": [*problems, *done]}))
    return EXIT_OK


def ctl(args: argparse.Namespace) -> int:
    from mxone_agent.control_client import ctl_request

    if args.wait is not None and args.verb != "fallback":
        print("mxone-agent ctl: --wait goes with fallback only", file=sys.stderr)
        return EXIT_REFUSED
    if args.cancel and args.verb not in ("fallback", "retire"):
        print("mxone-agent ctl: --cancel goes with fallback or retire only", file=sys.stderr)
        return EXIT_REFUSED
    req: dict[str, object] = {"cmd": args.verb}
    if args.verb == "sync" and args.args:
        if len(args.args) != 1:
            print("mxone-agent ctl sync [LIM]", file=sys.stderr)
            return EXIT_REFUSED
        req["lim"] = args.args[0]
    if args.verb in ("fallback", "lock", "unlock", "retire"):
        if not args.args:
            print(f"mxone-agent ctl {args.verb}: name the LIM", file=sys.stderr)
            return EXIT_REFUSED
        req["lim"] = args.args[0]
    if args.wait is not None:
        req["wait"] = args.wait
    if args.cancel:
        req["cancel"] = True
    if args.verb == "lock":
        if len(args.args) != 2 or args.args[1] not in ("regular", "standby"):
            print("mxone-agent ctl lock LIM regular|standby", file=sys.stderr)
            return EXIT_REFUSED
        req["to"] = args.args[1]
    try:
        reply = ctl_request(args.control, req,
                            timeout=CTL_SYNC_TIMEOUT if args.verb == "sync" else CTL_TIMEOUT)
    except ConnectionError as e:
        print(f"mxone-agent: {e}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except (OSError, ValueError) as e:
        print(f"mxone-agent: the agent did not answer: {e}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if args.verb == "metrics" and reply.get("ok") and isinstance(reply.get("text"), str):
        print(reply["text"], end="")  # the Prometheus text as it is
        return EXIT_OK
    print(json.dumps(reply, indent=2))
    return EXIT_OK if reply.get("ok") else EXIT_REFUSED


# ---- entry -----------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mxone-agent``; returns the process exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    asks_help = args_list[1:2] in (["-h"], ["--help"])
    if args_list[:1] == ["xdata"] and not asks_help:
        # The peer side of a sync speaks on stdin/stdout: no argparse, no daemon imports.
        from mxone_agent import xdata_serve
        return xdata_serve.main(args_list[1:])
    if args_list[:1] == ["service"] and not asks_help:
        # The reference service starts on the takeover path: its own small parser, none of
        # the agent's modules imported.
        from mxone_agent import service_node
        return service_node.main(args_list[1:])
    if args_list[:1] == ["node"] and not asks_help:  # the tool's node operations: JSON in/out
        from mxone_agent.node import cli as node_cli
        return node_cli.main(args_list[1:])
    from mxone_agent import command_line

    parser = command_line.parser()
    if not args_list:
        parser.print_usage(sys.stderr)
        return EXIT_NOT_RUNNING
    args = parser.parse_args(args_list)
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "run":
        return run(args)
    if args.command == "ctl":
        return ctl(args)
    if args.command == "service":
        from mxone_agent import service_node
        return service_node.run(args)
    if args.command == "fence":
        return fence(args)
    if args.command == "leave":
        return leave(args)
    if args.command == "unit":
        from mxone_agent import sdnotify
        print(sdnotify.unit_text(), end="")
        return EXIT_OK
    parser.print_usage(sys.stderr)
    return EXIT_NOT_RUNNING


if __name__ == "__main__":
    sys.exit(main())
