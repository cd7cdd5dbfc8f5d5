"""Exchange data on disk: versioned backups with manifests, checked, kept, and compared.

A LIM's exchange data (reload data plus system database data) is kept as *versions*: one
directory per data backup, named after the Service Node (LIM) number and a UTC time stamp
(``lim2-20261128T171500.123456Z``), holding the data files and a ``MANIFEST.json`` that
lists every file with its size, sha256 and modification time.

Guarantees a caller may rely on:

* A version directory with that name exists only once it is complete: it is built under a
  temporary name, every file and the manifest are fsynced, then it is renamed into place
  and its parent fsynced. A crash leaves at most a temporary directory, never a half
  version under a version name; :func:`sweep_temporaries` removes those.
* :func:`newest_valid` skips versions whose files do not match their manifest.
* :func:`prune` removes old versions only after counting the valid ones, newest first, so
  the newest valid versions always survive (at least one: ``keep`` below 1 is refused).
* Nothing a peer or a manifest names reaches the filesystem unchecked (a peer holds the
  cluster's sync key, nothing more, and must not write anywhere else as root): a version
  name is ``lim<N>-<UTC stamp>`` in its one spelling, N a LIM number; a file path is
  relative, in its one plain spelling, with no ``..``, control character or white space
  (:func:`path_problem`); a size is a whole number up to :data:`MAX_FILE_BYTES`. Every path
  is resolved and must stay under the versions root (:func:`inside`); files are opened
  without following a symbolic link anywhere below the version (:func:`open_beneath`), so
  none is followed or created. A receiver checks its free space against the version's
  total before the first byte (:func:`receive`).
* Exchange data is root's only: the versions root and every directory below it are made
  0700, every file 0600, from their first byte.

Standard library only: this module ships with the agent to every node.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mxone_agent.config import LIM_NUMBERS
from mxone_agent.errors import AgentError

MANIFEST = "MANIFEST.json"
FORMAT = 1
KEEP_ON_REGULAR = 3
KEEP_ON_STANDBY = 2
TEMP_PREFIX = ".incoming-"
_NAME = re.compile(r"lim([1-9][0-9]{0,2})-([0-9]{8}T[0-9]{6}\.[0-9]{6}Z)")  # ASCII digits
_STAMP = "%Y%m%dT%H%M%S.%fZ"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
MAX_BYTES = 2**63
"""The largest size or count a peer may name (a signed 64-bit file offset holds less)."""
MAX_FILE_BYTES = 1 << 40
"""The largest data file a manifest may list (1 TiB): far above any LIM's exchange data,
far below what overflows anything."""
MAX_FILES = 100_000
"""The most files a manifest may list."""
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255  # one component of a path, as Linux file systems allow
DIR_MODE = 0o700
FILE_MODE = 0o600
MAX_TIME_S = 253402300799.0
"""The latest time a peer may name: 9999-12-31 23:59:59 UTC, the end of what clocks show."""
_MTIME_NS = (-(2**63), 2**63 - 1)  # what os.utime accepts


class XdataError(AgentError):
    """Exchange data could not be written, read or checked; the message says which and why."""


@dataclass(frozen=True)
class FileEntry:
    """One data file of a version: its path inside the version, size, sha256, mtime (ns)."""

    path: str
    size: int
    sha256: str
    mtime_ns: int


@dataclass(frozen=True)
class Manifest:
    lim: int
    version: str
    created: str  # ISO 8601 UTC, from the version name
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def newest_mtime_ns(self) -> int:
        """The latest modification time of the reload data: what sync direction compares."""
        return max((f.mtime_ns for f in self.files), default=0)

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "lim": self.lim, "version": self.version, "created": self.created,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "mtime_ns": f.mtime_ns}
                      for f in self.files],
        }, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        """The manifest in ``text``; XdataError naming ``where``, the field and the rule."""
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise XdataError(f"{where}: not a valid manifest ({exc})") from None
        return cls.from_dict(d, where)

    @classmethod
    def from_dict(cls, d: object, where: str = "manifest") -> Manifest:
        """The manifest in a parsed JSON value (a peer's answer, say): every field of the
        right type and range, the version named after its LIM in its one spelling,
        ``created`` its time stamp, every path plain (:func:`path_problem`), no file listed
        twice or also a directory of another. XdataError naming ``where``, the field, its
        value and the rule."""
        if not isinstance(d, dict):
            raise XdataError(f"{where}: {shown(d)} is not a manifest (a JSON object)")
        if d.get("format") != FORMAT:
            raise XdataError(f"{where}: format {shown(d.get('format'))}, this agent reads "
                             f"{FORMAT}")
        missing = [k for k in ("lim", "version", "created", "files") if k not in d]
        if missing:
            raise XdataError(f"{where}: {', '.join(missing)} missing")
        lim = whole_number(d["lim"], where, "lim", "a LIM number", low=LIM_NUMBERS.start,
                           high=LIM_NUMBERS.stop - 1)
        version = d["version"]
        parsed = parse_version_name(version)
        if parsed is None or parsed[0] != lim:
            raise XdataError(f"{where}: version is {shown(version)}, not a version name of "
                             f"LIM {lim} (lim{lim}-<UTC time stamp>)")
        if d["created"] != parsed[1].isoformat():
            raise XdataError(f"{where}: created is {shown(d['created'])}, not the time stamp "
                             f"of version {version} ({parsed[1].isoformat()!r})")
        if not isinstance(d["files"], list):
            raise XdataError(f"{where}: files is {shown(d['files'])}, not a list")
        if len(d["files"]) > MAX_FILES:
            raise XdataError(f"{where}: files lists {len(d['files'])} files, more than "
                             f"{MAX_FILES}")
        files = tuple(_file_entry(f, f"{where}: files[{i}]") for i, f in enumerate(d["files"]))
        seen: set[str] = set()
        for f in files:
            if f.path in seen:
                raise XdataError(f"{where}: {f.path!r} is listed twice")
            seen.add(f.path)
        for f in files:  # "a" and "a/b": one of them cannot be written
            parts = f.path.split("/")
            for depth in range(1, len(parts)):
                if (parent := "/".join(parts[:depth])) in seen:
                    raise XdataError(f"{where}: {parent!r} is listed as a file and is also "
                                     f"a directory of {f.path!r}")
        return cls(lim, version, d["created"], files)


def shown(value: object, limit: int = 40) -> str:
    """``value`` as an error message shows it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def whole_number(value: object, where: str, what: str, rule: str = "a whole number of bytes",
                 low: int = 0, high: int = MAX_BYTES) -> int:
    """``value`` when it is a whole number (a JSON integer, not a boolean) from ``low`` to
    ``high``; else XdataError "``where``: ``what`` is 'x', not ``rule``"."""
    if type(value) is not int:
        raise XdataError(f"{where}: {what} is {shown(value)}, not {rule}")
    if not low <= value <= high:
        raise XdataError(f"{where}: {what} is {shown(value)}, not {rule} from {low} to {high}")
    return value


def seconds_since_epoch(value: object, where: str, what: str) -> float:
    """``value`` when it is a finite time in seconds from 1970 up to :data:`MAX_TIME_S`;
    else XdataError naming ``where`` and ``what``."""
    if type(value) not in (int, float) or not 0 < value <= MAX_TIME_S:  # NaN fails too
        raise XdataError(f"{where}: {what} is {shown(value)}, not a time in seconds since "
                         "1970 (UTC)")
    return float(value)  # type: ignore[arg-type]


def _file_entry(f: object, where: str) -> FileEntry:
    if not isinstance(f, dict):
        raise XdataError(f"{where} is {shown(f)}, not a file entry (a JSON object)")
    missing = [k for k in ("path", "size", "sha256", "mtime_ns") if k not in f]
    if missing:
        raise XdataError(f"{where}: {', '.join(missing)} missing")
    path = f["path"]
    if not isinstance(path, str):
        raise XdataError(f"{where}: path is {shown(path)}, not a file path")
    if why := path_problem(path):
        raise XdataError(f"{where}: path is {shown(path)}, not a plain relative path: {why}")
    size = whole_number(f["size"], where, "size", low=0, high=MAX_FILE_BYTES)
    sha256 = f["sha256"]
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise XdataError(f"{where}: sha256 is {shown(sha256)}, not 64 hex digits")
    mtime_ns = whole_number(f["mtime_ns"], where, "mtime_ns", "a time in nanoseconds",
                            *_MTIME_NS)
    return FileEntry(path, size, sha256, mtime_ns)


def version_name(lim: int, when: datetime | None = None) -> str:
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return f"lim{lim}-{when.strftime(_STAMP)}"


def parse_version_name(name: object) -> tuple[int, datetime] | None:
    """(LIM, UTC time) of a version name ``lim<N>-<YYYYMMDDTHHMMSS.ffffffZ>``; None when
    ``name`` is none: not a string, N not a LIM number (1 to 124, no leading zero), a
    digit that is not ASCII, an impossible date (a month 13), anything before or after."""
    if not isinstance(name, str) or (m := _NAME.fullmatch(name)) is None:
        return None
    lim = int(m.group(1))
    if lim not in LIM_NUMBERS:
        return None
    try:
        when = datetime.strptime(m.group(2), _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    if when.strftime(_STAMP) != m.group(2):  # one spelling per time (no year 0099 as 99)
        return None
    return lim, when


def parse_lim(word: object, where: str = "request") -> int:
    """The LIM number ``word`` spells (plain ASCII digits, no sign, no leading zero, 1 to
    124); XdataError "``where``: LIM 'x' is not a LIM number (...)" otherwise."""
    if (not isinstance(word, str) or not re.fullmatch(r"[1-9][0-9]{0,2}", word)
            or int(word) not in LIM_NUMBERS):
        raise XdataError(f"{where}: LIM {shown(word)} is not a LIM number ({LIM_NUMBERS.start} "
                         f"to {LIM_NUMBERS.stop - 1}, plain digits)")
    return int(word)


def path_problem(rel: str) -> str | None:
    """Why ``rel`` is not a plain relative path of a file inside a version, or None.

    Plain: relative, in its one spelling (no empty, ``.`` or ``..`` component), UTF-8, no
    control character (NUL, newline, ...) and no white space (a ``send`` request carries
    paths as words), at most :data:`MAX_PATH_BYTES` bytes and :data:`MAX_NAME_BYTES` per
    component, and not the manifest's own name.
    """
    if rel == "":
        return "it is empty"
    if rel.startswith("/"):
        return "it is absolute"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in rel):
        return "it holds a control character"
    if any(c.isspace() for c in rel):
        return "it holds white space"
    try:
        size = len(rel.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not UTF-8"
    if size > MAX_PATH_BYTES:
        return f"it is longer than {MAX_PATH_BYTES} bytes"
    parts = rel.split("/")
    if ".." in parts:
        return "'..' leads out of the version"
    if "" in parts or "." in parts:
        return "it is not in its one plain spelling (an empty or '.' component)"
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in parts):
        return f"a component is longer than {MAX_NAME_BYTES} bytes"
    if parts[-1] == MANIFEST:
        return f"{MANIFEST} is the manifest's own name"
    return None


def inside(root: Path, path: Path) -> Path:
    """``path`` once it is checked to resolve (symbolic links followed) to a place under
    ``root``; XdataError otherwise. The versions root itself may be a symbolic link (an
    administrator's choice); nothing below it may lead out."""
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base or real == base:
        raise XdataError(f"{path} resolves to {real}, outside the versions root {base}; "
                         "refused")
    return path


def open_beneath(directory: Path, rel: str, flags: int, mode: int = FILE_MODE) -> int:
    """A file descriptor of ``directory / rel`` opened without following a symbolic link
    in any component of ``rel`` (``rel`` must be plain, see :func:`path_problem`).
    XdataError when a component is a symbolic link or no directory; OSError otherwise."""
    if why := path_problem(rel):
        raise XdataError(f"file path {shown(rel)} is not a plain relative path: {why}")
    parts = rel.split("/")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = _subdir(fd, part, directory / rel, "is not a directory (a symbolic link is "
                          "never followed)")
            os.close(fd)
            fd = nxt
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise XdataError(f"{directory / rel} is a symbolic link; it is never "
                                 "followed") from None
            raise
    finally:
        os.close(fd)


def ensure_root(root: Path) -> Path:
    """Make the versions root (parents as the system makes them) and keep it root's only:
    mode 0700, tightened if an older install left it open."""
    root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    st = os.stat(root)
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(root, DIR_MODE)
    return root


def make_dirs_beneath(directory: Path, rel_dir: str) -> None:
    """Make the directories of ``rel_dir`` below ``directory`` (mode 0700), never
    following a symbolic link; XdataError when a component exists as anything else."""
    if rel_dir in ("", "."):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel_dir.split("/"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, DIR_MODE, dir_fd=fd)
            nxt = _subdir(fd, part, directory / rel_dir, "exists and is not a directory")
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def _subdir(fd: int, part: str, where: Path, is_not: str) -> int:
    """Open directory ``part`` below the directory open as ``fd``, never following a
    symbolic link; XdataError "``where``: ``part`` ``is_not``" when it is no directory."""
    try:
        return os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise XdataError(f"{where}: {part!r} {is_not}") from None
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write a new file ``path`` with mode 0600 from its first byte, and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_use(root: Path) -> int:
    """Bytes the regular files below ``root`` take (symbolic links are not followed)."""
    total = 0
    for top, dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(top, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe_relpath(rel: str) -> str:
    if why := path_problem(rel):
        raise XdataError(f"file path {shown(rel)} in a manifest is not a plain relative path: "
                         f"{why}")
    return rel


def _entries(directory: Path) -> list[tuple[str, bool]]:
    """(path relative to ``directory``, is a regular file) of every entry below it that is
    not a directory, the manifest excepted, sorted by path; symbolic links are listed,
    never followed."""
    found = []
    for top, dirs, files in os.walk(directory):  # (does not descend into linked dirs)
        rel_top = os.path.relpath(top, directory)
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(top, d)))]:
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            if rel == MANIFEST:
                continue
            regular = stat.S_ISREG(os.lstat(os.path.join(top, name)).st_mode)
            found.append((rel.replace(os.sep, "/"), regular))
    return sorted(found)


