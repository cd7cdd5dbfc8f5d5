"""A node leaving its cluster: what becomes of the LIMs and the addresses it holds.

``mxone-agent leave`` is run by the maintenance tool when a node leaves its cluster (remove
LIM, delete cluster), once the node's agent is stopped and before its node config is
removed. Afterwards the node is as a server outside any cluster is:

* a regular server keeps running its own LIM - started if it does not run - on the LIM's
  alias, now a plain address of the server (the one its phones and gateways use, which was
  its base address before the cluster); gratuitous ARP tells the neighbours where it is;
* no node holds a LIM that is not its own: the standby (and a regular server holding
  anything but its own LIM) stops every other LIM it runs, removes its alias and any
  block - also the LIMs an earlier config gave it (``retired``);
* the self-fencing leases are removed (``release_fence``), so the addresses left answer as
  plain addresses.

Nothing here decides anything for a cluster: the node is leaving it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mxone_agent import service_node
from mxone_agent.config import LimConfig, NodeConfig
from mxone_agent.errors import AgentError
from mxone_agent.executor import (
    START_TIMEOUT,
    STATUS_TIMEOUT,
    STOP_TIMEOUT,
    CommandRunner,
    Executor,
    reference_service,
    run_command,
)
from mxone_agent.model import Role
from mxone_agent.network import NetworkBackend

GARP_COUNT = 3


class LeaveError(AgentError):
    """The node's own LIM could not be started outside the cluster."""


def leave(config: NodeConfig, retired: Mapping[int, LimConfig], network: NetworkBackend,
          release_fence: Callable[[], None], run: CommandRunner = run_command,
          run_dir: str = service_node.DEFAULT_RUN_DIR,
          xdata_root: str = service_node.DEFAULT_XDATA_ROOT) -> list[str]:
    """Leave the cluster as the module says; one line per thing done. Raises NetworkError or
    LeaseError (the caller reports it) - what was done before stays done."""
    own = config.lim_of(config.node) if config.role is Role.REGULAR else None
    # What this node may hold besides its own LIM: every LIM on the standby, and what an
    # earlier config gave it.
    others = list(config.lims) if own is None else []
    others += [x for n, x in sorted(retired.items())
               if all(y.lim != n for y in others) and (own is None or n != own.lim)]
    lines = []
    for x in others:
        iface = Executor.interface(config, x)
        service = x.service or reference_service(x, run_dir, xdata_root)
        runs = run(service.status, STATUS_TIMEOUT) in (0, service_node.STATUS_LOADING)
        held = network.has_alias(iface, x.alias_ip)
        network.unblock(x.lim)
        if not runs and not held:
            continue
        if held:
            network.remove_alias(iface, x.alias_ip, x.prefix)
        on_standby = config.role is Role.STANDBY
        for c in reversed(x.companions):
            if c.runs_on_standby or not on_standby:
                run(c.service.stop, STOP_TIMEOUT)
        code = run(service.stop, STOP_TIMEOUT) if runs else 0
        lines.append(f"LIM {x.lim} stopped on {config.node}" + (
            f" and its alias {x.alias_ip} removed" if held else "")
            + ("" if code == 0 else f" (its stop command exited {code})")
            + f"; it belongs to {x.server}")
    release_fence()
    lines.append("fence removed: the addresses left answer as plain addresses")
    if own is None:
        lines.append(f"{config.node} runs no LIM")
        return lines
    network.unblock(own.lim)
    added = not network.has_alias(own.interface, own.alias_ip)
    if added:
        network.add_alias(own.interface, own.alias_ip, own.prefix)
    service = own.service or reference_service(own, run_dir, xdata_root)
    status = run(service.status, STATUS_TIMEOUT)
    if status in (0, service_node.STATUS_LOADING):
        started = "runs"
    else:
        code = run(service.start, START_TIMEOUT)
        if code != 0:
            network.garp(own.interface, own.alias_ip, GARP_COUNT)
            raise LeaveError(f"LIM {own.lim} did not start on {config.node} (exit status "
                             f"{code}); its address {own.alias_ip} is up")
        started = "started"
    for c in own.companions:
        if run(c.service.status, STATUS_TIMEOUT) != 0 and run(c.service.start,
                                                              START_TIMEOUT) != 0:
            lines.append(f"companion {c.name} of LIM {own.lim} did not start")
    network.garp(own.interface, own.alias_ip, GARP_COUNT)
    lines.append(f"LIM {own.lim} {started} on {config.node} outside any cluster, at "
                 f"{own.alias_ip}" + (" (address added)" if added else "")
                 + f" on {own.interface}")
    return lines
