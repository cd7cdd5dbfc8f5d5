"""Background work for the UI: a job runs off the loop and reports back through a pipe.

:class:`PipeRunner` runs each job in a worker thread; progress and the result travel on a
queue, and a byte on a :meth:`urwid.MainLoop.watch_pipe` pipe wakes the loop to deliver
them, so the loop never blocks. A worker that needs the operator (a host key to accept)
hands a function to :meth:`PipeRunner.call_in_ui` and waits for its answer. Timers
(:meth:`PipeRunner.after`) are the loop's alarms. :class:`InlineRunner` runs the job at
once, for headless tests; its timers fire only when the test says so.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

import urwid

Progress = Callable[[str, float], None]
Job = Callable[[Progress], Any]
Done = Callable[[Any, Exception | None], None]


class Runner(Protocol):
    def start(self, job: Job, on_progress: Progress, on_done: Done) -> None:
        """Run ``job(progress)``; call on_progress and then on_done(result, error) in the UI."""
        ...

    def call_in_ui(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the UI (callable from any thread)."""
        ...

    def after(self, seconds: float, fn: Callable[[], None]) -> Any:
        """Call ``fn`` in the UI after ``seconds``; returns a handle for :meth:`cancel`."""
        ...

    def cancel(self, handle: Any) -> None:
        """Forget a timer from :meth:`after` (a no-op once it fired)."""
        ...


class InlineRunner:
    """Runs the job synchronously (tests, and anything without a main loop).

    A UI call from a worker runs at once; timers wait in :attr:`timers` until a test calls
    :meth:`fire`. A job that needs the operator's answer cannot run here (nobody can press
    a key while the job holds the only thread): use a threaded runner for that.
    """

    def __init__(self) -> None:
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def start(self, job: Job, on_progress: Progress, on_done: Done) -> None:
        try:
            result = job(on_progress)
        except Exception as exc:  # reported on screen by on_done, never raised into the UI
            on_done(None, exc)
            return
        on_done(result, None)

    def call_in_ui(self, fn: Callable[[], None]) -> None:
        fn()

    def after(self, seconds: float, fn: Callable[[], None]) -> Any:
        timer = (seconds, fn)
        self.timers.append(timer)
        return timer

    def cancel(self, handle: Any) -> None:
        if handle in self.timers:
            self.timers.remove(handle)

    def fire(self) -> int:
        """Run the timers due so far (all of them); how many ran."""
        due, self.timers = self.timers, []
        for _seconds, fn in due:
            fn()
        return len(due)


class PipeRunner:
    """Runs jobs in threads; the urwid loop is woken through watch_pipe."""

    def __init__(self, loop: urwid.MainLoop) -> None:
        self.loop = loop
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._calls_fd = loop.watch_pipe(self._run_calls)  # made here, in the UI thread

    def _run_calls(self, _data: bytes) -> bool:
        while True:
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                return True
            fn()

    def call_in_ui(self, fn: Callable[[], None]) -> None:
        self._calls.put(fn)
        os.write(self._calls_fd, b"!")

    def after(self, seconds: float, fn: Callable[[], None]) -> Any:
        return self.loop.set_alarm_in(seconds, lambda _loop, _data: fn())

    def cancel(self, handle: Any) -> None:
        self.loop.remove_alarm(handle)

    def start(self, job: Job, on_progress: Progress, on_done: Done) -> None:
        messages: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()

        def deliver(_data: bytes) -> bool:
            while True:
                try:
                    kind, a, b = messages.get_nowait()
                except queue.Empty:
                    return True
                if kind == "progress":
                    on_progress(a, b)
                else:
                    on_done(a, b)
                    return False  # removes the watch and closes the read end

        fd = self.loop.watch_pipe(deliver)

        def post(kind: str, a: Any, b: Any) -> None:
            messages.put((kind, a, b))
            os.write(fd, b"!")

        def work() -> None:
            try:
                try:
                    result = job(lambda line, fraction: post("progress", line, fraction))
                except Exception as exc:
                    post("done", None, exc)
                else:
                    post("done", result, None)
            finally:
                os.close(fd)

        threading.Thread(target=work, name="mxone-menus-job", daemon=True).start()
