"""What a command is, what it gives back, and what the operator sees when it fails.

A :class:`Command` is data: the CLI builds its argparse subcommand from it, the menus build
their pick lists and forms from its :class:`Param` s, and both run it the same way:

- a *change* command turns the operator's values into a
  :class:`~mxone_maintenance.actions.Change` with :attr:`Command.change` (pure: the system
  in, the next system out, refused with the field and the rule named); the faces preview,
  plan and apply it through :class:`~mxone_maintenance.service.Maintenance`, then
  :attr:`Command.tell` tells the agents when the change needs it;
- a *read* or *agent* command checks the values against the system and says what it will
  ask (:attr:`Command.plan`), then :attr:`Command.run` gives a :class:`Result`.

:func:`explain` is the one mapping from an exception to what the operator sees (the
refusal's lines, the kind, the exit code), shared by the CLI and the menus.
"""

from __future__ import annotations

import enum
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxone_maintenance.actions import ActionError, Change
from mxone_maintenance.errors import (
    ConfigFileError,
    MxoneError,
    OperationError,
    ValidationError,
)
from mxone_maintenance.model import System

# The SSH stack (paramiko) is loaded only when a command reaches a server: the CLI's parser
# is built from the registry, and the file tools and --help start without it.
if TYPE_CHECKING:
    from mxone_maintenance.operations import AgentAnswer, ClusterOperations
    from mxone_maintenance.service import Maintenance

PROG = "mxone_maintenance"

Values = Mapping[str, Any]
"""A command's input: parameter name -> value, as the face parsed it."""

Report = Callable[[str, float], None]
"""``report(line, fraction)``: what a running command does now (0.0 to 1.0)."""


def SILENT(line: str, fraction: float) -> None:  # noqa: N802 (a constant)
    """The report of a caller that follows no progress."""


class Kind(enum.Enum):
    READ = "read"  # reads the config on LIM 1 only
    CHANGE = "change"  # a new system generation, applied to every node
    AGENT = "agent"  # asks the node agents; the config stays as it is


class InputRefused(MxoneError):
    """The operator's input is refused before anything is tried (exit 1)."""


@dataclass(frozen=True)
class Option:
    """One choice a pick list offers: what the operator reads, the value it stands for."""

    label: str
    value: Any


@dataclass(frozen=True)
class Param:
    """One input of a command.

    ``flag``: the CLI option (``--standby``); None for a positional argument. ``kind``:
    ``text``, ``int``, ``float``, ``flag`` (on/off), ``new-lim`` (LIM:NEW_BASE_IP[:PRIORITY])
    or ``lim-priority`` (LIM:PRIORITY). ``choices``: the only values allowed. ``offer``: what
    the system offers now (the menus' pick list); ``group``: parameters of one group
    exclude each other.
    """

    name: str
    help: str = ""
    kind: str = "text"
    flag: str | None = None
    metavar: str | None = None
    required: bool = False
    repeat: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    offer: Callable[[System], tuple[Option, ...]] | None = None
    group: str = ""


