"""The node config: what the maintenance tool on LIM 1 tells one node's agent (format 1).

The maintenance tool writes one JSON document per node; :func:`load_node_config` turns the
parsed document into a :class:`NodeConfig` or raises :class:`ConfigError` naming *every*
problem with its JSON path (``$.lims[1].alias_ip``). A :class:`NodeConfig` is valid by
construction: building one directly runs the same cross-field rules. ``to_dict()`` gives
back a document that loads to an equal config.

Schema, format 1 (all keys required unless marked optional; unknown keys are refused)::

    {
      "format": 1,
      "generation": 7,                  # whole number >= 1, rises with every system change
      "node": "standby1",               # this node's server name
      "cluster": "cluster1",
      "fallback": "manual" | "automatic",
      "failover": "regular" | "preloaded",
      "timers": {"interval": 1.0, "misses": 3},      # seconds > 0; whole number >= 2
      "split_brain_stop": "regular" | "standby",      # optional, default "regular"
      "garp": {"burst": 3, "second_burst_after": 2.0, "refresh_interval": 30.0 | null},
      "heartbeat_port": 7011,
      "sync": {"interval": 86400, "retry_min": 10, "retry_max": 600,   # optional: the
               "clock_bound": 2.0, "timeout": 3600,                      # defaults of
               "key": "/etc/mxone/agent/sync.key",                       # :class:`Sync`
               "known_hosts": "/etc/mxone/agent/known_hosts",            # when absent;
               "user": "root", "xdata_root": "/var/opt/mxone/xdata"},   # all keys needed
      "servers": [{"name", "base_ip", "prefix", "interface", "role": "regular" | "standby"}],
      "lims": [{"lim", "server", "alias_ip", "prefix", "interface", "priority",
                "lock": "none" | "regular" | "standby",
                "service": {"start": [argv], "stop": [argv], "status": [argv]},  # optional
                "companions": [{"name", "kind": "management" | "media-server" | "csta"
                                | "other", "colocated": true,   # media-server only, optional
                                "service": {"start", "stop", "status"}}]}]  # optional
    }

Companions are services that run beside a LIM on its regular server. The seed: the
management system and the CSTA Phase III web service are never started on the standby; a
media server co-located with the LIM's Service Node is started by the standby with the
LIM, a stand-alone media server (``colocated`` false) keeps running on its own server and
the standby only goes on controlling it, so the standby starts nothing for it.

Cross-field rules (the seed's prerequisites as far as one node can check them): the node is
one of the servers; exactly one standby and at least one regular server; every regular server
runs exactly one LIM and every LIM belongs to a regular server; at most ten LIMs; names,
LIM numbers and addresses are unique; all base IPs share one subnet and every alias IP is on
its server's subnet; preloaded failover only for one regular plus one standby server.

``lims[].interface`` is the interface of the LIM's own regular server; on the standby the
alias goes on the standby's interface (``servers[]`` entry of the standby).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mxone_agent.errors import AgentError
from mxone_agent.model import Role

FORMAT = 1
MAX_LIMS_PER_CLUSTER = 10
LIM_NUMBERS = range(1, 125)  # the largest MX-ONE system has 124 LIMs
PRIORITIES = range(100)  # lower value = higher priority to run on the standby
DEFAULT_HEARTBEAT_PORT = 7011

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class FallbackType(StrEnum):
    """How a LIM that runs on the standby goes back to its recovered regular server."""

    MANUAL = "manual"  # only when an operator orders it
    AUTOMATIC = "automatic"  # as soon as the regular server is back and ready


class FailoverBehaviour(StrEnum):
    REGULAR = "regular"  # the standby starts the LIM when it takes over
    PRELOADED = "preloaded"  # the LIM is loaded on both; takeover only unblocks the alias


class Lock(StrEnum):
    """Where an operator pinned a LIM. A lock stops the cluster from moving the LIM."""

    NONE = "none"
    REGULAR = "regular"  # no failover: the standby never starts this LIM
    STANDBY = "standby"  # no fallback: the LIM never leaves (nor starts on) its regular server


@dataclass(frozen=True)
class ConfigProblem:
    """One broken rule: the JSON path of the value and what is wrong with it."""

    path: str  # e.g. "$.lims[1].alias_ip"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(AgentError):
    """A node config breaks one or more rules; ``problems`` lists every one, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        count = len(self.problems)
        head = "1 problem" if count == 1 else f"{count} problems"
        super().__init__(f"{head} in node config:\n" + "\n".join(f"  {p}" for p in self.problems))


