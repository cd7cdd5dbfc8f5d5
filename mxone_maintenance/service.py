"""The config on LIM 1 and the changes to it: read, preview, plan, apply.

A change command (:mod:`mxone_maintenance.commands`) runs through :class:`Maintenance` on
both faces: the current system, its :class:`~mxone_maintenance.actions.Change` through
:meth:`Maintenance.preview` (which raises with the field named when the input breaks a
rule), :meth:`Maintenance.plan` for it, and on confirmation :meth:`Maintenance.apply` with a
progress callback.

Applying a change goes through an :class:`Applier`. The :class:`LocalApplier` here only
writes the system config file on this server; the orchestration over SSH implements the
same interface to bring every node of the system to the new generation, or none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mxone_maintenance import store
from mxone_maintenance.actions import Change
from mxone_maintenance.errors import ConfigFileError
from mxone_maintenance.model import System

Progress = Callable[[str, float], None]
"""Called with a line saying what is being done and the fraction done (0.0 to 1.0)."""


@dataclass(frozen=True)
class PlanStep:
    """One thing a change does on one server."""

    server: str
    what: str


@dataclass(frozen=True)
class Outcome:
    """What happened on one server when a change was applied."""

    server: str
    ok: bool
    message: str


@dataclass(frozen=True)
class ApplyResult:
    """Per-server outcomes; ``ok`` only when every server reached the new generation."""

    generation: int
    outcomes: tuple[Outcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)


class Applier(Protocol):
    def plan(self, change: Change) -> list[PlanStep]: ...

    def apply(self, change: Change, progress: Progress) -> ApplyResult: ...


class LocalApplier:
    """Writes the system config file on this server, and nothing else."""

    def __init__(self, path: Path, server_name: str = "lim1") -> None:
        self.path = path
        self.server_name = server_name

    def plan(self, change: Change) -> list[PlanStep]:
        return [PlanStep(self.server_name, f"write system config generation {change.after.generation} "
                         f"to {self.path}")]

    def apply(self, change: Change, progress: Progress) -> ApplyResult:
        progress(f"{self.server_name}: writing {self.path}", 0.0)
        try:
            store.save(self.path, change.after)
        except OSError as exc:
            progress(f"{self.server_name}: failed", 1.0)
            return ApplyResult(change.before.generation,
                               (Outcome(self.server_name, False, f"cannot write {self.path}: {exc.strerror}"),))
        progress(f"{self.server_name}: done", 1.0)
        return ApplyResult(change.after.generation, (Outcome(
            self.server_name, True, f"system config generation {change.after.generation} written"),))


class Maintenance:
    """The system config on LIM 1 and the actions on it."""

    def __init__(self, path: Path | None = None, applier: Applier | None = None) -> None:
        self.path = path or store.config_path()
        self.applier = applier or LocalApplier(self.path)
        self._cached: tuple[tuple[int, int, int], System] | None = None

    def system(self) -> System:
        """The current system; an empty one (generation 0) when there is no config file yet.

        Read again only when the file changed (the menus ask on every redraw).
        """
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return System(generation=0)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, store.load(self.path))
        return self._cached[1]

    def preview(self, action: Callable[..., Change], *args: object, **kwargs: object) -> Change:
        """Run an action from :mod:`mxone_maintenance.actions` on the current system.

        Raises ActionError or ValidationError (field and rule named); nothing is written.
        """
        return action(self.system(), *args, **kwargs)

    def plan(self, change: Change) -> list[PlanStep]:
        """What applying the change does, server by server: effects first, then the steps."""
        steps = [PlanStep("system", effect) for effect in change.effects]
        return steps + self.applier.plan(change)

    def apply(self, change: Change, progress: Progress | None = None) -> ApplyResult:
        """Bring the system to ``change.after``. Refuses when the system moved on meanwhile."""
        current = self.system()
        if current.generation != change.before.generation:
            raise ConfigFileError(str(self.path), [
                f"{self.path}: the system changed meanwhile (generation {current.generation}, "
                f"this change was made from {change.before.generation}); start the action again"])
        return self.applier.apply(change, progress or (lambda _line, _fraction: None))

