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
from typing import Protocol, TypeVar

import urwid

T = TypeVar("T")
Progress = Callable[[str, float], None]
Job = Callable[[Progress], T]
"""A piece of background work: reports its progress, gives its result."""
Done = Callable[[T | None, Exception | None], None]
"""Called in the UI with the job's result, or None and the error it raised."""


class Runner(Protocol):
    def start(self, job: Job[T], on_progress: Progress, on_done: Done[T]) -> None:
        """Run ``job(progress)``; call on_progress and then on_done(result, error) in the UI."""
        ...

    def call_in_ui(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the UI (callable from any thread)."""
        ...

    def after(self, seconds: float, fn: Callable[[], None]) -> object:
        """Call ``fn`` in the UI after ``seconds``; returns a handle for :meth:`cancel`."""
        ...

    def cancel(self, handle: object) -> None:
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

    def start(self, job: Job[T], on_progress: Progress, on_done: Done[T]) -> None:
        try:
            result = job(on_progress)
        except Exception as exc:  # reported on screen by on_done, never raised into the UI
            on_done(None, exc)
            return
        on_done(result, None)

    def call_in_ui(self, fn: Callable[[], None]) -> None:
        fn()

    def after(self, seconds: float, fn: Callable[[], None]) -> object:
        timer = (seconds, fn)
        self.timers.append(timer)
        return timer

    def cancel(self, handle: object) -> None:
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

    def after(self, seconds: float, fn: Callable[[], None]) -> object:
        return self.loop.set_alarm_in(seconds, lambda _loop, _data: fn())

    def cancel(self, handle: object) -> None:
        self.loop.remove_alarm(handle)

    def start(self, job: Job[T], on_progress: Progress, on_done: Done[T]) -> None:
        messages: queue.SimpleQueue[Callable[[], bool]] = queue.SimpleQueue()

        def deliver(_data: bytes) -> bool:
            while True:
                try:
                    message = messages.get_nowait()
                except queue.Empty:
                    return True
                if not message():
                    return False  # done: removes the watch and closes the read end

        fd = self.loop.watch_pipe(deliver)

        def post(message: Callable[[], bool]) -> None:
            messages.put(message)
            os.write(fd, b"!")

        def progress(line: str, fraction: float) -> None:
            def show() -> bool:
                on_progress(line, fraction)
                return True

            post(show)

        def done(result: T | None, error: Exception | None) -> None:
            def finish() -> bool:
                on_done(result, error)
                return False

            post(finish)

        def work() -> None:
            try:
                try:
                    result = job(progress)
                except Exception as exc:
                    done(None, exc)
                else:
                    done(result, None)
            finally:
                os.close(fd)

        threading.Thread(target=work, name="mxone-menus-job", daemon=True).start()
