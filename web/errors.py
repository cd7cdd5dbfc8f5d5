"""The errors of ``webserver_config``: one root, and the refusal that changes nothing.

Both fit the shared mapping of the command layer
(:func:`mxone_maintenance.commands.base.explain`): a :class:`Refused` is shown as a
refusal (exit 1), a :class:`WebError` as a failure of the work tried (exit 2).
"""

from __future__ import annotations

from mxone_maintenance.commands.base import Failure, InputRefused, crash_line, explain
from mxone_maintenance.errors import MxoneError


class WebError(MxoneError):
    """The root of the tool's errors: the work was tried and failed; the message says where."""


class Refused(InputRefused):
    """The input or the system's state refuses the step before anything is changed.

    The message names the field (or the server), the value and the rule.
    """


def failure_lines(exc: BaseException) -> list[str]:
    """What a screen shows of ``exc``: the shared mapping's lines, as the CLI words them (an
    unexpected error in one line, its traceback in the log the line names)."""
    shown = explain(exc)
    if shown.failure is Failure.INTERNAL:
        return [crash_line(exc)]
    if shown.failure is Failure.UNAVAILABLE:
        return [f"not available yet: {shown.text}"]
    return list(shown.lines)
