"""The network config formats the tool understands, and the files of each on a node.

====================  ===========================================================
ifupdown              ``/etc/network/interfaces`` and what it sources
                      (``interfaces.d/``): ``address`` of ``iface IF inet static``
systemd-networkd      ``/etc/systemd/network/*.network`` and their ``.network.d/``
                      drop-ins: ``Address=`` in ``[Network]`` or ``[Address]``
NetworkManager        keyfiles in ``/etc/NetworkManager/system-connections/``:
                      ``address1=`` (``addressN``/``addressesN``) in ``[ipv4]``
SUSE (wicked)         ``/etc/sysconfig/network/ifcfg-IF``: ``IPADDR`` / ``IPADDR_x``
====================  ===========================================================

For each, ``uses_*`` names the lines of a file that mention an address and whether the
tool can rewrite them; :func:`config_files` finds the files that may concern an
interface. Every function takes the root of the file system to work in.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from dataclasses import dataclass

from mxone_agent.netconfig.text import (
    is_comment,
    key_value,
    mentions,
    section_names,
    split_lines,
)

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


def uses_ifupdown(f: ConfigFile, interface: str, address: str) -> list[Use]:
    out = []
    stanza: list[str] = []
    for i, line in enumerate(f.lines):
        if is_comment(line):
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
    for i, (line, section) in enumerate(zip(lines, section_names(lines), strict=True)):
        if is_comment(line) or not mentions(line, address):
            continue
        key, _ = key_value(line)
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
    for i, (line, section) in enumerate(zip(lines, section_names(lines), strict=True)):
        if is_comment(line) or not mentions(line, address):
            continue
        key, _ = key_value(line)
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
        if is_comment(line) or not mentions(line, address):
            continue
        key, _ = key_value(line)
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
def read_file(root: str, path: str) -> tuple[str, int] | None:
    full = root + path
    try:
        with open(full, "rb") as f:
            data = f.read()
        mode = os.stat(full).st_mode & 0o7777
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return data.decode("utf-8", "surrogateescape"), mode


def glob_paths(root: str, pattern: str) -> list[str]:
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
        got = read_file(root, path)
        if got is None:
            return
        f = ConfigFile(path, IFUPDOWN, got[0], got[1], editable=True)
        out.append(f)
        for line in f.lines:
            words = line.split()
            if len(words) != 2 or is_comment(line):
                continue
            target = words[1]
            if not target.startswith("/"):
                target = os.path.join(os.path.dirname(path), target)
            if words[0] == "source":
                for p in glob_paths(root, target):
                    visit(p)
            elif words[0] == "source-directory":
                for p in glob_paths(root, target.rstrip("/") + "/*"):
                    if re.match(r"^[A-Za-z0-9_-]+$", os.path.basename(p)):
                        visit(p)

    visit(INTERFACES)
    return out


def _networkd_matches(text: str, interface: str) -> bool:
    """False only when the file's [Match] Name= rules out ``interface``."""
    lines = split_lines(text)
    for line, section in zip(lines, section_names(lines), strict=True):
        key, value = key_value(line)
        if section == "Match" and key == "Name" and value and not is_comment(line):
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
        for p in glob_paths(root, f"{d}/*.network"):
            mains.setdefault(os.path.basename(p), p)
        for p in glob_paths(root, f"{d}/*.network.d/*.conf"):
            dropins.setdefault((os.path.basename(os.path.dirname(p)), os.path.basename(p)), p)
    out = []
    for name, path in sorted(mains.items()):
        got = read_file(root, path)
        if got is None or not _networkd_matches(got[0], interface):
            continue
        mine = [p for (main, _), p in sorted(dropins.items()) if main == name + ".d"]
        for p in [path, *mine]:
            got = read_file(root, p)
            if got is None:
                continue
            editable = p.startswith(NETWORKD_DIRS[0] + "/")
            refusal = "" if editable else (
                f"a networkd file outside {NETWORKD_DIRS[0]} (the tool edits only the "
                f"operator's files: copy it to {NETWORKD_DIRS[0]}/ under the same name)")
            out.append(ConfigFile(p, NETWORKD, got[0], got[1], editable, refusal))
    for f in out:
        lines = f.lines
        for i, (line, section) in enumerate(zip(lines, section_names(lines), strict=True)):
            if is_comment(line):
                continue
            if line.strip() == "[Network]" and f.network_header is None:
                f.network_header = i
            if section == "Network" and key_value(line)[0] == "KeepConfiguration":
                f.keep_config = True
    return out


def _nm_files(root: str, interface: str) -> list[ConfigFile]:
    out = []
    seen: set[str] = set()
    for d in NM_DIRS:
        for p in glob_paths(root, f"{d}/*"):
            name = os.path.basename(p)
            if _skipped(name) or name in seen:
                continue
            seen.add(name)
            got = read_file(root, p)
            if got is None:
                continue
            lines = split_lines(got[0])
            named = [v for line, s in zip(lines, section_names(lines), strict=True)
                     for k, v in [key_value(line)] if s == "connection" and k == "interface-name"]
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
    for p in glob_paths(root, f"{SUSE_DIR}/ifcfg-*"):
        if _skipped(os.path.basename(p)):
            continue
        got = read_file(root, p)
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
