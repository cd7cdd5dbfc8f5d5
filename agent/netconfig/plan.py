"""What the tool changes in a node's network configuration, decided before anything is
written: :func:`plan_rebase` (a new base address) and :func:`plan_revert` (undo it).

A server whose configuration the tool cannot change - the old address configured in a
format or a line it does not handle, or nowhere at all - is refused with the file the
operator must change. (``KeepConfiguration=static`` is added to a networkd file that has
none, so that networkd never removes the alias the agent holds when it restarts.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mxone_agent.netconfig.formats import (
    NETWORKD,
    UNHANDLED,
    USES,
    ConfigFile,
    Use,
    config_files,
    glob_paths,
    read_file,
    searched,
)
from mxone_agent.netconfig.text import (
    BEGIN,
    END,
    address_re,
    block,
    has_blocks,
    is_comment,
    mentions,
    revert_text,
    section_names,
    split_ending,
    split_lines,
)


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
        for p in glob_paths(root, pattern):
            got = read_file(root, p)
            if got is not None and any(mentions(x, old) for x in split_lines(got[0])
                                       if not is_comment(x)):
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
    sections = section_names(lines)
    pattern = address_re(old)
    replaced: dict[int, list[str]] = {}  # line index -> the lines its block brings
    keep = f.fmt == NETWORKD and not f.keep_config and bool(uses)
    for u in uses:
        content = split_ending(lines[u.index])[0]
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
        replaced[i] = replaced.get(i, [split_ending(lines[i])[0]]) + extra
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
