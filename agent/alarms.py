"""The node's alarms: raised and cleared by decisions, shown in status, logged for operators.

Each raised alarm gets a handle: a rising integer persisted in the state dir (file
``alarm-handle``), so handles never repeat across agent restarts. A cleared alarm stays in
the alarm log with severity 0 (the last LOG_KEPT entries). Every raise and clear is one line
appended (a single ``write`` on an O_APPEND file, so lines never interleave) to the alarm
file (default :data:`~mxone_agent.paths.ALARMS_LOG`) and sent to syslog when /dev/log exists; neither
may fail the agent, nor may the listener told of each (``on_change``: the notify hooks). The
book is shared by the action worker and the sync worker: every method holds its lock.

The active alarms and the alarm log survive a restart of the agent: every raise and clear
rewrites ``alarms.json`` in the state dir atomically (temp file, fsync, rename, fsync of the
directory; mode 0600), and a new book on the same state dir restores them with their
handles, without logging them again. A missing or damaged file means no active alarms (one
warning says so; a missing one is written at once); the handle counter, kept apart, still
never repeats a handle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import syslog
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from mxone_agent import files, paths
from mxone_agent.actions import ALARM_SEVERITY, ALARM_TITLE, SEVERITY_CLEARED, AlarmCode

log = logging.getLogger("mxone_agent")

LOG_KEPT = 100
DEFAULT_ALARM_FILE = paths.ALARMS_LOG
HANDLE_FILE = "alarm-handle"
STATE_FILE = "alarms.json"
STATE_FORMAT = 1


def iso_now(ts: float | None = None) -> str:
    """UTC wall-clock time with milliseconds, ISO 8601 (``2026-11-28T17:25:01.123Z``)."""
    dt = datetime.fromtimestamp(ts, UTC) if ts is not None else datetime.now(
        UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Alarm:
    code: str
    name: str
    severity: int
    handle: int
    lim: int | None
    raised_at: str
    text: str
    cleared_at: str | None = None

    def as_dict(self, with_cleared: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_cleared:
            d.pop("cleared_at")
        return d

    @classmethod
    def from_dict(cls, d: object) -> Alarm:
        """An alarm as :meth:`as_dict` wrote it (``with_cleared``); ValueError naming what
        is wrong. Name and severity are those of its code in this agent."""
        if not isinstance(d, dict):
            raise ValueError(f"{d!r} is not an alarm")
        code = AlarmCode(cast(str, d.get("code")))  # ValueError for an unknown code
        handle, lim = d.get("handle"), d.get("lim")
        if type(handle) is not int or handle < 1:
            raise ValueError(f"handle {handle!r} is not a positive whole number")
        if lim is not None and type(lim) is not int:
            raise ValueError(f"lim {lim!r} is not a LIM number")
        texts = {k: d.get(k) for k in ("raised_at", "text")}
        raised_at, text = texts["raised_at"], texts["text"]
        if not (isinstance(raised_at, str) and isinstance(text, str)):
            raise ValueError(f"{texts!r}: raised_at and text must be strings")
        cleared_at = d.get("cleared_at")
        if cleared_at is not None and not isinstance(cleared_at, str):
            raise ValueError(f"cleared_at {cleared_at!r} is not a time stamp")
        severity = SEVERITY_CLEARED if cleared_at is not None else ALARM_SEVERITY[code]
        return cls(code=str(code), name=ALARM_TITLE[code], severity=severity, handle=handle,
                   lim=lim, raised_at=raised_at, text=text,
                   cleared_at=cleared_at)


class AlarmBook:
    """The alarms of this node: active ones by ``(code, lim)``, and the log."""

    def __init__(self, state_dir: str | os.PathLike[str] | None,
                 alarm_file: str | os.PathLike[str] | None = DEFAULT_ALARM_FILE,
                 use_syslog: bool | None = None) -> None:
        """Restores the active alarms and the log saved in ``state_dir`` (None: nothing is
        saved or restored)."""
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._alarm_file = Path(alarm_file) if alarm_file is not None else None
        self._syslog = os.path.exists("/dev/log") if use_syslog is None else use_syslog
        self.active: dict[tuple[str, int | None], Alarm] = {}
        self.log: deque[Alarm] = deque(maxlen=LOG_KEPT)
        self._lock = threading.RLock()
        self._save_errors: dict[Path, str] = {}  # per file, the last failure to save it
        # told of every raise and clear ("raised"/"cleared"), under the lock: must not block
        self.on_change: Callable[[Alarm, str], None] | None = None
        self._handle = self._load_handle()
        self._restore()

    def _handle_path(self) -> Path | None:
        return self._state_dir / HANDLE_FILE if self._state_dir is not None else None

    def _load_handle(self) -> int:
        path = self._handle_path()
        if path is None:
            return 0
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return 0

    def _next_handle(self) -> int:
        self._handle += 1
        path = self._handle_path()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                files.write_private(path, f"{self._handle}\n")
            except OSError as exc:
                self._cannot_save(path, exc)
            else:
                self._save_errors.pop(path, None)
        return self._handle

    # ---- the saved state ------------------------------------------------------------------

    def _restore(self) -> None:
        if self._state_dir is None:
            return
        path = self._state_dir / STATE_FILE
        try:
            active, alarm_log = self._read_state(path)
        except FileNotFoundError:
            log.warning("no saved alarms at %s; this agent starts with no active alarms", path)
            self._save()  # said once: the next start finds the file
            return
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            log.warning("the saved alarms at %s are unreadable (%s); this agent starts with no "
                        "active alarms", path, exc)
            return
        self.active = {(a.code, a.lim): a for a in active}
        self.log.extend(alarm_log)
        # a lost handle file must not make handles repeat
        self._handle = max([self._handle, *(a.handle for a in [*active, *alarm_log])])
        if active:
            log.info("alarms still active from before this agent started: %s", "; ".join(
                f"handle {a.handle} '{a.name}'" + (f" for LIM {a.lim}" if a.lim is not None
                                                   else "") for a in active))

    @staticmethod
    def _read_state(path: Path) -> tuple[list[Alarm], list[Alarm]]:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise ValueError(f"not alarm state of format {STATE_FORMAT}")
        active, alarm_log = doc.get("active"), doc.get("log")
        if not isinstance(active, list) or not isinstance(alarm_log, list):
            raise ValueError("active and log must be lists")
        restored = [Alarm.from_dict(a) for a in active]
        if any(a.cleared_at is not None for a in restored):
            raise ValueError("a cleared alarm is listed as active")
        if len({(a.code, a.lim) for a in restored}) != len(restored):
            raise ValueError("an alarm is listed as active twice")
        return restored, [Alarm.from_dict(a) for a in alarm_log[-LOG_KEPT:]]

    def _save(self) -> None:
        """Write the active alarms and the log (under the lock); a failure is logged once
        and never fails the caller: the alarm is raised or cleared all the same."""
        if self._state_dir is None:
            return
        path = self._state_dir / STATE_FILE
        doc = {"format": STATE_FORMAT,
               "active": [a.as_dict(with_cleared=True) for a in self.active.values()],
               "log": [a.as_dict(with_cleared=True) for a in self.log]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            files.write_private(path, json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            self._cannot_save(path, exc)
        else:
            self._save_errors.pop(path, None)

    def _cannot_save(self, path: Path, exc: OSError) -> None:
        """Warn once per file and cause, not at every raise and clear."""
        if self._save_errors.get(path) != str(exc):
            log.warning("cannot save the alarms to %s: %s", path, exc)
            self._save_errors[path] = str(exc)

    # ---- raising and clearing -------------------------------------------------------------

    def active_keys(self, codes: Iterable[AlarmCode] | None = None
                    ) -> frozenset[tuple[AlarmCode, int | None]]:
        """The active alarms as ``(code, lim)``, restored ones included (only ``codes`` if
        given): what the daemon seeds its decision state with."""
        wanted = None if codes is None else {str(c) for c in codes}
        with self._lock:
            return frozenset((AlarmCode(code), lim) for code, lim in self.active
                             if wanted is None or code in wanted)

    def raise_(self, code: AlarmCode, lim: int | None, text: str) -> Alarm:
        """Raise an alarm (an already active one, restored ones too, is returned unchanged)."""
        with self._lock:
            return self._raise(code, lim, text)

    def _raise(self, code: AlarmCode, lim: int | None, text: str) -> Alarm:
        key = (str(code), lim)
        if key in self.active:
            return self.active[key]
        alarm = Alarm(code=str(code), name=ALARM_TITLE[code], severity=ALARM_SEVERITY[code],
                      handle=self._next_handle(), lim=lim, raised_at=iso_now(), text=text)
        self.active[key] = alarm
        self.log.append(alarm)
        self._save()
        self._emit(alarm, "raised")
        return alarm

    def clear(self, code: AlarmCode, lim: int | None) -> Alarm | None:
        """Clear an active alarm: it goes to the log with severity 0. None if not active."""
        with self._lock:
            return self._clear(code, lim)

    def _clear(self, code: AlarmCode, lim: int | None) -> Alarm | None:
        alarm = self.active.pop((str(code), lim), None)
        if alarm is None:
            return None
        cleared = replace(alarm, severity=SEVERITY_CLEARED, cleared_at=iso_now())
        self.log.append(cleared)
        self._save()
        self._emit(cleared, "cleared")
        return cleared

    def _emit(self, alarm: Alarm, what: str) -> None:
        at = alarm.cleared_at or alarm.raised_at
        lim = f" lim={alarm.lim}" if alarm.lim is not None else ""
        line = (f"{at} alarm {what} handle={alarm.handle} severity={alarm.severity} "
                f"code={alarm.code}{lim} name=\"{alarm.name}\" text=\"{alarm.text}\"\n")
        if self._alarm_file is not None:
            with contextlib.suppress(OSError):
                self._alarm_file.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._alarm_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode("utf-8"))
                finally:
                    os.close(fd)
        if self._syslog:
            with contextlib.suppress(OSError):
                prio = syslog.LOG_NOTICE if alarm.severity == 0 else (
                    syslog.LOG_CRIT if alarm.severity >= 4 else syslog.LOG_WARNING)
                syslog.syslog(syslog.LOG_DAEMON | prio, line.strip())
        if self.on_change is not None:
            try:
                self.on_change(alarm, what)
            except Exception:  # a listener's bug must not fail raising the alarm
                log.exception("telling of alarm %d %s failed", alarm.handle, what)

    def status(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(active alarms, alarm log) as JSON-ready lists."""
        with self._lock:
            return ([a.as_dict() for a in self.active.values()],
                    [a.as_dict(with_cleared=True) for a in self.log])
