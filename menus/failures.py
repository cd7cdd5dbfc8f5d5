"""What the operator sees in the menus when something fails: the menus' one error path.

The words come from the shared mapping (:func:`mxone_maintenance.commands.base.explain`,
the CLI's too); each screen frames them its own way.
"""

from __future__ import annotations

from mxone_maintenance.commands.base import Failure, crash_line, explain

NOT_AVAILABLE = "not available yet"


def failure_lines(exc: BaseException, where: str, title: str = "") -> list[str]:
    """The menus' one error path: what the operator sees of ``exc`` on the screen ``where``
    it happened, from the shared mapping (:func:`mxone_maintenance.commands.base.explain`).

    ``where``: ``read`` (opening a menu item), ``form`` (checking a form), ``reach``
    (finding the servers of a change), ``apply``, ``agents`` (telling them after a change),
    ``ask`` (an agent request titled ``title``). Never a crash: an unexpected error while a
    screen is built is logged (its line names the log); background work that fails says
    how.
    """
    shown = explain(exc)
    if (shown.failure is Failure.INTERNAL and where in ("read", "form")
            and not isinstance(exc, KeyError | ValueError)):  # a config read as written may dangle
        text = crash_line(exc)
    else:
        text = str(exc)
    if where == "form":
        if shown.failure is Failure.REFUSED:
            return list(shown.lines)
        return [f"the system config cannot be used: {text}"]
    if where == "read":
        return [f"The system config cannot be used: {text}"]
    if where == "reach":
        return ["The servers of the change could not be checked:", f"  {text}", "",
                "Nothing was changed."]
    if where == "apply":
        return ["The change was NOT applied:", f"  {text}"]
    unavailable = shown.failure is Failure.UNAVAILABLE
    if where == "agents":
        return ["", f"Agents: {NOT_AVAILABLE}: {text}" if unavailable else f"Agents: failed: {text}"]
    return [f"{title}: {NOT_AVAILABLE}: {text}" if unavailable else f"{title} failed: {text}"]
