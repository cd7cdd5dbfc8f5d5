"""Notify hooks: an administrator's executables run on every LIM transition and on every
alarm raised or cleared - as keepalived's notify scripts, Pacemaker's alerts or Patroni's
callbacks.

Where and what runs. Every file in the notify directory (:data:`~mxone_agent.paths.NOTIFY_DIR`,
``/etc/mxone/notify.d``) runs once per event, one after the other in the order of their
names (byte order: prefix them ``10-``, ``20-``, ...); names starting with ``.`` are left
out. A file runs only if it is a regular file (not a link), executable, owned by root and
writable by no one else (not group- or world-writable); and only while the directory itself
is a directory owned by root that no one else may write. Anything else is refused with a
warning that names the file and the rule (once, until it changes); the others still run.

How it runs. With ``/`` as working directory, stdin from /dev/null, in a session of its
own, and an environment that holds only ``PATH`` (:data:`HOOK_PATH`) and the ``MXONE_``
variables below - nothing of the agent's own environment. Each hook has
:data:`HOOK_TIMEOUT_S` seconds; a hook still running then is killed (SIGKILL to its PID,
then to its process group: whatever it started in its session goes with it). Its stdout
and stderr are captured together and logged (the first :data:`OUTPUT_KEPT` bytes, one log
line per hook, with its exit status); a hook that fails or times out is a warning, never
an error of the agent.

Never on the failover path. The agent only queues an event (:meth:`HookRunner.submit`,
which never blocks); one thread of its own runs the hooks. The queue holds
:data:`QUEUE_SIZE` events: when it is full (hooks slower than the events) further events
are dropped and counted (metrics: ``mxone_notify_events_dropped_total``), with one warning
per run of drops.

The environment (every value a string; empty when it does not apply):

==================  =========================================================================
MXONE_EVENT         ``transition`` or ``alarm``
MXONE_CLUSTER       the cluster's name
MXONE_SERVER        this server (the node whose agent runs the hook)
MXONE_TIME          when the agent recorded the event (UTC, ISO 8601 with milliseconds)
MXONE_LIM           the LIM's number (an alarm about no single LIM: empty)
MXONE_REASON        a transition: the decision's sentence; an alarm: its text
MXONE_KIND          a transition's kind: failover, fallback, split-brain, stop, start,
                    preload, retire, lease retaken, reload
MXONE_FROM          a transition: the server the LIM moves from (empty: it ran nowhere)
MXONE_TO            a transition: the server the LIM moves to (empty: it runs nowhere now)
MXONE_RESULT        a transition: ``ok`` or ``failed``
MXONE_ERROR         a failed transition: why
MXONE_TIMELINE      a transition: a JSON object of its timed steps (UTC, ISO 8601):
                    ``detected``, ``decided``, ``probed``, ``alias_up``, ``first_garp``,
                    ``service_up``
                    (a step that did not happen is left out)
MXONE_ALARM         an alarm: its code (e.g. ``lim-running-on-standby``)
MXONE_ALARM_NAME    an alarm: its title
MXONE_ALARM_STATE   an alarm: ``raised`` or ``cleared``
MXONE_ALARM_HANDLE  an alarm: its handle (unique on this server)
MXONE_SEVERITY      an alarm: its severity (0 once cleared)
==================  =========================================================================

MXONE_FROM and MXONE_TO of each kind, seen from the server that made the transition (R: the
LIM's regular server, S: the standby, here: this server): failover R to here; fallback here
to R on the standby, S to here on the regular server; split-brain here to the other side;
stop and retire here to nowhere; start and preload nowhere to here; lease retaken and
reload here to here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import selectors
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mxone_agent.alarms import Alarm, iso_now
from mxone_agent.config import LimConfig, NodeConfig
from mxone_agent.model import Role, TransitionKind
from mxone_agent.outcomes import Transition

log = logging.getLogger("mxone_agent")

HOOK_TIMEOUT_S = 10.0
QUEUE_SIZE = 64
OUTPUT_KEPT = 4096
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TIMELINE_STEPS = ("detected", "decided", "probed", "alias_up", "first_garp", "service_up")
RESULTS = ("ok", "failed", "timeout")

T = TypeVar("T")


@dataclass(frozen=True)
class HookEvent:
    """One event for the hooks: its ``MXONE_`` variables and a few words for the log."""

    env: Mapping[str, str]
    summary: str


@dataclass(frozen=True)
class HookResult:
    """What came of one hook: exit status (None: it could not start), output kept."""

    name: str
    returncode: int | None
    output: str
    timed_out: bool
    seconds: float

    @property
    def result(self) -> str:
        if self.timed_out:
            return "timeout"
        return "ok" if self.returncode == 0 else "failed"


# ---- the events ------------------------------------------------------------------------------

def moved(kind: str, role: Role, here: str, regular: str, standby: str) -> tuple[str, str]:
    """(from, to) of a transition of ``kind`` made on ``here`` (see the module docstring)."""
    try:
        known = TransitionKind(kind)
    except ValueError:
        return "", ""
    other = regular if role is Role.STANDBY else standby
    table = {
        TransitionKind.FAILOVER: (regular, here),
        TransitionKind.FALLBACK: (here, regular) if role is Role.STANDBY else (standby, here),
        TransitionKind.SPLIT_BRAIN: (here, other),
        TransitionKind.STOP: (here, ""), TransitionKind.RETIRE: (here, ""),
        TransitionKind.START: ("", here), TransitionKind.PRELOAD: ("", here),
    }
    return table.get(known, (here, here))


def timeline(t: Transition) -> dict[str, str]:
    """The timed steps of a transition that happened, in order."""
    steps = {k: getattr(t, k, None) for k in TIMELINE_STEPS}
    return {k: v for k, v in steps.items() if isinstance(v, str)}


def transition_event(cfg: NodeConfig, t: Transition, lim: LimConfig | None) -> HookEvent:
    """The event of transition ``t`` made here (``lim``: its LimConfig, None if unknown)."""
    regular = lim.server if lim is not None and lim.server else ""
    frm, to = moved(t.kind, cfg.role, cfg.node, regular, cfg.standby.name)
    return HookEvent(env={
        "MXONE_EVENT": "transition", "MXONE_CLUSTER": cfg.cluster, "MXONE_SERVER": cfg.node,
        "MXONE_TIME": iso_now(), "MXONE_LIM": str(t.lim), "MXONE_REASON": t.reason,
        "MXONE_KIND": t.kind, "MXONE_FROM": frm, "MXONE_TO": to,
        "MXONE_RESULT": "ok" if t.ok else "failed", "MXONE_ERROR": t.error or "",
        "MXONE_TIMELINE": json.dumps(timeline(t))},
        summary=f"{t.kind} of LIM {t.lim}")


def alarm_event(cfg: NodeConfig, alarm: Alarm, state: str) -> HookEvent:
    """The event of ``alarm`` ``state`` (raised or cleared) on this node."""
    return HookEvent(env={
        "MXONE_EVENT": "alarm", "MXONE_CLUSTER": cfg.cluster, "MXONE_SERVER": cfg.node,
        "MXONE_TIME": alarm.cleared_at or alarm.raised_at,
        "MXONE_LIM": "" if alarm.lim is None else str(alarm.lim), "MXONE_REASON": alarm.text,
        "MXONE_ALARM": alarm.code, "MXONE_ALARM_NAME": alarm.name, "MXONE_ALARM_STATE": state,
        "MXONE_ALARM_HANDLE": str(alarm.handle), "MXONE_SEVERITY": str(alarm.severity)},
        summary=f"alarm {alarm.code} {state}" + (
            f" for LIM {alarm.lim}" if alarm.lim is not None else ""))


def transitions_after(transitions: Iterable[T], mark: T | None) -> list[T]:
    """The transitions recorded after ``mark`` (the last one before; None: there was none).
    A mark no longer kept (the record is bounded) makes every transition kept new."""
    kept = list(transitions)
    for i in range(len(kept) - 1, -1, -1):
        if kept[i] is mark:
            return kept[i + 1:]
    return kept


# ---- which files may run -----------------------------------------------------------------

def refusal(st: os.stat_result, owner: int = 0) -> str | None:
    """Why a file with ``st`` (from lstat) may not run as a hook; None when it may."""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link; only regular files run"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_uid != owner:
        return f"it is owned by uid {st.st_uid}, not root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"its mode {stat.S_IMODE(st.st_mode):04o} lets group or others write it"
    if not st.st_mode & stat.S_IXUSR:
        return "it is not executable"
    return None


def dir_refusal(st: os.stat_result, owner: int = 0) -> str | None:
    """Why a notify directory with ``st`` (from lstat) is not trusted; None when it is."""
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != owner:
        return f"it is owned by uid {st.st_uid}, not root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"its mode {stat.S_IMODE(st.st_mode):04o} lets group or others write in it"
    return None


# ---- the runner ------------------------------------------------------------------------------

_STOP = HookEvent(env={}, summary="stop")


@dataclass
class HookCounts:
    """What the runner did since it started, for metrics."""

    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    refused: int = 0
    dropped: int = 0


class HookRunner:
    """Runs the hooks of ``directory`` (None: no hooks) on a thread of its own.

    :meth:`submit` queues an event and never blocks; :meth:`run_event` runs one event's
    hooks on the calling thread (the worker's job; tests call it directly). ``owner``:
    the uid hook files must belong to (root; tests running unprivileged pass their own).
    """

    def __init__(self, directory: str | None, *, timeout: float = HOOK_TIMEOUT_S,
                 queue_size: int = QUEUE_SIZE, output_kept: int = OUTPUT_KEPT,
                 owner: int = 0) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.timeout = timeout
        self.output_kept = output_kept
        self.owner = owner
        self.counts = HookCounts()
        self._queue: queue.Queue[HookEvent] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._dropping = False
        self._warned: dict[str, str] = {}  # file -> the rule it was last refused for

    def start(self) -> None:
        if self.directory is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="notify-hooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop after the hook that runs now (waiting at most ``timeout``; a hook still
        running then is left to its own timeout, in its own session)."""
        self._stopping = True
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, event: HookEvent) -> bool:
        """Queue ``event``; False when the queue is full (the event is dropped and counted).
        Never blocks; safe from any thread."""
        if self.directory is None:
            return True
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.counts.dropped += 1
            if not self._dropping:
                log.warning("notify hooks are %d events behind; the %s and further events "
                            "are dropped until they catch up", self._queue.maxsize,
                            event.summary)
                self._dropping = True
            return False
        self._dropping = False
        return True

    def _loop(self) -> None:
        while not self._stopping:
            event = self._queue.get()
            if event is _STOP or self._stopping:
                return
            try:
                self.run_event(event)
            except Exception:  # a bug here must not end the hooks for good
                log.exception("notify hooks for the %s failed", event.summary)

    def hooks(self) -> list[Path]:
        """The hook files allowed to run now, in name order (refusals are warned of)."""
        if self.directory is None:
            return []
        try:
            reason = dir_refusal(os.lstat(self.directory), self.owner)
            names = sorted(os.listdir(self.directory)) if reason is None else []
        except FileNotFoundError:
            return []
        except OSError as e:
            reason = str(e.strerror or e)
        if reason is not None:
            self._refuse(str(self.directory), f"notify directory {self.directory} is not "
                         f"used: {reason}")
            return []
        allowed = []
        for name in names:
            if name.startswith("."):
                continue
            path = self.directory / name
            try:
                why = refusal(os.lstat(path), self.owner)
            except OSError as e:
                why = str(e.strerror or e)
            if why is None:
                self._warned.pop(str(path), None)
                allowed.append(path)
            else:
                self.counts.refused += 1
                self._refuse(str(path), f"notify hook {path} is not run: {why}")
        return allowed

    def _refuse(self, key: str, message: str) -> None:
        if self._warned.get(key) != message:
            log.warning("%s", message)
            self._warned[key] = message

    def run_event(self, event: HookEvent) -> list[HookResult]:
        """Run every allowed hook for ``event``, in name order; each is logged."""
        env = {"PATH": HOOK_PATH, **event.env}
        results = []
        for path in self.hooks():
            r = self.run_one(path, env)
            self.counts.runs[r.result] += 1
            said = f"; output: {r.output}" if r.output else ""
            if r.timed_out:
                log.warning("notify hook %s for the %s did not end within %.0f s and was "
                            "killed%s", r.name, event.summary, self.timeout, said)
            elif r.returncode != 0:
                log.warning("notify hook %s for the %s failed (exit %s) in %.2f s%s", r.name,
                            event.summary, r.returncode, r.seconds, said)
            else:
                log.info("notify hook %s for the %s: done in %.2f s%s", r.name, event.summary,
                         r.seconds, said)
            results.append(r)
        return results

    def run_one(self, path: Path, env: Mapping[str, str]) -> HookResult:
        """Run one hook with ``env``, its output kept (bounded), killed at the timeout."""
        start = time.monotonic()
        deadline = start + self.timeout
        try:
            proc = subprocess.Popen([str(path)], env=dict(env), cwd="/",
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True)
        except OSError as e:
            return HookResult(path.name, None, f"cannot run it: {e.strerror or e}", False, 0.0)
        assert proc.stdout is not None
        with proc.stdout:
            kept, more = _read_until(proc, deadline, self.output_kept)
        timed_out = False
        try:
            code: int | None = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc.pid)
            code = proc.wait()
        lines = kept.decode("utf-8", errors="replace").strip().splitlines()
        # one log line, with no control characters of the hook's (escape sequences, CR)
        text = " | ".join("".join(c if c.isprintable() else "?" for c in x) for x in lines)
        if more:
            text += f" ... ({more} more bytes)"
        return HookResult(path.name, code, text, timed_out, time.monotonic() - start)


