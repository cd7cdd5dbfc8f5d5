"""The system config file on LIM 1: a small TOML file, read strictly and written stably.

``parse`` turns text into a :class:`System` or raises :class:`ConfigFileError` listing
every syntax or shape problem with its line (and column, for syntax). Unknown keys are
refused, never ignored: a misspelt ``priorty`` must not silently become the default.
Values are taken as written; whether they make sense is for :mod:`mxone_maintenance.rules`.

``dump`` writes a system in one canonical layout, so that ``parse(dump(s)) == s`` for
every system whose values have the types the model declares. ``update`` changes a file
that exists (perhaps written or commented by an administrator) to hold a new system,
keeping its comments, blank lines and order; it too always reads back as the system.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Comment, InlineTable, Item, Table, Whitespace

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


# ---- rewriting a file that exists: change only what changed ------------------------------

def update(text: str, system: System) -> str:
    """The config file ``text`` changed to hold ``system``, as written where it can be.

    A server, cluster or LIM table is matched by its name or LIM number. A value that
    changed is replaced in place (a comment on its line stays); one that did not is left as
    written, also when the file leaves it out for its default. A new table is added in the
    canonical layout, after the tables of its kind; a removed one goes with the comment
    lines right above it (except above the first of its kind: those stay). Every other
    comment, blank line, key order and spelling is kept, and tables keep the file's order
    unless the system orders them otherwise.

    The result always reads back as ``system``: a file in a form this writer does not edit
    (servers or LIMs as an array of inline tables, say), or an edit that would not read
    back as ``system``, gives the canonical layout of :func:`dump` instead.
    """
    try:
        old = parse(text)
        doc = tomlkit.parse(text)
        if old.generation != system.generation:
            doc["generation"] = system.generation
        _update_tables(doc, "server", "name", {s.name: s for s in old.servers},
                       [(s.name, s) for s in system.servers], _update_server, _server_table)
        _update_tables(doc, "cluster", "name", {c.name: c for c in old.clusters},
                       [(c.name, c) for c in system.clusters], _update_cluster, _cluster_table)
        new_text = tomlkit.dumps(doc)
        if parse(new_text) == system:
            return new_text
    except Exception:  # any layout this writer cannot edit: the canonical one
        pass
    return dump(system)


_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")


class _Unedited(Exception):
    """The file holds a table in a form :func:`update` does not edit."""


def _update_tables(parent: Container | Table, key: str, id_key: str, old: Mapping[Any, Any],
                   new: Sequence[tuple[Any, Any]], edit: Any, make: Any) -> None:
    """Make the array of tables ``parent[key]`` hold ``new`` (id, value) in that order.

    Comment lines between two tables belong to the one below (tomlkit keeps them at the
    end of the one above): they are moved into that table's header, and those after the
    last table (what follows the section) go back after the last table at the end.
    """
    aot = parent.get(key)
    if aot is None:
        if not new:
            return
        aot = tomlkit.aot()
        parent.append(key, aot)
    if not isinstance(aot, AoT) or any(not isinstance(t, Table) for t in aot):
        raise _Unedited(key)
    tables: list[Table] = list(aot)
    tails = [_detach_tail(t) for t in tables]
    headers = {id(t): "".join(i.as_string() for i in tail)
               for t, tail in zip(tables[1:], tails, strict=False)}
    by_id = {t.get(id_key): t for t in tables}
    final: list[Table] = []
    for ident, value in new:
        table = by_id.get(ident)
        if table is None:
            table = make(value)
        else:
            edit(table, old[ident], value)
        final.append(table)
    if not final:
        del parent[key]
        _body(parent).extend((None, item) for item in (tails[-1] if tails else []))
        return
    if [id(t) for t in final] != [id(t) for t in tables]:
        del aot[:]
        for table in final:
            aot.append(table)
    for position, table in enumerate(final):
        header = headers.get(id(table), "\n")
        if position == 0 and tables:  # in the first table's place, right below what precedes
            if table is tables[0]:
                continue
            header = _BLANK_LINES.sub("", header)
        table.trivia.indent = header + table.trivia.indent
    _attach_tail(final[-1], tails[-1] if tails else [])


def _body(container: Container | Table) -> list[tuple[Any, Item]]:
    return container.value.body if isinstance(container, Table) else container.body


def _leaf(table: Table) -> Table:
    """The table whose end is the end of ``table`` in the file (a cluster's last LIM)."""
    body = table.value.body
    if body and isinstance(body[-1][1], AoT) and len(body[-1][1]) > 0:
        last = body[-1][1][-1]
        if isinstance(last, Table):
            return _leaf(last)
    return table


def _detach_tail(table: Table) -> list[Item]:
    """Take the blank and comment lines off the end of ``table`` (they precede what follows)."""
    body = _leaf(table).value.body
    tail: list[Item] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], Whitespace | Comment):
        tail.insert(0, body.pop()[1])
    return tail


