"""The menus in a real terminal: pexpect drives a pty, pyte reads the screen."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pexpect
import pyte

from mxone_maintenance.service import Maintenance

ROWS, COLS = 30, 100
PYTHON = str(Path(sys.executable))


class Terminal:
    def __init__(self, config: Path, **env_changes: str) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        env = {**os.environ, "TERM": "xterm", "ESCDELAY": "25", **env_changes}
        new = () if config.exists() else ("--new",)
        self.child = pexpect.spawn(PYTHON, ["-m", "mxone_menus", "--config", str(config), *new],
                                   env=env, dimensions=(ROWS, COLS), timeout=5)

    def pump(self) -> None:
        while True:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
            except (pexpect.TIMEOUT, pexpect.EOF):
                return

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, needle: str, timeout: float = 5.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump()
            if needle in self.text:
                return self.text
        raise AssertionError(f"{needle!r} not on screen:\n{self.text}")

    def send(self, *keys: str) -> None:
        for k in keys:
            self.child.send(k)
            time.sleep(0.05)


UP, DOWN, LEFT, ENTER, TAB, ESC = "\x1b[A", "\x1b[B", "\x1b[D", "\r", "\t", "\x1b"


def test_add_a_server_in_a_real_terminal(tmp_path: Path) -> None:
    config = tmp_path / "system.toml"
    t = Terminal(config)
    try:
        t.wait_for("1. Server in system")
        assert "system generation 0" in t.text
        t.send(ENTER)
        t.wait_for("1. Add a server to the system")
        t.send(ENTER)
        t.wait_for("Base IP/prefix")
        t.send("lim1", ENTER, "10.0.2.11/24", TAB, TAB, "1", DOWN, ENTER)
        screen = t.wait_for("Apply this change?")
        assert "joins the system as LIM server (LIM 1)" in screen
        t.send(LEFT, ENTER)
        screen = t.wait_for("Applied: system generation 1.")
        assert "lim1         OK      system config generation 1 written" in screen
        assert "system generation 1" in screen.splitlines()[0]
        t.send(ESC)
        t.wait_for("3. List servers")
        time.sleep(0.1)
        t.send(ESC)
        t.wait_for("4. Exit")
        t.send(DOWN, DOWN, DOWN, ENTER)
        t.child.expect(pexpect.EOF)
    finally:
        t.child.close(force=True)
    assert t.child.exitstatus == 0
    server = Maintenance(config).system().server("lim1")
    assert (server.base_ip, server.lim, server.role) == ("10.0.2.11/24", 1, "lim")


def test_number_keys_in_a_real_terminal(tmp_path: Path) -> None:
    t = Terminal(tmp_path / "system.toml")
    try:
        t.wait_for("4. Exit")
        t.send("3")
        t.wait_for("12. Sync exchange data within cluster")
        t.send("1", "2")  # two digits: item 12
        t.wait_for("Sync exchange data within cluster")
        screen = t.wait_for("There is no cluster in the system yet.")
        assert "12. Sync" not in screen
        t.send(ESC)
        t.wait_for("12. Sync exchange data within cluster")
        time.sleep(0.1)
        t.send(ESC)
        t.wait_for("4. Exit")
        time.sleep(0.1)
        t.send("4")
        t.child.expect(pexpect.EOF)
    finally:
        t.child.close(force=True)
    assert t.child.exitstatus == 0


def test_a_monochrome_terminal_still_shows_the_focus(tmp_path: Path) -> None:
    """Without colours (NO_COLOR, or a monochrome TERM) urwid draws the palette's mono
    column: the title bar and the focused item are in reverse video, with no colour."""
    t = Terminal(tmp_path / "system.toml", NO_COLOR="1")
    try:
        t.wait_for("4. Exit")
        t.send(DOWN)
        t.wait_for("2. Standby server in system")
        time.sleep(0.2)
        t.pump()
        reverse = [y for y in range(ROWS) if any(t.screen.buffer[y][x].reverse for x in range(COLS))]
        rows = [t.screen.display[y].strip() for y in reverse]
        assert "2. Standby server in system  >" in rows
        assert rows[0].startswith("MX-ONE Maintenance Utility")  # the title bar
        colours = {c.fg for y in range(ROWS) for c in t.screen.buffer[y].values()}
        colours |= {c.bg for y in range(ROWS) for c in t.screen.buffer[y].values()}
        assert colours == {"default"}
    finally:
        t.child.close(force=True)