@dataclass(frozen=True)
class Table:
    """Rows for a screen: headers, rows of cells, a note below, the screen's title."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    title: str = ""


@dataclass(frozen=True)
class Result:
    """A command's result as data: ``data`` is what ``--json`` prints, ``lines`` what the
    CLI prints, ``screen`` what the menus show (the lines unless the menus word it
    otherwise), ``table`` the rows of a list."""

    ok: bool
    data: dict[str, Any]
    lines: tuple[str, ...] = ()
    screen: tuple[str, ...] | None = None
    table: Table | None = None

    def shown(self) -> tuple[str, ...]:
        """The lines the menus show."""
        return self.lines if self.screen is None else self.screen


@dataclass
class Context:
    """What a command runs against: the config on LIM 1 (and its applier), and the node
    agents when the command asks them."""

    maintenance: Maintenance
    agents: ClusterOperations | None = None

    def system(self) -> System:
        """The current system, every rule checked."""
        return self.maintenance.system().validated()

    def behind(self) -> dict[str, dict[str, Any]]:
        """The servers marked behind (missed a change while unreachable)."""
        from mxone_maintenance import orchestrate

        applier = self.maintenance.applier
        if isinstance(applier, orchestrate.SshApplier):
            return applier.behind()
        return orchestrate.load_behind(orchestrate.behind_file(self.maintenance.path))

    def need_agents(self) -> ClusterOperations:
        if self.agents is None:
            raise NotImplementedError("the node agents cannot be reached from here")
        return self.agents


ChangeFn = Callable[[System, Values], Change]
TellFn = Callable[["ClusterOperations", System, Values, frozenset[str]], "list[AgentAnswer]"]
PlanFn = Callable[[Context, Values], Result]
RunFn = Callable[[Context, Values, Report], Result]


class Dotted:
    """A command named ``group.word`` (``cluster.add-lim``): the CLI's two levels and the
    menus' grouping come from its name (``name`` is a field of the dataclass taking this in)."""

    name: str

    @property
    def group(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def word(self) -> str:
        return self.name.split(".", 1)[1]


@dataclass(frozen=True)
class Command(Dotted):
    """One maintenance action, defined once. ``name`` is ``GROUP.SUBCOMMAND``: the CLI's
    words (``cluster.add-lim`` is ``mxone_maintenance cluster add-lim``). ``only``: the one
    face (``cli`` or ``menu``) of a command the other face has no item for, and ``why``.
    ``plan``: what the command would do, checked against the system, changing nothing (its
    ``--dry-run``). ``schema``: the version of the shape its ``--json`` prints (docs/json.md),
    raised when a key changes meaning or goes away."""

    name: str
    help: str
    kind: Kind
    params: tuple[Param, ...] = ()
    change: ChangeFn | None = None
    tell: TellFn | None = None
    plan: PlanFn | None = None
    run: RunFn | None = None
    only: str = ""
    why: str = ""
    schema: int = 1

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def offer(self, name: str, system: System) -> tuple[Option, ...]:
        """What parameter ``name`` offers now (every choice when it has no offer)."""
        p = self.param(name)
        if p.offer is not None:
            return p.offer(system)
        return tuple(Option(c, c) for c in p.choices)


# ---- values typed in -----------------------------------------------------------------------

def whole(text: str, field: str, rule: str) -> int:
    """``text`` as a whole number; ActionError naming ``field`` and ``rule`` otherwise."""
    try:
        return int(text.strip())
    except ValueError:
        raise ActionError(field, text.strip() or '""', rule) from None


PRIORITY_RULE = "a whole number from 0 to 99"


# ---- what the operator sees ----------------------------------------------------------------

EXIT_OK, EXIT_REFUSED, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130


class Failure(enum.Enum):
    REFUSED = "refused"  # the input breaks a rule or a precondition: nothing was tried
    UNAVAILABLE = "unavailable"  # this face cannot do it (no agents to ask)
    UNUSABLE = "unusable"  # the config file cannot be read or used
    FAILED = "failed"  # the work was tried and failed
    INTERRUPTED = "interrupted"
    INTERNAL = "internal"  # a bug: one line for the operator, the traceback in a log




@dataclass(frozen=True)
class Explained:
    """An error as the operator sees it: its kind, its lines, the CLI's exit code."""

    failure: Failure
    lines: tuple[str, ...]
    exit_code: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def explain(exc: BaseException) -> Explained:
    """The one mapping from an error to what the operator sees, for the CLI and the menus.

    A refusal names the field, the value and the rule (every broken rule of a
    ValidationError, one line each). Pure: an internal error is logged by the face's crash
    guard (:func:`crash_line`), not here.
    """
    if isinstance(exc, ValidationError):
        return Explained(Failure.REFUSED, tuple(str(v) for v in exc.violations), EXIT_REFUSED)
    if isinstance(exc, ActionError | InputRefused | OperationError):
        return Explained(Failure.REFUSED, (str(exc),), EXIT_REFUSED)
    if isinstance(exc, NotImplementedError):
        return Explained(Failure.UNAVAILABLE, (str(exc),), EXIT_FAILED)
    if isinstance(exc, ConfigFileError):
        return Explained(Failure.UNUSABLE, exc.problems, EXIT_FAILED)
    if isinstance(exc, MxoneError):
        return Explained(Failure.FAILED, (str(exc),), EXIT_FAILED)
    if isinstance(exc, KeyboardInterrupt):
        return Explained(Failure.INTERRUPTED, ("interrupted",), EXIT_INTERRUPTED)
    return Explained(Failure.INTERNAL, (f"internal error: {type(exc).__name__}: {exc}",),
                     EXIT_FAILED)


ERROR_SCHEMA = 1
"""The version of the shape ``--json`` prints when a command ends in an error (docs/json.md)."""


def with_schema(schema: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``"schema": schema`` first: the version of the shape, for scripts."""
    return {"schema": schema, **{k: v for k, v in data.items() if k != "schema"}}


def error_data(shown: Explained) -> dict[str, Any]:
    """What ``--json`` prints for an error: its kind and its lines (each names the field or
    option and the rule when it is a refusal)."""
    return with_schema(ERROR_SCHEMA, {"ok": False, "failure": shown.failure.value,
                                      "lines": list(shown.lines)})


def missing_config(path: Path, named: str | None = None) -> ConfigFileError:
    """The error for a system config file that is not there, with the way to start anew
    (``named``: the ``--config`` the operator gave, repeated in the commands shown)."""
    config = f" --config {named}" if named else ""
    return ConfigFileError(str(path), [
        f"{path}: no such file: no system config here (--config FILE or $MXONE_SYSTEM_CONFIG "
        "name another file)",
        f"to start a new system here: `{PROG} server add NAME BASE_IP/PREFIX --lim 1 --new"
        f"{config}` (its first server writes the file), or `{PROG} --new{config}` for the menus"])


def crash_line(exc: BaseException) -> str:
    """The crash guard's one line for an unexpected error; its traceback goes to the log."""
    return f"internal error: {type(exc).__name__}: {exc} (details in {log_internal_error(exc)})"


def log_internal_error(exc: BaseException) -> str:
    """Append ``exc``'s traceback to the error log; the log's path (or why there is none)."""
    directory = Path("/var/log/mxone") if os.access("/var/log", os.W_OK) else Path(tempfile.gettempdir())
    try:
        directory.mkdir(parents=True, exist_ok=True)
        log = directory / "mxone_maintenance-errors.log"
        with log.open("a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
            f.write("".join(traceback.format_exception(exc)))
        return str(log)
    except OSError:
        return "(could not write the error log)"


def outcome_line(server: str, word: str, text: str) -> str:
    """One server's line of an outcome: ``lim2         OK      ...``."""
    return f"{server:<12} {word:<7} {text}"


def ok_word(ok: bool) -> str:
    return "OK" if ok else "FAILED"
