"""What a call over SSH gives back: one :class:`Result` per server, and for a call over
many servers the per-server map :class:`GroupResult` (Fabric's ``GroupResult`` is the
model: ``succeeded`` / ``failed``, one server's failure never hides the others'), which
:class:`GroupError` wraps when a caller wants an exception. :class:`SshError` is the root
of every SSH error of the tool.
"""

from __future__ import annotations

from dataclasses import dataclass

from mxone_maintenance.errors import MxoneError


class SshError(MxoneError):
    """A server could not be reached, authenticated or commanded."""


@dataclass(frozen=True)
class Result:
    """One command (or transfer) on one server.

    ``ok``: connected and the command exited 0. ``error``: why the command could not run
    or finish ('' when it ran; then ``exit_status`` says how it ended).
    """

    server: str
    ok: bool
    stdout: str = ""
    stderr: str = ""
    exit_status: int | None = None
    error: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        """One line saying why it failed ('' when ok)."""
        if self.ok:
            return ""
        if self.error:
            return self.error
        tail = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return f"exit status {self.exit_status}" + (f": {tail[-1]}" if tail else "")


class GroupResult(dict[str, Result]):
    """Server name -> Result, for a call over many servers."""

    @property
    def succeeded(self) -> dict[str, Result]:
        """The servers whose call succeeded."""
        return {k: v for k, v in self.items() if v.ok}

    @property
    def failed(self) -> dict[str, Result]:
        """The servers whose call failed."""
        return {k: v for k, v in self.items() if not v.ok}

    @property
    def ok(self) -> bool:
        """Whether every server's call succeeded (also when there was none)."""
        return all(r.ok for r in self.values())


class GroupError(SshError):
    """Some servers of a group call failed; ``result`` holds every server's Result."""

    def __init__(self, result: GroupResult) -> None:
        self.result = result
        super().__init__("; ".join(f"{name}: {r.describe()}" for name, r in result.failed.items()))
