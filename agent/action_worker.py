"""The action worker: one thread that runs the loop's slow jobs (the executor's service
commands, probes, nftables; status polls) one at a time, in the order they were given, and
hands each result back to the loop.

The loop never waits for it: it submits a job, and learns of its result when the wake pipe
(:attr:`ActionWorker.wake_fd`, registered with the loop's selector) becomes readable and it
calls :meth:`ActionWorker.results`. Another thread hands the loop a call the same way
(:meth:`ActionWorker.post`): the loop owns every state.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("mxone_agent")

CALL = "call"
"""The kind of a result that is a call posted to the loop (:meth:`ActionWorker.post`)."""


class ActionWorker:
    """Jobs in (``submit``), results out (``results``), in order; a job that raises hands
    back its exception (logged here with its traceback)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[str, Callable[[], Any]] | None] = queue.Queue()
        self._results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="executor", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """False once the thread has died (no action could be applied any more)."""
        return self._thread is None or self._thread.is_alive()

    def submit(self, kind: str, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the worker; its result comes back as ``(kind, result)``."""
        self._jobs.put((kind, fn))

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop (from another thread): it comes back as ``(CALL, fn)``."""
        self._results.put((CALL, fn))
        self._wake()

    def results(self) -> Iterator[tuple[str, Any]]:
        """The results, in order, until none is left (the loop calls this when ``wake_fd``
        is readable)."""
        try:
            while os.read(self.wake_fd, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                yield self._results.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        """End the thread once the jobs given so far are done (waits at most 30 s)."""
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)
        os.close(self.wake_fd)
        os.close(self._wake_w)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # closing down

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            kind, payload = job
            try:
                result = payload()
            except Exception as e:
                log.exception("%s failed", kind)
                result = e
            self._results.put((kind, result))
            self._wake()
