"""Words shared by the config, the wire format and the decision: roles and LIM run states."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a server is in its cluster."""

    REGULAR = "regular"  # a LIM server: its own LIM normally runs here
    STANDBY = "standby"  # takes over the LIM of a failed regular server


class Mode(StrEnum):
    """How a LIM runs on a server.

    ``ACTIVE``: the alias IP is live and the LIM serves traffic. ``PRELOADED``: the LIM is
    loaded with its alias up but blocked in the kernel (the passive side of a preloaded
    cluster); activating it only unblocks the alias.
    """

    ACTIVE = "active"
    PRELOADED = "preloaded"


class Readiness(StrEnum):
    """Whether a node can run a LIM: ``LOADING`` while its agent is still starting up."""

    LOADING = "loading"
    READY = "ready"


@dataclass(frozen=True)
class LimRun:
    """One LIM whose service runs on a server.

    ``loading`` is true from the start of the service until it reports up; a LIM that is
    loading in ``ACTIVE`` mode already holds its alias, so it counts as running actively.
    """

    lim: int
    mode: Mode = Mode.ACTIVE
    loading: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lim, bool) or not isinstance(self.lim, int) or not (
                1 <= self.lim <= 0xFFFF):
            raise ValueError(f"LIM number {self.lim!r} is not a whole number from 1 to 65535")
        object.__setattr__(self, "mode", Mode(self.mode))

    @property
    def active(self) -> bool:
        """True when the LIM's alias is live here (loading or not)."""
        return self.mode is Mode.ACTIVE

    def describe(self) -> str:
        """``active``, ``preloaded`` or ``loading`` (with the mode when loading), for status."""
        return f"{self.mode} (loading)" if self.loading else str(self.mode)
