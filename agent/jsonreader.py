"""A strict reader of parsed JSON documents that collects every problem on the way.

Each getter of :class:`Reader` returns the typed value, or None when the key is missing
(reported once by :meth:`Reader.obj`) or the value is wrong (reported by the getter), so
a loader reads a whole document and refuses it with every problem at once, each with its
JSON path (``$.lims[1].alias_ip``). Nothing here knows what the document means.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from mxone_agent import contract

E = TypeVar("E", bound=StrEnum)
MISSING: Any = object()  # the value of a key that is not there


@dataclass(frozen=True)
class ConfigProblem:
    """One broken rule: the JSON path of the value and what is wrong with it."""

    path: str  # e.g. "$.lims[1].alias_ip"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"



def kind(value: Any) -> str:
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


class Reader:
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
            self.problem(path, f"must be an object, not {kind(value)}")
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
        return obj.get(key, MISSING)

    def integer(self, obj: Mapping[str, Any], key: str, parent: str,
                minimum: int | None = None, maximum: int | None = None) -> int | None:
        v = self._get(obj, key)
        if v is MISSING:
            return None
        path = f"{parent}.{key}"
        if kind(v) != "integer":
            self.problem(path, f"must be a whole number, not {kind(v)} {v!r}")
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
        if v is MISSING:
            return None
        path = f"{parent}.{key}"
        if kind(v) not in ("integer", "number"):
            self.problem(path, f"must be a number of seconds, not {kind(v)} {v!r}")
        elif not math.isfinite(v):
            self.problem(path, f"{v!r} is not a finite number")
        elif positive and v <= 0:
            self.problem(path, f"{v!r} must be greater than 0")
        else:
            return float(v)
        return None

    def _string(self, obj: Mapping[str, Any], key: str, parent: str) -> str | None:
        v = self._get(obj, key)
        if v is MISSING:
            return None
        if not isinstance(v, str):
            self.problem(f"{parent}.{key}", f"must be a string, not {kind(v)} {v!r}")
            return None
        return v

    def _matching(self, obj: Mapping[str, Any], key: str, parent: str,
                  ok: Callable[[str], bool], what: str) -> str | None:
        """The string at ``key`` when ``ok`` accepts it; else the problem "``v`` ``what``"."""
        v = self._string(obj, key, parent)
        if v is not None and not ok(v):
            self.problem(f"{parent}.{key}", f"{v!r} {what}")
            return None
        return v

    def name(self, obj: Mapping[str, Any], key: str, parent: str) -> str | None:
        return self._matching(obj, key, parent, contract.is_name, "is not a valid name (1-63 "
                              "letters, digits and -, not starting or ending with -)")

    def interface(self, obj: Mapping[str, Any], key: str, parent: str) -> str | None:
        v = self._string(obj, key, parent)
        if v is not None and (problem := contract.interface_name_problem(v)) is not None:
            self.problem(f"{parent}.{key}", f"{v!r} is {problem}")
            return None
        return v

    def absolute_path(self, obj: Mapping[str, Any], key: str, parent: str) -> str | None:
        return self._matching(obj, key, parent, _is_absolute_path,
                              "is not an absolute path (e.g. /etc/mxone/...)")

    def ipv4(self, obj: Mapping[str, Any], key: str, parent: str) -> ipaddress.IPv4Address | None:
        v = self._string(obj, key, parent)
        if v is None:
            return None
        try:
            return ipaddress.IPv4Address(v)
        except ValueError:
            self.problem(f"{parent}.{key}", f"{v!r} is not an IPv4 address (e.g. 10.0.2.11)")
            return None

    def choice(self, obj: Mapping[str, Any], key: str, parent: str, enum: type[E]) -> E | None:
        v = self._get(obj, key)
        if v is MISSING:
            return None
        words = [str(e) for e in enum]
        if not isinstance(v, str) or v not in words:
            self.problem(f"{parent}.{key}", f"{v!r} is not one of {', '.join(words)}")
            return None
        return enum(v)

    def array(self, obj: Mapping[str, Any], key: str, parent: str,
              quiet: bool = False) -> list[Any]:
        v = self._get(obj, key)
        if v is MISSING:
            return []
        if not isinstance(v, list | tuple):
            if not quiet:
                self.problem(f"{parent}.{key}", f"must be an array, not {kind(v)}")
            return []
        return list(v)

    def argv(self, obj: Mapping[str, Any], key: str, parent: str) -> tuple[str, ...] | None:
        v = self._get(obj, key)
        if v is MISSING:
            return None
        path = f"{parent}.{key}"
        if not isinstance(v, list | tuple) or not v:
            self.problem(path, "must be a non-empty array of strings (a command and its "
                         "arguments, no shell)")
            return None
        bad = [i for i, a in enumerate(v) if not isinstance(a, str) or not a]
        for i in bad:
            self.problem(f"{path}[{i}]", f"must be a non-empty string, not {kind(v[i])} "
                         f"{v[i]!r}")
        return None if bad else tuple(v)



def _is_absolute_path(value: str) -> bool:
    return value.startswith("/") and "\0" not in value and "\n" not in value
