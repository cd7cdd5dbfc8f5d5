"""Exchange-data versions as names and manifests: what a version is called, what its
``MANIFEST.json`` says, and every check of a value a peer or a manifest names.

A version is named ``lim<N>-<UTC stamp>`` in its one spelling (:func:`version_name`,
:func:`parse_version_name`); its manifest lists every data file with its size, sha256 and
modification time (:class:`Manifest`). Nothing here touches the file system: a value that
comes from outside (a peer's answer, a manifest read from disk) is refused with an
:class:`XdataError` naming where it came from, the field, its value and the rule.

Standard library only: this module ships with the agent to every node.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mxone_agent.contract import LIM_NUMBERS
from mxone_agent.errors import AgentError

MANIFEST = "MANIFEST.json"
FORMAT = 1
_NAME = re.compile(r"lim([1-9][0-9]{0,2})-([0-9]{8}T[0-9]{6}\.[0-9]{6}Z)")  # ASCII digits
_STAMP = "%Y%m%dT%H%M%S.%fZ"
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_BYTES = 2**63
"""The largest size or count a peer may name (a signed 64-bit file offset holds less)."""
MAX_FILE_BYTES = 1 << 40
"""The largest data file a manifest may list (1 TiB): far above any LIM's exchange data,
far below what overflows anything."""
MAX_FILES = 100_000
"""The most files a manifest may list."""
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255  # one component of a path, as Linux file systems allow
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
    """A version's manifest: its LIM, version name, creation time and every data file."""

    lim: int
    version: str
    created: str  # ISO 8601 UTC, from the version name
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        """The sizes of all the version's files together."""
        return sum(f.size for f in self.files)

    @property
    def newest_mtime_ns(self) -> int:
        """The latest modification time of the reload data: what sync direction compares."""
        return max((f.mtime_ns for f in self.files), default=0)

    def to_json(self) -> str:
        """The manifest as ``MANIFEST.json`` holds it (sorted keys, one space indent)."""
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
    if (type(value) is int or type(value) is float) and 0 < value <= MAX_TIME_S:  # not NaN
        return float(value)
    raise XdataError(f"{where}: {what} is {shown(value)}, not a time in seconds since "
                     "1970 (UTC)")


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
    """The name of a version of ``lim`` made at ``when`` (now by default), in UTC."""
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


def plain_manifest_path(rel: str) -> str:
    """``rel`` when it is a plain relative path (:func:`path_problem`); else XdataError
    "file path 'x' in a manifest is not a plain relative path: why"."""
    if why := path_problem(rel):
        raise XdataError(f"file path {shown(rel)} in a manifest is not a plain relative path: "
                         f"{why}")
    return rel

