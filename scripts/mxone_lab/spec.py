"""The description of a lab: one subnet and the hosts on it.

A :class:`LabSpec` is plain immutable data, valid by construction: building one with a
broken rule raises :class:`~mxone_lab.errors.SpecError` naming every broken rule at once.
The subnet exists only inside the lab's namespaces, never on the machine itself.

A spec file is TOML::

    subnet = "10.77.0.0/24"      # optional, this is the default

    [hosts]                      # name = host byte (address = subnet + host byte)
    lim1 = 11
    lim2 = 12
    client = 100

    systemd = ["lim2"]           # optional: these hosts boot systemd as their PID 1
    networkd = ["lim2"]          # optional: of those, these get their address at boot from
                                 # systemd-networkd reading their own /etc/systemd/network

(in TOML, ``systemd`` and ``networkd`` are top-level keys, so they come before the
``[hosts]`` table).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxone_lab.errors import SpecError

DEFAULT_SUBNET = ipaddress.IPv4Network("10.77.0.0/24")

#: The default lab: three LIM servers, one standby server and a client.
DEFAULT_HOSTS: tuple[tuple[str, int], ...] = (
    ("lim1", 11),
    ("lim2", 12),
    ("lim3", 13),
    ("standby1", 20),
    ("client", 100),
)

# A host name becomes part of interface names (`v-<name>`, 15 characters at most) and of
# nftables rules, so it is kept to what a hostname and an interface name both accept.
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,12}$")
MAX_HOSTS = 200


@dataclass(frozen=True)
class HostSpec:
    """One host of a lab: its name and its host byte (the last part of its address).

    With ``systemd`` the host boots a real systemd as PID 1 of its own PID namespace (units,
    ``systemctl``, ``journalctl``, watchdogs and restarts work as on a server); otherwise
    the host is a plain holder process (fast: no boot). With ``networkd`` (systemd hosts
    only) its systemd runs systemd-networkd, which brings up the host's addresses at every
    boot from the host's own ``/etc/systemd/network`` (every host has the file; on other
    hosts the lab adds the base address itself and nothing reads the file).
    """

    name: str
    host_byte: int
    systemd: bool = False
    networkd: bool = False

    @property
    def mac(self) -> str:
        """The host's eth0 MAC: locally administered, derived from the host byte."""
        return f"02:77:00:00:00:{self.host_byte:02x}"

    @property
    def switch_port(self) -> str:
        """The name of the host's port on the lab bridge (`v-<name>`)."""
        return f"v-{self.name}"


