"""The one exception root of the maintenance tool, and its direct kinds.

Every error that may reach an operator derives from :class:`MxoneError` and carries a
message that names the field, the value and the rule; the CLI prints it as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class MxoneError(Exception):
    """Root of every error the maintenance tool raises on purpose."""


class ConfigFileError(MxoneError):
    """The system config file cannot be read or does not have the expected shape.

    ``problems`` holds one line per problem, each starting with ``FILE:LINE[:COLUMN]``
    where a position is known.
    """

    def __init__(self, path: str, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


# A place in the config file as indexes into its tables: ("cluster", 0, "lim", 1, "alias_ip").
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Violation:
    """One broken rule at one field.

    ``field`` names the field the way the config file does (``cluster[north].lim[2].alias_ip``);
    ``loc`` is the same place as indexes into the file's tables, for finding its line.
    """

    rule: str
    field: str
    value: object
    detail: str
    rule_text: str
    loc: Loc = ()

    def __str__(self) -> str:
        return f"{self.field} = {_show(self.value)}: {self.detail} (rule {self.rule}: {self.rule_text})"


def _show(value: object) -> str:
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


class OperationError(MxoneError):
    """An operation on the running cluster is refused before it starts: a LIM or cluster
    that is not in the system, or arguments that do not go together."""


class ValidationError(MxoneError):
    """A system breaks one or more prerequisite rules; ``violations`` lists every one."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__("\n".join(str(v) for v in self.violations))
