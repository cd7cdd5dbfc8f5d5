"""The agent artefact: one tarball holding the agent and the libraries it needs.

Layout::

    bin/mxone-agent      launcher (#!/usr/bin/python3): refuses an interpreter older than
                         MIN_PYTHON, puts lib/ first on sys.path and runs
                         mxone_agent.main.main()
    lib/mxone_agent/     the agent package, copied from where Python imports it
    lib/pyroute2/
    MIN_PYTHON           the lowest Python the agent runs on ("3.11")
    VERSION              the project's version and the artefact's ("0.1.0+<content id>")
    LICENSE              the project's licence (Apache-2.0)
    LICENSES/pyroute2/   the licence files of each library it carries

The tarball is deterministic: entries sorted, mtimes, owners and modes fixed, no
``__pycache__``, gzip header without time or name. Its SHA256 therefore changes only when
the code does, and names the release on the node (``releases/<sha256[:12]>``). A node needs
only ``/usr/bin/python3`` of at least :data:`MIN_PYTHON` (checked before the first change:
:mod:`~mxone_maintenance.preflight`).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mxone_agent.version import VERSION
from mxone_maintenance.errors import MxoneError

MIN_PYTHON = (3, 11)
"""The lowest Python the agent runs on: enum.StrEnum, zip(strict=), match (3.10) and the
standard library of 3.11 (tests/orchestration/test_artefact.py parses the agent with it)."""
DISTRIBUTION = "mxone-redundancy"
PACKAGES = ("mxone_agent", "pyroute2")  # the agent packs its ARP frames itself: no scapy
DEFAULT_CACHE = Path("/var/cache/mxone/artefacts")
EXIT_TOO_OLD = 127
"""The launcher's exit status on a too-old interpreter (as a shell's "command not found":
no agent command uses it)."""
LAUNCHER = b"""#!/usr/bin/python3
# mxone-agent launcher: the agent and its libraries come from ../lib, nothing else needed.
# Written for any python3: it must be able to say that this one is too old.
import os
import sys

HOME = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
with open(os.path.join(HOME, "MIN_PYTHON")) as f:
    NEED = f.read().strip()
LOWEST = tuple(int(x) for x in NEED.split("."))
if tuple(sys.version_info[:2]) < LOWEST:
    # SUSE keeps its old python3 and installs newer ones beside it (python311 gives
    # /usr/bin/python3.11): the newest of those runs the agent instead.
    if not os.environ.get("MXONE_AGENT_PYTHON_TRIED"):
        os.environ["MXONE_AGENT_PYTHON_TRIED"] = "1"
        for minor in range(LOWEST[1] + 20, LOWEST[1] - 1, -1):
            other = "/usr/bin/python%d.%d" % (LOWEST[0], minor)
            if os.access(other, os.X_OK):
                os.execv(other, [other, os.path.realpath(__file__)] + sys.argv[1:])
    sys.stderr.write("mxone-agent: Python %s or newer needed, found %s (%s); install one as "
                     "/usr/bin/python3 or /usr/bin/python3.X (SUSE: zypper install python311)\\n"
                     % (NEED, "%d.%d.%d" % tuple(sys.version_info[:3]), sys.executable))
    sys.exit(127)
os.environ.pop("MXONE_AGENT_PYTHON_TRIED", None)
sys.path.insert(0, os.path.join(HOME, "lib"))
from mxone_agent.main import main

sys.exit(main())
"""
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


class ArtefactError(MxoneError):
    pass


@dataclass(frozen=True)
class Artefact:
    path: Path
    sha256: str

    @property
    def release(self) -> str:
        """The release directory name on the nodes."""
        return self.sha256[:12]


def package_dir(name: str) -> Path:
    """Where Python imports package ``name`` from (no hard-coded paths)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ArtefactError(f"package {name}: not importable here; the agent artefact needs it")
    return Path(next(iter(spec.submodule_search_locations)))


def _files(sources: Mapping[str, Path]) -> Iterator[tuple[str, Path]]:
    for name in sorted(sources):
        root = sources[name]
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for f in sorted(filenames):
                if f.endswith(_SKIP_SUFFIXES):
                    continue
                path = Path(dirpath) / f
                yield f"lib/{name}/{path.relative_to(root).as_posix()}", path


