"""The text of a network config file: lines, addresses in them, and the tool's blocks.

Every line that configures the old base address is replaced by a *block* that keeps the
original line, commented out, so the change can be undone exactly::

    # mxone_maintenance: begin: ...why...
    #mxone-was# <the original line, verbatim>
    <the same line with the new address in place of the old>
    # mxone_maintenance: end

:func:`revert_text` turns every block back into its original line, byte for byte, and
leaves the rest of the file (an operator's later edits) alone.
"""

from __future__ import annotations

import re

BEGIN = "# mxone_maintenance: begin"
WAS = "#mxone-was# "
END = "# mxone_maintenance: end"


def split_lines(text: str) -> list[str]:
    """``text`` as lines that keep their ``\\n`` (the last one may have none);
    ``"".join(split_lines(t)) == t``. Only ``\\n`` ends a line (not ``\\r`` or ``\\f``)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def split_ending(line: str) -> tuple[str, str]:
    return (line[:-1], "\n") if line.endswith("\n") else (line, "")


def mentions(line: str, address: str) -> bool:
    """True when ``line`` holds ``address`` as a whole address (not 10.0.0.12 in 10.0.0.120)."""
    return address_re(address).search(line) is not None


def address_re(address: str) -> re.Pattern[str]:
    return re.compile(r"(?<![0-9.])" + re.escape(address) + r"(?![0-9]|\.[0-9])")


def is_comment(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith(("#", ";"))


def block(line: str, new_lines: list[str], why: str) -> list[str]:
    """The block that replaces ``line`` (see the module docstring)."""
    content, ending = split_ending(line)
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
        while j < len(lines) and split_ending(lines[j])[0] != END:
            j += 1
        if j == len(lines):
            problems.append(f"line {i + 1}: a '{BEGIN}' without its '{END}' line (left as is)")
            out.extend(lines[i:])
            break
        was = [split_ending(x)[0][len(WAS):] for x in lines[i + 1:j] if x.startswith(WAS)]
        ending = split_ending(lines[j])[1]
        out.extend(w + "\n" for w in was[:-1])
        if was:
            out.append(was[-1] + ending)
        count += 1
        i = j + 1
    return "".join(out), count, problems


def has_blocks(text: str) -> bool:
    return any(line.startswith(BEGIN) for line in split_lines(text))


def section_names(lines: list[str]) -> list[str]:
    """The ``[section]`` each line is in (INI-style files)."""
    out, current = [], ""
    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            current = s[1:-1].strip()
        out.append(current)
    return out


def key_value(line: str) -> tuple[str, str]:
    key, _, value = line.strip().partition("=")
    return key.strip(), value.strip()
