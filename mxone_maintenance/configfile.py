"""The system config file on LIM 1: a small TOML file, read strictly and written stably.

``parse`` turns text into a :class:`System` or raises :class:`ConfigFileError` listing
every syntax or shape problem with its line (and column, for syntax). Unknown keys are
refused, never ignored: a misspelt ``priorty`` must not silently become the default.
Values are taken as written; whether they make sense is for :mod:`mxone_maintenance.rules`.

``dump`` writes a system back in one canonical layout, so that ``parse(dump(s)) == s``
for every system whose values have the types the model declares.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mxone_maintenance.errors import ConfigFileError
from mxone_maintenance.model import Cluster, ClusterLim, Server, System, Timers
from mxone_maintenance.rules import Loc, Violation

_TOP = {"generation", "server", "cluster"}
_SERVER = {"name", "base_ip", "interface", "role", "lim"}
_SERVER_REQUIRED = ("name", "base_ip", "role")
_CLUSTER = {"name", "standby", "fallback", "failover", "timers", "split_brain_stop", "lim"}
_CLUSTER_REQUIRED = ("name", "standby")  # no [[cluster.lim]]: the rule cluster-not-empty says so
_LIM = {"lim", "alias_ip", "priority", "lock"}
_LIM_REQUIRED = ("lim", "alias_ip")
_TIMERS = {"interval", "misses"}

HEADER = """\
# MX-ONE server redundancy: the system as LIM 1 knows it.
# Written by mxone_maintenance. To change it by hand, edit a copy and check it first with
#   mxone_maintenance validate FILE
"""


class Locator:
    """Finds the line of a field in the file text, by the tables and keys on each line."""

    _header = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
    _key = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[Loc, int] = {}
        counts: dict[str, int] = {}
        path: Loc = ()
        for lineno, line in enumerate(text.splitlines(), start=1):
            if m := self._header.match(line):
                name = m.group(2)
                if name == "server" or name == "cluster":
                    counts[name] = counts.get(name, -1) + 1
                    if name == "cluster":
                        counts.pop("cluster.lim", None)  # LIM tables count per cluster
                    path = (name, counts[name])
                elif name == "cluster.lim":
                    counts[name] = counts.get(name, -1) + 1
                    path = ("cluster", counts.get("cluster", 0), "lim", counts[name])
                elif name == "cluster.timers":
                    path = ("cluster", counts.get("cluster", 0), "timers")
                else:
                    path = (name,)
                self.lines.setdefault(path, lineno)
            elif m := self._key.match(line):
                self.lines.setdefault((*path, m.group(1)), lineno)

    def line_of(self, loc: Loc) -> int | None:
        """The line of the field, or of the nearest enclosing table that has one."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None