@dataclass(frozen=True)
class LabSpec:
    """A lab: a subnet and its hosts, in order. Construction validates every rule.

    Every host gets the address ``subnet.network_address + host_byte`` with the subnet's
    prefix length on its eth0, and the MAC ``02:77:00:00:00:<host byte>``.
    """

    hosts: tuple[HostSpec, ...] = field(
        default_factory=lambda: tuple(HostSpec(n, b) for n, b in DEFAULT_HOSTS)
    )
    subnet: ipaddress.IPv4Network = DEFAULT_SUBNET

    def __post_init__(self) -> None:
        problems = _problems(self.subnet, self.hosts)
        if problems:
            raise SpecError(problems)

    # -- constructors ------------------------------------------------------------------

    @classmethod
    def default(cls) -> LabSpec:
        """lim1 .11, lim2 .12, lim3 .13, standby1 .20, client .100 on 10.77.0.0/24."""
        return cls()

    @classmethod
    def systemd_standby(cls) -> LabSpec:
        """A small lab whose standby server boots systemd: lim1 .11, lim2 .12,
        standby1 .20 (systemd), client .100 - the default lab's names and addresses."""
        return cls(
            hosts=tuple(
                HostSpec(n, b, systemd=n == "standby1") for n, b in DEFAULT_HOSTS if n != "lim3"
            )
        )

    def with_systemd(self, names: Iterable[str]) -> LabSpec:
        """This spec with the named hosts booting systemd (the others unchanged).

        Raises :class:`SpecError` naming every name that is not a host of the spec.
        """
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in self.names]
        if unknown:
            raise SpecError(
                [
                    f"systemd host {n!r} is not a host of the lab ({', '.join(self.names)})"
                    for n in unknown
                ]
            )
        hosts = tuple(
            HostSpec(h.name, h.host_byte, systemd=h.systemd or h.name in wanted,
                     networkd=h.networkd)
            for h in self.hosts
        )
        return LabSpec(hosts=hosts, subnet=self.subnet)

    def with_networkd(self, names: Iterable[str]) -> LabSpec:
        """This spec with the named hosts booting systemd and getting their addresses from
        systemd-networkd (the others unchanged); :class:`SpecError` for unknown names."""
        wanted = list(dict.fromkeys(names))
        spec = self.with_systemd(wanted)
        hosts = tuple(
            HostSpec(h.name, h.host_byte, systemd=h.systemd, networkd=h.networkd or h.name in wanted)
            for h in spec.hosts
        )
        return LabSpec(hosts=hosts, subnet=self.subnet)

    @classmethod
    def with_hosts(cls, count: int, subnet: ipaddress.IPv4Network = DEFAULT_SUBNET) -> LabSpec:
        """A lab of ``count`` hosts for benchmarks: lim1..lim<count-1> (.11 up) + client .100."""
        if not 2 <= count <= 90:
            raise SpecError([f"host count {count} is out of range: it must be 2..90"])
        hosts = [HostSpec(f"lim{i}", 10 + i) for i in range(1, count)]
        hosts.append(HostSpec("client", 100))
        return cls(hosts=tuple(hosts), subnet=subnet)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "lab spec") -> LabSpec:
        """A spec from parsed TOML/JSON data (``subnet``, ``hosts = {name: host byte}``,
        optionally ``systemd = [name, ...]``).

        Raises :class:`SpecError` naming every problem, prefixed with ``source``.
        """
        problems: list[str] = []
        unknown = sorted(set(data) - {"subnet", "hosts", "systemd", "networkd"})
        if unknown:
            problems.append(
                f"unknown key(s) {', '.join(unknown)}: only subnet and hosts (and systemd, "
                "networkd)"
            )
        raw_systemd = data.get("systemd", [])
        systemd: set[str] = set()
        if not isinstance(raw_systemd, list) or not all(isinstance(n, str) for n in raw_systemd):
            problems.append(f"systemd {raw_systemd!r} must be a list of host names")
        else:
            systemd = set(raw_systemd)
        raw_networkd = data.get("networkd", [])
        networkd: set[str] = set()
        if not isinstance(raw_networkd, list) or not all(isinstance(n, str) for n in raw_networkd):
            problems.append(f"networkd {raw_networkd!r} must be a list of host names")
        else:
            networkd = set(raw_networkd)
        subnet = DEFAULT_SUBNET
        raw_subnet = data.get("subnet", str(DEFAULT_SUBNET))
        try:
            subnet = ipaddress.IPv4Network(str(raw_subnet), strict=True)
        except ValueError as exc:
            problems.append(f"subnet {raw_subnet!r} is not an IPv4 network: {exc}")
        raw_hosts = data.get("hosts")
        hosts: list[HostSpec] = []
        if not isinstance(raw_hosts, Mapping) or not raw_hosts:
            problems.append("hosts must be a table of name = host byte, with at least one host")
        else:
            for name, byte in raw_hosts.items():
                if isinstance(byte, bool) or not isinstance(byte, int):
                    problems.append(f"host {name}: host byte {byte!r} is not an integer")
                    continue
                hosts.append(HostSpec(str(name), byte, systemd=str(name) in systemd,
                                      networkd=str(name) in networkd))
            problems += [
                f"systemd host {n!r} is not in hosts" for n in sorted(systemd - set(raw_hosts))
            ]
            problems += [
                f"networkd host {n!r} is not in hosts" for n in sorted(networkd - set(raw_hosts))
            ]
        if isinstance(raw_hosts, Mapping) and raw_hosts:
            problems += _problems(subnet, hosts)
        if problems:
            raise SpecError(problems, source)
        return cls(hosts=tuple(hosts), subnet=subnet)

    @classmethod
    def from_toml(cls, path: str | Path) -> LabSpec:
        """A spec from a TOML file (see the module docstring for the format)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError([f"cannot read: {exc.strerror}"], str(p)) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError([f"not valid TOML: {exc}"], str(p)) from None
        return cls.from_mapping(data, str(p))

    def to_mapping(self) -> dict[str, Any]:
        """The spec as plain data, the inverse of :meth:`from_mapping` (``systemd`` only
        when some host boots systemd)."""
        data: dict[str, Any] = {
            "subnet": str(self.subnet),
            "hosts": {h.name: h.host_byte for h in self.hosts},
        }
        if self.systemd_names:
            data["systemd"] = list(self.systemd_names)
        if self.networkd_names:
            data["networkd"] = list(self.networkd_names)
        return data

    # -- derived values ----------------------------------------------------------------

    @property
    def prefix(self) -> int:
        """The prefix length every host's base address carries."""
        return self.subnet.prefixlen

    def ip_of(self, host: HostSpec) -> ipaddress.IPv4Address:
        """The base address of ``host``."""
        return self.subnet.network_address + host.host_byte

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    @property
    def systemd_names(self) -> tuple[str, ...]:
        """The hosts that boot systemd, in spec order."""
        return tuple(h.name for h in self.hosts if h.systemd)

    @property
    def networkd_names(self) -> tuple[str, ...]:
        """The hosts whose systemd-networkd brings up their addresses, in spec order."""
        return tuple(h.name for h in self.hosts if h.networkd)


