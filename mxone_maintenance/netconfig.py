"""A server's own network configuration: a new base address that survives a reboot.

When a LIM server joins a cluster its base address changes: the address the operator
entered (B) becomes its base address, and its old base address (A) becomes the LIM's
alias, which only the agent brings up - on this server or on the standby. The tool adds B
at run time; this module writes the same change into the server's own network
configuration, so that after a reboot B comes back and A does not come back on its own
(it would collide with the standby holding the LIM).

The formats understood, each found where its tool reads it:

====================  ===========================================================
ifupdown              ``/etc/network/interfaces`` and what it sources
                      (``interfaces.d/``): ``address`` of ``iface IF inet static``
systemd-networkd      ``/etc/systemd/network/*.network`` and their ``.network.d/``
                      drop-ins: ``Address=`` in ``[Network]`` or ``[Address]``
NetworkManager        keyfiles in ``/etc/NetworkManager/system-connections/``:
                      ``address1=`` (``addressN``/``addressesN``) in ``[ipv4]``
SUSE (wicked)         ``/etc/sysconfig/network/ifcfg-IF``: ``IPADDR`` / ``IPADDR_x``
====================  ===========================================================

Every line that configures A (and only such lines) is replaced by a *block* that keeps the
original line, commented out, so the change can be undone exactly::

    # mxone_maintenance: begin: ...why...
    #mxone-was# <the original line, verbatim>
    <the same line with B in place of A>
    # mxone_maintenance: end

(``KeepConfiguration=static`` is added to a networkd file that has none, so that networkd
never removes the alias the agent holds when it restarts or the link comes back.)
:func:`revert_text` turns every block back into its original line, byte for byte, and
leaves the rest of the file (an operator's later edits) alone. While a file is changed,
its previous content is kept under ``/etc/mxone/netconfig/`` at its own path (never beside
it: ifupdown and wicked read every file of their directories).

A server whose configuration the tool cannot change - A configured in a format or a line it
does not handle (netplan, RHEL ifcfg, wicked XML, a networkd file outside /etc, a
``post-up ip addr add`` line...) or nowhere at all - is refused before anything changes,
with the file the operator must change (:func:`plan_rebase`).

This module runs ON THE SERVER: python3's standard library only, nothing of the tool. The
tool runs it as ``python3 -c SOURCE OP`` (:func:`node_command`) with a JSON request on stdin
and reads one JSON answer (:func:`main`); the tool and the tests import it for the same
functions, which all take the root of the file system to work in.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

BEGIN = "# mxone_maintenance: begin"
WAS = "#mxone-was# "
END = "# mxone_maintenance: end"
#: Where a changed file's previous content is kept, at its own path below this dir.
BACKUP_ROOT = "/etc/mxone/netconfig"

IFUPDOWN = "ifupdown"
NETWORKD = "systemd-networkd"
NM = "NetworkManager"
SUSE = "SUSE ifcfg"

INTERFACES = "/etc/network/interfaces"
#: networkd's directories, highest precedence first; only the first is the operator's.
NETWORKD_DIRS = ("/etc/systemd/network", "/run/systemd/network",
                 "/usr/local/lib/systemd/network", "/usr/lib/systemd/network",
                 "/lib/systemd/network")
NM_DIRS = ("/etc/NetworkManager/system-connections", "/run/NetworkManager/system-connections",
           "/usr/lib/NetworkManager/system-connections")
SUSE_DIR = "/etc/sysconfig/network"
#: Formats the tool recognizes but does not change: (glob, what it is).
UNHANDLED = (
    ("/etc/netplan/*.yaml", "a netplan file"),
    ("/etc/netplan/*.yml", "a netplan file"),
    ("/etc/sysconfig/network-scripts/ifcfg-*", "a Red Hat ifcfg file"),
    ("/etc/wicked/ifconfig/*.xml", "a wicked XML file"),
)
#: File names every one of these tools skips (editor and package-manager leftovers).
_IGNORED_SUFFIXES = ("~", ".bak", ".orig", ".old", ".rej", ".swp", ".rpmnew", ".rpmsave",
                     ".rpmorig", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".dpkg-bak",
                     ".dpkg-tmp", ".scpmbackup")


class NetconfigError(Exception):
    """A request the node cannot carry out; the message says why and what to do."""


# ---- text ------------------------------------------------------------------------------


def split_lines(text: str) -> list[str]:
    """``text`` as lines that keep their ``\\n`` (the last one may have none);
    ``"".join(split_lines(t)) == t``. Only ``\\n`` ends a line (not ``\\r`` or ``\\f``)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _ending(line: str) -> tuple[str, str]:
    return (line[:-1], "\n") if line.endswith("\n") else (line, "")


