"""Nothing a local client does to the control socket stalls the agent's loop.

On lim2, while its agent runs LIM 2, one process opens five silent connections, three
slowloris senders (a byte every half second), fifty concurrent clients and a few hundred
malformed requests, for several seconds. The standby watches lim2: no heartbeat interval
is missed (its longest silence stays under two intervals), nothing fails over, and lim2's
agent is alive and answers afterwards.
"""

from __future__ import annotations

import json
import sys

import pytest
from mxone_lab import Lab

from tests.agent_lab.cluster import STANDBY, Cluster, eventually, wait_answer

pytestmark = pytest.mark.lab
SOCK = "/run/mxone/agent.sock"

ABUSE = r"""
import json, os, random, socket, sys, threading, time
path, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
out = {"silent": 0, "slow_cut": 0, "served": 0, "busy": 0, "refused": 0, "fuzz": 0,
       "fuzz_errors": 0}
lock = threading.Lock()

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s

def reply(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data) if data else None

def count(key):
    with lock:
        out[key] += 1

def silent():
    s = conn()  # says nothing: the agent must cut it at its deadline, not wait
    count("silent")
    while time.monotonic() < end:
        try:
            if not s.recv(100):
                break
        except socket.timeout:
            pass
        except OSError:
            break
    s.close()

def slowloris():
    s = conn()
    try:
        for b in b'{"cmd": "status"}\n':
            if time.monotonic() > end:
                break
            s.send(bytes([b]))
            time.sleep(0.5)
    except OSError:
        count("slow_cut")
    s.close()

def client():
    while time.monotonic() < end:
        try:
            s = conn()
            s.sendall(b'{"cmd": "status"}\n')
            r = reply(s)
            s.close()
        except OSError:
            count("refused")
            continue
        if r and r.get("ok"):
            count("served")
        elif r and "busy" in str(r.get("error")):
            count("busy")
        time.sleep(0.05)

def fuzz():
    rnd = random.Random(7)
    samples = [b"[]\n", b"1\n", b'"x"\n', b"{}\n", b'{"cmd": 5}\n', b'{"cmd": "fallback", "lim": Infinity}\n',
               b"NaN\n", b"[" * 100000 + b"\n", b"\xff\xfe\n", b'{"cmd": "lock", "lim": [1], "to": {}}\n',
               b'{"cmd": "sync", "lim": 1e400}\n', b'{"cmd": "received", "lim": 2, "version": [1]}\n']
    while time.monotonic() < end:
        data = rnd.choice(samples) if rnd.random() < 0.5 else bytes(
            rnd.randrange(256) for _ in range(rnd.randrange(1, 300))) + b"\n"
        try:
            s = conn()
            s.sendall(data)
            r = reply(s)
            s.close()
        except (OSError, ValueError):
            continue
        count("fuzz")
        if r and r.get("ok") is False:
            count("fuzz_errors")

threads = [threading.Thread(target=f) for f in [silent] * 5 + [slowloris] * 3 + [client] * 50 + [fuzz] * 2]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out))
"""


def test_control_socket_abuse_never_stalls_the_loop(lab: Lab) -> None:
    cluster = Cluster(lab, regulars=("lim2",), interval=1.0, misses=3)
    try:
        cluster.start()
        assert wait_answer(lab, 2, "lim2", timeout=10)[0]
        eventually(lambda: next(p for p in cluster.status(STANDBY)["peers"]
                                if p["name"] == "lim2")["liveness"] == "alive", 10,
                   "the standby hears lim2")
        pid = cluster.status("lim2")["pid"]
        r = lab.exec("lim2", [sys.executable, "-c", ABUSE, SOCK, "8"], timeout=60)
        counts = json.loads(r.stdout)
        assert counts["silent"] == 5 and counts["served"] > 50 and counts["fuzz"] > 100, counts
        assert counts["fuzz_errors"] >= counts["fuzz"] // 2, counts
        st = cluster.status("lim2")
        assert st["pid"] == pid and cluster.procs["lim2"].poll() is None  # alive, same agent
        view = next(p for p in cluster.status(STANDBY)["peers"] if p["name"] == "lim2")
        assert view["liveness"] == "alive"
        assert view["longest_silence_s"] < 2 * 1.0, view  # no interval missed
        assert cluster.status(STANDBY)["transitions"] == []
        assert cluster.lim_row(STANDBY, 2)["owner"] == "regular"
    finally:
        cluster.stop_all()
