"""The rules of the operator's answers: the virtual IP and the replication role.

Each refusal (:class:`~mxone_web.errors.Refused`) names the field, the value and the rule.
The virtual IP is also probed on the wire: an RFC 5227 ARP probe on this server's
interface, sent by the agent's own network backend
(:meth:`mxone_agent.network.NetworkBackend.probe`), so an address some host already
answers for is refused before keepalived would fight it for the address.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable

from mxone_web import pwquality
from mxone_web.discover import Pair
from mxone_web.errors import Refused

Probe = Callable[[str, ipaddress.IPv4Address], set[str]]
"""``probe(interface, address)``: the MACs that answer an ARP probe for ``address``."""

VIP = "virtual IP"
USER = "replication user"
PASSWORD = "replication password"

USER_RULE = ("a PostgreSQL identifier used unquoted: a lower-case letter or _ first, then "
             "lower-case letters, digits or _, at most 63 characters, not starting with pg_ "
             "and not a reserved role name")
RESERVED_ROLES = frozenset({"postgres", "public", "none", "current_user", "session_user",
                            "current_role", "all", "replication"})
_USER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

PASSWORD_CHARACTERS = frozenset(set(string.printable) - set(string.whitespace) - set("'\"\\:"))
PASSWORD_RULE = ("printable ASCII without spaces, quotes, backslash or colon (it goes into "
                 "PostgreSQL's connection string and password file), accepted by libpwquality")


def linux_probe(interface: str, address: ipaddress.IPv4Address) -> set[str]:
    """The agent's ARP probe (needs CAP_NET_RAW: root)."""
    from mxone_agent.network import LinuxNetwork

    net = LinuxNetwork()
    try:
        return net.probe(interface, address)
    finally:
        net.close()


def parse_address(field: str, text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise Refused(f"{field} = {text.strip() or '(empty)'}: not an IPv4 address "
                      "(four numbers 0-255, e.g. 10.0.2.50, without prefix)") from None


def check_vip(text: str, pair: Pair, probe: Probe | None = linux_probe,
              current: ipaddress.IPv4Address | None = None) -> ipaddress.IPv4Address:
    """The virtual IP typed in, checked; every rule it breaks refused with the rule named.

    In the cluster's subnet, neither its network nor its broadcast address, no server's
    base and no LIM's alias, and answered by nobody (``probe``; None skips the probe).
    ``current``: the virtual IP of the redundancy set now (Reconfigure), which the active
    server answers for and may be kept.
    """
    vip = parse_address(VIP, text)
    net = pair.network
    if vip not in net:
        raise Refused(f"{VIP} = {vip}: not in the cluster's subnet {net} (the base addresses "
                      f"of {pair.master.name} and {pair.standby.name})")
    if vip in (net.network_address, net.broadcast_address):
        what = "network" if vip == net.network_address else "broadcast"
        raise Refused(f"{VIP} = {vip}: the {what} address of {net}; use a host address")
    holder = pair.taken.get(vip)
    if holder is None and vip in (pair.master.base_ip, pair.standby.base_ip):
        holder = "a base address of the pair"
    if holder is not None:
        raise Refused(f"{VIP} = {vip}: already the {holder}; the virtual IP must be an "
                      "address no server and no LIM uses")
    if probe is not None and vip != current:
        macs = probe(pair.interface, vip)
        if macs:
            raise Refused(f"{VIP} = {vip}: in use: answered on {pair.interface} by "
                          f"{', '.join(sorted(macs))} (ARP probe); choose a free address")
    return vip


def check_user(text: str) -> str:
    """The replication role's name, checked against :data:`USER_RULE`."""
    name = text.strip()
    if not _USER.fullmatch(name) or name.startswith("pg_") or name in RESERVED_ROLES:
        raise Refused(f"{USER} = {name or '(empty)'}: must be {USER_RULE}")
    return name


def check_password(password: str, again: str, user: str) -> str:
    """The replication role's password typed twice, checked against :data:`PASSWORD_RULE`."""
    if password != again:
        raise Refused(f"{PASSWORD}: the two passwords typed differ; type the same password twice")
    bad = sorted({c for c in password if c not in PASSWORD_CHARACTERS})
    if bad:
        shown = ", ".join("space" if c == " " else repr(c) for c in bad)
        raise Refused(f"{PASSWORD}: holds {shown}; must be {PASSWORD_RULE}")
    pwquality.require(PASSWORD, password, user)
    return password
