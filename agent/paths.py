"""Where the agent's files live on a node: written here once, for the agent and the tool.

The maintenance tool writes the node's files (:mod:`mxone_agent.node`), the agent reads
them; both name them through this module. Standard library only.
"""

from __future__ import annotations

ETC = "/etc/mxone"
AGENT_DIR = f"{ETC}/agent"
NODE_JSON = f"{AGENT_DIR}/node.json"
NODE_JSON_PREV = f"{AGENT_DIR}/node.json.prev"
"""The node config before the change being applied, kept until the change is committed."""
CLUSTER_KEY = f"{AGENT_DIR}/cluster.key"
SYNC_KEY = f"{AGENT_DIR}/sync.key"
KNOWN_HOSTS = f"{AGENT_DIR}/known_hosts"
ROOT_SSH = "/root/.ssh"
AUTHORIZED_KEYS = f"{ROOT_SSH}/authorized_keys"

AGENT_HOME = "/opt/mxone/agent"
RELEASES = f"{AGENT_HOME}/releases"
CURRENT = f"{AGENT_HOME}/current"
"""The link to the release that runs (``releases/<sha256[:12]>``, relative)."""
AGENT_BIN = f"{CURRENT}/bin/mxone-agent"
RELEASE_MARKER = "ARTEFACT.sha256"
"""In each release directory: the SHA256 of the artefact it was unpacked from."""


def release_dir(release: str) -> str:
    """The directory of release ``release`` (the artefact's ``sha256[:12]``)."""
    return f"{RELEASES}/{release}"


def release_bin(release: str) -> str:
    """The ``mxone-agent`` program of release ``release`` (installed or not yet current)."""
    return f"{release_dir(release)}/bin/mxone-agent"


RUN_DIR = "/run/mxone"
"""The agent's control socket and status file, and the reference Service Node's pidfiles."""
PIDFILE = f"{RUN_DIR}/agent.pid"
CONTROL = f"{RUN_DIR}/agent.sock"
STATUS = f"{RUN_DIR}/status.json"
"""The agent's status file, beside its control socket."""
LOG_DIR = "/var/log/mxone"
LOG = f"{LOG_DIR}/agent.log"
ALARMS_LOG = f"{LOG_DIR}/alarms.log"
LOGROTATE = "/etc/logrotate.d/mxone-agent"
"""Where the node's logrotate config for the two files above belongs (the release ships it
as ``lib/mxone_agent/logrotate/mxone-agent``)."""
STATE_DIR = "/var/opt/mxone/agent"
TIMELINE = f"{STATE_DIR}/timeline.jsonl"
"""The agent's transitions, one JSON line each (:mod:`mxone_agent.timeline`)."""
XDATA = "/var/opt/mxone/xdata"
UNIT = "/usr/lib/systemd/system/mxone-agent.service"
"""Where package units live: an administrator's drop-in (``systemctl edit mxone-agent``, in
``/etc/systemd/system/mxone-agent.service.d/``) survives every redeploy."""
OLD_UNIT = "/etc/systemd/system/mxone-agent.service"
"""Where earlier deployers wrote the unit; a copy left there would shadow :data:`UNIT`."""
NOTIFY_DIR = f"{ETC}/notify.d"
"""The notify hooks: executables run on every LIM transition and alarm
(:mod:`mxone_agent.notify_hooks`)."""
METRICS_TEXTFILE = "/var/lib/node_exporter/textfile_collector/mxone_agent.prom"
"""The metrics for node_exporter's textfile collector, written only while its directory
exists (:mod:`mxone_agent.metrics`)."""
NETCONFIG_BACKUP = f"{ETC}/netconfig"
"""Where a network config file the tool changed keeps its previous content, at its own path."""
