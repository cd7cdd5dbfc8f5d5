"""The systemd notification protocol (sd_notify), the few lines of it the agent needs.

A service of ``Type=notify`` gets ``NOTIFY_SOCKET`` (a unix datagram socket path; a leading
``@`` means the abstract namespace) and sends ``READY=1`` once it serves, then
``WATCHDOG=1`` more often than every ``WATCHDOG_USEC`` microseconds when ``WatchdogSec`` is
set; the agent pings every WATCHDOG_FRACTION of it, on a clock of its own (never tied to
the heartbeat interval). Without NOTIFY_SOCKET every call does nothing. Sending never
raises.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def _address(env: Mapping[str, str]) -> str | None:
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; True if it was sent."""
    addr = _address(os.environ if env is None else env)
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode("utf-8"), addr)
        return True
    except OSError:
        return False


WATCHDOG_FRACTION = 0.25
"""Pings go out every quarter of WatchdogSec: three may be late or lost before systemd acts."""


def watchdog_period(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (WATCHDOG_FRACTION of WATCHDOG_USEC), or None when
    systemd asks for none.

    WATCHDOG_PID, when set, must be this process (systemd sets it for the main PID).
    """
    e = os.environ if env is None else env
    try:
        usec = int(e.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = e.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return usec / 1e6 * WATCHDOG_FRACTION if usec > 0 else None


class Watchdog:
    """systemd's watchdog as the loop keeps it: pinged every :func:`watchdog_period` on a
    clock of its own (a heartbeat interval may be longer than WatchdogSec), and only while
    the loop runs and the action worker lives - a frozen loop is then restarted by systemd.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.period = watchdog_period(env)
        self.next = 0.0 if self.period else float("inf")  # monotonic time of the next ping

    def keep(self, now: float, healthy: bool) -> None:
        """Ping when due and ``healthy`` (else let systemd restart the agent)."""
        if now < self.next or not healthy:
            return
        notify("WATCHDOG=1")
        assert self.period is not None
        self.next = now + self.period


UNIT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "systemd",
                         "mxone-agent.service")
"""The systemd unit of this release, the one copy of its text (``mxone-agent unit`` prints
it; the deployer installs it as :data:`mxone_agent.paths.UNIT`)."""


def unit_text(path: str = UNIT_FILE) -> str:
    """The unit file's text (:data:`UNIT_FILE`)."""
    with open(path, encoding="utf-8") as f:
        return f.read()