def scan(directory: Path) -> tuple[FileEntry, ...]:
    """Every regular file below ``directory`` (the manifest excepted), sorted by path;
    XdataError for anything else there (a symbolic link, a path no manifest may list)."""
    entries = []
    for rel, regular in _entries(directory):  # (hashes every file: for writing only)
        if not regular:
            raise XdataError(f"{directory / rel} is not a regular file; a version holds "
                             "regular files only")
        _safe_relpath(rel)
        st = os.lstat(directory / rel)
        entries.append(FileEntry(rel, st.st_size, sha256_file(directory / rel), st.st_mtime_ns))
    return tuple(entries)


def seal(temp_dir: Path, lim: int, name: str) -> Manifest:
    """Write the manifest of a filled temporary version directory and fsync everything in it."""
    parsed = parse_version_name(name)
    if parsed is None or parsed[0] != lim:
        raise XdataError(f"version name {name!r} is not lim{lim}-<UTC time stamp>")
    manifest = Manifest(lim, name, parsed[1].isoformat(), scan(temp_dir))
    for entry in manifest.files:
        _fsync_file(temp_dir / entry.path)
    write_private(temp_dir / MANIFEST, manifest.to_json().encode("utf-8"))
    for d in sorted({(temp_dir / e.path).parent for e in manifest.files} | {temp_dir}, reverse=True):
        _fsync_dir(d)
    return manifest


