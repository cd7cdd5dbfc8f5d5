"""An agent release unpacked on a node, beside the others, not yet ``current``.

This is the one node operation that runs before the node has the tool's release: the tool
runs this file's source as ``python3 -c SOURCE install`` (:func:`bootstrap_command`), so it
uses python3's standard library only and imports nothing of its package. Every other node
operation then runs from the release it installed (``mxone-agent node OP``).

Request ``{"releases": DIR, "release": NAME, "sha256": HEX}``: answers ``{"ok": true,
"has": bool, "created": [PATH]}`` - whether ``DIR/NAME`` holds that artefact (``DIR`` is
created, so that the upload can land there: ``created``, the directories that were not
there, deepest first). With ``"upload": PATH`` (the uploaded tarball): its checksum is
verified, it is unpacked to a temp dir, marked with the checksum and renamed into place;
the upload is removed either way. With ``"remove": true``: the release the tool unpacked
for a change that was then refused or rolled back is removed again - only a
``releases/<12 hex>`` directory (never a link) holding that artefact, and never the one
``current`` (beside ``DIR``) points to; answers ``{"ok": true, "removed": bool}`` (false:
it was not there); ``"dirs": [PATH]`` (a probe's ``created``) are then removed while empty.

It runs on the node's ``python3`` whatever its version (SUSE Linux Enterprise 15's is 3.6,
the agent itself then runs on a newer one beside it): no ``from __future__ import
annotations`` (3.7), annotations that are not evaluated, f-strings (3.6) at most.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
from typing import Any

MARKER = "ARTEFACT.sha256"  # mxone_agent.paths.RELEASE_MARKER (this file imports nothing)


def has(releases: str, release: str, sha256: str) -> bool:
    marker = os.path.join(releases, release, MARKER)
    try:
        with open(marker) as f:
            return f.read().strip() == sha256
    except OSError:
        return False


def sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install(releases: str, release: str, sha256: str, upload: str) -> "dict[str, Any]":
    h = hashlib.sha256()
    with open(upload, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != sha256:
        os.unlink(upload)
        return {"ok": False, "error": f"uploaded artefact has sha256 {h.hexdigest()}, expected "
                f"{sha256} (upload damaged; try again)"}
    tmpdir = os.path.join(releases, f".tmp-{release}-{os.getpid()}")
    shutil.rmtree(tmpdir, ignore_errors=True)
    os.makedirs(tmpdir)
    with tarfile.open(upload, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmpdir, filter="data")
        else:  # a python3 older than the extraction filters
            tar.extractall(tmpdir)
    with open(os.path.join(tmpdir, MARKER), "w") as f:
        f.write(sha256 + "\n")
    final = os.path.join(releases, release)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmpdir, final)
    sync_dir(releases)
    os.unlink(upload)
    return {"ok": True}


def remove(releases: str, release: str, sha256: str) -> "dict[str, Any]":
    if not re.fullmatch(r"[0-9a-f]{12}", release):
        return {"ok": False, "error": f"{release!r} is not a release name: not removed"}
    final = os.path.join(releases, release)
    if not os.path.lexists(final):
        return {"ok": True, "removed": False}
    if os.path.islink(final) or not os.path.isdir(final):
        return {"ok": False, "error": f"{final} is not a release directory: not removed"}
    current = os.path.realpath(os.path.join(os.path.dirname(os.path.normpath(releases)),
                                            "current"))
    here = os.path.realpath(final)
    if current == here or current.startswith(here + os.sep):
        return {"ok": False, "error": f"{final} is the current release: not removed"}
    if not has(releases, release, sha256):
        return {"ok": False, "error": f"{final} holds another artefact than {sha256}: "
                "not removed"}
    # Renamed first: a release directory is there whole or not at all.
    doomed = os.path.join(releases, f".remove-{release}-{os.getpid()}")
    os.rename(final, doomed)
    shutil.rmtree(doomed)  # unlinks the links inside, never follows them
    sync_dir(releases)
    return {"ok": True, "removed": True}


def remove_dirs(releases: str, dirs: "list[str]") -> None:
    """Remove those of ``dirs`` that are ``releases`` or hold it, deepest first, while they
    are empty (``rmdir`` removes nothing else, and no link)."""
    inner = os.path.abspath(releases)
    for d in sorted(dirs, key=len, reverse=True):
        if d != inner and not inner.startswith(d.rstrip(os.sep) + os.sep):
            continue
        try:
            os.rmdir(d)
        except FileNotFoundError:
            continue
        except OSError:  # not empty (or not a directory): nor is any above it
            return


def handle(req: "dict[str, Any]") -> "dict[str, Any]":
    releases, release, sha = str(req["releases"]), str(req["release"]), str(req["sha256"])
    if req.get("remove"):
        answer = remove(releases, release, sha)
        if answer["ok"]:
            remove_dirs(releases, [str(d) for d in req.get("dirs") or []])
        return answer
    if req.get("upload"):
        return install(releases, release, sha, str(req["upload"]))
    created, d = [], os.path.abspath(releases)
    while not os.path.lexists(d):
        created.append(d)
        d = os.path.dirname(d)
    os.makedirs(releases, mode=0o755, exist_ok=True)
    return {"ok": True, "has": has(releases, release, sha), "created": created}


def bootstrap_command() -> str:
    """The shell command that runs this file on a node with nothing but python3."""
    import shlex

    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    return f"python3 -c {shlex.quote(source)} install"


if __name__ == "__main__":
    print(json.dumps(handle(json.load(sys.stdin))))
