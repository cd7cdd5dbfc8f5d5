"""Every command of the maintenance tool, in the order the CLI lists them.

The CLI's subcommands are built by walking :data:`COMMANDS`; each menu item names one of
them (``mxone_menus.tree``); ``tests/test_registry.py`` proves both faces cover it.
"""

from __future__ import annotations

from mxone_maintenance.commands.agents import AGENT_COMMANDS
from mxone_maintenance.commands.base import Command
from mxone_maintenance.commands.changes import CLUSTER_CHANGES, SERVER_COMMANDS, STANDBY_COMMANDS
from mxone_maintenance.commands.lists import LIST_COMMANDS

GROUPS = {
    "server": "servers in the system: add, remove, list",
    "standby": "standby servers: convert a free server, free a standby",
    "cluster": "clusters: create, change, delete, status, lock, fallback",
}
"""The CLI's command words and their help."""

_BY_NAME = {c.name: c for c in (*SERVER_COMMANDS, *STANDBY_COMMANDS, *LIST_COMMANDS,
                                *CLUSTER_CHANGES, *AGENT_COMMANDS)}

_ORDER = (
    "server.add", "server.remove", "server.list",
    "standby.convert", "standby.free",
    "cluster.list", "cluster.status", "cluster.create", "cluster.add-lim", "cluster.remove-lim",
    "cluster.delete", "cluster.set", "cluster.preloaded", "cluster.lock", "cluster.unlock",
    "cluster.fallback", "cluster.sync", "cluster.repair",
)

COMMANDS: tuple[Command, ...] = tuple(_BY_NAME[name] for name in _ORDER)
assert len(COMMANDS) == len(_BY_NAME), "every command has its place in the order"


def command(name: str) -> Command:
    """The command named ``name`` (``cluster.add-lim``); KeyError when there is none."""
    return _BY_NAME[name]
