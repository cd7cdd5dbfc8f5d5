"""Heartbeats on the wire, for tests of replay protection: record them in the lab switch,
send them again later from another host with their original (spoofed) addresses.

Recording listens on one switch port in the switch namespace (the lab's own: nothing is
sniffed outside it) with ETH_P_ALL, since a socket bound to one protocol never sees what a
bridge port forwards. Replaying uses scapy on the sending host (imported once per call).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mxone_lab.lab import Lab

PORT = 7011
Frame = tuple[str, str, str]  # source IP, destination IP, UDP payload (hex)

_RECORD = r"""
import json, socket, sys, time
seconds, port, udp = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((port, 0))
s.settimeout(0.1)
end = time.monotonic() + seconds
out = []
while time.monotonic() < end and len(out) < 5000:
    try:
        f = s.recv(2048)
    except TimeoutError:
        continue
    ip = f[14:]
    ihl = (ip[0] & 15) * 4
    if f[12:14] == b"\x08\x00" and ip[9] == 17 and ip[ihl + 2:ihl + 4] == udp.to_bytes(2, "big"):
        out.append([socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[ihl + 8:].hex()])
print(json.dumps(out))
"""

_REPLAY = r"""
import json, sys
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw
from scapy.sendrecv import send
rounds, port, frames = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.stdin.read())
packets = [IP(src=s, dst=d) / UDP(sport=port, dport=port) / Raw(bytes.fromhex(p))
           for s, d, p in frames]
for _ in range(rounds):
    send(packets, verbose=False)
"""


def record(lab: Lab, host: str, seconds: float, port: int = PORT) -> list[Frame]:
    """The heartbeat datagrams through ``host``'s switch port, both ways, for ``seconds``
    (at most 5000)."""
    r = subprocess.run(["ip", "netns", "exec", lab.switch_ns, sys.executable, "-c", _RECORD,
                        str(seconds), lab.hosts[host].switch_port, str(port)],
                       capture_output=True, text=True, timeout=seconds + 30, check=True)
    return [(s, d, p) for s, d, p in json.loads(r.stdout)]


def replay(lab: Lab, frames: list[Frame], rounds: int = 1, via: str = "client",
           port: int = PORT) -> None:
    """Send ``frames`` ``rounds`` times from host ``via``, each with its recorded source
    and destination addresses."""
    lab.exec(via, [sys.executable, "-c", _REPLAY, str(rounds), str(port)],
             input=json.dumps(frames), timeout=60 + 10 * rounds)
