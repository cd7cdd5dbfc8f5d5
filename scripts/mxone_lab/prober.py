"""The probe running on a lab host for the length of a ``with`` block, for tests and
benchmarks (:class:`Prober`)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

from mxone_lab.errors import LabError, ProbeError
from mxone_lab.probe_log import ProbeLog, json_records
from mxone_lab.probe_loop import DEFAULT_MAX_EVENTS, ProbeOptions, option_problems

if TYPE_CHECKING:
    from mxone_lab.lab import Lab


class Prober:
    """The probe running on a lab host for the length of a ``with`` block.

    Entering starts ``python -m mxone_lab.probe`` on ``host`` with :meth:`Lab.popen` and
    returns once its sockets are open (its start line arrived), so the block's actions are
    seen; leaving stops it by its PID (SIGTERM, then SIGKILL after ``stop_timeout``) and
    reads its output back. :meth:`log` works during the block (what was flushed so far)
    and after it (everything, summary included). The output file lives on the host
    (``/var/tmp``, in its own overlay) and is removed once read back; :meth:`log` reads
    only what was added since its last call, so polling it stays cheap.
    """

    def __init__(
        self,
        lab: Lab,
        host: str,
        aliases: Sequence[str],
        *,
        arp_every: float = 0.1,
        icmp_every: float = 0.01,
        duration: float = 60.0,
        interface: str = "eth0",
        max_events: int = DEFAULT_MAX_EVENTS,
        arp_sender: str = "client",
        start_timeout: float = 10.0,
        stop_timeout: float = 3.0,
    ) -> None:
        self.lab = lab
        self.host = host
        self.options = ProbeOptions(
            aliases=tuple(str(a) for a in aliases),
            arp_every=arp_every,
            icmp_every=icmp_every,
            duration=duration,
            interface=interface,
            out=f"/var/tmp/mxone-probe-{secrets.token_hex(4)}.jsonl",
            max_events=max_events,
            arp_sender=arp_sender,
        )
        problems = option_problems(self.options)
        if problems:
            raise ProbeError(f"probe on {host}: " + "; ".join(problems))
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._records: list[dict[str, Any]] = []
        self._read_bytes = 0  # of the output file, up to the end of the last whole line
        self._stopped = False
        self.start_record: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        """The probe's PID (on the machine: the lab's hosts share its PID namespace)."""
        return self._proc.pid if self._proc else None

    def argv(self) -> list[str]:
        o = self.options
        argv = [sys.executable, "-m", "mxone_lab.probe"]
        for a in o.aliases:
            argv += ["--alias", a]
        return argv + [
            "--arp-every",
            repr(o.arp_every),
            "--icmp-every",
            repr(o.icmp_every),
            "--duration",
            repr(o.duration),
            "--interface",
            o.interface,
            "--out",
            o.out,
            "--max-events",
            str(o.max_events),
            "--arp-sender",
            o.arp_sender,
        ]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the probe and wait for its start line; :class:`ProbeError` if it fails."""
        if self._proc is not None:
            raise ProbeError(f"probe on {self.host} was already started")
        p = self.lab.popen(
            self.host,
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._proc = p
        assert p.stdout is not None
        line = b""
        deadline = time.monotonic() + self.start_timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, left))
            chunk = os.read(p.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                why = "exited" if ready else f"sent no start line within {self.start_timeout:g} s"
                self._end()
                self._stopped = True
                self._remove_output()
                err = self._stderr()
                raise ProbeError(f"probe on {self.host} {why}" + (f": {err}" if err else ""))
            line += chunk
        self.start_record = json.loads(line.splitlines()[0])

    def log(self) -> ProbeLog:
        """The output so far (while running: what the probe flushed) or all of it (once
        stopped)."""
        if not self._stopped:
            self._read_more(final=False)
        return ProbeLog.from_records(self._records)

    def stop(self) -> ProbeLog:
        """Stop the probe (idempotent), read the rest of its output and remove the file."""
        if self._proc is None:
            raise ProbeError(f"probe on {self.host} was never started")
        if not self._stopped:
            self._end()
            self._read_more(final=True)
            self._stopped = True
            self._remove_output()
            for f in (self._proc.stdout, self._proc.stderr):
                if f is not None:
                    f.close()
        return ProbeLog.from_records(self._records)

    def _end(self) -> None:
        p = self._proc
        assert p is not None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def _read_more(self, final: bool) -> None:
        """Decode the whole lines the file gained since the last read (and, when ``final``,
        a torn last line too, which the decoder then skips)."""
        argv = ["tail", "-c", f"+{self._read_bytes + 1}", self.options.out]
        r = self.lab.exec(self.host, argv, check=False, timeout=30)
        if r.returncode != 0:
            raise ProbeError(
                f"cannot read the probe's output {self.options.out} on "
                f"{self.host}: {r.stderr.strip()}"
            )
        text = r.stdout  # JSON lines of ASCII only: characters are bytes
        whole = len(text) if final else text.rfind("\n") + 1
        self._records += json_records(text[:whole].splitlines())
        self._read_bytes += whole

    def _remove_output(self) -> None:
        with contextlib.suppress(LabError):
            self.lab.exec(self.host, ["rm", "-f", self.options.out], timeout=10)

    def _stderr(self) -> str:
        p = self._proc
        if p is None or p.stderr is None or p.poll() is None:
            return ""
        return p.stderr.read().decode("utf-8", "replace").strip()
