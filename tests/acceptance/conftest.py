"""The real menus on lim1, driven by keys only and read from the screen (pexpect + pyte).

:class:`Tui` spawns ``python -m mxone_menus.entry`` inside lim1 (its own /etc/mxone, its
own network) with the lab's user key and the real agent artefact, and offers the few
moves an operator makes: open a menu item, move to a field, type, tick, choose, press
Continue, answer Yes. It finds things by their text on the screen and the focus by its
colour (the focus is drawn black on light cyan), never by widget internals. Every wait is
bounded, and a failed wait shows the screen. A traceback on the screen fails at once.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import time
from collections.abc import Callable, Iterator

import pexpect
import pyte
import pytest

from tests.orchestration.conftest import (  # noqa: F401  (fixtures re-exported here)
    SERVERS,
    Admin,
    admin,
    all_trees,
    real_artefact,
    tree_digest,
)

ROWS, COLS = 45, 120
UP, DOWN, LEFT, RIGHT = "\x1b[A", "\x1b[B", "\x1b[D", "\x1b[C"
ENTER, TAB, ESC, BACKSPACE, END = "\r", "\t", "\x1b", "\x7f", "\x1b[F"
FOCUS_BG = ("brightcyan", "cyan")
AGENT = "/opt/mxone/agent/current/bin/mxone-agent"


def fingerprint(host_key: str) -> str:
    """``SHA256:...`` of an OpenSSH public key line, as ssh-keygen -l prints it."""
    blob = base64.b64decode(host_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def flatten(lines: list[str]) -> str:
    """The screen as one line: wrapped text joined, runs of spaces made one."""
    return " ".join(" ".join(line.split()) for line in lines if line.strip())


class Tui:
    """The maintenance menus running on lim1 in a pseudo terminal."""

    def __init__(self, lab, artefact, *, refresh: float = 1.0, extra: tuple[str, ...] = ()) -> None:
        self.lab = lab
        env = lab.host_env("lim1", {"TERM": "xterm", "ESCDELAY": "25",
                                    "MXONE_SSH_KEY": str(lab.user_key_path)})
        argv = lab.nsenter_argv("lim1") + [sys.executable, "-m", "mxone_menus.entry",
                                           "--agent-artefact", str(artefact),
                                           "--status-refresh", str(refresh), *extra]
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(ROWS, COLS),
                                   timeout=10)
        # pexpect sleeps 50 ms before every send by default; keys here are paced by
        # ``send``'s own pause and read back by ``pump``, so that sleep only costs time
        self.child.delaybeforesend = None
        self.seen_traceback = False

    # ---- reading -------------------------------------------------------------------------

    def pump(self, quiet: float = 0.05) -> None:
        """Feed the screen until the program has been quiet for ``quiet`` s."""
        while True:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=quiet))
            except (pexpect.TIMEOUT, pexpect.EOF):
                break
        if "Traceback (most recent call last)" in self.text:
            raise AssertionError("a traceback on the screen:\n" + self.dump())

    @property
    def lines(self) -> list[str]:
        return list(self.screen.display)

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    @property
    def flat(self) -> str:
        return flatten(self.lines)

    def dump(self) -> str:
        return "-" * COLS + "\n" + self.text + "\n" + "-" * COLS

    def wait_for(self, what: str | re.Pattern[str] | Callable[[Tui], bool],
                 timeout: float = 20.0, flat: bool = False) -> str:
        """Wait (bounded) until the screen holds ``what`` (a text, a regex, or a test)."""
        end = time.monotonic() + timeout
        while True:
            self.pump()
            hay = self.flat if flat else self.text
            if callable(what) and not isinstance(what, re.Pattern):
                found = what(self)
            elif isinstance(what, re.Pattern):
                found = what.search(hay) is not None
            else:
                found = what in hay
            if found:
                return self.text
            if time.monotonic() > end or not self.child.isalive():
                raise AssertionError(f"{getattr(what, 'pattern', what)!r} not on the screen "
                                     f"within {timeout:g} s:\n" + self.dump())

    def generation(self) -> int:
        m = re.search(r"system generation (\d+)", self.lines[0])
        assert m, "no generation in the title:\n" + self.dump()
        return int(m.group(1))

    def focused(self, span: bool = False) -> str:
        """The first focused row ('' when none); with ``span`` only its highlighted cells
        (a button among several on one row, a radio button), else the whole row (an edit
        field with its label). An empty edit field shows no highlight: its row is the
        cursor's."""
        for y in range(ROWS):
            row = self.screen.buffer[y]
            cells = [x for x in range(COLS) if row[x].bg in FOCUS_BG]
            if cells:
                line = self.screen.display[y]
                return line[cells[0]:cells[-1] + 1] if span else line
        if not self.screen.cursor.hidden:  # an empty edit field has nothing to highlight
            return self.screen.display[self.screen.cursor.y]
        return ""

    # ---- keys ----------------------------------------------------------------------------

    def send(self, *keys: str, pause: float = 0.03) -> None:
        for k in keys:
            self.child.send(k)
            time.sleep(pause)
        self.pump()

    def type(self, text: str) -> None:
        self.child.send(text)
        time.sleep(0.05)
        self.pump()

    def focus(self, text: str, moves: int = 40, row: bool = False) -> None:
        """Move the focus (Down, then Up) to ``text``: the highlighted part shows it (or,
        with ``row``, its row does: a field's label is left of the highlight)."""
        self.wait_for(text, timeout=20)
        for key in (DOWN, UP):
            last = None
            for _ in range(moves):
                now = self.focused(span=not row)
                if text in now:
                    return
                where = (self.focused(), self.screen.cursor.y, now)
                if where == last:
                    break  # the end of the list: try the other way
                last = where
                self.send(key)
        raise AssertionError(f"cannot move the focus to {text!r}:\n" + self.dump())

    def open(self, *labels: str) -> None:
        """Menu items by their label (``Cluster handling``, ``Show status``...)."""
        for label in labels:
            self.wait_for(re.compile(r"\d+\. " + re.escape(label) + r"\b"))
            row = next(line for line in self.lines if re.search(r"\d+\. " + re.escape(label), line))
            number = re.search(r"(\d+)\. " + re.escape(label), row).group(1)
            self.focus(f"{number}. {label}")
            self.send(ENTER)

    def pick(self, label_start: str) -> None:
        self.focus(label_start)
        self.send(ENTER)

    def field(self, label: str, text: str) -> None:
        """Replace the text of the edit field labelled ``label``."""
        self.focus(label, row=True)
        self.send(END, *[BACKSPACE] * 30, pause=0.005)
        self.type(text)

    def choose(self, option: str) -> None:
        """A radio button or check box by its text; Space selects it."""
        self.focus(option)
        if "( )" in self.focused() or "[ ]" in self.focused():
            self.send(" ")

    def tick(self, label: str) -> None:
        self.focus(label, row=True)
        if "[X]" not in self.focused():
            self.send(" ")
        assert "[X]" in self.focused(), self.dump()

    def button(self, label: str) -> None:
        """Press a button on a row of buttons (Yes/No, Accept/Refuse): Left/Right to it."""
        self.wait_for(f"< {label}")
        for key in (LEFT, RIGHT):
            for _ in range(4):
                if f"< {label}" in self.focused(span=True):
                    self.send(ENTER)
                    return
                self.send(key)
        raise AssertionError(f"cannot move the focus to button {label!r}:\n" + self.dump())

    def submit(self) -> None:
        self.focus("< Continue")
        self.send(ENTER)

    def yes(self, question: str = "Apply this change?") -> None:
        self.wait_for(question)
        self.button("Yes")

    def back_to_main(self) -> None:
        for _ in range(6):
            if re.search(r"\d\. Exit", self.text):
                return
            self.send(ESC)
            time.sleep(0.1)
            self.pump()
        self.wait_for(re.compile(r"\d\. Exit"), timeout=5)

    def exit(self) -> int:
        self.back_to_main()
        self.open("Exit")
        self.child.expect(pexpect.EOF, timeout=10)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.close(force=True)


@pytest.fixture
def tui_factory(lab, real_artefact) -> Iterator[Callable[..., Tui]]:  # noqa: F811
    made: list[Tui] = []

    def make(**kw) -> Tui:
        t = Tui(lab, real_artefact, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def system_toml(lab) -> str:
    r = lab.exec("lim1", "cat /etc/mxone/system.toml 2>/dev/null || true")
    return r.stdout


def node_state(lab) -> tuple[dict, str]:
    """Every node's /etc/mxone, byte for byte, and LIM 1's system.toml."""
    return all_trees(lab), system_toml(lab)
