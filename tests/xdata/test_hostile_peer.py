"""A hostile peer against the real ``xdata serve`` and ``xdata.receive``: it holds the
cluster's sync key and nothing more, and must not be able to write, read or delete
anything but what the serving node's own config and rules allow.

The double speaks the real protocol: request words as the forced command receives them
(SSH_ORIGINAL_COMMAND, with the forced command's own ``--root``/``--config``), then on
stdin a manifest line and the :mod:`xdata_wire` stream (a JSON header line and the body
of each file, then ``{"end": true}``). The serving side is a real process running
``xdata_sync.main`` on a temporary versions root. Every refusal must be one line naming
the field and the rule; the versions root and everything around it must be exactly as
before (names, types, modes, contents), and no file may appear outside the root.

The other way round - a hostile *answering* peer against this node's pull - is at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mxone_agent import xdata, xdata_sync

from tests.agent.builders import config_dict

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FORCED = "/opt/mxone/agent/current/bin/mxone-agent xdata serve"
SERVE = ("import sys; from mxone_agent import xdata_sync; "
         "sys.exit(xdata_sync.main(['serve', '--config', sys.argv[1], '--root', sys.argv[2]]))")
SHA_OF_EMPTY = hashlib.sha256(b"").hexdigest()


# ---- the scene: a node's versions root with the world around it -----------------------------

@dataclass
class Scene:
    """``tmp/world`` stands for the node's whole file system: the versions root
    ``world/xdata`` (LIM 2 twice, LIM 3 once), ``world/etc`` beside it (what a ``../``
    name would reach), the node config in ``world/node.json``."""

    world: Path
    root: Path
    config: Path
    node: str

    def serve(self, request: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        """``request`` through the forced command: the client's words arrive in
        SSH_ORIGINAL_COMMAND, the forced command names the config and the root."""
        env = {**os.environ, "SSH_ORIGINAL_COMMAND": f"{FORCED} --root /srv/elsewhere {request}"}
        return subprocess.run([sys.executable, "-c", SERVE, str(self.config), str(self.root)],
                              input=stdin, capture_output=True, env=env, timeout=60, check=False)


def scene(tmp_path: Path, node: str = "sb") -> Scene:
    world = tmp_path / "world"
    root = world / "xdata"
    (world / "etc" / "systemd").mkdir(parents=True)
    (world / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    xdata.write_version(root, 2, {"reload/ext.db": b"2001\n", "sysdb/db": b"v1" * 100}, T0)
    xdata.write_version(root, 2, {"reload/ext.db": b"2001\n2002\n", "sysdb/db": b"v2" * 100},
                        T0 + timedelta(hours=1))
    xdata.write_version(root, 3, {"reload/ext.db": b"3001\n"}, T0)
    config = world / "node.json"
    config.write_text(json.dumps(config_dict(node)))  # sb: LIMs 2, 3, 4 of cluster1
    return Scene(world, root, config, node)


def snapshot(top: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry below ``top`` (links not followed): type, mode, and content or target."""
    found: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(top))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                found[rel] = ("file", stat.S_IMODE(st.st_mode),
                              hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
    return found


# ---- the double's side of the wire ------------------------------------------------------------

def manifest(version: object = "lim2-20261128T140000.000000Z", lim: object = 2,
             files: list[dict[str, Any]] | None = None, created: object = None) -> dict[str, Any]:
    parsed = xdata.parse_version_name(version)
    return {"format": 1, "lim": lim, "version": version,
            "created": created if created is not None else
            (parsed[1].isoformat() if parsed else "2026-11-28T14:00:00+00:00"),
            "files": files if files is not None else [entry("reload/ext.db", b"2001\n")]}


def entry(path: object, body: bytes = b"x", size: object = None) -> dict[str, Any]:
    return {"path": path, "size": len(body) if size is None else size,
            "sha256": hashlib.sha256(body).hexdigest(), "mtime_ns": 1_764_331_200_000_000_000}


def wire(doc: dict[str, Any], bodies: list[tuple[object, bytes]] | None = None) -> bytes:
    """The bytes a sender writes for ``receive``: the manifest line, then each file's
    header and body (by default the manifest's own files, each body 'x'), then the end."""
    out = json.dumps(doc).encode() + b"\n"
    if bodies is None:
        bodies = [(f["path"], b"x" * f["size"] if isinstance(f.get("size"), int)
                   and 0 <= f["size"] < 1 << 20 else b"") for f in doc["files"]]
    for path, body in bodies:
        out += json.dumps({"path": path, "size": len(body)}).encode() + b"\n" + body
    return out + b'{"end": true}\n'


# ---- refusals ---------------------------------------------------------------------------------

V = "lim2-20261128T140000.000000Z"
NOT_LIM2 = "not a version name of LIM 2 (lim2-<UTC time stamp>)"
NOT_PLAIN = "not a plain relative path"
SIZE_RULE = "not a whole number of bytes from 0 to 1099511627776"

HOSTILE_RECEIVES: dict[str, tuple[str, bytes, str]] = {
    # ---- version names
    "a ../ version": (
        "receive 2", wire(manifest("../../etc/systemd/system/x.d")),
        f"sent manifest: version is '../../etc/systemd/system/x.d', {NOT_LIM2}"),
    "an absolute version": (
        "receive 2", wire(manifest("/etc/systemd/system/x.d")),
        f"sent manifest: version is '/etc/systemd/system/x.d', {NOT_LIM2}"),
    "a version name with ../ after it": (
        "receive 2", wire(manifest(V + "/../../etc")),
        f"sent manifest: version is 'lim2-20261128T140000.000000Z/../../etc', {NOT_LIM2}"),
    "a version name ending in a newline": (
        "receive 2", wire(manifest(V + "\n")),
        f"sent manifest: version is 'lim2-20261128T140000.000000Z\\n', {NOT_LIM2}"),
    "a version name with a NUL": (
        "receive 2", wire(manifest("lim2-20261128T140000.000000Z\x00")),
        f"sent manifest: version is 'lim2-20261128T140000.000000Z\\x00', {NOT_LIM2}"),
    "a version name with non-ASCII digits": (
        "receive 2", wire(manifest("lim\u0662-20261128T140000.000000Z", lim=2)),
        f"sent manifest: version is 'lim\u0662-20261128T140000.000000Z', {NOT_LIM2}"),
    "a version name with a leading zero": (
        "receive 2", wire(manifest("lim02-20261128T140000.000000Z")),
        f"sent manifest: version is 'lim02-20261128T140000.000000Z', {NOT_LIM2}"),
    "a version that is no string": (
        "receive 2", wire(manifest(["lim2"])), f"sent manifest: version is ['lim2'], {NOT_LIM2}"),
    "a created that is not the version's time": (
        "receive 2", wire(manifest(created="2026-11-28T14:00:00+00:00\n../")),
        "sent manifest: created is '2026-11-28T14:00:00+00:00\\n../', not the time stamp of "
        "version lim2-20261128T140000.000000Z ('2026-11-28T14:00:00+00:00')"),
    # ---- file paths
    "a ../ file path": (
        "receive 2", wire(manifest(files=[entry("../../etc/passwd")])),
        f"sent manifest: files[0]: path is '../../etc/passwd', {NOT_PLAIN}: '..' leads out of "
        "the version"),
    "a ../ inside a file path": (
        "receive 2", wire(manifest(files=[entry("reload/../../../etc/passwd")])),
        f"sent manifest: files[0]: path is 'reload/../../../etc/passwd', {NOT_PLAIN}: '..' "
        "leads out of the version"),
    "an absolute file path": (
        "receive 2", wire(manifest(files=[entry("/etc/passwd")])),
        f"sent manifest: files[0]: path is '/etc/passwd', {NOT_PLAIN}: it is absolute"),
    "a NUL in a file path": (
        "receive 2", wire(manifest(files=[entry("reload/ext\x00.db")])),
        f"sent manifest: files[0]: path is 'reload/ext\\x00.db', {NOT_PLAIN}: it holds a "
        "control character"),
    "a newline in a file path": (
        "receive 2", wire(manifest(files=[entry("reload/ext\n.db")])),
        f"sent manifest: files[0]: path is 'reload/ext\\n.db', {NOT_PLAIN}: it holds a "
        "control character"),
    "white space in a file path": (
        "receive 2", wire(manifest(files=[entry("reload/ext .db")])),
        f"sent manifest: files[0]: path is 'reload/ext .db', {NOT_PLAIN}: it holds white "
        "space"),
    "a lone surrogate in a file path": (
        "receive 2", wire(manifest(files=[entry("reload/\udcff")])),
        f"sent manifest: files[0]: path is 'reload/\\udcff', {NOT_PLAIN}: it is not UTF-8"),
    "a second spelling of a file path": (
        "receive 2", wire(manifest(files=[entry("reload//ext.db")])),
        f"sent manifest: files[0]: path is 'reload//ext.db', {NOT_PLAIN}: it is not in its "
        "one plain spelling (an empty or '.' component)"),
    "a ./ file path": (
        "receive 2", wire(manifest(files=[entry("./ext.db")])),
        f"sent manifest: files[0]: path is './ext.db', {NOT_PLAIN}: it is not in its one "
        "plain spelling (an empty or '.' component)"),
    "the manifest's own name": (
        "receive 2", wire(manifest(files=[entry("MANIFEST.json")])),
        f"sent manifest: files[0]: path is 'MANIFEST.json', {NOT_PLAIN}: MANIFEST.json is "
        "the manifest's own name"),
    "a path that is too long": (
        "receive 2", wire(manifest(files=[entry("a/" * 600 + "b")])),
        f"sent manifest: files[0]: path is 'a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/..., "
        f"{NOT_PLAIN}: it is longer than 1024 bytes"),
    "a file that is also a directory": (
        "receive 2", wire(manifest(files=[entry("reload"), entry("reload/ext.db")])),
        "sent manifest: 'reload' is listed as a file and is also a directory of "
        "'reload/ext.db'"),
    "a file listed twice": (
        "receive 2", wire(manifest(files=[entry("a"), entry("a")])),
        "sent manifest: 'a' is listed twice"),
    "a file path that is no string": (
        "receive 2", wire(manifest(files=[entry(7)])),
        "sent manifest: files[0]: path is 7, not a file path"),
    # ---- sizes
    "a negative size": (
        "receive 2", wire(manifest(files=[entry("a", size=-1)])),
        f"sent manifest: files[0]: size is -1, {SIZE_RULE}"),
    "a huge size": (
        "receive 2", wire(manifest(files=[entry("a", size=2**62)])),
        f"sent manifest: files[0]: size is 4611686018427387904, {SIZE_RULE}"),
    "a size beyond 64 bits": (
        "receive 2", wire(manifest(files=[entry("a", size=2**70)])),
        f"sent manifest: files[0]: size is 1180591620717411303424, {SIZE_RULE}"),
    "a size as a float": (
        "receive 2", wire(manifest(files=[entry("a", size=1.0)])),
        "sent manifest: files[0]: size is 1.0, not a whole number of bytes"),
    "a size as a boolean": (
        "receive 2", wire(manifest(files=[entry("a", size=True)])),
        "sent manifest: files[0]: size is True, not a whole number of bytes"),
    "too many files": (
        "receive 2", wire(manifest(files=[entry(f"f{i}") for i in range(100_001)]), []),
        "sent manifest: files lists 100001 files, more than 100000"),
    # ---- LIM numbers and the request itself
    "another cluster's LIM": (
        "receive 7", wire(manifest("lim7-20261128T140000.000000Z", lim=7)),
        "request: LIM 7 is not a LIM sb serves in cluster cluster1 (LIMs served: 2, 3, 4)"),
    "a manifest of another LIM than the request's": (
        "receive 2", wire(manifest("lim3-20261128T140000.000000Z", lim=3)),
        "sent manifest: lim is 3, not 2 (the LIM of the request)"),
    "a LIM beyond any system": (
        "receive 2", wire(manifest("lim200-20261128T140000.000000Z", lim=200)),
        "sent manifest: lim is 200, not a LIM number from 1 to 124"),
    "KEEP=0": (
        "receive 2 0", wire(manifest()),
        "request: receive takes the LIM only, not '0': how many versions are kept is the "
        "receiver's own rule, never the sender's"),
    "KEEP=1": (
        "receive 2 1", wire(manifest()),
        "request: receive takes the LIM only, not '1': how many versions are kept is the "
        "receiver's own rule, never the sender's"),
    # ---- the stream disagrees with the manifest
    "a stream header with a ../ path": (
        "receive 2", wire(manifest(files=[entry("a")]), [("../../etc/passwd", b"x")]),
        "the sending server sent '../../etc/passwd' (1 bytes), expected 'a' (1 bytes)"),
    "a stream body longer than declared": (
        "receive 2", wire(manifest(files=[entry("a")]), [("a", b"xyz")]),
        "the sending server sent 'a' (3 bytes), expected 'a' (1 bytes)"),
    "a stream body other than declared": (
        "receive 2", wire(manifest(files=[entry("a", b"x")]), [("a", b"y")]),
        f"received {V} does not match its manifest: a: sha256 differs from the manifest"),
    "a manifest line that is not UTF-8": (
        "receive 2", b'{"format": 1, "version": "\xff"}\n', "sent manifest: not UTF-8 text"),
    "a manifest that never ends its line": (
        "receive 2", json.dumps(manifest()).encode(),
        "sent manifest: not one line of at most 16777216 bytes"),
}


@pytest.mark.parametrize("request_words, stdin, error", HOSTILE_RECEIVES.values(),
                         ids=HOSTILE_RECEIVES)
def test_a_hostile_receive_is_refused_and_changes_nothing(tmp_path: Path, request_words: str,
                                                          stdin: bytes, error: str) -> None:
    s = scene(tmp_path)
    before = snapshot(s.world)
    done = s.serve(request_words, stdin)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == f"xdata serve: {error}\n"
    assert snapshot(s.world) == before
    assert not Path("/srv/elsewhere").exists()


def test_sizes_the_disk_cannot_hold_are_refused_before_the_first_byte(tmp_path: Path) -> None:
    """Within the grammar (1 TiB a file) but more than the file system has free."""
    s = scene(tmp_path)
    before = snapshot(s.world)
    files = [entry(f"sysdb/part{i}", size=1 << 40) for i in range(64)]
    done = s.serve("receive 2", wire(manifest(files=files), [("sysdb/part0", b"x" * 4096)]))
    assert done.returncode == 1
    free = done.stderr.decode().split(" has ")[1].split(" bytes free")[0]
    assert done.stderr.decode() == (
        f"xdata serve: version {V} needs {64 << 40} bytes (the sizes its manifest declares), "
        f"{s.root} has {free} bytes free; refused before the first byte, the previous "
        "versions are kept\n")
    assert int(free) < 64 << 40
    assert snapshot(s.world) == before  # no temporary directory either


HOSTILE_REQUESTS: dict[str, tuple[str, str]] = {
    "status of another cluster's LIM": (
        "status 7", "request: LIM 7 is not a LIM sb serves in cluster cluster1 (LIMs served: "
                    "2, 3, 4)"),
    "manifest of another cluster's LIM": (
        "manifest 9", "request: LIM 9 is not a LIM sb serves in cluster cluster1 (LIMs "
                      "served: 2, 3, 4)"),
    "send of another cluster's LIM": (
        "send 7 lim7-20261128T120000.000000Z reload/ext.db",
        "request: LIM 7 is not a LIM sb serves in cluster cluster1 (LIMs served: 2, 3, 4)"),
    "a LIM with a leading zero": (
        "status 02", "request: LIM '02' is not a LIM number (1 to 124, plain digits)"),
    "a LIM with a sign": ("status +2", "request: LIM '+2' is not a LIM number (1 to 124, "
                                       "plain digits)"),
    "a LIM in other digits": (
        "status \u0662", "request: LIM '\u0662' is not a LIM number (1 to 124, plain digits)"),
    "LIM 0": ("status 0", "request: LIM '0' is not a LIM number (1 to 124, plain digits)"),
    "a LIM beyond any system": (
        "status 125", "request: LIM '125' is not a LIM number (1 to 124, plain digits)"),
    "send of a ../ version": (
        "send 2 ../../etc passwd",
        "request: version '../../etc' is not lim2-<UTC time stamp>"),
    "send of an absolute version": (
        "send 2 /etc passwd", "request: version '/etc' is not lim2-<UTC time stamp>"),
    "send of another LIM's version": (
        "send 2 lim3-20261128T120000.000000Z reload/ext.db",
        "request: version 'lim3-20261128T120000.000000Z' is not lim2-<UTC time stamp>"),
    "send of a ../ path": (
        "send 2 lim2-20261128T120000.000000Z ../../etc/passwd",
        "request: path '../../etc/passwd' (word 4) is not a file of version "
        "lim2-20261128T120000.000000Z"),
    "send of an absolute path": (
        "send 2 lim2-20261128T120000.000000Z /etc/passwd",
        "request: path '/etc/passwd' (word 4) is not a file of version "
        "lim2-20261128T120000.000000Z"),
    "send of the manifest": (
        "send 2 lim2-20261128T120000.000000Z MANIFEST.json",
        "request: path 'MANIFEST.json' (word 4) is not a file of version "
        "lim2-20261128T120000.000000Z"),
    "a shell command": ("touch /tmp/pwned", "unknown request 'touch /tmp/pwned'"),
    "keep-newest through the forced command": (
        "keep-newest 2", "unknown request 'keep-newest 2'"),
}


@pytest.mark.parametrize("request_words, error", HOSTILE_REQUESTS.values(), ids=HOSTILE_REQUESTS)
def test_a_hostile_request_is_refused_and_reveals_nothing(tmp_path: Path, request_words: str,
                                                          error: str) -> None:
    s = scene(tmp_path)
    before = snapshot(s.world)
    done = s.serve(request_words)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == f"xdata serve: {error}\n"
    assert snapshot(s.world) == before
    assert not Path("/tmp/pwned").exists()


def test_a_regular_server_serves_its_own_lim_only(tmp_path: Path) -> None:
    s = scene(tmp_path, node="lim2")
    assert s.serve("status 2").returncode == 0
    done = s.serve("status 3")
    assert done.returncode == 1 and done.stderr.decode() == (
        "xdata serve: request: LIM 3 is not a LIM lim2 serves in cluster cluster1 (LIMs "
        "served: 2)\n")


def test_a_node_without_a_readable_config_serves_no_lim(tmp_path: Path) -> None:
    s = scene(tmp_path)
    s.config.unlink()
    before = snapshot(s.world)
    done = s.serve("receive 2", wire(manifest()))
    assert done.returncode == 1 and done.stderr.decode() == (
        f"xdata serve: request: LIM 2 refused: this node's config {s.config} cannot be read "
        "(No such file or directory), so it cannot tell which LIMs are its cluster's\n")
    assert snapshot(s.world) == before
    assert s.serve("clock").returncode == 0  # no LIM named: nothing to refuse


# ---- symbolic links in the versions root: never followed, never created -----------------------

def test_a_version_name_taken_by_a_symbolic_link_is_not_written_through(tmp_path: Path) -> None:
    s = scene(tmp_path)
    (s.root / V).symlink_to(s.world / "etc")
    before = snapshot(s.world)
    done = s.serve("receive 2", wire(manifest()))
    assert done.returncode == 1
    assert done.stderr.decode() == (f"xdata serve: {s.root / V} resolves to {s.world / 'etc'}, "
                                    f"outside the versions root {s.root}; refused\n")
    assert snapshot(s.world) == before


def test_a_linked_version_or_file_is_never_sent(tmp_path: Path) -> None:
    """A file of the newest version replaced by a link to /etc/passwd, a version name
    that is a link to a real version: neither is read through."""
    s = scene(tmp_path)
    newest = "lim2-20261128T130000.000000Z"
    (s.root / newest / "reload" / "ext.db").unlink()
    (s.root / newest / "reload" / "ext.db").symlink_to(s.world / "etc" / "passwd")
    linked = "lim2-20261128T150000.000000Z"
    (s.root / linked).symlink_to(s.root / "lim2-20261128T120000.000000Z")
    before = snapshot(s.world)
    done = s.serve(f"send 2 {newest} reload/ext.db")
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == (f"xdata serve: {s.root / newest / 'reload/ext.db'} is a "
                                    "symbolic link; it is never followed\n")
    done = s.serve(f"send 2 {linked} sysdb/db")
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == f"xdata serve: no version {linked} of LIM 2 here\n"
    # a version holding a link is no valid version, a linked name no version at all:
    # status offers the last real, intact one
    done = s.serve("status 2")
    assert json.loads(done.stdout)["manifest"]["version"] == "lim2-20261128T120000.000000Z"
    assert snapshot(s.world) == before


def test_a_version_with_a_linked_directory_is_no_base_to_copy_from(tmp_path: Path) -> None:
    """The newest version's ``reload`` directory replaced by a link to /etc: a new version
    listing the same files must not be copied through it. That version is invalid, so it
    is no base; the files travel instead (with it as a base both would be reused)."""
    s = scene(tmp_path)
    newest = s.root / "lim2-20261128T130000.000000Z"
    (newest / "reload" / "ext.db").unlink()
    (newest / "reload").rmdir()
    (newest / "reload").symlink_to(s.world / "etc")
    outside = snapshot(s.world / "etc")
    files = [("reload/ext.db", b"2001\n2002\n"), ("sysdb/db", b"v2" * 100)]
    done = s.serve("receive 2", wire(manifest(files=[entry(p, b) for p, b in files]), files))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert (got["fetched_files"], got["reused_files"]) == (2, 0)
    assert xdata.verify(s.root / V) == []
    assert snapshot(s.world / "etc") == outside


# ---- what a well-formed peer gets: the receiver's own rules -----------------------------------

def test_a_well_formed_receive_is_kept_by_the_receivers_rule_root_only(tmp_path: Path) -> None:
    """The double speaks the protocol right: the refusals above are the hostile fields'
    doing. The standby keeps two versions of LIM 2 (its rule, not the sender's); what it
    wrote is root's only."""
    s = scene(tmp_path)
    os.chmod(s.root, 0o755)  # as an older install left it
    outside = snapshot(s.world / "etc")
    body = b"2001\n2002\n2003\n"
    done = s.serve("receive 2", wire(manifest(files=[entry("reload/ext.db", body)]),
                                     [("reload/ext.db", body)]))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"version": V, "fetched_files": 1, "fetched_bytes": 15,
                                       "reused_files": 0, "already_had": False}
    assert [p.name for p in xdata.versions(s.root, 2)] == [V, "lim2-20261128T130000.000000Z"]
    assert [p.name for p in xdata.versions(s.root, 3)] == ["lim3-20261128T120000.000000Z"]
    assert stat.S_IMODE(os.stat(s.root).st_mode) == 0o700
    modes = {rel: e[1] for rel, e in snapshot(s.root / V).items()}
    assert modes == {"reload": 0o700, "reload/ext.db": 0o600, "MANIFEST.json": 0o600}
    assert stat.S_IMODE(os.stat(s.root / V).st_mode) == 0o700
    assert snapshot(s.world / "etc") == outside