@dataclass(frozen=True)
class Timers:
    """Heartbeat interval (seconds) and how many missed heartbeats make a peer dead."""

    interval: float
    misses: int

    @property
    def detection(self) -> float:
        """Seconds of silence after which a peer is declared dead: ``interval * misses``."""
        return self.interval * self.misses


# "mxone" follows the vendor: a preloaded cluster detects a failed server in 30 s, a regular
# cluster takes longer (60 s here). "fast" and "fastest" trade false alarms for speed and
# need a sound network (the seed: a shorter detection time raises the risk of false failover).
TIMER_PRESETS: Mapping[str, Mapping[FailoverBehaviour, Timers]] = {
    "mxone": {
        FailoverBehaviour.REGULAR: Timers(interval=5.0, misses=12),
        FailoverBehaviour.PRELOADED: Timers(interval=5.0, misses=6),
    },
    "fast": {b: Timers(interval=1.0, misses=3) for b in FailoverBehaviour},
    "fastest": {b: Timers(interval=0.1, misses=3) for b in FailoverBehaviour},
}


def timers_for_preset(name: str, failover: FailoverBehaviour | str) -> Timers:
    """The timers of preset ``name`` for a cluster of the given failover behaviour.

    Raises ConfigError for an unknown preset or failover behaviour.
    """
    problems = []
    if name not in TIMER_PRESETS:
        problems.append(ConfigProblem("preset", f"unknown preset {name!r}; use one of "
                                      + ", ".join(TIMER_PRESETS)))
    if failover not in set(FailoverBehaviour):
        problems.append(ConfigProblem("failover", f"{failover!r} is not one of "
                                      + ", ".join(FailoverBehaviour)))
    if problems:
        raise ConfigError(problems)
    return TIMER_PRESETS[name][FailoverBehaviour(failover)]


@dataclass(frozen=True)
class Garp:
    """Gratuitous ARP after an alias moves: a burst, a second burst, then optional refreshes."""

    burst: int = 3
    second_burst_after: float = 2.0
    refresh_interval: float | None = 30.0  # None: no periodic refresh


@dataclass(frozen=True)
class Sync:
    """How this node syncs exchange data with its peers (``sync`` in node.json).

    Times are seconds: a periodic sync every ``interval``; after a failure a retry after
    ``retry_min``, doubling up to ``retry_max``; clocks must agree within ``clock_bound``;
    one transfer may last ``timeout``. ``key`` is the cluster's SSH sync key (sync is off
    while it is absent), ``known_hosts`` pins the peers' host keys, ``user`` logs in on the
    peer, ``xdata_root`` holds the versions here (and, by the forced command, on peers).
    """

    interval: float = 86400.0
    retry_min: float = 10.0
    retry_max: float = 600.0
    clock_bound: float = 2.0
    timeout: float = 3600.0
    key: str = "/etc/mxone/agent/sync.key"
    known_hosts: str = "/etc/mxone/agent/known_hosts"
    user: str = "root"
    xdata_root: str = "/var/opt/mxone/xdata"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Server:
    """A server of the cluster, with its base address (its own, never moved)."""

    name: str
    base_ip: ipaddress.IPv4Address
    prefix: int
    interface: str
    role: Role

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The subnet the base IP is on."""
        if self.base_ip is None or self.prefix is None:  # only while loading a broken file
            return None  # unreachable for a valid Server; keeps the rules simple
        return ipaddress.IPv4Network(f"{self.base_ip}/{self.prefix}", strict=False)


@dataclass(frozen=True)
class ServiceCommands:
    """The commands (argv lists, no shell) that start, stop and query one LIM's service."""

    start: tuple[str, ...]
    stop: tuple[str, ...]
    status: tuple[str, ...]


class CompanionKind(StrEnum):
    MANAGEMENT = "management"  # the management system: never on the standby
    MEDIA_SERVER = "media-server"  # on the standby only when co-located with the LIM
    CSTA = "csta"  # CSTA Phase III web service: never on the standby
    OTHER = "other"  # a site's own service: never on the standby