def _info(name: str, size: int, mode: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.type = size, mode, kind
    ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "root", "root"
    return ti


def content_id(members: list[tuple[str, bytes, int]]) -> str:
    """What the artefact holds, in 12 hex digits: the launcher and every file's path, mode
    and bytes (the artefact's own version beside the project's)."""
    h = hashlib.sha256(LAUNCHER)
    for arc, data, mode in members:
        h.update(f"{arc}\0{mode:o}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:12]


def license_text() -> bytes:
    """The project's LICENSE: from the installed distribution's metadata, or the checkout's."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
        for name in ("licenses/LICENSE", "LICENSE"):
            text = dist.read_text(name)
            if text:
                return text.encode()
    except importlib.metadata.PackageNotFoundError:
        pass
    checkout = package_dir("mxone_agent").parent / "LICENSE"
    try:
        return checkout.read_bytes()
    except OSError:
        raise ArtefactError(f"the project's LICENSE is neither in the installed "
                            f"{DISTRIBUTION} nor at {checkout}: the agent artefact carries "
                            "it") from None


def library_licenses(names: list[str]) -> list[tuple[str, bytes]]:
    """``LICENSES/<distribution>/<file>`` of each library the artefact carries (pyroute2),
    from its installed metadata (none when it is not installed as a distribution)."""
    out = []
    for name in sorted(names):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in sorted(dist.files or [], key=str):
            if f.parent.name == "licenses" or f.name.upper().startswith(("LICENSE", "COPYING")):
                out.append((f"LICENSES/{name}/{f.name}", f.read_binary()))
    return out


def _about(members: list[tuple[str, bytes, int]]) -> list[tuple[str, bytes]]:
    """The files at the top of the artefact: its lowest Python, versions and licences."""
    version = f"{VERSION}+{content_id(members)}"
    libraries = sorted({arc.split("/")[1] for arc, _, _ in members} - {"mxone_agent"})
    return [("LICENSE", license_text()), *library_licenses(libraries),
            ("MIN_PYTHON", (".".join(map(str, MIN_PYTHON)) + "\n").encode()),
            ("VERSION", f"mxone-agent {version}\nproject {DISTRIBUTION} {VERSION}\n".encode())]


def build_bytes(sources: Mapping[str, Path] | None = None) -> bytes:
    """The tarball (gzip) of the given packages (name -> source dir), deterministic."""
    sources = sources or {name: package_dir(name) for name in PACKAGES}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        members = [(arc, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)
                   for arc, path in sorted(_files(sources))]
        about = _about(members)
        dirs = sorted({"bin", "lib", *(f"lib/{n}" for n in sources)} | {
            str(Path(arc).parent) for arc, _, _ in members} | {
            str(p) for arc, _ in about for p in Path(arc).parents if str(p) != "."})
        for d in dirs:
            tar.addfile(_info(d, 0, 0o755, tarfile.DIRTYPE))
        tar.addfile(_info("bin/mxone-agent", len(LAUNCHER), 0o755), io.BytesIO(LAUNCHER))
        for arc, data, mode in members:
            tar.addfile(_info(arc, len(data), mode), io.BytesIO(data))
        for arc, data in about:
            tar.addfile(_info(arc, len(data), 0o644), io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _fingerprint(sources: Mapping[str, Path]) -> str:
    """A cheap key for the cache: every file's path, size and mtime."""
    h = hashlib.sha256(LAUNCHER)
    for arc, path in _files(sources):
        st = path.stat()
        h.update(f"{arc}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def build(cache_dir: Path = DEFAULT_CACHE, sources: Mapping[str, Path] | None = None) -> Artefact:
    """The artefact for the code installed here, built once and cached under ``cache_dir``."""
    sources = sources or {name: package_dir(name) for name in PACKAGES}
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _fingerprint(sources)
    index = cache_dir / f"{key}.sha256"
    if index.exists():
        sha = index.read_text().strip()
        path = cache_dir / f"mxone-agent-{sha[:12]}.tar.gz"
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha:
            return Artefact(path, sha)
    from mxone_maintenance import store

    data = build_bytes(sources)
    sha = hashlib.sha256(data).hexdigest()
    path = cache_dir / f"mxone-agent-{sha[:12]}.tar.gz"
    store.atomic_write(path, data)
    store.atomic_write(index, sha.encode() + b"\n")
    return Artefact(path, sha)


def from_file(path: Path) -> Artefact:
    """A prebuilt artefact (``--agent-artefact``): checked to hold bin/mxone-agent."""
    try:
        data = path.read_bytes()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.getmember("bin/mxone-agent")
    except OSError as exc:
        raise ArtefactError(f"agent artefact {path}: cannot read: {exc.strerror or exc}") from None
    except (tarfile.TarError, KeyError):
        raise ArtefactError(f"agent artefact {path}: not a gzip tarball holding bin/mxone-agent") from None
    return Artefact(path, hashlib.sha256(data).hexdigest())
