"""What a flow shows, as plain data: the views render it, the app drives it.

A flow is a function ``(System) -> Step``. A :class:`Form` turns the operator's values into
one :class:`Call` of a core action; the app previews that call through Maintenance, so every
rule stays in the core. A :class:`Pick` chooses one value (a cluster, a LIM) and leads to
the next step. :class:`AgentRequest` asks the node agents through Operations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from mxone_maintenance.actions import Change
from mxone_menus.operations import Operations

Values = Mapping[str, Any]


class FormInputError(Exception):
    """A value the form cannot even hand to the core (a LIM number that is not a number)."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field, self.value, self.message = field, value, message
        super().__init__(f"{field} = {value}: {message}")


@dataclass(frozen=True)
class Call:
    """One call of a core action, made by Maintenance.preview."""

    action: Callable[..., Change]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TextField:
    key: str
    label: str
    default: str = ""
    help: str = ""


@dataclass(frozen=True)
class ChoiceField:
    """Radio buttons; ``options`` are (label, value) pairs."""

    key: str
    label: str
    options: tuple[tuple[str, Any], ...]
    default: Any = None
    help: str = ""


@dataclass(frozen=True)
class CheckField:
    key: str
    label: str
    default: bool = False
    help: str = ""


Field = Union[TextField, ChoiceField, CheckField]


@dataclass(frozen=True)
class Form:
    """Fields, then a core action. ``then`` runs on the agents after the change is applied."""

    title: str
    intro: str
    fields: tuple[Field, ...]
    to_call: Callable[[Values], Call]
    then: Callable[[Values, Operations], Sequence[str]] | None = None


@dataclass(frozen=True)
class Pick:
    """Choose one of ``options`` ((label, value) pairs); ``next`` gives the step after."""

    title: str
    intro: str
    options: tuple[tuple[str, Any], ...]
    next: Callable[[Any], Step]


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class Message:
    title: str
    text: str


Report = Callable[[str, float], None]
"""``report(line, fraction)``: progress of an agent request, from its worker thread."""


@dataclass(frozen=True)
class AgentRequest:
    """Work done by the node agents; asked after a Yes when ``question`` is set.

    ``run(operations, report)`` gives the lines to show. ``refresh``: the answer is a
    status that the view asks for again every few seconds until the operator leaves.
    """

    title: str
    run: Callable[[Operations, Report], Sequence[str]]
    question: str = ""
    refresh: bool = False


Step = Union[Form, Pick, Table, Message, AgentRequest]