def _problems(subnet: Any, hosts: Iterable[HostSpec]) -> list[str]:
    """Every broken rule of a (subnet, hosts) pair, as operator-readable sentences."""
    problems: list[str] = []
    if not isinstance(subnet, ipaddress.IPv4Network):
        return [f"subnet {subnet!r} is not an IPv4 network"]
    if not 8 <= subnet.prefixlen <= 30:
        problems.append(f"subnet {subnet} has prefix /{subnet.prefixlen}: it must be /8../30")
    hosts = tuple(hosts)
    if not hosts:
        problems.append("a lab needs at least one host")
    if len(hosts) > MAX_HOSTS:
        problems.append(f"{len(hosts)} hosts is too many: at most {MAX_HOSTS}")
    seen_names: dict[str, int] = {}
    seen_bytes: dict[int, str] = {}
    for h in hosts:
        if not isinstance(h.name, str) or not _NAME_RE.match(h.name):
            problems.append(
                f"host name {h.name!r} is invalid: 1-13 characters, lower-case letters, "
                "digits and '-', starting with a letter"
            )
        elif h.name in seen_names:
            problems.append(f"host name {h.name!r} is used twice")
        else:
            seen_names[h.name] = h.host_byte
        if not isinstance(h.systemd, bool):
            problems.append(f"host {h.name}: systemd {h.systemd!r} must be true or false")
        if not isinstance(h.networkd, bool):
            problems.append(f"host {h.name}: networkd {h.networkd!r} must be true or false")
        elif h.networkd and not h.systemd:
            problems.append(
                f"host {h.name}: networkd needs systemd (only a host that boots systemd runs "
                "systemd-networkd): add it to systemd too"
            )
        if isinstance(h.host_byte, bool) or not isinstance(h.host_byte, int):
            problems.append(f"host {h.name}: host byte {h.host_byte!r} is not an integer")
            continue
        if not 1 <= h.host_byte <= 254:
            problems.append(f"host {h.name}: host byte {h.host_byte} must be 1..254")
            continue
        if h.host_byte in seen_bytes:
            problems.append(
                f"host {h.name}: host byte {h.host_byte} is already used by {seen_bytes[h.host_byte]}"
            )
        else:
            seen_bytes[h.host_byte] = h.name
        if 8 <= subnet.prefixlen <= 30 and h.host_byte >= subnet.num_addresses - 1:
            problems.append(
                f"host {h.name}: address {subnet.network_address + h.host_byte} "
                f"is not a host address of subnet {subnet}"
            )
    return problems
