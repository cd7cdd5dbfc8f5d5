"""The control protocol: a request parsed strictly, the handler's contract, the reply.

Protocol: a unix stream socket (mode 0600, by default ``/run/mxone/agent.sock``). A client
connects, sends ONE JSON object terminated by ``"\\n"`` (or half-closes its side after the
object), and receives ONE JSON object terminated by ``"\\n"``; then the server closes the
connection. A request is strict JSON in UTF-8: an object whose ``"cmd"`` is a string
(``NaN``, ``Infinity`` and numbers that overflow a float are refused). Every refusal is a
reply ``{"ok": false, "error": "..."}``; a command handler may answer at once or later
(:class:`Deferred`, e.g. a sync that takes minutes).

:func:`parse_request` raises :class:`BadRequest` and nothing else (deep nesting, huge
numbers and bad UTF-8 included). The handler (:data:`Handler`) answers with a
:data:`Reply` at once, or returns the connection's :class:`Deferred` ticket to answer
later. Replies are written with :func:`json.dumps` defaults (a float ``inf`` in a status
reply is written as ``Infinity``, as before), so the command handlers' replies keep their
shape (:func:`encode_reply`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from typing import Any

from mxone_agent.control_socket import ControlError

_LIM_TEXT = re.compile(r"[0-9]{1,3}")


class BadRequest(ControlError):
    """A request is not one JSON object with a string ``"cmd"``; the message says why."""


@dataclasses.dataclass(frozen=True, eq=False)
class Deferred:
    """The ticket of one connection whose reply comes later.

    A handler receives the ticket of its connection and returns it to say "the reply
    comes later"; whoever finishes the work passes it to
    :meth:`mxone_agent.control.ControlServer.reply` (on
    the loop thread). Tickets compare by identity; ``number`` only names the connection in
    logs.
    """

    number: int


Reply = dict[str, Any]
Handler = Callable[[dict[str, Any], Deferred], Reply | Deferred]
"""``handler(request, ticket)``: the reply now, or ``ticket`` for a reply later. The request
is an object whose ``"cmd"`` is a string. An exception is logged and answered with an
``internal error``; it never reaches the loop."""


def lim_number(raw: object) -> int | None:
    """The LIM number in a request argument, or None when ``raw`` is not one.

    Accepts an int from 0 to 999 (not a bool) or a string of 1 to 3 ASCII digits; anything
    else (floats, ``inf``, negative or huge ints, ``" 1"``, lists, None, ...) is None.
    Whether the number is a LIM of the cluster is the config's to say.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 <= raw <= 999 else None
    if isinstance(raw, str) and _LIM_TEXT.fullmatch(raw):
        return int(raw)
    return None


def parse_request(line: bytes) -> dict[str, Any]:
    """The request in ``line`` (one JSON object, without its newline).

    Raises BadRequest, whose message says what is wrong, for anything else; no other
    exception escapes (deep nesting, huge numbers and bad UTF-8 included).
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"not UTF-8: byte 0x{line[e.start]:02x} at offset {e.start}") from None
    if not text.strip():
        raise BadRequest('empty request; send one JSON object such as {"cmd": "status"}')
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest("nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, and ints past the interpreter's digit limit
        raise BadRequest(f"not JSON: {e}") from None
    except Exception as e:  # noqa: BLE001 - whatever the parser throws is the client's fault
        raise BadRequest(f"not JSON: {type(e).__name__}: {e}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"a request is a JSON object, not {_kind(value)}")
    if "cmd" not in value:
        raise BadRequest('the request has no "cmd"')
    if not isinstance(value["cmd"], str):
        raise BadRequest(f'"cmd" must be a string, not {_kind(value["cmd"])}')
    return value


def _refuse_constant(name: str) -> float:
    raise BadRequest(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"number {text[:40]} is out of range")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def encode_reply(reply: Reply) -> bytes:
    """``reply`` as it goes on the wire: JSON with :func:`json.dumps` defaults, a newline."""
    return json.dumps(reply).encode("utf-8") + b"\n"


def encode_error(message: str) -> bytes:
    """The refusal ``{"ok": false, "error": message}`` as it goes on the wire."""
    return encode_reply({"ok": False, "error": message})
