"""The node's own addresses, through pyroute2 like the agent's network layer.

A LIM server joining a cluster gets a new base address; its old one stays, as the LIM's
alias, which the agent manages. The tool puts the new one on at run time (``add-base``)
and takes it off again in a rollback (``del-base``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def _netlink() -> Iterator[Any]:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]

    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def addresses() -> list[tuple[str, str]]:
    """Every IPv4 address on the node: (interface, address)."""
    with _netlink() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        return [(str(names.get(a["index"], "?")), str(a.get_attr("IFA_ADDRESS")))
                for a in ipr.get_addr(family=socket.AF_INET)]


def _index(ipr: Any, interface: str) -> int:
    found = ipr.link_lookup(ifname=interface)
    if not found:
        raise LookupError(f"interface {interface} does not exist on this host")
    return int(found[0])


def _has(ipr: Any, index: int, address: str) -> bool:
    return any(a.get_attr("IFA_ADDRESS") == address
               for a in ipr.get_addr(family=socket.AF_INET, index=index))


def promote_secondaries(interface: str) -> None:
    """When the agent later removes the alias (the interface's first address), the kernel
    must keep the other addresses instead of dropping them with it. Best effort."""
    try:
        with open(f"/proc/sys/net/ipv4/conf/{interface}/promote_secondaries", "w") as f:
            f.write("1\n")
    except OSError:
        pass


def add_base(interface: str, address: str, prefix: int) -> dict[str, Any]:
    """Put ``address/prefix`` on ``interface``; ``added`` False when it was there already."""
    promote_secondaries(interface)
    try:
        with _netlink() as ipr:
            index = _index(ipr, interface)
            if _has(ipr, index, address):
                return {"ok": True, "added": False}
            ipr.addr("add", index=index, address=address, prefixlen=prefix)
    except Exception as e:  # pyroute2's NetlinkError and friends  # noqa: BLE001
        return {"ok": False, "added": False,
                "error": f"cannot add {address}/{prefix} on {interface}: {e}"}
    return {"ok": True, "added": True}


def del_base(interface: str, address: str, prefix: int) -> dict[str, Any]:
    """Take ``address`` off ``interface`` (nothing to do when it is not there)."""
    try:
        with _netlink() as ipr:
            index = _index(ipr, interface)
            if _has(ipr, index, address):
                ipr.addr("del", index=index, address=address, prefixlen=prefix)
    except LookupError:
        pass  # no such interface: the address is not on it
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": f"cannot remove {address}/{prefix} from {interface}: {e}"}
    return {"ok": True}
