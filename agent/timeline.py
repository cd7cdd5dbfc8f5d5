"""The transitions made on this node, kept across restarts: status shows the last
:data:`SHOWN` (``transitions``), and every one is appended to a JSON-lines file in the
state dir (:data:`FILE`), read back when the agent starts.

One line per transition: the fields of :class:`outcomes.Transition` (each step's wall
clock, ISO) plus ``format`` and ``recorded`` (wall clock of the write). The file stays
bounded: once it holds more than 2 x :data:`ON_DISK` lines it is rewritten, atomically,
with the last ON_DISK. A line is appended with one write and no fsync - a crash costs at
most the last lines, and a line torn by it (or any line that is not a transition: a
hostile or damaged file) is skipped at start with a warning, never stopping the agent.
Only the last :data:`READ_AT_MOST` bytes are read. Nothing here raises: a file that cannot
be written is logged once per cause, and status still shows what happened since start.

The transitions are written by the loop once the decision's actions are done (after the
gratuitous ARPs), never on the way to them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mxone_agent.alarms import iso_now
from mxone_agent.files import atomic_write
from mxone_agent.outcomes import Transition

log = logging.getLogger("mxone_agent")

FILE = "timeline.jsonl"
FORMAT = 1
SHOWN = 20
"""Transitions status shows (the newest)."""
ON_DISK = 200
"""Transitions the file keeps at least; it is cut back to these past twice as many."""
READ_AT_MOST = 1 << 20
"""Bytes read from the end of the file at start (a larger file is damaged or hostile)."""

_FIELDS = {f.name: f for f in dataclasses.fields(Transition)}
_REQUIRED = ("lim", "kind", "reason", "detected", "decided")


def to_line(t: Transition, recorded: str) -> str:
    """The file's line for ``t`` (with its newline)."""
    return json.dumps({"format": FORMAT, "recorded": recorded, **dataclasses.asdict(t)},
                      separators=(",", ":"), ensure_ascii=False) + "\n"


def from_line(line: str) -> Transition:
    """The transition a line holds; ValueError naming what is wrong with it (unknown keys
    are ignored, for a newer agent's lines)."""
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {doc.get('format')!r}, not {FORMAT}")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise ValueError("no " + ", ".join(missing))
    kwargs: dict[str, Any] = {}
    for name in _FIELDS:
        if name not in doc:
            continue
        value = doc[name]
        want = {"lim": int, "ok": bool}.get(name, str)
        optional = name not in _REQUIRED and name != "ok"
        if (value is None and optional) or (type(value) is want):
            kwargs[name] = value
        else:
            raise ValueError(f"{name} is {type(value).__name__}, not {want.__name__}")
    return Transition(**kwargs)


class Timeline:
    """The transitions of this node, newest last: iterable, ``append``/``extend`` record
    and write them. ``state_dir`` None keeps them in memory only."""

    def __init__(self, state_dir: str | Path | None, shown: int = SHOWN,
                 on_disk: int = ON_DISK) -> None:
        self.path = Path(state_dir) / FILE if state_dir is not None else None
        self._shown: deque[Transition] = deque(maxlen=shown)
        self._on_disk = on_disk
        self._lines = 0  # lines in the file, as far as this agent knows
        self._torn = False  # the file's last line has no newline (cut by a crash)
        self._error = ""  # the last cause the file could not be written, said once
        self.skipped = 0  # bad lines found at load

    def __iter__(self) -> Iterator[Transition]:
        return iter(self._shown)

    def __len__(self) -> int:
        return len(self._shown)

    def load(self) -> None:
        """Read the file's last transitions (bad lines skipped with a warning)."""
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - READ_AT_MOST))
                data = f.read(READ_AT_MOST)
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("the transitions of earlier runs at %s cannot be read (%s); status "
                        "shows those of this run only", self.path, e.strerror or e)
            return
        lines = data.split(b"\n")
        self._torn = bool(lines[-1])
        if size > READ_AT_MOST:
            lines = lines[1:]  # the first one is cut by where the read began
        bad: list[str] = []
        found = []
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                found.append(from_line(raw.decode("utf-8")))
            except (ValueError, UnicodeDecodeError) as e:
                bad.append(f"line {number}: {e}")
        self._lines = len(found) + len(bad)
        self._shown.extend(found)
        self.skipped = len(bad)
        if size > READ_AT_MOST:
            self._lines = 2 * self._on_disk  # cut it back at the next append
        if bad:
            log.warning("%s: %d line(s) that are no transition skipped (%s); the file is "
                        "rewritten without them at the next transition", self.path, len(bad),
                        "; ".join(bad[:3]) + ("; ..." if len(bad) > 3 else ""))
            self._lines = 2 * self._on_disk  # rewrite, without them, at the next append

    def append(self, t: Transition) -> None:
        self.extend([t])

    def extend(self, transitions: Iterable[Transition]) -> None:
        """Record ``transitions`` (for status) and write them to the file."""
        new = list(transitions)
        if not new:
            return
        self._shown.extend(new)
        if self.path is None:
            return
        now = iso_now()
        text = "".join(to_line(t, now) for t in new)
        try:
            if self._lines + len(new) > 2 * self._on_disk:
                self._rewrite(text)
            else:
                self._append(text)
        except OSError as e:
            if self._error != str(e):
                log.warning("cannot write the transitions to %s: %s; status shows them until "
                            "the agent stops", self.path, e.strerror or e)
                self._error = str(e)
        else:
            self._error = ""

    def _append(self, text: str) -> None:
        assert self.path is not None
        data = ("\n" if self._torn else "") + text
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, data.encode("utf-8"))  # one write: lines never interleave
        finally:
            os.close(fd)
        self._torn = False
        self._lines += text.count("\n")

    def _rewrite(self, text: str) -> None:
        """The file cut back to its last ON_DISK good lines, ``text`` included."""
        assert self.path is not None
        kept: list[str] = []
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - READ_AT_MOST))
                old = f.read(READ_AT_MOST).decode("utf-8", "replace").split("\n")
            for line in old[1:] if size > READ_AT_MOST else old:
                try:
                    from_line(line)
                except ValueError:
                    continue
                kept.append(line + "\n")
        except FileNotFoundError:
            pass
        kept = (kept + text.splitlines(keepends=True))[-self._on_disk:]
        atomic_write(self.path, "".join(kept).encode("utf-8"), 0o640, sync_directory=False)
        self._torn = False
        self._lines = len(kept)
