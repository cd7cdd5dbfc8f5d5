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
               "key": SYNC_KEY,                     # :class:`Sync` when absent (paths
               "known_hosts": KNOWN_HOSTS,          # in :mod:`mxone_agent.paths`);
               "user": "root", "xdata_root": XDATA},                    # all keys needed
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

The cross-field rules are in :mod:`mxone_agent.config_rules`, the parts in
:mod:`mxone_agent.config_types`, the words and limits shared with the maintenance tool in
:mod:`mxone_agent.contract`, the JSON reader in :mod:`mxone_agent.jsonreader`; this module
puts them together and re-exports their names, so ``config.NodeConfig``, ``config.Lock``,
``config.load_node_config`` and friends are all reached from here.

``lims[].interface`` is the interface of the LIM's own regular server; on the standby the
alias goes on the standby's interface (``servers[]`` entry of the standby).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from typing import Any

from mxone_agent import jsonreader
from mxone_agent.config_rules import rule_problems
from mxone_agent.config_types import (
    Companion,
    CompanionKind,
    ConfigError,
    Garp,
    LimConfig,
    Server,
    ServiceCommands,
    Sync,
    timers_for_preset,
)
from mxone_agent.contract import (
    DEFAULT_HEARTBEAT_PORT,
    FORMAT,
    LIM_NUMBERS,
    MAX_LIMS_PER_CLUSTER,
    PRIORITIES,
    TIMER_PRESETS,
    FailoverBehaviour,
    FallbackType,
    Lock,
    Role,
    Timers,
)
from mxone_agent.jsonreader import MISSING, ConfigProblem, Reader

__all__ = [
    "DEFAULT_HEARTBEAT_PORT", "FORMAT", "LIM_NUMBERS", "MAX_LIMS_PER_CLUSTER", "PRIORITIES",
    "TIMER_PRESETS", "Companion", "CompanionKind", "ConfigError", "ConfigProblem",
    "FailoverBehaviour", "FallbackType", "Garp", "LimConfig", "Lock", "NodeConfig", "Role",
    "Server", "ServiceCommands", "Sync", "Timers", "load_node_config", "timers_for_preset",
]


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
    garp: Garp = dataclasses.field(default_factory=Garp)
    heartbeat_port: int = DEFAULT_HEARTBEAT_PORT
    sync: Sync | None = None  # None: the document had no "sync" object (defaults apply)
    # True only from load_node_config, which has just checked the same rules on the same
    # values (with every other problem of the document): the rules run once per load.
    rules_checked: InitVar[bool] = False

    def __post_init__(self, rules_checked: bool) -> None:
        object.__setattr__(self, "fallback", FallbackType(self.fallback))
        object.__setattr__(self, "failover", FailoverBehaviour(self.failover))
        object.__setattr__(self, "split_brain_stop", Role(self.split_brain_stop))
        object.__setattr__(self, "servers", tuple(self.servers))
        object.__setattr__(self, "lims", tuple(self.lims))
        if rules_checked:
            return
        problems = rule_problems(
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


def load_node_config(data: Mapping[str, Any]) -> NodeConfig:
    """Validate a parsed node config document and return it as a NodeConfig.

    Raises ConfigError listing every problem (type, range, enum, unknown or missing key,
    cross-field rule), each with its JSON path. A document of another ``format`` is refused
    with that single problem, since its other fields may mean something else.
    """
    r = Reader()
    top = r.obj(data, "$", _TOP_REQUIRED, _TOP_OPTIONAL)
    if top is None:
        raise ConfigError(r.problems)
    fmt = top.get("format", MISSING)
    if fmt is not MISSING and (jsonreader.kind(fmt) != "integer" or fmt != FORMAT):
        raise ConfigError([ConfigProblem(
            "$.format", f"{fmt!r} is not a supported format (this agent reads format {FORMAT})")])

    generation = r.integer(top, "generation", "$", minimum=1)
    node = r.name(top, "node", "$")
    cluster = r.name(top, "cluster", "$")
    fallback = r.choice(top, "fallback", "$", FallbackType)
    failover = r.choice(top, "failover", "$", FailoverBehaviour)
    split = r.choice(top, "split_brain_stop", "$", Role) if "split_brain_stop" in top \
        else Role.REGULAR
    timers = _timers(r, top.get("timers", MISSING))
    garp = _garp(r, top.get("garp", MISSING))
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
    r.problems.extend(rule_problems(
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
                      heartbeat_port=port, sync=sync, rules_checked=True)


def _timers(r: Reader, value: Any) -> Timers | None:
    if value is MISSING:
        return None
    obj = r.obj(value, "$.timers", ("interval", "misses"))
    if obj is None:
        return None
    interval = r.number(obj, "interval", "$.timers", positive=True)
    misses = r.integer(obj, "misses", "$.timers", minimum=2)
    if interval is None or misses is None:
        return None
    return Timers(interval=interval, misses=misses)


def _garp(r: Reader, value: Any) -> Garp | None:
    if value is MISSING:
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


def _sync(r: Reader, value: Any) -> Sync | None:
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


def _server(r: Reader, value: Any, path: str, names_seen: set[str]) -> Server | None:
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
    fields: dict[str, Any] = {"name": name, "base_ip": base_ip, "prefix": prefix,
                              "interface": interface, "role": role}
    return Server(**fields)


def _lim(r: Reader, value: Any, path: str) -> LimConfig | None:
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
            r.problem(f"{cpath}.colocated", f"must be true or false, not {jsonreader.kind(colocated)}")
        csvc = _service(r, cobj["service"], f"{cpath}.service") if "service" in cobj else None
        if cname is not None and kind is not None and csvc is not None and isinstance(
                colocated, bool):
            companions.append(Companion(cname, kind, csvc, colocated))
    # As for servers: wrong fields stay None for the cross-field rules.
    fields: dict[str, Any] = {"lim": number, "server": server, "alias_ip": alias,
                              "prefix": prefix, "interface": interface, "priority": priority,
                              "lock": lock, "service": service, "companions": tuple(companions)}
    return LimConfig(**fields)


def _service(r: Reader, value: Any, spath: str) -> ServiceCommands | None:
    sobj = r.obj(value, spath, ("start", "stop", "status"))
    if sobj is None:
        return None
    argvs = [r.argv(sobj, key, spath) for key in ("start", "stop", "status")]
    if all(a is not None for a in argvs):
        return ServiceCommands(*argvs)  # type: ignore[arg-type]
    return None

