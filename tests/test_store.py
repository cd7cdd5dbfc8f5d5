"""Saving the system config: atomic, generation-checked, previous version kept."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest

from mxone_maintenance import configfile, store
from mxone_maintenance.errors import MxoneError, ValidationError

from tests.test_rules import valid_system


def test_first_save_then_next_generation_keeps_previous(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "system.toml"
    s1 = valid_system()
    store.save(path, s1)
    assert store.load(path) == s1
    s2 = s1.next_generation(clusters=())
    store.save(path, s2)
    assert store.load(path) == s2
    assert configfile.parse(path.with_name("system.toml.prev").read_text()) == s1
    assert sorted(p.name for p in path.parent.iterdir()) == ["system.toml", "system.toml.prev"]


def test_stale_generation_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "system.toml"
    s1 = valid_system()
    store.save(path, s1)
    before = path.read_bytes()
    with pytest.raises(MxoneError, match="is at generation 3; refusing to write generation 3"):
        store.save(path, s1)
    assert path.read_bytes() == before
    assert not path.with_name("system.toml.prev").exists()


def test_invalid_system_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "system.toml"
    store.save(path, valid_system())
    before = path.read_bytes()
    bad = valid_system().next_generation()
    bad = dataclasses.replace(bad, clusters=(dataclasses.replace(bad.clusters[0], failover="preloaded"),))
    with pytest.raises(ValidationError, match="preloaded-1\\+1"):
        store.save(path, bad)
    assert path.read_bytes() == before


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "system.toml"
    store.save(path, valid_system())
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        store.atomic_write(path, b"half")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["system.toml"]


def test_config_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MXONE_SYSTEM_CONFIG", raising=False)
    assert store.config_path() == Path("/etc/mxone/system.toml")
    monkeypatch.setenv("MXONE_SYSTEM_CONFIG", "/x/y.toml")
    assert store.config_path() == Path("/x/y.toml")
    assert store.config_path("/a.toml") == Path("/a.toml")



def test_the_generation_is_compared_and_swapped_under_one_lock(tmp_path: Path) -> None:
    """Of two saves of the same next generation, one writes and the other is refused."""
    path = tmp_path / "system.toml"
    s1 = valid_system()
    store.save(path, s1)
    first, second = s1.next_generation(clusters=()), s1.next_generation()
    errors: list[Exception] = []

    def save_second() -> None:
        try:
            store.save(path, second)
        except MxoneError as exc:
            errors.append(exc)

    with store._directory_locked(tmp_path):  # the first tool, between compare and swap
        other = threading.Thread(target=save_second)
        other.start()
        other.join(0.3)
        assert other.is_alive()  # the second waits: it has not compared yet
        store.atomic_write(path, configfile.dump(first).encode())  # the first one's swap
    other.join(5)
    assert not other.is_alive()
    assert [str(e) for e in errors] == [
        f"{path} is at generation 4; refusing to write generation 4 "
        "(someone changed the system meanwhile: read it again)"]
    assert store.load(path) == first