@dataclass(frozen=True)
class Companion:
    """A service that runs beside a LIM on its regular server (see the module docstring)."""

    name: str
    kind: CompanionKind
    service: ServiceCommands
    colocated: bool = True

    @property
    def runs_on_standby(self) -> bool:
        """Whether the standby starts this companion when it runs the LIM."""
        return self.kind is CompanionKind.MEDIA_SERVER and self.colocated


@dataclass(frozen=True)
class LimConfig:
    """A LIM of the cluster: its regular server, its alias IP and its claim on the standby.

    ``service`` None means the reference Service Node commands (decided by the executor).
    """

    lim: int
    server: str
    alias_ip: ipaddress.IPv4Address
    prefix: int
    interface: str
    priority: int
    lock: Lock = Lock.NONE
    service: ServiceCommands | None = None
    companions: tuple[Companion, ...] = ()


@dataclass(frozen=True)
class NodeConfig:
    """One node's view of its cluster at one config generation. Valid by construction.

    Building a NodeConfig (directly or with :func:`dataclasses.replace`) checks the
    cross-field rules and raises ConfigError naming each broken one.
    """

    generation: int
    node: str
    cluster: str
    fallback: FallbackType
    failover: FailoverBehaviour
    timers: Timers
    servers: tuple[Server, ...]
    lims: tuple[LimConfig, ...]
    split_brain_stop: Role = Role.REGULAR
    garp: Garp = Garp()
    heartbeat_port: int = DEFAULT_HEARTBEAT_PORT
    sync: Sync | None = None  # None: the document had no "sync" object (defaults apply)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fallback", FallbackType(self.fallback))
        object.__setattr__(self, "failover", FailoverBehaviour(self.failover))
        object.__setattr__(self, "split_brain_stop", Role(self.split_brain_stop))
        object.__setattr__(self, "servers", tuple(self.servers))
        object.__setattr__(self, "lims", tuple(self.lims))
        problems = _rule_problems(
            self.node, self.failover, list(enumerate(self.servers)), list(enumerate(self.lims)),
            {s.name for s in self.servers})
        if problems:
            raise ConfigError(problems)

    # ---- lookups a caller may rely on (the config is valid) ----------------------------

    @property
    def local(self) -> Server:
        """This node's own server entry."""
        return self.server(self.node)

    @property
    def role(self) -> Role:
        return self.local.role

    @property
    def standby(self) -> Server:
        return next(s for s in self.servers if s.role is Role.STANDBY)

    @property
    def regulars(self) -> tuple[Server, ...]:
        return tuple(s for s in self.servers if s.role is Role.REGULAR)

    @property
    def detection(self) -> float:
        return self.timers.detection

    @property
    def sync_settings(self) -> Sync:
        """The sync settings in force: the document's, or the defaults when it had none."""
        return self.sync if self.sync is not None else Sync()

    @property
    def preloaded(self) -> bool:
        return self.failover is FailoverBehaviour.PRELOADED

    def server(self, name: str) -> Server:
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(f"no server {name!r} in cluster {self.cluster}")

    def lim(self, number: int) -> LimConfig:
        for lim in self.lims:
            if lim.lim == number:
                return lim
        raise KeyError(f"no LIM {number} in cluster {self.cluster}")

    def lim_of(self, server: str) -> LimConfig | None:
        """The LIM of a regular server; None for the standby."""
        return next((lim for lim in self.lims if lim.server == server), None)

    def with_lock(self, lim: int, lock: Lock, generation: int | None = None) -> NodeConfig:
        """This config with ``lim`` locked as given (and a new generation when given)."""
        lims = tuple(dataclasses.replace(x, lock=Lock(lock)) if x.lim == lim else x
                     for x in self.lims)
        self.lim(lim)  # KeyError for an unknown LIM
        return dataclasses.replace(self, lims=lims,
                                   generation=self.generation if generation is None else generation)

    def to_dict(self) -> dict[str, Any]:
        """The format-1 document of this config; ``load_node_config`` of it gives it back."""
        def lim_dict(lim: LimConfig) -> dict[str, Any]:
            d: dict[str, Any] = {
                "lim": lim.lim, "server": lim.server, "alias_ip": str(lim.alias_ip),
                "prefix": lim.prefix, "interface": lim.interface, "priority": lim.priority,
                "lock": str(lim.lock)}
            if lim.service is not None:
                d["service"] = {"start": list(lim.service.start), "stop": list(lim.service.stop),
                                "status": list(lim.service.status)}
            if lim.companions:
                d["companions"] = [
                    {"name": c.name, "kind": str(c.kind), "colocated": c.colocated,
                     "service": {"start": list(c.service.start), "stop": list(c.service.stop),
                                 "status": list(c.service.status)}} for c in lim.companions]
            return d

        doc: dict[str, Any] = {
            "format": FORMAT,
            "generation": self.generation,
            "node": self.node,
            "cluster": self.cluster,
            "fallback": str(self.fallback),
            "failover": str(self.failover),
            "timers": {"interval": self.timers.interval, "misses": self.timers.misses},
            "split_brain_stop": str(self.split_brain_stop),
            "garp": {"burst": self.garp.burst, "second_burst_after": self.garp.second_burst_after,
                     "refresh_interval": self.garp.refresh_interval},
            "heartbeat_port": self.heartbeat_port,
            "servers": [{"name": s.name, "base_ip": str(s.base_ip), "prefix": s.prefix,
                         "interface": s.interface, "role": str(s.role)} for s in self.servers],
            "lims": [lim_dict(lim) for lim in self.lims],
        }
        if self.sync is not None:
            doc["sync"] = self.sync.to_dict()
        return doc


