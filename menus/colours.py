"""The words of state an operator must not miss, and the colour each is drawn in.

Status, lists and results reach the menus as plain text lines (the core's, e.g.
:func:`mxone_maintenance.status.render`); :func:`markup` cuts a line into runs so that the
state stands out, without changing a character:

- a server that cannot be reached or whose agent is not running or in error, a failed
  exchange-data sync: red;
- a cluster that needs attention (``[ATTENTION]``), a server BEHIND, a degraded network
  redundancy (``[WARNING]``): yellow;
- an active alarm, the whole line, by its severity (4 critical, 3 major: red; 2 minor,
  1 warning: yellow; 0 cleared: as any line).

The mapping is this module's table of patterns: a new kind of status line needs no change
here unless it brings a new word of state. On a monochrome terminal urwid draws the
``mono`` column of :data:`PALETTE` (bold, underline, standout), so nothing depends on
colour alone, and the words are always there to read.
"""

from __future__ import annotations

import re

Run = str | tuple[str, str]
"""Text, or (palette attribute, text)."""

BAD = "state bad"
ATTENTION = "state attention"
ALARM = {4: "alarm critical", 3: "alarm major", 2: "alarm minor", 1: "alarm warning"}

# (name, foreground, background, mono): the states in the dialog-like palette of the window
PALETTE: list[tuple[str, str, str, str]] = [
    (BAD, "light red,bold", "", "bold"),
    (ATTENTION, "yellow,bold", "", "bold,underline"),
    (ALARM[4], "light red,bold", "", "bold,standout"),
    (ALARM[3], "light red", "", "bold"),
    (ALARM[2], "yellow", "", "underline"),
    (ALARM[1], "yellow", "", "underline"),
]

_SEVERITY = {"4": 4, "critical": 4, "3": 3, "major": 3, "2": 2, "minor": 2, "1": 1, "warning": 1,
             "0": 0, "cleared": 0, "normal": 0}
# An alarm line of the status: "    CODE SEVERITY NAME ...: TEXT (since ...)"
_ALARM_LINE = re.compile(r" {4}[a-z][a-z0-9-]* (?P<severity>%s)\b" % "|".join(_SEVERITY))
_WORDS: list[tuple[str, str]] = [
    (r"(?i:\bunreachable\b)", BAD),
    (r"\bnot running\b", BAD),
    (r"(?<= )error(?= {2})", BAD),  # the agent column of a server row (not "error" in a sentence)
    (r"\bLAST SYNC FAILED\b", BAD),
    (r"\[ATTENTION\]", ATTENTION),
    (r"\[WARNING\]", ATTENTION),
    (r"\bBEHIND\b", ATTENTION),
]
_ANY = re.compile("|".join(f"(?P<w{i}>{pattern})" for i, (pattern, _attr) in enumerate(_WORDS)))


def markup(line: str) -> str | list[Run]:
    """``line`` as urwid text markup: the line itself when no state is in it."""
    alarm = _ALARM_LINE.match(line)
    if alarm is not None:
        attr = ALARM.get(_SEVERITY[alarm.group("severity")])
        return [(attr, line)] if attr else line
    runs: list[Run] = []
    end = 0
    for m in _ANY.finditer(line):
        if m.start() > end:
            runs.append(line[end:m.start()])
        runs.append((_WORDS[int(str(m.lastgroup)[1:])][1], m.group()))
        end = m.end()
    if not runs:
        return line
    if end < len(line):
        runs.append(line[end:])
    return runs