def parse(text: str, path: str = "<config>") -> System:
    """Read a system from config file text.

    Raises ConfigFileError with every problem found: a syntax error (line and column),
    or all shape problems (unknown key, missing key, wrong kind of table), each with its line.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(path, [_syntax_message(path, str(exc))]) from None
    locator = Locator(text)
    problems: list[str] = []

    def problem(loc: Loc, message: str) -> None:
        line = locator.line_of(loc)
        problems.append(f"{path}:{line}: {message}" if line else f"{path}: {message}")

    _unknown(data, _TOP, (), "at the top level", problem)
    servers = _tables(data, "server", (), problem)
    clusters = _tables(data, "cluster", (), problem)
    for i, s in enumerate(servers):
        _unknown(s, _SERVER, ("server", i), f"in [[server]] {_label(s, i)}", problem)
        _required(s, _SERVER_REQUIRED, ("server", i), f"[[server]] {_label(s, i)}", problem)
    for i, c in enumerate(clusters):
        where = f"[[cluster]] {_label(c, i)}"
        _unknown(c, _CLUSTER, ("cluster", i), f"in {where}", problem)
        _required(c, _CLUSTER_REQUIRED, ("cluster", i), where, problem)
        for j, lim in enumerate(_tables(c, "lim", ("cluster", i), problem)):
            lwhere = f"[[cluster.lim]] #{j + 1} of cluster {_label(c, i)}"
            _unknown(lim, _LIM, ("cluster", i, "lim", j), f"in {lwhere}", problem)
            _required(lim, _LIM_REQUIRED, ("cluster", i, "lim", j), lwhere, problem)
        timers = c.get("timers", "mxone")
        if isinstance(timers, dict):
            _unknown(timers, _TIMERS, ("cluster", i, "timers"), f"in timers of {where}", problem)
            _required(timers, tuple(_TIMERS), ("cluster", i, "timers"), f"timers of {where}", problem)
        elif not isinstance(timers, str):
            problem(("cluster", i, "timers"), f"timers of {where} must be a preset name or "
                    "a table { interval = SECONDS, misses = COUNT }")
        standby = c.get("standby", "")
        if not isinstance(standby, str) and not (
            isinstance(standby, list) and all(isinstance(x, str) for x in standby)
        ):
            problem(("cluster", i, "standby"), f"standby of {where} must be a server name")
    if problems:
        raise ConfigFileError(path, problems)
    return System(
        generation=data.get("generation", 1),
        servers=tuple(_server(s) for s in servers),
        clusters=tuple(_cluster(c) for c in clusters),
    )


def _syntax_message(path: str, message: str) -> str:
    m = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if m:
        return f"{path}:{m.group(1)}:{m.group(2)}: syntax error: {message[: m.start()].strip()}"
    m = re.search(r"\(at end of document\)", message)
    if m:
        return f"{path}: syntax error at end of file: {message[: m.start()].strip()}"
    return f"{path}: syntax error: {message}"


def _label(table: Mapping[str, Any], index: int) -> str:
    name = table.get("name")
    return f'"{name}"' if isinstance(name, str) else f"#{index + 1}"


def _unknown(table: Mapping[str, Any], allowed: set[str], loc: Loc, where: str, problem: Any) -> None:
    for key in table:
        if key not in allowed:
            problem((*loc, key), f'unknown key "{key}" {where} '
                    f"(known keys: {', '.join(sorted(allowed))})")


def _required(table: Mapping[str, Any], keys: Sequence[str], loc: Loc, where: str, problem: Any) -> None:
    for key in keys:
        if key not in table:
            problem(loc, f'{where} has no "{key}"')


def _tables(data: Mapping[str, Any], key: str, loc: Loc, problem: Any) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problem((*loc, key), f'"{key}" must be written as [[{".".join([*map(str, loc[:1]), key])}]] tables')
        return []
    return value


# A key the file leaves out takes the model's default (one place for every default).

def _server(s: Mapping[str, Any]) -> Server:
    return Server(**{key: s[key] for key in _SERVER if key in s})


def _cluster(c: Mapping[str, Any]) -> Cluster:
    standby = c["standby"]
    fields = {key: c[key] for key in ("fallback", "failover", "split_brain_stop") if key in c}
    if isinstance(timers := c.get("timers"), str):
        fields["timers"] = Timers(preset=timers)
    elif timers is not None:
        fields["timers"] = Timers.explicit(timers["interval"], timers["misses"])
    return Cluster(
        name=c["name"],
        standby=(standby,) if isinstance(standby, str) else tuple(standby),
        lims=tuple(ClusterLim(**{key: x[key] for key in _LIM if key in x})
                   for x in c.get("lim", [])),
        **fields,
    )


# ---- writing ---------------------------------------------------------------------------

def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to the config file")


def _pairs(pairs: Iterable[tuple[str, object]]) -> list[str]:
    return [f"{k} = {_value(v)}" for k, v in pairs if v is not None]


def dump(system: System) -> str:
    """The config file text for a system, in canonical layout."""
    out = [HEADER, f"generation = {_value(system.generation)}", ""]
    for s in system.servers:
        out += ["[[server]]", *_pairs([("name", s.name), ("base_ip", s.base_ip),
                                         ("interface", s.interface), ("role", s.role),
                                         ("lim", s.lim)]), ""]
    for c in system.clusters:
        standby: object = c.standby[0] if len(c.standby) == 1 else list(c.standby)
        t = c.timers
        timers = (
            _value(t.preset) if t.preset is not None
            else "{ " + ", ".join(_pairs([("interval", t.interval), ("misses", t.misses)])) + " }"
        )
        out += ["[[cluster]]", *_pairs([("name", c.name), ("standby", standby),
                                          ("fallback", c.fallback), ("failover", c.failover)]),
                f"timers = {timers}",
                *_pairs([("split_brain_stop", c.split_brain_stop)]), ""]
        for cl in c.lims:
            out += ["[[cluster.lim]]", *_pairs([("lim", cl.lim), ("alias_ip", cl.alias_ip),
                                                  ("priority", cl.priority), ("lock", cl.lock)]), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def describe(violations: Sequence[Violation], text: str, path: str) -> list[str]:
    """One line per violation, prefixed with the file and line where it can be found."""
    locator = Locator(text)
    lines = []
    for v in violations:
        line = locator.line_of(v.loc)
        lines.append(f"{path}:{line}: {v}" if line else f"{path}: {v}")
    return lines
