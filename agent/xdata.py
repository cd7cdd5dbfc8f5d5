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
  the newest valid versions always survive.

Standard library only: this module ships with the agent to every node.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mxone_agent.errors import AgentError

MANIFEST = "MANIFEST.json"
FORMAT = 1
KEEP_ON_REGULAR = 3
KEEP_ON_STANDBY = 2
TEMP_PREFIX = ".incoming-"
_NAME = re.compile(r"lim(\d{1,3})-(\d{8}T\d{6}\.\d{6}Z)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
MAX_BYTES = 2**63
"""The largest size or count a peer may name (a signed 64-bit file offset holds less)."""
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
        right type and range, the version named after its LIM, no file listed twice.
        XdataError naming ``where``, the field, its value and the rule."""
        if not isinstance(d, dict):
            raise XdataError(f"{where}: {shown(d)} is not a manifest (a JSON object)")
        if d.get("format") != FORMAT:
            raise XdataError(f"{where}: format {shown(d.get('format'))}, this agent reads "
                             f"{FORMAT}")
        missing = [k for k in ("lim", "version", "created", "files") if k not in d]
        if missing:
            raise XdataError(f"{where}: {', '.join(missing)} missing")
        lim = whole_number(d["lim"], where, "lim", "a LIM number", high=999)
        version = d["version"]
        parsed = parse_version_name(version) if isinstance(version, str) else None
        if parsed is None or not version.startswith(f"lim{lim}-"):
            raise XdataError(f"{where}: version is {shown(version)}, not a version name of "
                             f"LIM {lim} (lim{lim}-<UTC time stamp>)")
        if not isinstance(d["created"], str):
            raise XdataError(f"{where}: created is {shown(d['created'])}, not a time stamp")
        if not isinstance(d["files"], list):
            raise XdataError(f"{where}: files is {shown(d['files'])}, not a list")
        files = tuple(_file_entry(f, f"{where}: files[{i}]") for i, f in enumerate(d["files"]))
        seen: set[str] = set()
        for f in files:
            if f.path in seen:
                raise XdataError(f"{where}: {f.path!r} is listed twice")
            seen.add(f.path)
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
    try:
        plain = _safe_relpath(path) == path  # "a//b" or "./a" too: one spelling per file
    except XdataError:
        plain = False
    if not plain:
        raise XdataError(f"{where}: path is {shown(path)}, not a plain relative path")
    size = whole_number(f["size"], where, "size")
    sha256 = f["sha256"]
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise XdataError(f"{where}: sha256 is {shown(sha256)}, not 64 hex digits")
    mtime_ns = whole_number(f["mtime_ns"], where, "mtime_ns", "a time in nanoseconds",
                            *_MTIME_NS)
    return FileEntry(path, size, sha256, mtime_ns)


def version_name(lim: int, when: datetime | None = None) -> str:
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return f"lim{lim}-{when.strftime('%Y%m%dT%H%M%S.%fZ')}"


def parse_version_name(name: str) -> tuple[int, datetime] | None:
    """(LIM, UTC time) of a version name; None when ``name`` is none (a month 13 too)."""
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    try:
        when = datetime.strptime(m.group(2), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(m.group(1)), when


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
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe_relpath(rel: str) -> str:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or rel in ("", MANIFEST):
        raise XdataError(f"file path {rel!r} in a manifest is not a plain relative path")
    return p.as_posix()


def scan(directory: Path) -> tuple[FileEntry, ...]:
    """Every regular file below ``directory`` (the manifest excepted), sorted by path."""
    entries = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:  # (hashes every file: for writing only)
            st = path.stat()
            entries.append(FileEntry(path.relative_to(directory).as_posix(), st.st_size,
                                     sha256_file(path), st.st_mtime_ns))
    return tuple(entries)


def seal(temp_dir: Path, lim: int, name: str) -> Manifest:
    """Write the manifest of a filled temporary version directory and fsync everything in it."""
    parsed = parse_version_name(name)
    if parsed is None or parsed[0] != lim:
        raise XdataError(f"version name {name!r} is not lim{lim}-<UTC time stamp>")
    manifest = Manifest(lim, name, parsed[1].isoformat(), scan(temp_dir))
    for entry in manifest.files:
        _fsync_file(temp_dir / entry.path)
    mpath = temp_dir / MANIFEST
    mpath.write_text(manifest.to_json(), encoding="utf-8")
    _fsync_file(mpath)
    for d in sorted({(temp_dir / e.path).parent for e in manifest.files} | {temp_dir}, reverse=True):
        _fsync_dir(d)
    return manifest


def publish(temp_dir: Path, root: Path, name: str) -> Path:
    """Rename a sealed temporary directory to its version name under ``root``, durably."""
    final = root / name
    if final.exists():
        raise XdataError(f"version {name} already exists under {root}")
    os.rename(temp_dir, final)
    _fsync_dir(root)
    return final


def new_temp_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    temp = root / f"{TEMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
    temp.mkdir()
    return temp


def write_version(root: Path, lim: int, files: Mapping[str, bytes],
                  when: datetime | None = None) -> Manifest:
    """A data backup: write ``files`` as a new complete version of ``lim`` under ``root``."""
    name = version_name(lim, when)
    temp = new_temp_dir(root)
    try:
        for rel, data in files.items():
            target = temp / _safe_relpath(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        manifest = seal(temp, lim, name)
        publish(temp, root, name)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return manifest


def read_manifest(version_dir: Path) -> Manifest:
    try:
        text = (version_dir / MANIFEST).read_text(encoding="utf-8")
    except OSError as exc:
        raise XdataError(f"{version_dir}: no readable manifest ({exc.strerror})") from None
    return Manifest.from_json(text, str(version_dir / MANIFEST))


def _listed_files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def verify(version_dir: Path, manifest: Manifest | None = None, *, quick: bool = False,
           hashed: Mapping[str, str] | None = None) -> list[str]:
    """Problems found checking a version against its manifest (empty: the version is valid).

    Full check: every file's size and sha256, and no file the manifest does not list.
    ``quick``: sizes and modification times only (what a sync decision needs; a version
    was hashed when it was written or received). ``hashed``: digests already computed
    while the files were written, so they are not read again.
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
        path = version_dir / rel
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{rel}: missing")
            continue
        if st.st_size != entry.size:
            problems.append(f"{rel}: {st.st_size} bytes, manifest says {entry.size}")
        elif quick:
            if st.st_mtime_ns != entry.mtime_ns:
                problems.append(f"{rel}: modified after the version was made")
        else:
            digest = hashed[rel] if hashed and rel in hashed else sha256_file(path)
            if digest != entry.sha256:
                problems.append(f"{rel}: sha256 differs from the manifest")
    for rel in _listed_files(version_dir):
        if rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems


def versions(root: Path, lim: int | None = None) -> list[Path]:
    """Version directories under ``root`` (for one LIM if given), newest first."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        parsed = parse_version_name(path.name)
        if parsed and path.is_dir() and (lim is None or parsed[0] == lim):
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
    than the kept ones go too). Returns what was removed."""
    kept = 0
    removed = []
    for path in versions(root, lim):
        if kept < keep and not verify(path, quick=True):
            kept += 1
            continue
        if kept < keep:
            continue  # an invalid version newer than the kept ones: leave it to be looked at
        shutil.rmtree(path)
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
    gone = [p for p in root.iterdir() if p.name.startswith(TEMP_PREFIX) and p.is_dir()
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


def _copy_hashing(src: Path, dst: Path) -> str:
    h = hashlib.sha256()
    with src.open("rb") as fi, dst.open("wb") as fo:
        while chunk := fi.read(_CHUNK):
            h.update(chunk)
            fo.write(chunk)
    return h.hexdigest()


def _arrived_meanwhile(final: Path, manifest: Manifest) -> bool:
    """Whether the version is complete under its name (another transfer published it)."""
    return final.is_dir() and (final / MANIFEST).is_file() and not verify(final, manifest,
                                                                          quick=True)


def receive(root: Path, manifest: Manifest, fetch: Callable[[FileEntry, Path], str | None],
            keep: int = KEEP_ON_STANDBY) -> Received:
    """Build ``manifest``'s version under ``root``: files unchanged since our newest valid
    version are copied locally, the others come through ``fetch(entry, target_path)``
    (which may return the sha256 it computed while writing, to save reading it again).

    The result is checked against the manifest (every file's sha256) before it gets its
    version name; on any failure the temporary directory is removed and every existing
    version is untouched. Older versions are pruned to ``keep`` only after the new one is
    in place. Modification times are kept as the source had them (sync direction and the
    quick check depend on them).
    """
    existing = root / manifest.version
    if existing.is_dir() and not verify(existing, manifest, quick=True):
        return Received(manifest.version, 0, 0, len(manifest.files), already_had=True)
    if existing.exists():
        raise XdataError(f"{existing} exists but does not match the manifest; move it aside")
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
            target = temp / _safe_relpath(entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            hashed[entry.path] = _copy_hashing(base[0] / entry.path, target)  # type: ignore[index]
            os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))  # before its fsync
            pending.append(syncer.submit(_fsync_file, target))
        for entry in plan.fetch:
            target = temp / _safe_relpath(entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = fetch(entry, target)
            if digest is not None:
                hashed[entry.path] = digest
            os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))  # before its fsync
            pending.append(syncer.submit(_fsync_file, target))
        problems = verify(temp, manifest, hashed=hashed)
        if problems:
            raise XdataError(f"received {manifest.version} does not match its manifest: "
                             + "; ".join(problems))
        for done in pending:
            done.result()
        (temp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_file(temp / MANIFEST)
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
