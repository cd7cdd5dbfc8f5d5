"""The real `mxone_maintenance` menus on lim1: Show status reaches the agents over SSH."""

from __future__ import annotations

import sys
import time

import pexpect
import pyte
import pytest
from mxone_agent.version import VERSION

pytestmark = pytest.mark.lab

ROWS, COLS = 40, 110
DOWN, ENTER, ESC = "\x1b[B", "\r", "\x1b"


def test_show_status_in_the_menus_is_a_table_per_cluster(admin, lab) -> None:
    admin.build_system()
    env = lab.host_env("lim1", {"TERM": "xterm", "ESCDELAY": "25",
                                "MXONE_SSH_KEY": str(lab.user_key_path)})
    argv = lab.nsenter_argv("lim1") + [sys.executable, "-m", "mxone_menus.entry"]
    child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(ROWS, COLS), timeout=10)
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)

    def wait_for(needle: str, timeout: float = 15.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                stream.feed(child.read_nonblocking(65536, timeout=0.05))
            except (pexpect.TIMEOUT, pexpect.EOF):
                pass
            text = "\n".join(screen.display)
            if needle in text:
                return text
        raise AssertionError(f"{needle!r} not on screen:\n" + "\n".join(screen.display))

    try:
        wait_for("Cluster handling")
        for k in (DOWN, DOWN, ENTER):
            child.send(k)
            time.sleep(0.05)
        wait_for("Show status")
        for k in (DOWN, ENTER):
            child.send(k)
            time.sleep(0.05)
        wait_for("No active alarms.")
        # the agents just started: LIM 2 shows on its regular server once lim2's agent has
        # passed its boot wait (the screen refreshes itself)
        text = wait_for("lim2         10.77.0.12      regular", timeout=30)
        assert "Cluster c1: standby standby1, fallback manual, failover regular" in text
        assert "lim2         10.77.0.12      regular" in text
        assert f"standby1     standby  running      {VERSION:<9}    6  ready      alive" in text
    finally:
        child.close(force=True)
