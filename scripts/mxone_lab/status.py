"""A live look at a lab (``mxone-lab status``): processes alive, addresses, switch
ports, the systemd hosts' state, faults."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import mxone_lab.procs as procs
from mxone_lab.commands import HostCommands, ip_json
from mxone_lab.errors import LabError
from mxone_lab.faults import Faults
from mxone_lab.state import LabState


@dataclass(frozen=True)
class HostStatus:
    """What :meth:`Lab.status` observed on one host, live."""

    name: str
    ip: IPv4Address
    mac: str
    ns: str
    holder_pid: int
    holder_alive: bool
    sshd_pid: int | None
    sshd_alive: bool
    addresses: tuple[str, ...]
    port_up: bool | None
    systemd: bool = False
    #: ``systemctl is-system-running`` on a systemd host ('' on others, '?' if unknown).
    system_state: str = ""


@dataclass(frozen=True)
class LabStatus:
    """What :meth:`Lab.status` observed on the whole lab, live."""

    id: str
    dir: Path
    state: str
    subnet: str
    hosts: tuple[HostStatus, ...]
    faults: tuple[str, ...]


def observe(state: LabState, commands: HostCommands, faults: Faults) -> LabStatus:
    """The lab recorded in ``state`` as it is right now."""
    hosts = []
    port_up = _switch_ports_up(state)
    for name, h in state.records.items():
        holder_ok = procs.same(h.get("holder_pid"), h.get("holder_start"))
        sshd_ok = procs.same(h.get("sshd_pid"), h.get("sshd_start"))
        addrs: tuple[str, ...] = ()
        system_state = "?" if h.get("systemd") else ""
        if holder_ok:
            with contextlib.suppress(Exception):
                addrs = tuple(commands.addresses(name))
            if h.get("systemd"):
                with contextlib.suppress(LabError):
                    r = commands.exec(
                        name, ["systemctl", "is-system-running"], check=False, timeout=10
                    )
                    system_state = r.stdout.strip() or "?"
        hosts.append(
            HostStatus(
                name=name,
                ip=IPv4Address(h["ip"]),
                mac=h["mac"],
                ns=h["ns"],
                holder_pid=int(h.get("holder_pid") or 0),
                holder_alive=holder_ok,
                sshd_pid=h.get("sshd_pid"),
                sshd_alive=sshd_ok,
                addresses=addrs,
                port_up=port_up.get(h["switch_port"]),
                systemd=bool(h.get("systemd")),
                system_state=system_state,
            )
        )
    return LabStatus(
        id=state.id,
        dir=state.dir,
        state=str(state.read().get("state")),
        subnet=str(state.data["spec"]["subnet"]),
        hosts=tuple(hosts),
        faults=tuple(faults.active()),
    )


def _switch_ports_up(state: LabState) -> dict[str, bool]:
    if not procs.same(state.switch_pid, state.data["switch"].get("start")):
        return {}
    try:
        links = ip_json(state.switch_netns_path, ["link", "show"])
    except LabError:
        return {}
    return {link["ifname"]: "UP" in link.get("flags", []) for link in links}
