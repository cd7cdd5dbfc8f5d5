"""A warm interpreter for the reference service's commands: a regular failover starts its
LIM without waiting for a Python to start.

Starting the reference Service Node is a new Python process: 30-40 ms of interpreter start
and imports before it binds, on the path of every regular failover it stands in for. So the
agent keeps one such process waiting: started ahead (:meth:`WarmStarter.prepare`), its
modules imported, blocked on a read of its stdin (``mxone-agent service warm``). A command
of the reference service is handed to it as one JSON line and it runs it as the command
line would, exiting with its exit status; a new one is started for the next command. A
command of a LIM's own service (``service`` in the node config) is never run this way.

The waiting process holds nothing but its pipe: the agent gone (its end of the pipe
closed), it reads end-of-file and exits. Any trouble with it - it died, it does not answer
within the command's timeout - and the command is run the ordinary way or reported failed,
as without it.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Sequence


class WarmStarter:
    """One waiting interpreter for the commands that begin with ``prefix`` (the reference
    service's ``[python, ..., "service"]``); ``env`` gives its environment."""

    def __init__(self, prefix: Sequence[str], env: Callable[[], dict[str, str]]) -> None:
        self._prefix = tuple(prefix)
        self._env = env
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.used = 0

    def prepare(self) -> None:
        """Start the waiting interpreter unless one waits already (best effort)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            try:
                self._proc = subprocess.Popen(
                    [*self._prefix, "warm"], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self._env())
            except OSError:
                self._proc = None

    def run(self, argv: Sequence[str], timeout: float) -> int | None:
        """Run ``argv`` in the waiting interpreter: its exit status (-1: it did not finish
        within ``timeout``). None when ``argv`` is not a reference service command or no
        interpreter waits: the caller runs it itself."""
        if tuple(argv[:len(self._prefix)]) != self._prefix:
            return None
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None or proc.stdin is None:
            return None
        try:
            proc.stdin.write(json.dumps(list(argv[len(self._prefix):])).encode() + b"\n")
            proc.stdin.close()
        except OSError:
            proc.kill()
            proc.wait()
            self.prepare()
            return None
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -1
        self.used += 1
        self.prepare()  # the next one starts while nothing waits for it
        return code

    def close(self) -> None:
        """End the waiting interpreter (it reads end-of-file and exits)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
