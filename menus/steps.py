"""What a flow shows, as plain data: the views render it, the app drives it.

A flow is a function ``(System) -> Step``. A :class:`Form` turns the operator's values into
one :class:`Call` of a registry command (:mod:`mxone_maintenance.commands`); the app
previews that call through Maintenance, so every rule stays in the core. A :class:`Pick`
chooses one value (a cluster, a LIM) and leads to the next step. :class:`AgentRequest`
asks the node agents through Operations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from mxone_maintenance.commands.base import Command
from mxone_maintenance.commands.base import Table as Table  # a list's screen is its result's table
from mxone_menus.operations import Operations, Report

Values = Mapping[str, Any]
"""A form's field values by field key."""


@dataclass(frozen=True)
class Call:
    """One run of a change command with the values the form gave (Maintenance.preview)."""

    command: Command
    values: Values = field(default_factory=dict)


@dataclass(frozen=True)
class TextField:
    key: str
    label: str
    default: str = ""
    help: str = ""
    secret: bool = False  # a password: shown as * while typed


@dataclass(frozen=True)
class ChoiceField:
    """Radio buttons; ``options`` are (label, value) pairs."""

    key: str
    label: str
    options: tuple[tuple[str, Any], ...]
    default: object = None
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
class Message:
    title: str
    text: str


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