# ---- loading ------------------------------------------------------------------------------

_TOP_REQUIRED = ("format", "generation", "node", "cluster", "fallback", "failover", "timers",
                 "garp", "heartbeat_port", "servers", "lims")
_TOP_OPTIONAL = ("split_brain_stop", "sync")
_MISSING = object()


def load_node_config(data: Mapping[str, Any]) -> NodeConfig:
    """Validate a parsed node config document and return it as a NodeConfig.

    Raises ConfigError listing every problem (type, range, enum, unknown or missing key,
    cross-field rule), each with its JSON path. A document of another ``format`` is refused
    with that single problem, since its other fields may mean something else.
    """
    r = _Reader()
    top = r.obj(data, "$", _TOP_REQUIRED, _TOP_OPTIONAL)
    if top is None:
        raise ConfigError(r.problems)
    fmt = top.get("format", _MISSING)
    if fmt is not _MISSING and (_kind(fmt) != "integer" or fmt != FORMAT):
        raise ConfigError([ConfigProblem(
            "$.format", f"{fmt!r} is not a supported format (this agent reads format {FORMAT})")])

    generation = r.integer(top, "generation", "$", minimum=1)
    node = r.name(top, "node", "$")
    cluster = r.name(top, "cluster", "$")
    fallback = r.choice(top, "fallback", "$", FallbackType)
    failover = r.choice(top, "failover", "$", FailoverBehaviour)
    split = r.choice(top, "split_brain_stop", "$", Role) if "split_brain_stop" in top \
        else Role.REGULAR
    timers = _timers(r, top.get("timers", _MISSING))
    garp = _garp(r, top.get("garp", _MISSING))
    port = r.integer(top, "heartbeat_port", "$", minimum=1, maximum=65535)
    sync = _sync(r, top["sync"]) if "sync" in top else None

    servers: list[tuple[int, Server]] = []
    names_seen: set[str] = set()
    for i, item in enumerate(r.array(top, "servers", "$")):
        server = _server(r, item, f"$.servers[{i}]", names_seen)
        if server is not None:
            servers.append((i, server))
    lims: list[tuple[int, LimConfig]] = []
    for j, item in enumerate(r.array(top, "lims", "$")):
        lim = _lim(r, item, f"$.lims[{j}]")
        if lim is not None:
            lims.append((j, lim))

    lims_listed = len(top["lims"]) if isinstance(top.get("lims"), list | tuple) else None
    r.problems.extend(_rule_problems(
        node, failover, servers, lims, names_seen, lims_listed=lims_listed,
        servers_listed=isinstance(top.get("servers"), list | tuple)))
    if r.problems:
        raise ConfigError(r.problems)
    assert generation is not None and node is not None and cluster is not None
    assert fallback is not None and failover is not None and split is not None
    assert timers is not None and garp is not None and port is not None
    return NodeConfig(generation=generation, node=node, cluster=cluster, fallback=fallback,
                      failover=failover, timers=timers, servers=tuple(s for _, s in servers),
                      lims=tuple(x for _, x in lims), split_brain_stop=split, garp=garp,
                      heartbeat_port=port, sync=sync)