def mentions(line: str, address: str) -> bool:
    """True when ``line`` holds ``address`` as a whole address (not 10.0.0.12 in 10.0.0.120)."""
    return _address_re(address).search(line) is not None


def _address_re(address: str) -> re.Pattern[str]:
    return re.compile(r"(?<![0-9.])" + re.escape(address) + r"(?![0-9]|\.[0-9])")


def _is_comment(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith(("#", ";"))


def block(line: str, new_lines: list[str], why: str) -> list[str]:
    """The block that replaces ``line`` (see the module docstring)."""
    content, ending = _ending(line)
    return ([f"{BEGIN}: {why}\n", f"{WAS}{content}\n"] + [n + "\n" for n in new_lines]
            + [END + ending])


def revert_text(text: str) -> tuple[str, int, list[str]]:
    """``text`` with every block turned back into its original line.

    Returns (text, blocks reverted, problems); a block without its end line is left as
    it is and named in the problems.
    """
    lines = split_lines(text)
    out: list[str] = []
    problems = []
    count = 0
    i = 0
    while i < len(lines):
        if not lines[i].startswith(BEGIN):
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        while j < len(lines) and _ending(lines[j])[0] != END:
            j += 1
        if j == len(lines):
            problems.append(f"line {i + 1}: a '{BEGIN}' without its '{END}' line (left as is)")
            out.extend(lines[i:])
            break
        was = [_ending(x)[0][len(WAS):] for x in lines[i + 1:j] if x.startswith(WAS)]
        ending = _ending(lines[j])[1]
        out.extend(w + "\n" for w in was[:-1])
        if was:
            out.append(was[-1] + ending)
        count += 1
        i = j + 1
    return "".join(out), count, problems


def has_blocks(text: str) -> bool:
    return any(line.startswith(BEGIN) for line in split_lines(text))


# ---- what each format says about an address ---------------------------------------------


@dataclass
class Use:
    """A line of a config file that mentions an address (comments aside)."""

    index: int  # 0-based line index
    handled: bool  # an address line of the interface that the tool can rewrite
    why: str = ""  # for a line it cannot: what it is


@dataclass
class ConfigFile:
    """One network config file as found on the node."""

    path: str  # the node's path
    fmt: str
    text: str
    mode: int
    editable: bool  # the tool may write it (else ``refusal`` says why not)
    refusal: str = ""
    keep_config: bool = False  # networkd: a KeepConfiguration= is set already
    network_header: int | None = None  # networkd: index of the [Network] line

    @property
    def lines(self) -> list[str]:
        return split_lines(self.text)


def _sections(lines: list[str]) -> list[str]:
    """The ``[section]`` each line is in (INI-style files)."""
    out, current = [], ""
    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            current = s[1:-1].strip()
        out.append(current)
    return out


def _key_value(line: str) -> tuple[str, str]:
    key, _, value = line.strip().partition("=")
    return key.strip(), value.strip()


def uses_ifupdown(f: ConfigFile, interface: str, address: str) -> list[Use]:
    out = []
    stanza: list[str] = []
    for i, line in enumerate(f.lines):
        if _is_comment(line):
            continue
        words = line.split()
        if words[0] in ("iface", "auto", "mapping", "source", "source-directory", "rename") or \
                words[0].startswith("allow-"):
            stanza = words
        if not mentions(line, address):
            continue
        ours = (len(stanza) >= 4 and stanza[0] == "iface" and stanza[2] == "inet"
                and (stanza[1] == interface or stanza[1].startswith(interface + ":")))
        if ours and stanza[3] == "static" and words[0] == "address" and len(words) == 2:
            out.append(Use(i, True))
        elif ours and words[0] == "address":
            out.append(Use(i, False, f"an address of 'iface {stanza[1]} inet {stanza[3]}'; "
                                     "the tool changes only those of 'inet static' stanzas"))
        else:
            out.append(Use(i, False, "not an 'address' line of an 'iface "
                                     f"{interface} inet static' stanza"))
    return out


def uses_networkd(f: ConfigFile, interface: str, address: str) -> list[Use]:
    out = []
    lines = f.lines
    for i, (line, section) in enumerate(zip(lines, _sections(lines), strict=True)):
        if _is_comment(line) or not mentions(line, address):
            continue
        key, _ = _key_value(line)
        if key == "Address" and section in ("Network", "Address"):
            out.append(Use(i, True))
        else:
            out.append(Use(i, False, f"{key}= in [{section}]; the tool changes only Address= "
                                     "in [Network] or [Address]"))
    return out


_NM_ADDRESS = re.compile(r"^address(es)?[0-9]*$")


def uses_nm(f: ConfigFile, interface: str, address: str) -> list[Use]:
    out = []
    lines = f.lines
    for i, (line, section) in enumerate(zip(lines, _sections(lines), strict=True)):
        if _is_comment(line) or not mentions(line, address):
            continue
        key, _ = _key_value(line)
        if section == "ipv4" and _NM_ADDRESS.match(key):
            out.append(Use(i, True))
        else:
            out.append(Use(i, False, f"{key}= in [{section}]; the tool changes only the "
                                     "address1= (addressN=) keys of [ipv4]"))
    return out


def uses_suse(f: ConfigFile, interface: str, address: str) -> list[Use]:
    out = []
    ours = os.path.basename(f.path) == f"ifcfg-{interface}"
    for i, line in enumerate(f.lines):
        if _is_comment(line) or not mentions(line, address):
            continue
        key, _ = _key_value(line)
        if ours and re.match(r"^IPADDR(_[A-Za-z0-9_]*)?$", key):
            out.append(Use(i, True))
        elif not ours:
            out.append(Use(i, False, f"the address is configured for another interface than "
                                     f"{interface}"))
        else:
            out.append(Use(i, False, f"{key}=; the tool changes only IPADDR and IPADDR_x"))
    return out


USES = {IFUPDOWN: uses_ifupdown, NETWORKD: uses_networkd, NM: uses_nm, SUSE: uses_suse}


# ---- finding the files ------------------------------------------------------------------


def _read(root: str, path: str) -> tuple[str, int] | None:
    full = root + path
    try:
        with open(full, "rb") as f:
            data = f.read()
        mode = os.stat(full).st_mode & 0o7777
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return data.decode("utf-8", "surrogateescape"), mode


def _glob(root: str, pattern: str) -> list[str]:
    """Node paths matching ``pattern`` under ``root``, sorted, regular files only."""
    found = glob.glob(glob.escape(root) + pattern) if root else glob.glob(pattern)
    return sorted(p[len(root):] for p in found if os.path.isfile(p))


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.endswith(_IGNORED_SUFFIXES) or ".dpkg-" in name


def _ifupdown_files(root: str) -> list[ConfigFile]:
    out: list[ConfigFile] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        got = _read(root, path)
        if got is None:
            return
        f = ConfigFile(path, IFUPDOWN, got[0], got[1], editable=True)
        out.append(f)
        for line in f.lines:
            words = line.split()
            if len(words) != 2 or _is_comment(line):
                continue
            target = words[1]
            if not target.startswith("/"):
                target = os.path.join(os.path.dirname(path), target)
            if words[0] == "source":
                for p in _glob(root, target):
                    visit(p)
            elif words[0] == "source-directory":
                for p in _glob(root, target.rstrip("/") + "/*"):
                    if re.match(r"^[A-Za-z0-9_-]+$", os.path.basename(p)):
                        visit(p)

    visit(INTERFACES)
    return out


def _networkd_matches(text: str, interface: str) -> bool:
    """False only when the file's [Match] Name= rules out ``interface``."""
    lines = split_lines(text)
    for line, section in zip(lines, _sections(lines), strict=True):
        key, value = _key_value(line)
        if section == "Match" and key == "Name" and value and not _is_comment(line):
            names = value.split()
            if names[0].startswith("!"):
                return not any(fnmatch.fnmatchcase(interface, n.lstrip("!")) for n in names)
            return any(fnmatch.fnmatchcase(interface, n) for n in names)
    return True


def _networkd_files(root: str, interface: str) -> list[ConfigFile]:
    """The .network files (and their drop-ins) networkd would use for ``interface``,
    shadowed names left out: a file of /etc hides one of the same name below it."""
    mains: dict[str, str] = {}
    dropins: dict[tuple[str, str], str] = {}
    for d in NETWORKD_DIRS:
        for p in _glob(root, f"{d}/*.network"):
            mains.setdefault(os.path.basename(p), p)
        for p in _glob(root, f"{d}/*.network.d/*.conf"):
            dropins.setdefault((os.path.basename(os.path.dirname(p)), os.path.basename(p)), p)
    out = []
    for name, path in sorted(mains.items()):
        got = _read(root, path)
        if got is None or not _networkd_matches(got[0], interface):
            continue
        mine = [p for (main, _), p in sorted(dropins.items()) if main == name + ".d"]
        for p in [path, *mine]:
            got = _read(root, p)
            if got is None:
                continue
            editable = p.startswith(NETWORKD_DIRS[0] + "/")
            refusal = "" if editable else (
                f"a networkd file outside {NETWORKD_DIRS[0]} (the tool edits only the "
                f"operator's files: copy it to {NETWORKD_DIRS[0]}/ under the same name)")
            out.append(ConfigFile(p, NETWORKD, got[0], got[1], editable, refusal))
    for f in out:
        lines = f.lines
        for i, (line, section) in enumerate(zip(lines, _sections(lines), strict=True)):
            if _is_comment(line):
                continue
            if line.strip() == "[Network]" and f.network_header is None:
                f.network_header = i
            if section == "Network" and _key_value(line)[0] == "KeepConfiguration":
                f.keep_config = True
    return out


def _nm_files(root: str, interface: str) -> list[ConfigFile]:
    out = []
    seen: set[str] = set()
    for d in NM_DIRS:
        for p in _glob(root, f"{d}/*"):
            name = os.path.basename(p)
            if _skipped(name) or name in seen:
                continue
            seen.add(name)
            got = _read(root, p)
            if got is None:
                continue
            lines = split_lines(got[0])
            named = [v for line, s in zip(lines, _sections(lines), strict=True)
                     for k, v in [_key_value(line)] if s == "connection" and k == "interface-name"]
            if named and named[0] != interface:
                continue
            editable = d == NM_DIRS[0]
            refusal = "" if editable else (
                f"a NetworkManager profile outside {NM_DIRS[0]} (the tool edits only the "
                "operator's profiles)")
            out.append(ConfigFile(p, NM, got[0], got[1], editable, refusal))
    return out


def _suse_files(root: str) -> list[ConfigFile]:
    out = []
    for p in _glob(root, f"{SUSE_DIR}/ifcfg-*"):
        if _skipped(os.path.basename(p)):
            continue
        got = _read(root, p)
        if got is not None:
            out.append(ConfigFile(p, SUSE, got[0], got[1], editable=True))
    return out


def config_files(root: str, interface: str) -> list[ConfigFile]:
    """Every network config file of the formats above that may concern ``interface``."""
    return (_ifupdown_files(root) + _networkd_files(root, interface)
            + _nm_files(root, interface) + _suse_files(root))


def searched() -> str:
    """Where :func:`config_files` looks, for messages."""
    return (f"{INTERFACES} and what it sources ({IFUPDOWN}), {NETWORKD_DIRS[0]}/*.network "
            f"({NETWORKD}), {NM_DIRS[0]}/ ({NM}), {SUSE_DIR}/ifcfg-* ({SUSE})")


# ---- plans ------------------------------------------------------------------------------


@dataclass
class Edit:
    """A file to write: its path, format, content now and after, and its mode."""

    path: str
    fmt: str
    before: str
    after: str
    mode: int


@dataclass
class Plan:
    """What :func:`plan_rebase` or :func:`plan_revert` found.

    ``refusal`` non-empty: nothing may change (it names the files to change by hand).
    ``edits`` empty and no refusal: the configuration is as it should be already.
    """

    edits: list[Edit] = field(default_factory=list)
    refusal: str = ""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.refusal:
            return self.refusal
        if not self.edits:
            return "; ".join(self.notes) or "nothing to change"
        return ", ".join(f"{e.path} ({e.fmt})" for e in self.edits)


def plan_rebase(root: str, interface: str, old: str, new: str, why: str) -> Plan:
    """The edits that make ``new`` the address the node's config brings up on
    ``interface`` at boot instead of ``old`` (see the module docstring).

    ``why`` is the text of each block's first line.
    """
    files = config_files(root, interface)
    problems: list[str] = []
    edits: list[Edit] = []
    has_new = False
    for f in files:
        uses_old = USES[f.fmt](f, interface, old)
        uses_new = [u for u in USES[f.fmt](f, interface, new) if u.handled]
        has_new = has_new or bool(uses_new)
        if not uses_old:
            continue
        lines = f.lines
        bad = [u for u in uses_old if not u.handled]
        for u in bad:
            problems.append(f"{f.path} line {u.index + 1} ({lines[u.index].strip()!r}): {u.why}")
        if bad:
            continue
        if not f.editable:
            problems.append(f"{f.path}: {f.refusal}")
            continue
        if has_blocks(f.text):
            problems.append(f"{f.path}: holds an earlier change of mxone_maintenance (between "
                            f"'{BEGIN}' and '{END}' lines) that was never undone; put the file "
                            "back as it should be and remove those lines")
            continue
        edits.append(Edit(f.path, f.fmt, f.text, _rebased(f, uses_old, old, new, bool(uses_new),
                                                           why), f.mode))
    for pattern, what in UNHANDLED:
        for p in _glob(root, pattern):
            got = _read(root, p)
            if got is not None and any(mentions(x, old) for x in split_lines(got[0])
                                       if not _is_comment(x)):
                problems.append(f"{p}: {what}, a format the tool does not change")
    if problems:
        return Plan(refusal=(
            f"{old} is brought up at boot by network configuration the tool cannot change: "
            + "; ".join(problems) + f". Change it by hand so that {interface} comes up with "
            f"{new} and not {old} (the alias, which only the agent may bring up), then try "
            "again"))
    if not edits and not has_new:
        return Plan(refusal=(
            f"no network configuration file here brings up {old} or {new} on {interface} "
            f"(looked in {searched()}); so the new base address {new} would be lost at the next "
            f"reboot: configure {interface} statically with {new} instead of {old} in the "
            "server's network configuration, then try again"))
    if not edits:
        return Plan(notes=[f"{new} is in the network configuration already"])
    return Plan(edits=edits)


def _rebased(f: ConfigFile, uses: list[Use], old: str, new: str, has_new: bool,
             why: str) -> str:
    """``f``'s text with a block for each use of ``old`` (see the module docstring)."""
    lines = f.lines
    sections = _sections(lines)
    pattern = _address_re(old)
    replaced: dict[int, list[str]] = {}  # line index -> the lines its block brings
    keep = f.fmt == NETWORKD and not f.keep_config and bool(uses)
    for u in uses:
        content = _ending(lines[u.index])[0]
        replaced[u.index] = [] if has_new else [pattern.sub(new, content)]
        if keep and sections[u.index] == "Network":
            replaced[u.index].append("KeepConfiguration=static")
            keep = False
    notes = {i: why for i in replaced}
    if keep:  # the address was in an [Address] section: the key goes in [Network]
        if f.network_header is not None:
            i, extra = f.network_header, ["KeepConfiguration=static"]
        else:
            i, extra = len(lines) - 1, ["", "[Network]", "KeepConfiguration=static"]
        replaced[i] = replaced.get(i, [_ending(lines[i])[0]]) + extra
        notes[i] = why + "; networkd keeps the agent's alias when it restarts"
    return "".join(x for i, line in enumerate(lines)
                   for x in (block(line, replaced[i], notes[i]) if i in replaced else [line]))


def plan_revert(root: str, interface: str) -> Plan:
    """The edits that undo every block in the node's network config files (a server leaving
    its cluster gets its old base address back at boot)."""
    edits, notes = [], []
    for f in config_files(root, interface):
        if not f.editable or not has_blocks(f.text):
            continue
        text, _, problems = revert_text(f.text)
        notes += [f"{f.path} {p}" for p in problems]
        if text != f.text:
            edits.append(Edit(f.path, f.fmt, f.text, text, f.mode))
    return Plan(edits=edits, notes=notes)


# ---- writing on the node ----------------------------------------------------------------


def backup_path(path: str) -> str:
    return BACKUP_ROOT + path


def _fsync_dir(d: str) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(full: str, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Replace ``full`` with ``data``: a temp file beside it, created with ``mode`` (never
    wider), fsynced, renamed over it, the directory fsynced."""
    d = os.path.dirname(full)
    tmp = os.path.join(d, f".{os.path.basename(full)}.mxone-tmp-{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o777)
    try:
        try:
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, full)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(d)


def snapshot(root: str, paths: list[str]) -> dict[str, dict[str, object] | None]:
    """Path -> {"data": hex, "mode"} (None when absent), for a byte-for-byte restore."""
    out: dict[str, dict[str, object] | None] = {}
    for p in paths:
        try:
            with open(root + p, "rb") as f:
                data = f.read()
            out[p] = {"data": data.hex(), "mode": os.stat(root + p).st_mode & 0o7777}
        except FileNotFoundError:
            out[p] = None
    return out


def touched_paths(plan: Plan) -> list[str]:
    """Every path applying ``plan`` may write: the files and their backups."""
    return [p for e in plan.edits for p in (e.path, backup_path(e.path))]


def apply_plan(root: str, plan: Plan, keep_backup: bool) -> list[str]:
    """Write the plan's edits; returns the paths written.

    ``keep_backup``: keep each file's previous content under :data:`BACKUP_ROOT` first (an
    existing backup is left: it holds the content from before the first change). Without
    it (an undo), the backups are removed once the file is written.
    """
    written = []
    for e in plan.edits:
        full = root + e.path
        st = os.stat(full)
        if keep_backup:
            b = root + backup_path(e.path)
            if not os.path.exists(b):
                _makedirs(root, os.path.dirname(backup_path(e.path)))
                write_atomic(b, e.before.encode("utf-8", "surrogateescape"), st.st_mode & 0o7777)
        write_atomic(full, e.after.encode("utf-8", "surrogateescape"), st.st_mode & 0o7777,
                     (st.st_uid, st.st_gid))
        written.append(e.path)
        if not keep_backup:
            _remove_backup(root, e.path)
    return written


def _makedirs(root: str, path: str) -> None:
    """``path`` (below BACKUP_ROOT's parent) made with mode 0700 where missing."""
    if os.path.isdir(root + path):
        return
    _makedirs(root, os.path.dirname(path))
    os.mkdir(root + path, 0o700)


def _remove_backup(root: str, path: str) -> None:
    try:
        os.unlink(root + backup_path(path))
    except FileNotFoundError:
        return
    prune_backups(root)


def prune_backups(root: str) -> None:
    """Remove the empty directories of :data:`BACKUP_ROOT` (itself included)."""
    top = root + BACKUP_ROOT
    if not os.path.isdir(top):
        return
    for d, _, _ in sorted(os.walk(top), key=lambda x: -len(x[0])):
        try:
            os.rmdir(d)
        except OSError:
            pass


def backup_dirs(root: str) -> dict[str, bool]:
    """The directories applying a plan may create (:data:`BACKUP_ROOT` and its parent),
    and whether each exists now."""
    dirs = [os.path.dirname(BACKUP_ROOT), BACKUP_ROOT]
    return {d: os.path.isdir(root + d) for d in dirs}


def restore(root: str, files: dict[str, dict[str, object] | None],
            dirs: dict[str, object] | None = None) -> list[str]:
    """Put every path back as :func:`snapshot` saw it, byte for byte, and remove the
    directories of ``dirs`` (from :func:`backup_dirs`) that did not exist then and are
    empty now; the paths written."""
    changed = []
    for p, snap in sorted(files.items()):
        if snapshot(root, [p])[p] == snap:
            continue
        if snap is None:
            os.unlink(root + p)
        else:
            if p.startswith(BACKUP_ROOT + "/"):
                _makedirs(root, os.path.dirname(p))
            write_atomic(root + p, bytes.fromhex(str(snap["data"])), int(str(snap["mode"])))
        changed.append(p)
    prune_backups(root)
    for d, existed in sorted((dirs or {}).items(), reverse=True):
        if not existed:
            try:
                os.rmdir(root + d)
            except OSError:
                pass
    return changed


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


# ---- the node program ---------------------------------------------------------------------


def _plan(root: str, req: dict[str, object]) -> Plan:
    interface = str(req["interface"])
    if req.get("revert"):
        return plan_revert(root, interface)
    return plan_rebase(root, interface, str(req["old"]), str(req["new"]), str(req["why"]))


def _mapping(req: dict[str, object], key: str) -> dict[str, object]:
    value = req.get(key, {})
    if not isinstance(value, dict):
        raise NetconfigError(f"request field {key!r} must be an object, not {value!r}")
    return value


def handle(op: str, req: dict[str, object], root: str = "") -> dict[str, object]:
    """One request (what :func:`main` reads), answered as :func:`main` prints it.

    ``inspect`` {interface, old, new, why} or {interface, revert: true}: the plan and a
    snapshot of every path (``files``) and directory (``dirs``) applying it may write;
    ``ok`` false with ``error`` when the node is refused. ``apply`` (same request plus
    ``expect``: path -> sha256 of each file as inspected): writes the plan; refused if a
    file changed since. ``restore`` {files, dirs}: puts the snapshot back.
    """
    if op not in ("inspect", "apply", "restore"):
        return {"ok": False, "error": f"unknown op {op!r}"}
    if op == "restore":
        files: dict[str, Any] = _mapping(req, "files")
        return {"ok": True, "restored": restore(root, files, _mapping(req, "dirs"))}
    plan = _plan(root, req)
    if plan.refusal:
        return {"ok": False, "error": plan.refusal}
    if op == "inspect":
        return {"ok": True, "edits": [{"path": e.path, "format": e.fmt} for e in plan.edits],
                "notes": plan.notes, "expect": {e.path: _sha(e.before) for e in plan.edits},
                "files": snapshot(root, touched_paths(plan)), "dirs": backup_dirs(root)}
    expect = _mapping(req, "expect")
    now = {e.path: _sha(e.before) for e in plan.edits}
    if now != expect:
        moved = sorted(set(now) ^ set(expect) | {p for p in now if now[p] != expect.get(p)})
        return {"ok": False, "error": "network configuration changed since it was read: "
                + ", ".join(moved) + "; nothing written (start the action again)"}
    written = apply_plan(root, plan, keep_backup=not req.get("revert"))
    return {"ok": True, "written": written, "notes": plan.notes}


def main(argv: list[str]) -> int:
    """``OP`` in argv, the JSON request on stdin; prints one JSON answer."""
    try:
        req = json.load(sys.stdin)
        if not isinstance(req, dict):
            raise NetconfigError(f"the request must be a JSON object, not {type(req).__name__}")
        out = handle(argv[0] if argv else "", req)
    except NetconfigError as exc:
        out = {"ok": False, "error": f"network configuration: {exc}"}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        out = {"ok": False, "error": f"network configuration: {type(exc).__name__}: {exc}"}
    print(json.dumps(out))
    return 0


def node_command(op: str) -> str:
    """The shell command that runs this module on a node for ``op`` (request on stdin)."""
    import shlex

    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    return f"python3 -c {shlex.quote(source)} {shlex.quote(op)}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