def _attach_tail(table: Table, items: Sequence[Item]) -> None:
    _leaf(table).value.body.extend((None, item) for item in items)


def _toml(value: object) -> object:
    if isinstance(value, Timers):
        if value.preset is not None:
            return value.preset
        inline: InlineTable = tomlkit.inline_table()
        inline.update({k: v for k, v in (("interval", value.interval), ("misses", value.misses))
                       if v is not None})
        return inline
    if isinstance(value, tuple):
        return value[0] if len(value) == 1 else list(value)
    return value


def _edit(table: Table, old: object, new: object, fields: Sequence[str]) -> None:
    """Replace in ``table`` the values of ``fields`` that differ between ``old`` and ``new``."""
    for f in fields:
        value = getattr(new, f)
        if getattr(old, f) == value:
            continue
        if value is None:
            if f in table:
                del table[f]
        elif f in table:
            table[f] = _toml(value)
        else:  # after the field before it in the canonical order (the name comes first)
            before = next(p for p in reversed(fields[:fields.index(f)]) if p in table)
            table.value._insert_after(before, f, _toml(value))


def _new_table(pairs: Iterable[tuple[str, object]]) -> Table:
    table = tomlkit.table()
    for k, v in pairs:
        if v is not None:
            table.add(k, _toml(v))
    return table


_SERVER_FIELDS = ("name", "base_ip", "interface", "role", "lim")
_CLUSTER_FIELDS = ("name", "standby", "fallback", "failover", "timers", "split_brain_stop")
_LIM_FIELDS = ("lim", "alias_ip", "priority", "lock")


def _update_server(table: Table, old: Server, new: Server) -> None:
    _edit(table, old, new, _SERVER_FIELDS)


def _server_table(s: Server) -> Table:
    return _new_table((f, getattr(s, f)) for f in _SERVER_FIELDS)


def _update_lim(table: Table, old: ClusterLim, new: ClusterLim) -> None:
    _edit(table, old, new, _LIM_FIELDS)


def _lim_table(cl: ClusterLim) -> Table:
    return _new_table((f, getattr(cl, f)) for f in _LIM_FIELDS)


def _update_cluster(table: Table, old: Cluster, new: Cluster) -> None:
    _edit(table, old, new, _CLUSTER_FIELDS)
    _update_tables(table, "lim", "lim", {cl.lim: cl for cl in old.lims},
                   [(cl.lim, cl) for cl in new.lims], _update_lim, _lim_table)


def _cluster_table(c: Cluster) -> Table:
    table = _new_table((f, getattr(c, f)) for f in _CLUSTER_FIELDS)
    _update_tables(table, "lim", "lim", {}, [(cl.lim, cl) for cl in c.lims], _update_lim, _lim_table)
    return table


def describe(violations: Sequence[Violation], text: str, path: str) -> list[str]:
    """One line per violation, prefixed with the file and line where it can be found."""
    locator = Locator(text)
    lines = []
    for v in violations:
        line = locator.line_of(v.loc)
        lines.append(f"{path}:{line}: {v}" if line else f"{path}: {v}")
    return lines
