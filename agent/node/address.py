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

from mxone_agent import contract

IPV4_CONF = "/proc/sys/net/ipv4/conf"


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


def conf_path(interface: str, setting: str, conf: str = IPV4_CONF) -> str:
    """The /proc file of one IPv4 setting of ``interface``.

    The directory is the interface's name as it is, dots and all: a VLAN's setting is
    ``/proc/sys/net/ipv4/conf/eth0.100/promote_secondaries``. Only the dotted key of
    ``sysctl -w`` must write that dot as "/" (``net.ipv4.conf.eth0/100.promote_secondaries``);
    written as a dot there, sysctl looks for ``conf/eth0/100`` and fails - which is how
    this setting was once lost for VLAN interfaces. Refuses a name that is no single
    interface's (``all`` and ``default`` set others; ``..`` leaves the directory).
    """
    if (problem := contract.interface_name_problem(interface)) is not None:
        raise ValueError(f"interface {interface!r}: {problem}")
    return f"{conf}/{interface}/{setting}"


def promote_secondaries(interface: str, conf: str = IPV4_CONF) -> str | None:
    """When the agent later removes the alias (the interface's first address), the kernel
    must keep the other addresses instead of dropping them with it. Returns None when the
    setting is 1, else why it could not be set (the address is still added: the caller
    says so, since a later alias removal would take the new base address with it)."""
    try:
        path = conf_path(interface, "promote_secondaries", conf)
        with open(path, "w") as f:
            f.write("1\n")
    except (OSError, ValueError) as e:
        return f"promote_secondaries not set on {interface}: {e}"
    return None


def add_base(interface: str, address: str, prefix: int) -> dict[str, Any]:
    """Put ``address/prefix`` on ``interface``; ``added`` False when it was there already;
    ``warning`` when promote_secondaries could not be set (:func:`promote_secondaries`)."""
    try:
        with _netlink() as ipr:
            index = _index(ipr, interface)
            warning = promote_secondaries(interface)
            done: dict[str, Any] = {"ok": True, "added": False}
            if not _has(ipr, index, address):
                ipr.addr("add", index=index, address=address, prefixlen=prefix)
                done["added"] = True
    except Exception as e:  # pyroute2's NetlinkError and friends  # noqa: BLE001
        return {"ok": False, "added": False,
                "error": f"cannot add {address}/{prefix} on {interface}: {e}"}
    return done if warning is None else {**done, "warning": warning}


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