def _timers(r: _Reader, value: Any) -> Timers | None:
    if value is _MISSING:
        return None
    obj = r.obj(value, "$.timers", ("interval", "misses"))
    if obj is None:
        return None
    interval = r.number(obj, "interval", "$.timers", positive=True)
    misses = r.integer(obj, "misses", "$.timers", minimum=2)
    if interval is None or misses is None:
        return None
    return Timers(interval=interval, misses=misses)


def _garp(r: _Reader, value: Any) -> Garp | None:
    if value is _MISSING:
        return None
    obj = r.obj(value, "$.garp", ("burst", "second_burst_after", "refresh_interval"))
    if obj is None:
        return None
    burst = r.integer(obj, "burst", "$.garp", minimum=1)
    second = r.number(obj, "second_burst_after", "$.garp", positive=True)
    refresh = None
    if obj.get("refresh_interval") is not None:
        refresh = r.number(obj, "refresh_interval", "$.garp", positive=True)
        if refresh is None:
            return None
    if burst is None or second is None:
        return None
    return Garp(burst=burst, second_burst_after=second, refresh_interval=refresh)


_SYNC_SECONDS = ("interval", "retry_min", "retry_max", "clock_bound", "timeout")
_SYNC_PATHS = ("key", "known_hosts", "xdata_root")


def _sync(r: _Reader, value: Any) -> Sync | None:
    """The optional ``sync`` object: every key of :class:`Sync`, checked."""
    path = "$.sync"
    obj = r.obj(value, path, (*_SYNC_SECONDS, *_SYNC_PATHS, "user"))
    if obj is None:
        return None
    before = len(r.problems)
    seconds = {k: r.number(obj, k, path, positive=True) for k in _SYNC_SECONDS}
    paths = {k: r.absolute_path(obj, k, path) for k in _SYNC_PATHS}
    user = r.name(obj, "user", path)
    lo, hi = seconds["retry_min"], seconds["retry_max"]
    if lo is not None and hi is not None and hi < lo:
        r.problem(f"{path}.retry_max", f"{hi:g} is below retry_min {lo:g}; retries back off "
                  "from retry_min up to retry_max")
    if len(r.problems) != before:
        return None
    return Sync(**seconds, **paths, user=user)  # type: ignore[arg-type]


def _server(r: _Reader, value: Any, path: str, names_seen: set[str]) -> Server | None:
    obj = r.obj(value, path, ("name", "base_ip", "prefix", "interface", "role"))
    if obj is None:
        return None
    name = r.name(obj, "name", path)
    if name is not None:
        names_seen.add(name)
    base_ip = r.ipv4(obj, "base_ip", path)
    prefix = r.integer(obj, "prefix", path, minimum=1, maximum=32)
    interface = r.interface(obj, "interface", path)
    role = r.choice(obj, "role", path, Role)
    # A field that is wrong stays None: the cross-field rules skip what they cannot check,
    # and a config with any problem is refused before a NodeConfig is built.
    fields: dict[str, Any] = dict(name=name, base_ip=base_ip, prefix=prefix,
                                  interface=interface, role=role)
    return Server(**fields)


