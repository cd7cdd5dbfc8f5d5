"""The node agent of MX-ONE server redundancy (import name ``mxone_agent``).

An agent runs on every server of a cluster: it exchanges authenticated heartbeats with its
peers, judges which of them are alive, and decides - with one pure function - which LIM
this server starts, stops, activates or deactivates, and which alarms it raises.

A map of the package, by purpose. Pure modules (no I/O, no sockets, no clocks of their
own; ``tests/agent/test_boundaries.py`` holds them to it) are marked *pure*.

What tool and agent agree on, written once (the tool imports these; the agent imports
nothing of the tool):

* :mod:`~mxone_agent.contract` (*pure*) - the node config's words (Role, Lock, fallback,
  failover), its format, a cluster's limits, the timer presets, the name/address rules
* :mod:`~mxone_agent.paths` (*pure*) - where the agent's files live on a node
* :mod:`~mxone_agent.files` - the one atomic file write
* :mod:`~mxone_agent.errors` - :class:`AgentError`, the root of every error raised on purpose
* :mod:`~mxone_agent.version` (*pure*) - the project's version, written once

The node config (*pure*): :mod:`~mxone_agent.config` (NodeConfig and its loader) built of
:mod:`~mxone_agent.config_types` (its parts), :mod:`~mxone_agent.config_rules` (the
cross-field rules) and :mod:`~mxone_agent.jsonreader` (a strict JSON reader that names
every problem).

The decision (*pure*): :mod:`~mxone_agent.decide` - ``decide(config, peers, local, now) ->
Decision`` - over :mod:`~mxone_agent.local_state` (what a node knows of itself),
:mod:`~mxone_agent.situation` (the questions every rule asks), the rules of
:mod:`~mxone_agent.takeover` (the standby's) and :mod:`~mxone_agent.fallback` (giving a
LIM back), and :mod:`~mxone_agent.explain` (why a LIM runs nowhere);
:mod:`~mxone_agent.actions` (what a Decision holds, the alarm codes),
:mod:`~mxone_agent.model` (LIM run states), :mod:`~mxone_agent.heartbeat` (the wire format,
its MAC, the replay guard), :mod:`~mxone_agent.peers` (each peer's liveness) and
:mod:`~mxone_agent.sync_policy` (who syncs exchange data when).

The running agent (sockets, processes, the kernel; standard library + pyroute2 only):

* the loop - :mod:`~mxone_agent.daemon` wires the collaborators and runs it:
  :mod:`~mxone_agent.heartbeat_link` (the UDP socket to the peers),
  :mod:`~mxone_agent.lease_upkeep` (the leases renewed at every tick),
  :mod:`~mxone_agent.decision_cycle` (a Decision to the worker and what came of it),
  :mod:`~mxone_agent.outcomes` (the executor's results as inputs of the next decision),
  :mod:`~mxone_agent.service_watch` (status polls of what runs here),
  :mod:`~mxone_agent.orders` (manual fallback and retire orders),
  :mod:`~mxone_agent.data_reloads` (a preloaded LIM reloading new data),
  :mod:`~mxone_agent.config_reload` (SIGHUP), :mod:`~mxone_agent.alarms`,
  :mod:`~mxone_agent.node_files` (the config, secret and state files it reads and keeps),
  :mod:`~mxone_agent.sdnotify` (systemd readiness, watchdog, the unit text),
  :mod:`~mxone_agent.timeline` (the transitions, kept in the state dir across restarts)
* the log - :mod:`~mxone_agent.agent_log` (journal, file or stderr) and
  :mod:`~mxone_agent.journal` (journald's native protocol: priorities, MXONE_* fields)
* side effects off the loop - :mod:`~mxone_agent.action_worker` (one thread, one job at a
  time) running :mod:`~mxone_agent.executor` (a Decision's actions) through
  :mod:`~mxone_agent.network` (LinuxNetwork: pyroute2, nftables, ARP frames;
  RecordingNetwork for tests), self-fencing in :mod:`~mxone_agent.lease` with its kernel
  side :mod:`~mxone_agent.lease_nft`, and :mod:`~mxone_agent.service_node` (the reference
  Service Node, a LIM stand-in)
* what operators and the tool see - the control socket: :mod:`~mxone_agent.control`
  (served without blocking the loop), :mod:`~mxone_agent.control_socket` (its OS side),
  :mod:`~mxone_agent.control_request` (the protocol), :mod:`~mxone_agent.control_service`
  (every verb dispatched), :mod:`~mxone_agent.control_client` (the client side);
  :mod:`~mxone_agent.status_report` (``ctl status`` and the status file) with
  :mod:`~mxone_agent.bonding` (the bond under the cluster interface, read from sysfs);
  :mod:`~mxone_agent.metrics` (``ctl metrics`` and the node_exporter textfile, Prometheus
  text format); and :mod:`~mxone_agent.notify_hooks` (the administrator's executables run
  on every transition and alarm)
* exchange data - :mod:`~mxone_agent.xdata` (the one name callers use) over
  :mod:`~mxone_agent.xdata_manifest` (names, manifests, checks),
  :mod:`~mxone_agent.xdata_beneath` (the versions root, never through a link),
  :mod:`~mxone_agent.xdata_store` (versions on disk) and
  :mod:`~mxone_agent.xdata_transfer` (what to send, which way); :mod:`~mxone_agent.xdata_wire`
  (files over one byte stream), :mod:`~mxone_agent.xdata_sync` (a sync over SSH),
  :mod:`~mxone_agent.xdata_serve` (the peer's side, an SSH forced command),
  :mod:`~mxone_agent.sync_worker` (the sync thread: triggers, retries, alarm)

The node's lifecycle, for the maintenance tool:

* :mod:`~mxone_agent.node` - ``mxone-agent node OP``: snapshot, files, release, the
  agent's service, base address, retiring LIMs (run over SSH by the tool)
* :mod:`~mxone_agent.netconfig` - a server's own network configuration (a new base
  address that survives a reboot)
* :mod:`~mxone_agent.leave` - a node leaving its cluster (``mxone-agent leave``)
* :mod:`~mxone_agent.main` - the ``mxone-agent`` command (run, ctl, service, xdata, fence,
  leave, node, ...), its parser and help in :mod:`~mxone_agent.command_line`

Every error this package raises on purpose derives from :class:`AgentError`.
"""

from __future__ import annotations

from mxone_agent.errors import AgentError

__all__ = ["AgentError"]
