"""The node's alarms: raised and cleared by decisions, shown in status, logged for operators.

Each raised alarm gets a handle: a rising integer persisted in the state dir (file
``alarm-handle``), so handles never repeat across agent restarts. A cleared alarm stays in
the alarm log with severity 0 (the last LOG_KEPT entries). Every raise and clear is one line
appended (a single ``write`` on an O_APPEND file, so lines never interleave) to the alarm
file (default /var/log/mxone/alarms.log) and sent to syslog when /dev/log exists; neither
may fail the agent. The book is shared by the action worker and the sync worker: every
method holds its lock.
"""

from __future__ import annotations

import contextlib
import os
import syslog
import threading
from collections import deque
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from mxone_agent.actions import ALARM_SEVERITY, ALARM_TITLE, SEVERITY_CLEARED, AlarmCode

LOG_KEPT = 100
DEFAULT_ALARM_FILE = "/var/log/mxone/alarms.log"
HANDLE_FILE = "alarm-handle"


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

    def as_dict(self, with_cleared: bool = False) -> dict:
        d = asdict(self)
        if not with_cleared:
            d.pop("cleared_at")
        return d


class AlarmBook:
    """The alarms of this node: active ones by ``(code, lim)``, and the log."""

    def __init__(self, state_dir: str | os.PathLike[str] | None,
                 alarm_file: str | os.PathLike[str] | None = DEFAULT_ALARM_FILE,
                 use_syslog: bool | None = None) -> None:
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._alarm_file = Path(alarm_file) if alarm_file is not None else None
        self._syslog = os.path.exists("/dev/log") if use_syslog is None else use_syslog
        self.active: dict[tuple[str, int | None], Alarm] = {}
        self.log: deque[Alarm] = deque(maxlen=LOG_KEPT)
        self._lock = threading.RLock()
        self._handle = self._load_handle()

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
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(HANDLE_FILE + ".tmp")
                tmp.write_text(f"{self._handle}\n")
                os.replace(tmp, path)
        return self._handle

    def raise_(self, code: AlarmCode, lim: int | None, text: str) -> Alarm:
        """Raise an alarm (an already active one is returned unchanged)."""
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

    def status(self) -> tuple[list[dict], list[dict]]:
        """(active alarms, alarm log) as JSON-ready lists."""
        with self._lock:
            return ([a.as_dict() for a in self.active.values()],
                    [a.as_dict(with_cleared=True) for a in self.log])
