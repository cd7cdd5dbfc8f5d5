"""The node agent of MX-ONE server redundancy (import name ``mxone_agent``).

An agent runs on every server of a cluster: it exchanges authenticated heartbeats with its
peers, judges which of them are alive, and decides - with one pure function - which LIM
this server starts, stops, activates or deactivates, and which alarms it raises.

The pure modules (no I/O, no sockets, no sleeping) are:

* :mod:`mxone_agent.config`    - the node config written by the maintenance tool
* :mod:`mxone_agent.heartbeat` - the heartbeat wire format, its MAC and the replay guard
* :mod:`mxone_agent.peers`     - what this node knows of each peer, and liveness
* :mod:`mxone_agent.decide`    - ``decide(config, peers, local, now) -> Decision``
* :mod:`mxone_agent.actions`   - the actions a Decision holds, and the alarm codes
* :mod:`mxone_agent.sync_policy` - who syncs exchange data when, backoff, what is remembered

The running agent (sockets, processes, the kernel; standard library + pyroute2 only):

* :mod:`mxone_agent.daemon`       - the loop: leases, heartbeats, liveness, decisions
* :mod:`mxone_agent.control`      - the control socket, served without blocking the loop
* :mod:`mxone_agent.lease`        - self-fencing: an alias answers only while its lease runs
* :mod:`mxone_agent.executor`     - applies a Decision's actions through a NetworkBackend
* :mod:`mxone_agent.network`      - NetworkBackend: LinuxNetwork (pyroute2, nftables, ARP
  frames on AF_PACKET) and RecordingNetwork (tests)
* :mod:`mxone_agent.alarms`       - alarm handles, alarm log, alarm file and syslog
* :mod:`mxone_agent.service_node` - the reference Service Node (a LIM stand-in), data backup
* :mod:`mxone_agent.sync_worker`  - the exchange-data sync thread (triggers, alarm, retries)
* :mod:`mxone_agent.xdata`, :mod:`mxone_agent.xdata_wire`, :mod:`mxone_agent.xdata_sync` -
  exchange-data versions on disk, the transfer stream, a sync over SSH
* :mod:`mxone_agent.sdnotify`     - systemd readiness and watchdog; the unit file text
* :mod:`mxone_agent.main`         - the ``mxone-agent`` command (run, ctl, service, ...)

Every error this package raises on purpose derives from :class:`AgentError`.
"""

from __future__ import annotations

from mxone_agent.errors import AgentError

__all__ = ["AgentError"]
