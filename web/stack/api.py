"""The contract between the operator's tool and what runs on each server of the pair.

``webserver_config`` (the tool) gathers and validates a :class:`PairSettings` and hands it to
the functions of :mod:`mxone_web.stack.apply`, which configure and start the components on
*this* server only (each server is configured by the tool run on it: the master first,
then the standby). Nothing here talks to the operator.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum


class PairRole(StrEnum):
    """Which half of the pair this server is, as set up (not who is active now)."""

    MASTER = "master"  # LIM 1's server: primary database and virtual IP when healthy
    STANDBY = "standby"  # the cluster's standby server


class WebFallback(StrEnum):
    """Whether the master takes the virtual IP back by itself (the cluster's fallback type)."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"


@dataclass(frozen=True)
class PairServer:
    """One server of the pair: its name and its base address (never moved)."""

    name: str
    base_ip: ipaddress.IPv4Address


class TwoSides:
    """This server's side of the pair and the other one, from ``role``, ``master`` and
    ``standby`` (fields of the dataclasses that take this in)."""

    role: PairRole
    master: PairServer
    standby: PairServer

    @property
    def local(self) -> PairServer:
        return self.master if self.role is PairRole.MASTER else self.standby

    @property
    def peer(self) -> PairServer:
        return self.standby if self.role is PairRole.MASTER else self.master


@dataclass(frozen=True)
class PairSettings(TwoSides):
    """Everything one server needs to run its half of PM/SNM redundancy.

    ``witnesses`` are base addresses of other servers of the system: a server that reaches
    none of them is the one cut off, and never keeps a writable primary.
    """

    role: PairRole
    master: PairServer
    standby: PairServer
    cluster: str
    network: ipaddress.IPv4Network
    interface: str
    vip: ipaddress.IPv4Address
    replication_user: str
    replication_password: str
    fallback: WebFallback
    witnesses: tuple[ipaddress.IPv4Address, ...] = ()

    def __repr__(self) -> str:  # the replication password never reaches a log or a traceback
        return (f"PairSettings(role={self.role.value}, master={self.master.name}, "
                f"standby={self.standby.name}, vip={self.vip}, user={self.replication_user})")


@dataclass(frozen=True)
class StackStatus:
    """One server of the pair as CheckStatus shows it (``mxone_web.stack.apply.status``).

    ``package`` is ``mxone_snm-<version>`` (None: not installed); ``db_role`` is
    ``primary``, ``standby`` or ``down``; ``replication`` the stream's state in the
    database's words (``streaming (sync)``, ``no standby connected``...) with
    ``replication_peer`` the server at its other end; lags are None when unknown.
    """

    server: str
    keepalived_running: bool
    package: str | None
    db_role: str
    replication: str
    replication_peer: str
    lag_bytes: int | None
    lag_seconds: float | None
    vip: str
    holds_vip: bool

    def to_mapping(self) -> dict[str, object]:
        return dict(vars(self))

    @classmethod
    def from_mapping(cls, data: dict[str, object]) -> StackStatus:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})  # type: ignore[arg-type]