def _read_until(proc: subprocess.Popen[bytes], deadline: float,
                limit: int) -> tuple[bytes, int]:
    """Read the hook's output until it ends, the hook has exited and nothing more is
    there, or ``deadline``: the first ``limit`` bytes and how many more came."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    kept = bytearray()
    more = 0
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(min(left, 0.2)):
                if proc.poll() is not None:
                    break  # exited; a child of it that still holds the output is its own
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            room = max(0, limit - len(kept))
            kept += chunk[:room]
            more += len(chunk) - len(chunk[:room])
    return bytes(kept), more


def _kill(pid: int) -> None:
    """SIGKILL to ``pid``, then to its process group (its session's leader: same id)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ---- the agent's side ------------------------------------------------------------------------

class Notifier:
    """What the daemon calls: the events of its transitions and alarms, to the runner of
    the hooks in ``directory`` (None: no hooks)."""

    def __init__(self, config: Callable[[], NodeConfig],
                 lim_config: Callable[[int], LimConfig | None], directory: str | None,
                 runner: HookRunner | None = None) -> None:
        self._config = config
        self._lim_config = lim_config
        self.runner = runner if runner is not None else HookRunner(directory)

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()

    def alarm(self, alarm: Alarm, state: str) -> None:
        """An alarm was raised or cleared (any thread)."""
        self.runner.submit(alarm_event(self._config(), alarm, state))

    @contextlib.contextmanager
    def watching(self, transitions: Iterable[Transition]) -> Iterator[None]:
        """Notify the transitions recorded in ``transitions`` (the cycle's timeline: any
        iterable, oldest first) within the block."""
        mark = None
        for mark in transitions:
            pass
        yield
        cfg = self._config()
        for t in transitions_after(transitions, mark):
            self.runner.submit(transition_event(cfg, t, self._lim_config(t.lim)))
