"""Heartbeats to a peer heard within the detection period carry MSG_CONFIRM.

MSG_CONFIRM tells the kernel that the path to the peer works, so its ARP entry stays
reachable instead of being probed (and, under loss, failing) every reachable_time. Only a
peer that has really been heard gets it: for one never heard, the kernel must resolve and
verify the address as usual.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from tests.agent.test_daemon import start_agent, wait_for


class RecordingSocket:
    """The agent's UDP socket, with the flags of every sendto recorded per destination."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.sent: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def sendto(self, data: bytes, *args):  # sendto(data, addr) or sendto(data, flags, addr)
        flags, addr = (0, args[0]) if len(args) == 1 else args
        with self.lock:
            self.sent.append((addr[0], flags))
        return self.real.sendto(data, flags, addr)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def flags_sent(rec: RecordingSocket) -> list[int]:
    with rec.lock:
        return [f for _, f in rec.sent]


def test_heartbeats_confirm_the_path_only_to_a_peer_heard_lately(tmp_path: Path) -> None:
    port = 19000 + os.getpid() % 900
    sb, sb_thread = start_agent(tmp_path, "sb", port)
    rec = RecordingSocket(sb.link.udp)
    sb.link.udp = rec
    try:
        # Nobody heard yet: plain sends, the kernel resolves the peer as it always does.
        wait_for(lambda: len(flags_sent(rec)) >= 3)
        assert set(flags_sent(rec)) == {0}
        lim2, lim2_thread = start_agent(tmp_path, "lim2", port)
        try:
            wait_for(lambda: sb.link.alive("lim2"))
            n = len(flags_sent(rec))
            wait_for(lambda: len(flags_sent(rec)) >= n + 3)
            assert set(flags_sent(rec)[n:]) == {socket.MSG_CONFIRM}
        finally:
            lim2.stop_flag = True
            lim2_thread.join(timeout=5)
            lim2.close()
        # Silent for longer than detection: the kernel is no longer told the path works.
        wait_for(lambda: not sb.link.alive("lim2"), timeout=sb.config.detection + 3)
        n = len(flags_sent(rec))
        wait_for(lambda: len(flags_sent(rec)) >= n + 3)
        assert set(flags_sent(rec)[n:]) == {0}
    finally:
        sb.stop_flag = True
        sb_thread.join(timeout=5)
        sb.link.udp = rec.real
        sb.close()