def _lim(r: _Reader, value: Any, path: str) -> LimConfig | None:
    obj = r.obj(value, path, ("lim", "server", "alias_ip", "prefix", "interface", "priority",
                              "lock"), ("service", "companions"))
    if obj is None:
        return None
    number = r.integer(obj, "lim", path, minimum=LIM_NUMBERS.start, maximum=LIM_NUMBERS.stop - 1)
    server = r.name(obj, "server", path)
    alias = r.ipv4(obj, "alias_ip", path)
    prefix = r.integer(obj, "prefix", path, minimum=1, maximum=32)
    interface = r.interface(obj, "interface", path)
    priority = r.integer(obj, "priority", path, minimum=PRIORITIES.start,
                         maximum=PRIORITIES.stop - 1)
    lock = r.choice(obj, "lock", path, Lock)
    service = _service(r, obj["service"], f"{path}.service") if "service" in obj else None
    companions: list[Companion] = []
    for k, item in enumerate(r.array(obj, "companions", path) if "companions" in obj else ()):
        cpath = f"{path}.companions[{k}]"
        cobj = r.obj(item, cpath, ("name", "kind", "service"), ("colocated",))
        if cobj is None:
            continue
        cname = r.name(cobj, "name", cpath)
        kind = r.choice(cobj, "kind", cpath, CompanionKind)
        colocated = cobj.get("colocated", True)
        if not isinstance(colocated, bool):
            r.problem(f"{cpath}.colocated", f"must be true or false, not {_kind(colocated)}")
        csvc = _service(r, cobj["service"], f"{cpath}.service") if "service" in cobj else None
        if cname is not None and kind is not None and csvc is not None and isinstance(
                colocated, bool):
            companions.append(Companion(cname, kind, csvc, colocated))
    # As for servers: wrong fields stay None for the cross-field rules.
    fields: dict[str, Any] = dict(lim=number, server=server, alias_ip=alias, prefix=prefix,
                                  interface=interface, priority=priority, lock=lock,
                                  service=service, companions=tuple(companions))
    return LimConfig(**fields)


def _service(r: _Reader, value: Any, spath: str) -> ServiceCommands | None:
    sobj = r.obj(value, spath, ("start", "stop", "status"))
    if sobj is None:
        return None
    argvs = [r.argv(sobj, key, spath) for key in ("start", "stop", "status")]
    if all(a is not None for a in argvs):
        return ServiceCommands(*argvs)  # type: ignore[arg-type]
    return None


