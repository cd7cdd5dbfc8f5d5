"""The ``mxone-agent`` command line: every subcommand and option, each with its help and
default (``mxone-agent COMMAND --help``). :mod:`mxone_agent.main` runs what it parses."""

from __future__ import annotations

import argparse

from mxone_agent import paths
from mxone_agent.version import VERSION

CTL_VERBS = ("status", "fallback", "lock", "unlock", "retire", "reload", "sync", "metrics")
CTL_HELP = """\
verbs:
  status                 this node's status (JSON): LIMs, peers, alarms, transitions
  fallback LIM           give LIM back to its regular server now, or once it is ready
                         (--wait); --cancel withdraws a pending order
  lock LIM regular|standby
                         keep LIM on that server whatever happens
  unlock LIM             end the lock of LIM
  retire LIM             stop LIM here for good and take it over no more (before it
                         leaves the cluster); --cancel keeps it after all
  reload                 load the node config and the cluster key again (as SIGHUP)
  sync [LIM]             sync LIM's exchange data now (default: every LIM this node is
                         regular for) and wait for the result
  metrics                the agent's metrics in the Prometheus text format (printed as
                         text, not JSON)

exit status: 0 done, 1 refused, 2 the agent is not running
"""


def _defaults(p: argparse.ArgumentParser, *, config: bool = False, state_dir: bool = False,
              control: bool = False, run_dir: bool = False) -> None:
    """The options several subcommands share, with the same help."""
    from mxone_agent import daemon, service_node

    if config:
        p.add_argument("--config", default=daemon.DEFAULT_CONFIG, metavar="FILE",
                       help="the node config the maintenance tool wrote (default: "
                       "%(default)s)")
    if state_dir:
        p.add_argument("--state-dir", default=daemon.DEFAULT_STATE_DIR, metavar="DIR",
                       help="the agent's state: incarnation, held LIMs, alarms, fence record, "
                       "transitions (default: %(default)s)")
    if control:
        p.add_argument("--control", default=daemon.DEFAULT_CONTROL, metavar="SOCKET",
                       help="the running agent's control socket (default: %(default)s)")
    if run_dir:
        p.add_argument("--run-dir", default=service_node.DEFAULT_RUN_DIR, metavar="DIR",
                       help="where the reference Service Node keeps its pidfiles (default: "
                       "%(default)s)")


def _run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from mxone_agent import daemon

    r = sub.add_parser("run", help="run the agent (in the foreground unless --daemon)",
                       description="Run the node agent: heartbeats with the peers, decisions, "
                       "the LIMs' aliases and services, the control socket. Under systemd it "
                       "reports readiness and pings the watchdog. Exit 1 with the reason when "
                       "it cannot start.")
    _defaults(r, config=True)
    r.add_argument("--secret", default=daemon.DEFAULT_SECRET, metavar="FILE",
                   help="the cluster key that signs the heartbeats, mode 0600 (default: "
                   "%(default)s)")
    _defaults(r, state_dir=True)
    r.add_argument("--daemon", action="store_true",
                   help="detach (double fork) and write --pidfile once the control socket "
                   "listens; the starting process exits 0 once the agent is ready, 1 if it "
                   "failed (default: stay in the foreground)")
    r.add_argument("--pidfile", default=paths.PIDFILE, metavar="FILE",
                   help="with --daemon: the agent's PID, written atomically once it is ready "
                   "(default: %(default)s)")
    r.add_argument("--log", default=None, metavar="FILE|journal|stderr",
                   help="where the log goes: a file (reopened after logrotate moved it), "
                   "'journal' (systemd's journal, with the fields MXONE_CLUSTER, MXONE_NODE, "
                   "MXONE_LIM) or 'stderr' (default: the journal when systemd started the "
                   f"agent, else {paths.LOG} with --daemon, else stderr)")
    _defaults(r, control=True, run_dir=True)
    r.add_argument("--alarm-file", default=paths.ALARMS_LOG, metavar="FILE",
                   help="every alarm raised and cleared, one line each, appended (default: "
                   "%(default)s)")
    r.add_argument("--notify-dir", default=paths.NOTIFY_DIR, metavar="DIR",
                   help="the notify hooks: root-owned executables run on every transition and "
                   "alarm (default: %(default)s)")
    r.add_argument("--metrics-file", default=paths.METRICS_TEXTFILE, metavar="FILE",
                   help="the metrics for node_exporter's textfile collector, rewritten every "
                   "few seconds while its directory exists (default: %(default)s)")


def _ctl(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from mxone_agent.fallback import ORDER_WAIT_DEFAULT, ORDER_WAIT_MAX

    c = sub.add_parser("ctl", help="talk to the running agent over its control socket (root)",
                       description="Send one request to the running agent and print its JSON "
                       "answer.", epilog=CTL_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("verb", choices=CTL_VERBS, metavar="VERB",
                   help="what to ask: " + ", ".join(CTL_VERBS) + " (see below)")
    c.add_argument("args", nargs="*", metavar="ARG",
                   help="the verb's arguments: the LIM number, and for lock the server "
                   "(regular or standby)")
    _defaults(c, control=True)
    c.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="fallback: how long the order may wait for the regular server to be "
                   f"ready, 1 to {ORDER_WAIT_MAX:g} (default: {ORDER_WAIT_DEFAULT:g})")
    c.add_argument("--cancel", action="store_true",
                   help="fallback: withdraw a pending order; retire: keep the LIM after all")


def _node_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    f = sub.add_parser("fence", help="the self-fencing leases: `fence show` lists them, `fence "
                       "release` removes the fence when this node leaves its cluster")
    f.add_argument("action", choices=("show", "release"),
                   help="show: the guarded aliases and the time left on each lease (JSON); "
                   "release: remove the fence (refused while an agent runs, or while this "
                   "standby holds a LIM's alias)")
    _defaults(f, config=True, state_dir=True, control=True)
    lv = sub.add_parser("leave", help="this node leaves its cluster (the agent stopped): its "
                        "own LIM keeps running outside any cluster, other LIMs are stopped, "
                        "the fence is removed")
    _defaults(lv, config=True, state_dir=True, control=True, run_dir=True)
    x = sub.add_parser("xdata", help="exchange data: `xdata serve [--root DIR] REQUEST...` "
                       "answers a syncing peer (usable as an SSH forced command); `xdata "
                       "keep-newest [--root DIR] LIM...` keeps only each LIM's newest version")
    x.add_argument("words", nargs=argparse.REMAINDER, metavar="serve|keep-newest ...",
                   help="serve [--root DIR] [--config FILE] REQUEST... | keep-newest "
                   f"[--root DIR] LIM... (--root default: {paths.XDATA})")


def parser() -> argparse.ArgumentParser:
    """The whole ``mxone-agent`` parser."""
    from mxone_agent import service_node
    from mxone_agent.node import cli as node_cli

    p = argparse.ArgumentParser(prog="mxone-agent",
                                description="MX-ONE server redundancy node agent.")
    p.add_argument("--version", action="version", version=f"mxone-agent {VERSION}",
                   help="print the agent's version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    check = sub.add_parser("check-config", help="validate a node config file and list every "
                           "problem in it (exit 1 if there is any)")
    check.add_argument("file", metavar="FILE", help="the node config (JSON) to check")
    _run(sub)
    _ctl(sub)
    s = sub.add_parser("service", help="the reference Service Node (a LIM stand-in): start, "
                       "stop, status, data_backup")
    service_node.add_arguments(s)
    sub.add_parser("unit", help="print the systemd unit file of the agent")
    _node_commands(sub)
    node_cli.add_parser(sub)
    return p