def test_the_clients_own_options_are_never_honoured(tmp_path: Path) -> None:
    """``--root`` and ``--config`` in the client's words are dropped: the forced command's
    own say where the versions are and what this node serves."""
    s = scene(tmp_path)
    evil = s.world / "etc" / "evil.json"
    evil.write_text(json.dumps(config_dict("sb", lims=((7, 1),))))
    before = snapshot(s.world)
    env = {**os.environ, "SSH_ORIGINAL_COMMAND":
           f"{FORCED} --root {s.world / 'etc'} --config {evil} status 2"}
    done = subprocess.run([sys.executable, "-c", SERVE, str(s.config), str(s.root)],
                          capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["manifest"]["version"] == "lim2-20261128T130000.000000Z"
    assert snapshot(s.world) == before


def test_without_a_root_option_the_node_configs_xdata_root_is_served(tmp_path: Path) -> None:
    s = scene(tmp_path)
    doc = config_dict("sb")
    doc["sync"] = {"interval": 86400, "retry_min": 10, "retry_max": 600, "clock_bound": 2.0,
                   "timeout": 3600, "key": "/k", "known_hosts": "/kh", "user": "root",
                   "xdata_root": str(s.root)}
    s.config.write_text(json.dumps(doc))
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": f"{FORCED} status 2"}
    done = subprocess.run([sys.executable, "-c", "import sys; from mxone_agent import "
                           "xdata_sync; sys.exit(xdata_sync.main(['serve', '--config', "
                           "sys.argv[1]]))", str(s.config)],
                          capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["manifest"]["version"] == "lim2-20261128T130000.000000Z"


# ---- pure checks the serving side stands on ---------------------------------------------------

@pytest.mark.parametrize("keep", [0, -1, True, 1.0])
def test_prune_and_receive_never_keep_fewer_than_one(tmp_path: Path, keep: object) -> None:
    s = scene(tmp_path)
    before = snapshot(s.world)
    with pytest.raises(xdata.XdataError, match="not a number of versions from 1: the newest "
                                               "valid version always stays"):
        xdata.prune(s.root, 2, keep)  # type: ignore[arg-type]
    with pytest.raises(xdata.XdataError, match="not a number of versions from 1"):
        xdata.receive(s.root, xdata.Manifest.from_dict(manifest()), lambda e, t: None,
                      keep=keep)  # type: ignore[arg-type]
    assert snapshot(s.world) == before


@pytest.mark.parametrize("name", [
    "lim2-20261128T120000.000000Z", "lim124-20261128T120000.000000Z"])
def test_plain_version_names_parse(name: str) -> None:
    assert xdata.parse_version_name(name) is not None


@pytest.mark.parametrize("name", [
    "lim0-20261128T120000.000000Z", "lim125-20261128T120000.000000Z",
    "lim02-20261128T120000.000000Z", "lim2-20261128T120000.000000Z\n",
    "lim2-20261128T120000.000000Z/..", "lim2-2026112\u0668T120000.000000Z",
    "lim2-20261128T120000.000000", "LIM2-20261128T120000.000000Z", "", None, 2])
def test_other_version_names_do_not(name: object) -> None:
    assert xdata.parse_version_name(name) is None


def test_a_backup_is_root_only_from_its_first_byte(tmp_path: Path) -> None:
    m = xdata.write_version(tmp_path / "x", 2, {"reload/ext.db": b"1", "db": b"2"}, T0)
    modes = snapshot(tmp_path / "x")
    assert {rel: e[1] for rel, e in modes.items()} == {
        m.version: 0o700, f"{m.version}/reload": 0o700, f"{m.version}/reload/ext.db": 0o600,
        f"{m.version}/db": 0o600, f"{m.version}/MANIFEST.json": 0o600}
    assert stat.S_IMODE(os.stat(tmp_path / "x").st_mode) == 0o700


# ---- the other way round: a hostile answering peer against this node's pull ------------------

HOSTILE_ANSWER = r"""
import json, sys, time
status, stream = json.loads(sys.argv[1]), sys.argv[2].encode("latin-1")
words = sys.argv[8:]  # -c STATUS STREAM mxone-agent xdata serve --root ROOT WORDS...
if words[0] == "status":
    print(json.dumps({"time": time.time(), "free": 1 << 40, "xdata": 0, "manifest": status}))
elif words[0] == "send":
    sys.stdout.buffer.write(stream)
else:
    sys.exit(1)
"""


def hostile_answering(status: dict[str, Any], stream: bytes = b"") -> xdata_sync.Peer:
    return xdata_sync.Peer("standby1", (sys.executable, "-c", HOSTILE_ANSWER, json.dumps(status),
                                        stream.decode("latin-1")), agent="mxone-agent")


NEWER = 1_864_331_200_000_000_000  # its data looks newer: this node pulls

HOSTILE_STATUSES: dict[str, tuple[dict[str, Any], bytes, str]] = {
    "a ../ version": (
        manifest("../../etc", files=[entry("a") | {"mtime_ns": NEWER}]), b"",
        f"peer status: manifest: version is '../../etc', {NOT_LIM2}"),
    "an absolute file path": (
        manifest(files=[entry("/etc/passwd") | {"mtime_ns": NEWER}]), b"",
        f"peer status: manifest: files[0]: path is '/etc/passwd', {NOT_PLAIN}: it is absolute"),
    "a NUL in a file path": (
        manifest(files=[entry("a\x00") | {"mtime_ns": NEWER}]), b"",
        f"peer status: manifest: files[0]: path is 'a\\x00', {NOT_PLAIN}: it holds a control "
        "character"),
    "a huge size": (
        manifest(files=[entry("a", size=2**63) | {"mtime_ns": NEWER}]), b"",
        f"peer status: manifest: files[0]: size is 9223372036854775808, {SIZE_RULE}"),
    "another LIM": (
        manifest("lim3-20261128T140000.000000Z", lim=3,
                 files=[entry("a") | {"mtime_ns": NEWER}]), b"",
        "peer status: manifest is of LIM 3, not 2"),
    "more than this disk holds": (
        manifest(files=[entry(f"p{i}", size=1 << 40) | {"mtime_ns": NEWER}
                        for i in range(64)]), b"",
        f"version {V} needs {64 << 40} bytes (the sizes its manifest declares), "),
    "a stream that sends another path": (
        manifest(files=[entry("a") | {"mtime_ns": NEWER}]),
        b'{"path": "../../etc/passwd", "size": 1}\nx{"end": true}\n',
        "standby1 sent '../../etc/passwd' (1 bytes), expected 'a' (1 bytes)"),
    "a stream that sends a file twice": (
        manifest(files=[entry("a") | {"mtime_ns": NEWER}, entry("b") | {"mtime_ns": NEWER}]),
        b'{"path": "a", "size": 1}\nx{"path": "a", "size": 1}\nx{"end": true}\n',
        "standby1 sent 'a' twice"),
}


@pytest.mark.parametrize("status, stream, error", HOSTILE_STATUSES.values(), ids=HOSTILE_STATUSES)
def test_a_hostile_answering_peer_cannot_write_here_either(tmp_path: Path, status: dict[str, Any],
                                                           stream: bytes, error: str) -> None:
    s = scene(tmp_path, node="lim2")
    before = snapshot(s.world)
    with pytest.raises(xdata.XdataError) as info:
        xdata_sync.sync_lim(2, s.root, "lim2", hostile_answering(status, stream))
    assert str(info.value).startswith(error), str(info.value)
    assert snapshot(s.world) == before
