"""Reading and writing the system config file safely.

Writes are atomic (:func:`mxone_agent.files.atomic_write`, re-exported here as
``atomic_write``): a crash leaves either the old file or the new one, never a mix. The
previous generation is kept beside the file as ``<name>.prev``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from mxone_agent.files import atomic_write

from mxone_maintenance import configfile
from mxone_maintenance.errors import ConfigFileError, MxoneError
from mxone_maintenance.model import System

__all__ = ["DEFAULT_PATH", "atomic_write", "config_path", "load", "read_text", "save"]

DEFAULT_PATH = Path("/etc/mxone/system.toml")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: the explicit one, $MXONE_SYSTEM_CONFIG, or the default."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("MXONE_SYSTEM_CONFIG") or DEFAULT_PATH)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(str(path), [f"{path}: no such file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError(str(path), [f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigFileError(str(path), [f"{path}: cannot read: {exc.strerror}"]) from None


def load(path: Path) -> System:
    """The system in the file, as written (not yet validated)."""
    return configfile.parse(read_text(path), str(path))


def save(path: Path, system: System) -> None:
    """Write a new generation of the system, refusing to overwrite a change made meanwhile.

    The one compare-and-swap of the generation: ``system.generation`` must be one more
    than the generation on disk (or any value when there is no file yet). The comparison
    and the write happen under an exclusive lock on the file's directory, so of two tools
    saving the same next generation at once, one writes and the other is refused. The
    system must break no rule. The old file is kept as .prev.

    A file that exists is changed only where the system changed: the administrator's
    comments, blank lines and order stay (:func:`configfile.update`); a new file is
    written in the canonical layout (:func:`configfile.dump`).
    """
    system.validated()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _directory_locked(path.parent):
        if path.exists():
            text = read_text(path)
            current = configfile.parse(text, str(path)).generation
            if system.generation != current + 1:
                raise MxoneError(
                    f"{path} is at generation {current}; refusing to write generation "
                    f"{system.generation} (someone changed the system meanwhile: read it again)"
                )
            atomic_write(path.with_name(path.name + ".prev"), path.read_bytes())
            new_text = configfile.update(text, system)
        else:
            new_text = configfile.dump(system)
        atomic_write(path, new_text.encode("utf-8"))


@contextlib.contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (no lock file: the directory itself)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