def _kind(value: Any) -> str:
    """The JSON kind of a value, for messages ("string", "integer", "object", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


class _Reader:
    """Reads typed fields out of a parsed document, collecting every problem on the way.

    Each getter returns the typed value, or None when the key is missing (already reported
    by :meth:`obj`) or the value is wrong (reported here).
    """

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message))

    def obj(self, value: Any, path: str, required: Sequence[str],
            optional: Sequence[str] = ()) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.problem(path, f"must be an object, not {_kind(value)}")
            return None
        known = set(required) | set(optional)
        for key in value:
            if key not in known:
                self.problem(f"{path}.{key}", "unknown key (a typo, or a newer format?); "
                             f"known keys: {', '.join(sorted(known))}")
        for key in required:
            if key not in value:
                self.problem(f"{path}.{key}", "missing")
        return value

    def _get(self, obj: Mapping[str, Any], key: str) -> Any:
        return obj.get(key, _MISSING)

    def integer(self, obj: Mapping[str, Any], key: str, parent: str,
                minimum: int | None = None, maximum: int | None = None) -> int | None:
        v = self._get(obj, key)
        if v is _MISSING:
            return None
        path = f"{parent}.{key}"
        if _kind(v) != "integer":
            self.problem(path, f"must be a whole number, not {_kind(v)} {v!r}")
        elif minimum is not None and v < minimum:
            self.problem(path, f"{v} is below the minimum {minimum}")
        elif maximum is not None and v > maximum:
            self.problem(path, f"{v} is above the maximum {maximum}")
        else:
            return int(v)
        return None

    def number(self, obj: Mapping[str, Any], key: str, parent: str,
               positive: bool = False) -> float | None:
        v = self._get(obj, key)
        if v is _MISSING:
            return None
        path = f"{parent}.{key}"
        if _kind(v) not in ("integer", "number"):
            self.problem(path, f"must be a number of seconds, not {_kind(v)} {v!r}")
        elif not math.isfinite(v):
            self.problem(path, f"{v!r} is not a finite number")
        elif positive and v <= 0:
            self.problem(path, f"{v!r} must be greater than 0")
        else:
            return float(v)
        return None

    def _string(self, obj: Mapping[str, Any], key: str, parent: str) -> str | None:
        v = self._get(obj, key)
        if v is _MISSING:
            return None
        if not isinstance(v, str):
            self.problem(f"{parent}.{key}", f"must be a string, not {_kind(v)} {v!r}")
            return None
        return v

    def name(self, obj: Mapping[str, Any], key: str, parent: str) -> str | None:
        v = self._string(obj, key, parent)
        if v is not None and not _NAME.fullmatch(v):
            self.problem(f"{parent}.{key}", f"{v!r} is not a valid name (1-63 letters, digits "
                         "and -, not starting or ending with -)")
            return None
        return v

    def interface(self, obj: Mapping[str, Any], key: str, parent: str) -> str | None:
        v = self._string(obj, key, parent)
        if v is not None and not _IFNAME.fullmatch(v):
            self.problem(f"{parent}.{key}", f"{v!r} is not a network interface name "
                         "(1-15 of A-Z a-z 0-9 _ . -)")
            return None
        return v

    def absolute_path(self, obj: Mapping[str, Any], key: str, parent: str) -> str | None:
        v = self._string(obj, key, parent)
        if v is not None and (not v.startswith("/") or "\0" in v or "\n" in v):
            self.problem(f"{parent}.{key}", f"{v!r} is not an absolute path (e.g. /etc/mxone/...)")
            return None
        return v

    def ipv4(self, obj: Mapping[str, Any], key: str, parent: str) -> ipaddress.IPv4Address | None:
        v = self._string(obj, key, parent)
        if v is None:
            return None
        try:
            return ipaddress.IPv4Address(v)
        except ValueError:
            self.problem(f"{parent}.{key}", f"{v!r} is not an IPv4 address (e.g. 10.0.2.11)")
            return None

    def choice(self, obj: Mapping[str, Any], key: str, parent: str, enum: type[StrEnum]) -> Any:
        v = self._get(obj, key)
        if v is _MISSING:
            return None
        words = [str(e) for e in enum]
        if not isinstance(v, str) or v not in words:
            self.problem(f"{parent}.{key}", f"{v!r} is not one of {', '.join(words)}")
            return None
        return enum(v)

    def array(self, obj: Mapping[str, Any], key: str, parent: str,
              quiet: bool = False) -> list[Any]:
        v = self._get(obj, key)
        if v is _MISSING:
            return []
        if not isinstance(v, list | tuple):
            if not quiet:
                self.problem(f"{parent}.{key}", f"must be an array, not {_kind(v)}")
            return []
        return list(v)

    def argv(self, obj: Mapping[str, Any], key: str, parent: str) -> tuple[str, ...] | None:
        v = self._get(obj, key)
        if v is _MISSING:
            return None
        path = f"{parent}.{key}"
        if not isinstance(v, list | tuple) or not v:
            self.problem(path, "must be a non-empty array of strings (a command and its "
                         "arguments, no shell)")
            return None
        bad = [i for i, a in enumerate(v) if not isinstance(a, str) or not a]
        for i in bad:
            self.problem(f"{path}[{i}]", f"must be a non-empty string, not {_kind(v[i])} "
                         f"{v[i]!r}")
        return None if bad else tuple(v)


# ---- cross-field rules --------------------------------------------------------------------

def _rule_problems(node: str | None, failover: FailoverBehaviour | None,
                   servers: Sequence[tuple[int, Server]], lims: Sequence[tuple[int, LimConfig]],
                   names_seen: set[str], lims_listed: int | None = -1,
                   servers_listed: bool = True) -> list[ConfigProblem]:
    """Every cross-field rule broken by the servers and LIMs (given with their indexes).

    When loading, a field that was wrong (``node`` and ``failover`` included) is None and
    every rule that needs it is skipped (its problem is already reported). ``names_seen``
    holds every server name in the document, so a reference to a server whose entry is
    broken is not called unknown.
    ``lims_listed`` is the number of entries in ``lims`` of the document (-1: count
    ``lims``; None: the document has no list of LIMs, so their number is not checked);
    ``servers_listed`` False: the document has no list of servers.
    """
    out: list[ConfigProblem] = []

    def problem(path: str, message: str) -> None:
        out.append(ConfigProblem(path, message))

    complete_servers = servers_listed and len(servers) == len(names_seen) and all(
        s.name is not None and s.role is not None for _, s in servers)
    if node is not None and servers_listed and node not in names_seen:
        problem("$.node", f"{node!r} is not one of the servers ({', '.join(sorted(names_seen))})")

    by_name: dict[str, Server] = {}
    for i, s in servers:
        if s.name is None:
            continue
        if s.name in by_name:
            problem(f"$.servers[{i}].name", f"server name {s.name!r} is used twice")
        by_name.setdefault(s.name, s)
    standbys = [s.name for _, s in servers if s.role is Role.STANDBY]
    if len(standbys) > 1:
        problem("$.servers", f"{len(standbys)} standby servers ({', '.join(map(str, standbys))}); "
                "a cluster has exactly one")
    if complete_servers and not standbys:
        problem("$.servers", "no standby server; a cluster has exactly one")
    if complete_servers and not any(s.role is Role.REGULAR for _, s in servers):
        problem("$.servers", "no regular server; a cluster has at least one")

    addresses: dict[ipaddress.IPv4Address, str] = {}
    addressed = [(i, s) for i, s in servers if s.base_ip is not None and s.prefix is not None]
    first = addressed[0][1] if addressed else None
    for i, s in addressed:
        path = f"$.servers[{i}].base_ip"
        if s.base_ip in addresses:
            problem(path, f"{s.base_ip} is also the {addresses[s.base_ip]}")
        addresses.setdefault(s.base_ip, f"base IP of server {s.name}")
        if s.prefix < 31 and s.base_ip in (s.network.network_address, s.network.broadcast_address):
            problem(path, f"{s.base_ip}/{s.prefix} is the network or broadcast address")
        if first is not None and s.network != first.network:
            problem(path, f"{s.base_ip}/{s.prefix} is not on the cluster subnet {first.network} "
                    f"(of server {first.name}); all servers of a cluster share one subnet")

    count = len(lims) if lims_listed is None or lims_listed < 0 else lims_listed
    if lims_listed is None:
        pass
    elif count == 0:
        problem("$.lims", "no LIM; a cluster has at least one")
    elif count > MAX_LIMS_PER_CLUSTER:
        problem("$.lims", f"{count} LIMs; a cluster can have up to {MAX_LIMS_PER_CLUSTER}")

    numbers: set[int] = set()
    lim_of_server: dict[str, int | None] = {}
    for j, lim in lims:
        path = f"$.lims[{j}]"
        if lim.lim is not None:
            if lim.lim in numbers:
                problem(f"{path}.lim", f"LIM {lim.lim} is listed twice")
            numbers.add(lim.lim)
        server = by_name.get(lim.server) if lim.server is not None else None
        if lim.server is None:
            pass
        elif lim.server not in names_seen and servers_listed:
            problem(f"{path}.server", f"{lim.server!r} is not one of the servers")
        elif server is not None and server.role is Role.STANDBY:
            problem(f"{path}.server", f"{lim.server} is the standby server; a LIM belongs to a "
                    "regular server")
        elif lim.server in lim_of_server:
            problem(f"{path}.server", f"server {lim.server} already runs LIM "
                    f"{lim_of_server[lim.server]}; a regular server runs one LIM")
        if lim.server is not None:
            lim_of_server.setdefault(lim.server, lim.lim)

        if lim.alias_ip is None:
            continue
        apath = f"{path}.alias_ip"
        if lim.alias_ip in addresses:
            problem(apath, f"{lim.alias_ip} is also the {addresses[lim.alias_ip]}")
        addresses.setdefault(lim.alias_ip, f"alias IP of LIM {lim.lim}")
        if server is not None and server.network is not None and lim.prefix is not None:
            alias_net = ipaddress.IPv4Network(f"{lim.alias_ip}/{lim.prefix}", strict=False)
            if alias_net != server.network:
                problem(apath, f"{lim.alias_ip}/{lim.prefix} is not on the subnet "
                        f"{server.network} of server {server.name}")
    if lims_listed is not None and len(lims) == count and all(
            lim.server is not None for _, lim in lims):
        for i, s in servers:
            if s.role is Role.REGULAR and s.name is not None and s.name not in lim_of_server:
                problem(f"$.servers[{i}]", f"regular server {s.name} runs no LIM; every "
                        "regular server of a cluster runs one")

    if failover is FailoverBehaviour.PRELOADED:
        regulars = [s.name for _, s in servers if s.role is Role.REGULAR]
        if len(regulars) > 1 or count > 1:
            problem("$.failover", f"preloaded failover is only for one regular and one standby "
                    f"server; this cluster has {len(regulars)} regular servers and {count} LIMs")
    return out