def publish(temp_dir: Path, root: Path, name: str) -> Path:
    """Rename a sealed temporary directory to its version name under ``root``, durably."""
    if parse_version_name(name) is None:
        raise XdataError(f"version {shown(name)} is not lim<N>-<UTC time stamp>")
    final = inside(root, root / name)
    if os.path.lexists(final):
        raise XdataError(f"version {name} already exists under {root}")
    os.rename(inside(root, temp_dir), final)
    _fsync_dir(root)
    return final


def new_temp_dir(root: Path) -> Path:
    """A new empty temporary directory (mode 0700) under the versions root (made 0700)."""
    ensure_root(root)
    temp = root / f"{TEMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
    temp.mkdir(mode=DIR_MODE)
    return temp


def write_version(root: Path, lim: int, files: Mapping[str, bytes],
                  when: datetime | None = None) -> Manifest:
    """A data backup: write ``files`` as a new complete version of ``lim`` under ``root``
    (directories 0700, files 0600)."""
    name = version_name(lim, when)
    temp = new_temp_dir(root)
    try:
        for rel, data in files.items():
            _safe_relpath(rel)
            make_dirs_beneath(temp, rel.rpartition("/")[0])
            # made 0600 (and no link) first; written into this new file of our own 0700 dir
            os.close(open_beneath(temp, rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            (temp / rel).write_bytes(data)
        manifest = seal(temp, lim, name)
        publish(temp, root, name)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return manifest


def read_manifest(version_dir: Path) -> Manifest:
    try:
        fd = os.open(version_dir / MANIFEST, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, encoding="utf-8") as f:
            text = f.read(1 << 26)
    except OSError as exc:
        raise XdataError(f"{version_dir}: no readable manifest ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise XdataError(f"{version_dir / MANIFEST}: not UTF-8 text") from None
    return Manifest.from_json(text, str(version_dir / MANIFEST))


def verify(version_dir: Path, manifest: Manifest | None = None, *, quick: bool = False,
           hashed: Mapping[str, str] | None = None) -> list[str]:
    """Problems found checking a version against its manifest (empty: the version is valid).

    Full check: every file's size and sha256, and no file the manifest does not list.
    ``quick``: sizes and modification times only (what a sync decision needs; a version
    was hashed when it was written or received). ``hashed``: digests already computed
    while the files were written, so they are not read again. A listed file must be a
    regular file reached without a symbolic link; anything unlisted (a link too) is a
    problem.
    """
    try:
        manifest = manifest or read_manifest(version_dir)
    except XdataError as exc:
        return [str(exc)]
    problems = []
    listed = set()
    for entry in manifest.files:
        rel = _safe_relpath(entry.path)
        listed.add(rel)
        try:
            fd = open_beneath(version_dir, rel, os.O_RDONLY)
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
            continue
        except (OSError, XdataError):
            problems.append(f"{rel}: not a regular file below the version (a symbolic link "
                            "is never followed)")
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel}: not a regular file")
            elif st.st_size != entry.size:
                problems.append(f"{rel}: {st.st_size} bytes, manifest says {entry.size}")
            elif quick:
                if st.st_mtime_ns != entry.mtime_ns:
                    problems.append(f"{rel}: modified after the version was made")
            else:
                digest = hashed[rel] if hashed and rel in hashed else _sha256_fd(fd)
                if digest != entry.sha256:
                    problems.append(f"{rel}: sha256 differs from the manifest")
        finally:
            os.close(fd)
    try:
        present = _entries(version_dir)
    except OSError as exc:
        return [*problems, f"{version_dir}: cannot be listed ({exc.strerror})"]
    for rel, _ in present:
        if rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()


def _real_dir(path: Path) -> bool:
    """A directory itself, not a symbolic link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def versions(root: Path, lim: int | None = None) -> list[Path]:
    """Version directories under ``root`` (for one LIM if given), newest first. Only real
    directories with a version name count (a symbolic link named like one does not)."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        parsed = parse_version_name(path.name)
        if parsed and _real_dir(path) and (lim is None or parsed[0] == lim):
            found.append((parsed[1], path))
    return [p for _, p in sorted(found, reverse=True)]


def newest_valid(root: Path, lim: int, *, quick: bool = False) -> tuple[Path, Manifest] | None:
    """The newest version of ``lim`` whose files match its manifest, or None.

    ``quick``: judge by sizes and modification times (see :func:`verify`); a restore
    uses the full check.
    """
    for path in versions(root, lim):
        try:
            manifest = read_manifest(path)
        except XdataError:
            continue
        if not verify(path, manifest, quick=quick):
            return path, manifest
    return None


def prune(root: Path, lim: int, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest *valid* versions of ``lim`` (invalid ones older
    than the kept ones go too). Returns what was removed. ``keep`` below 1 is refused: the
    newest valid version always stays."""
    if type(keep) is not int or keep < 1:
        raise XdataError(f"keep is {shown(keep)}, not a number of versions from 1: the newest "
                         "valid version always stays")
    kept = 0
    removed = []
    for path in versions(root, lim):
        if kept < keep and not verify(path, quick=True):
            kept += 1
            continue
        if kept < keep:
            continue  # an invalid version newer than the kept ones: leave it to be looked at
        shutil.rmtree(inside(root, path))
        removed.append(path)
    if removed:
        _fsync_dir(root)
    return removed


def keep_only_newest(root: Path, lim: int) -> list[Path]:
    """After a cluster change that makes older versions unfit: keep one version only."""
    return prune(root, lim, 1)


def _temp_owner(path: Path) -> int | None:
    """The PID in a temporary directory's name (``.incoming-<pid>-<ns>``), or None."""
    try:
        return int(path.name[len(TEMP_PREFIX):].split("-", 1)[0])
    except ValueError:
        return None


def _other_live_process(pid: int | None) -> bool:
    return pid is not None and pid != os.getpid() and os.path.exists(f"/proc/{pid}")


def sweep_temporaries(root: Path) -> list[Path]:
    """Remove temporary directories a crash or an interrupted transfer left behind.

    A temporary directory of another live process is a transfer under way (a peer's
    push while this server pulls, say) and stays; this process's own are leftovers.
    """
    if not root.is_dir():
        return []
    gone = [p for p in root.iterdir() if p.name.startswith(TEMP_PREFIX) and _real_dir(p)
            and not _other_live_process(_temp_owner(p))]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


# ---- comparing two sides: what to send, in which direction -------------------------------

@dataclass(frozen=True)
class TransferPlan:
    """What a receiver needs to rebuild ``manifest``: files to fetch and files it already
    has (same path, size and sha256 in its ``base`` version) that it copies locally."""

    manifest: Manifest
    fetch: tuple[FileEntry, ...]
    reuse: tuple[FileEntry, ...]

    @property
    def fetch_bytes(self) -> int:
        return sum(f.size for f in self.fetch)


def plan_transfer(source: Manifest, base: Manifest | None) -> TransferPlan:
    have = {(f.path, f.size, f.sha256) for f in base.files} if base else set()
    fetch = tuple(f for f in source.files if (f.path, f.size, f.sha256) not in have)
    reuse = tuple(f for f in source.files if (f.path, f.size, f.sha256) in have)
    return TransferPlan(source, fetch, reuse)


def sync_direction(regular: Manifest | None, standby: Manifest | None) -> str:
    """``to-standby``, ``to-regular`` or ``none``, by the reload data's modification times.

    The side whose data changed last is the source: after a LIM ran on the standby and its
    data changed there, the newer data goes back to the regular server.
    """
    if regular is None and standby is None:
        return "none"
    if standby is None:
        return "to-standby"
    if regular is None:
        return "to-regular"
    if {(f.path, f.sha256) for f in regular.files} == {(f.path, f.sha256) for f in standby.files}:
        return "none"
    return "to-regular" if standby.newest_mtime_ns > regular.newest_mtime_ns else "to-standby"


def clock_skew_problem(local_s: float, remote_s: float, bound_s: float, local: str,
                       remote: str) -> str | None:
    """A refusal sentence when two servers' clocks differ by more than ``bound_s``."""
    skew = remote_s - local_s
    if abs(skew) <= bound_s:
        return None
    fmt = "%Y-%m-%d %H:%M:%S"
    return (f"clocks differ by {abs(skew):.1f} s (bound {bound_s:.1f} s): {local} says "
            f"{datetime.fromtimestamp(local_s, UTC).strftime(fmt)} UTC, {remote} says "
            f"{datetime.fromtimestamp(remote_s, UTC).strftime(fmt)} UTC; sync direction is "
            "chosen by modification times, so fix NTP before syncing")


def disk_problem(free_bytes: int, backup_sizes: Iterable[int]) -> str | None:
    """A refusal sentence when the standby cannot hold two backups of every regular."""
    need = 2 * sum(backup_sizes)
    if free_bytes >= need:
        return None
    return (f"the standby has {free_bytes} bytes free for exchange data, two backups of each "
            f"regular server need {need} bytes")


# ---- receiving a version -------------------------------------------------------------------

@dataclass(frozen=True)
class Received:
    version: str
    fetched_files: int
    fetched_bytes: int
    reused_files: int
    already_had: bool = False


def _copy_hashing(src_dir: Path, dst_dir: Path, rel: str) -> str:
    """Copy ``rel`` from one version directory to another (new, 0600; no symbolic link
    followed on either side); its sha256."""
    h = hashlib.sha256()
    src = open_beneath(src_dir, rel, os.O_RDONLY)
    with open(src, "rb") as fi:
        if not stat.S_ISREG(os.fstat(fi.fileno()).st_mode):
            raise XdataError(f"{src_dir / rel} is not a regular file")
        dst = open_beneath(dst_dir, rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with open(dst, "wb") as fo:
            while chunk := fi.read(_CHUNK):
                h.update(chunk)
                fo.write(chunk)
    return h.hexdigest()


def _settle(temp: Path, entry: FileEntry) -> None:
    """A file just written into ``temp``: a regular file (reached without a symbolic
    link), mode 0600, the source's modification time (set before its fsync)."""
    fd = open_beneath(temp, entry.path, os.O_RDONLY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise XdataError(f"received {entry.path!r} is not a regular file")
        os.fchmod(fd, FILE_MODE)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
    finally:
        os.close(fd)


def _arrived_meanwhile(final: Path, manifest: Manifest) -> bool:
    """Whether the version is complete under its name (another transfer published it)."""
    return _real_dir(final) and not verify(final, manifest, quick=True)


def free_space_problem(root: Path, manifest: Manifest) -> str | None:
    """A refusal sentence when ``root``'s file system has less room than the version's
    declared total (every file is written, fetched or copied locally, before the older
    versions are pruned)."""
    need = manifest.total_bytes
    free = shutil.disk_usage(root).free
    if need <= free:
        return None
    return (f"version {manifest.version} needs {need} bytes (the sizes its manifest "
            f"declares), {root} has {free} bytes free; refused before the first byte, the "
            "previous versions are kept")


def receive(root: Path, manifest: Manifest, fetch: Callable[[FileEntry, Path], str | None],
            keep: int = KEEP_ON_STANDBY) -> Received:
    """Build ``manifest``'s version under ``root``: files unchanged since our newest valid
    version are copied locally, the others come through ``fetch(entry, target_path)``
    (which may return the sha256 it computed while writing, to save reading it again).

    ``manifest`` is a checked :class:`Manifest` (its version name and paths are plain);
    every path is resolved and must stay under ``root``, and no symbolic link is followed.
    The free space under ``root`` is checked against the manifest's total before anything
    is written (XdataError naming both numbers). ``keep`` is this receiver's own policy,
    never a sender's (at least 1).

    The result is checked against the manifest (every file's sha256) before it gets its
    version name; on any failure the temporary directory is removed and every existing
    version is untouched. Older versions are pruned to ``keep`` only after the new one is
    in place. Modification times are kept as the source had them (sync direction and the
    quick check depend on them). Directories are 0700, files 0600.
    """
    if type(keep) is not int or keep < 1:
        raise XdataError(f"keep is {shown(keep)}, not a number of versions from 1: the newest "
                         "valid version always stays")
    if parse_version_name(manifest.version) is None:
        raise XdataError(f"version {shown(manifest.version)} is not lim<N>-<UTC time stamp>")
    for entry in manifest.files:
        _safe_relpath(entry.path)
    ensure_root(root)
    existing = inside(root, root / manifest.version)
    if _real_dir(existing) and not verify(existing, manifest, quick=True):
        return Received(manifest.version, 0, 0, len(manifest.files), already_had=True)
    if os.path.lexists(existing):
        raise XdataError(f"{existing} exists but does not match the manifest; move it aside")
    if problem := free_space_problem(root, manifest):
        raise XdataError(problem)
    base = newest_valid(root, manifest.lim, quick=True)
    plan = plan_transfer(manifest, base[1] if base else None)
    temp = new_temp_dir(root)
    hashed: dict[str, str] = {}
    # Each file is fsynced by a helper thread while the next one arrives (fsync releases
    # the GIL): durability without a final pause for the whole version.
    syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xdata-fsync")
    pending = []
    try:
        for entry in plan.reuse:
            assert base is not None
            make_dirs_beneath(temp, entry.path.rpartition("/")[0])
            hashed[entry.path] = _copy_hashing(base[0], temp, entry.path)
            _settle(temp, entry)
            pending.append(syncer.submit(_fsync_file, temp / entry.path))
        for entry in plan.fetch:
            make_dirs_beneath(temp, entry.path.rpartition("/")[0])
            digest = fetch(entry, inside(root, temp / entry.path))
            if digest is not None:
                hashed[entry.path] = digest
            _settle(temp, entry)
            pending.append(syncer.submit(_fsync_file, temp / entry.path))
        problems = verify(temp, manifest, hashed=hashed)
        if problems:
            raise XdataError(f"received {manifest.version} does not match its manifest: "
                             + "; ".join(problems))
        for done in pending:
            done.result()
        write_private(temp / MANIFEST, manifest.to_json().encode("utf-8"))
        for d in sorted({(temp / e.path).parent for e in manifest.files} | {temp}, reverse=True):
            _fsync_dir(d)
        if _arrived_meanwhile(root / manifest.version, manifest):
            shutil.rmtree(temp, ignore_errors=True)  # a concurrent transfer brought it
            syncer.shutdown(wait=True)
            return Received(manifest.version, 0, 0, len(manifest.files), already_had=True)
        publish(temp, root, manifest.version)
    except BaseException as exc:
        syncer.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(temp, ignore_errors=True)
        if isinstance(exc, XdataError | OSError) and _arrived_meanwhile(
                root / manifest.version, manifest):  # publish lost a race to a twin transfer
            return Received(manifest.version, 0, 0, len(manifest.files), already_had=True)
        raise
    syncer.shutdown(wait=True)
    prune(root, manifest.lim, keep)
    return Received(manifest.version, len(plan.fetch), plan.fetch_bytes, len(plan.reuse))
