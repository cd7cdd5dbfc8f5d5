"""The menu tree of the MX-ONE Maintenance Utility, written once as nested data.

Each item carries its help text (shown with ``?``) and, for an action, the flow function
that gives its first screen. Names are the real utility's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from mxone_maintenance.model import System
from mxone_menus import flows
from mxone_menus.steps import Step


@dataclass(frozen=True)
class Choice:
    label: str
    help: str
    flow: Callable[[System], Step]


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
                   "(without), which can later become a standby server.", flows.add_server),
            Choice("Remove a server from the system",
                   "Remove a server that is in no cluster.", flows.remove_server),
            Choice("List servers",
                   "Every server with its role, LIM, base and alias address, cluster, priority "
                   "and lock.", flows.list_servers),
        )),
        SubMenu("Standby server in system", "Turn free servers into standby servers and back.", (
            Choice("Convert a free server to standby server",
                   "A standby server takes over the LIM of a failed regular server of its "
                   "cluster. Only free servers can be converted.", flows.convert_to_standby),
            Choice("Convert a standby server to free server",
                   "Only a standby that is in no cluster (delete the cluster first).",
                   flows.convert_to_free),
        )),
        SubMenu("Cluster handling", "Clusters of regular LIM servers plus one standby server.", (
            Choice("List all clusters", "The configuration of every cluster.", flows.list_clusters),
            Choice("Show status", "Where each LIM runs now, as the node agents report it.",
                   flows.show_status),
            Choice("Create new cluster in system",
                   "A standby plus up to ten regular LIMs. Each LIM needs one new IP address: it "
                   "becomes the base address and the old base becomes the alias (no restart). "
                   "Removes older exchange-data versions.", flows.create_cluster),
            Choice("Change fallback type or priority",
                   "Fallback automatic or manual; a lower priority value gives a higher priority "
                   "to run on the standby. Removes older exchange-data versions.",
                   flows.change_fallback_or_priority),
            Choice("Change failover behavior to preloaded",
                   "Only for a cluster of one LIM + standby. Going back from preloaded means "
                   "deleting the cluster. Removes older exchange-data versions.",
                   flows.change_to_preloaded),
            Choice("Add a LIM to existing cluster",
                   "The LIM needs one new IP address, which becomes its base address; the old "
                   "base becomes the alias. Removes older exchange-data versions.", flows.add_lim),
            Choice("Remove a LIM from existing cluster",
                   "Removing the last LIM removes the whole cluster. Removes older "
                   "exchange-data versions.", flows.remove_lim),
            Choice("Delete cluster in system",
                   "Every LIM gets its alias back as base address. Removes older exchange-data "
                   "versions.", flows.delete_cluster),
            Choice("Move LIM from standby to regular server",
                   "Manual fallback: move a LIM running on the standby back to its regular "
                   "server (done by the node agents).", flows.move_lim_to_regular),
            Choice("Lock LIM to server",
                   "Keep a LIM on its regular server or on the standby: no failover.",
                   flows.lock_lim),
            Choice("Unlock LIM from server",
                   "Failover actions can occur again; the fallback type decides what happens to a "
                   "LIM unlocked while on the standby.", flows.unlock_lim),
            Choice("Sync exchange data within cluster",
                   "Order a sync of exchange data between regular servers and the standby now "
                   "(done by the node agents).", flows.sync_exchange_data),
        )),
        Exit(),
    ))
