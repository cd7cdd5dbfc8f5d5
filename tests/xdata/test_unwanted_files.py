"""A receiver holding more than the sender planned for: since the sender asked, another
sync brought the very version, or a newer base. The real ``xdata serve`` reads and drops
the files it no longer wants, but only as the manifest lists them (each once, in its
order, of its size); anything else is refused as from any hostile peer, nothing installed.

The scene and the double's side of the wire are :mod:`tests.xdata.test_hostile_peer`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mxone_agent import xdata

from tests.xdata.test_hostile_peer import V, Scene, entry, manifest, scene, snapshot, wire

T13 = "lim2-20261128T130000.000000Z"  # the scene's newest version of LIM 2, the receiver's base
EXT = ("reload/ext.db", b"2001\n2002\n")  # both as in T13: the receiver copies them itself
DB = ("sysdb/db", b"v2" * 100)
NEW = ("z/new.db", b"new")  # the one file it wants
WANTS_NEW = manifest(files=[entry(p, b) for p, b in (EXT, DB, NEW)])
RETRY = "; the sender planned against other data here, the next sync sends it"

UNWANTED_STREAMS: dict[str, tuple[dict[str, Any], list[tuple[object, bytes]], str]] = {
    "a file not in the manifest": (
        WANTS_NEW, [("evil", b"x"), NEW],
        "the sending server sent 'evil' (1 bytes), expected 'z/new.db' (3 bytes)"),
    "a file of the manifest with another size": (
        WANTS_NEW, [("reload/ext.db", b"2001\n"), NEW],
        "the sending server sent 'reload/ext.db' with 5 bytes, the manifest lists it with "
        "10 bytes"),
    "a file of the manifest sent twice": (
        WANTS_NEW, [EXT, EXT, NEW], "the sending server sent 'reload/ext.db' twice"),
    "files out of the manifest's order": (
        WANTS_NEW, [DB, EXT, NEW],
        "the sending server sent 'reload/ext.db' after 'sysdb/db', out of the manifest's order"),
    "a stream that ends before the file wanted": (
        WANTS_NEW, [EXT, DB],
        f"the sending server did not send 'z/new.db' (3 bytes), which this side needs: its "
        f"stream ended{RETRY}"),
    "a file wanted skipped for a later one": (  # as from a sender that found it here
        manifest(files=[entry("reload/ext.db", b"2003\n"), entry(*DB)]), [DB],
        "the sending server sent 'sysdb/db' (200 bytes), expected 'reload/ext.db' (5 bytes), "
        f"which this side needs and which the manifest lists before it: it was not sent{RETRY}"),
}


@pytest.mark.parametrize("doc, bodies, error", UNWANTED_STREAMS.values(), ids=UNWANTED_STREAMS)
def test_files_not_wanted_are_skipped_only_as_the_manifest_lists_them(
        tmp_path: Path, doc: dict[str, Any], bodies: list[tuple[object, bytes]],
        error: str) -> None:
    """The receiver wants one file of three (its base holds the others), so it may read
    and drop the others, but only files of the manifest, each once, in the manifest's
    order, of the manifest's size; a refusal installs nothing."""
    s = scene(tmp_path)
    assert_refused(s, lambda: wire(doc, bodies), error)


def test_a_stream_ending_inside_a_file_not_wanted_is_refused(tmp_path: Path) -> None:
    s = scene(tmp_path)
    before = snapshot(s.world)
    cut = wire(WANTS_NEW, [EXT, DB, NEW]).split(b"2002")[0]
    done = s.serve("receive 2", cut)
    assert done.returncode == 1 and done.stderr.decode() == (
        "xdata serve: the stream from the sending server ended in the middle of "
        "reload/ext.db (5 of 10 bytes)\n")
    assert snapshot(s.world) == before


def test_files_sent_to_a_receiver_whose_base_holds_them_are_dropped(tmp_path: Path) -> None:
    """Planned against an older base, all three come; the receiver keeps the one it needs."""
    s = scene(tmp_path)
    done = s.serve("receive 2", wire(WANTS_NEW, [EXT, DB, NEW]))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"version": V, "fetched_files": 1, "fetched_bytes": 3,
                                       "reused_files": 2, "already_had": False}
    assert xdata.verify(s.root / V) == []


def assert_refused(s: Scene, stream: Callable[[], bytes], error: str) -> None:
    """``stream`` (made once the world is photographed) is refused with ``error``; the
    world as it was."""
    before = snapshot(s.world)
    done = s.serve("receive 2", stream())
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == f"xdata serve: {error}\n"
    assert snapshot(s.world) == before


def held(s: Scene, bodies: list[tuple[object, bytes]]) -> bytes:
    """A ``receive`` of the version the receiver holds already (T13), streaming ``bodies``."""
    doc = json.loads(xdata.read_manifest(s.root / T13).to_json())
    return wire(doc, bodies)


def test_a_version_held_already_is_answered_after_the_stream_is_read(tmp_path: Path) -> None:
    s = scene(tmp_path)
    before = snapshot(s.world)
    done = s.serve("receive 2", held(s, [EXT, DB]))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"version": T13, "fetched_files": 0, "fetched_bytes": 0,
                                       "reused_files": 2, "already_had": True}
    assert snapshot(s.world) == before


HELD_STREAMS: dict[str, tuple[list[tuple[object, bytes]], str]] = {
    "a file not in the manifest": (
        [EXT, DB, ("evil", b"x")],
        f"the sending server sent 'evil' (1 bytes), which is not a file of version {T13}"),
    "a file of the manifest with another size": (
        [("reload/ext.db", b"2001\n")],
        "the sending server sent 'reload/ext.db' with 5 bytes, the manifest lists it with "
        "10 bytes"),
    "a file of the manifest sent twice": (
        [EXT, EXT], "the sending server sent 'reload/ext.db' twice"),
    "files out of the manifest's order": (
        [DB, EXT],
        "the sending server sent 'reload/ext.db' after 'sysdb/db', out of the manifest's order"),
}


@pytest.mark.parametrize("bodies, error", HELD_STREAMS.values(), ids=HELD_STREAMS)
def test_a_hostile_stream_of_a_version_held_already_is_refused(
        tmp_path: Path, bodies: list[tuple[object, bytes]], error: str) -> None:
    s = scene(tmp_path)
    assert_refused(s, lambda: held(s, bodies), error)
