"""The menu tree of the MX-ONE Maintenance Utility, written once as nested data.

Each item carries its help text (shown with ``?``) and, for an action, the name of the
registry command it runs (:mod:`mxone_maintenance.commands.registry`); its screens are that
command's flow (:data:`mxone_menus.flows.FLOWS`). Names are the real utility's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Choice:
    """A menu item that runs the registry command named ``command``."""

    label: str
    help: str
    command: str


@dataclass(frozen=True)
class SubMenu:
    label: str
    help: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Exit:
    label: str = "Exit"
    help: str = "Leave the MX-ONE Maintenance Utility."


Item = Union[Choice, SubMenu, Exit]


def main_menu() -> SubMenu:
    return SubMenu("MX-ONE Maintenance Utility", "The main menu.", (
        SubMenu("Server in system", "Add servers to the system, remove them, list them.", (
            Choice("Add a server to the system",
                   "Add an installed server: a LIM server (with a LIM number) or a free server "
                   "(without), which can later become a standby server.", "server.add"),
            Choice("Remove a server from the system",
                   "Remove a server that is in no cluster.", "server.remove"),
            Choice("List servers",
                   "Every server with its role, LIM, base and alias address, cluster, priority "
                   "and lock.", "server.list"),
        )),
        SubMenu("Standby server in system", "Turn free servers into standby servers and back.", (
            Choice("Convert a free server to standby server",
                   "A standby server takes over the LIM of a failed regular server of its "
                   "cluster. Only free servers can be converted.", "standby.convert"),
            Choice("Convert a standby server to free server",
                   "Only a standby that is in no cluster (delete the cluster first).",
                   "standby.free"),
        )),
        SubMenu("Cluster handling", "Clusters of regular LIM servers plus one standby server.", (
            Choice("List all clusters", "The configuration of every cluster.", "cluster.list"),
            Choice("Show status", "Where each LIM runs now, as the node agents report it.",
                   "cluster.status"),
            Choice("Create new cluster in system",
                   "A standby plus up to ten regular LIMs. Each LIM needs one new IP address: it "
                   "becomes the base address and the old base becomes the alias (no restart). "
                   "Removes older exchange-data versions.", "cluster.create"),
            Choice("Change fallback type or priority",
                   "Fallback automatic or manual; a lower priority value gives a higher priority "
                   "to run on the standby. Removes older exchange-data versions.",
                   "cluster.set"),
            Choice("Change failover behavior to preloaded",
                   "Only for a cluster of one LIM + standby. Going back from preloaded means "
                   "deleting the cluster. Removes older exchange-data versions.",
                   "cluster.preloaded"),
            Choice("Add a LIM to existing cluster",
                   "The LIM needs one new IP address, which becomes its base address; the old "
                   "base becomes the alias. Removes older exchange-data versions.", "cluster.add-lim"),
            Choice("Remove a LIM from existing cluster",
                   "Removing the last LIM removes the whole cluster. Removes older "
                   "exchange-data versions.", "cluster.remove-lim"),
            Choice("Delete cluster in system",
                   "Every LIM gets its alias back as base address. Removes older exchange-data "
                   "versions.", "cluster.delete"),
            Choice("Move LIM from standby to regular server",
                   "Manual fallback: move a LIM running on the standby back to its regular "
                   "server (done by the node agents).", "cluster.fallback"),
            Choice("Lock LIM to server",
                   "Keep a LIM on its regular server or on the standby: no failover.",
                   "cluster.lock"),
            Choice("Unlock LIM from server",
                   "Failover actions can occur again; the fallback type decides what happens to a "
                   "LIM unlocked while on the standby.", "cluster.unlock"),
            Choice("Sync exchange data within cluster",
                   "Order a sync of exchange data between regular servers and the standby now "
                   "(done by the node agents).", "cluster.sync"),
        )),
        Exit(),
    ))
