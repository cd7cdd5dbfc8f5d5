"""Background work for the UI: a job runs off the loop and reports back through a pipe.

:class:`PipeRunner` runs each job in a worker thread; progress and the result travel on a
queue, and a byte on a :meth:`urwid.MainLoop.watch_pipe` pipe wakes the loop to deliver
them, so the loop never blocks. :class:`InlineRunner` runs the job at once, for headless tests.
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


class InlineRunner:
    """Runs the job synchronously (tests, and anything without a main loop)."""

    def start(self, job: Job, on_progress: Progress, on_done: Done) -> None:
        try:
            result = job(on_progress)
        except Exception as exc:  # reported on screen by on_done, never raised into the UI
            on_done(None, exc)
            return
        on_done(result, None)


class PipeRunner:
    """Runs the job in a thread; the urwid loop is woken through watch_pipe."""

    def __init__(self, loop: urwid.MainLoop) -> None:
        self.loop = loop

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
