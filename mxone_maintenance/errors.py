"""The one exception root of the maintenance tool, and its direct kinds.

Every error that may reach an operator derives from :class:`MxoneError` and carries a
message that names the field, the value and the rule; the CLI prints it as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mxone_maintenance.rules import Violation


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


class ValidationError(MxoneError):
    """A system breaks one or more prerequisite rules; ``violations`` lists every one."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__("\n".join(str(v) for v in self.violations))
