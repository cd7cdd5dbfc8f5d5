"""The reference Service Node: a stand-in for an MX-ONE LIM's service, for the lab and tests.

``mxone-agent service start|stop|status --lim N --alias IP [--port 7100] [--run-dir D]
[--load-seconds S]``

* ``start`` daemonizes a small UDP server bound to ``IP:port`` with IP_FREEBIND (so it can
  bind an alias that is absent or blocked, as on a preloaded passive side) and returns
  once it is bound (exit 0; 1 if it could not start). Every datagram it receives is
  answered with ``LIM <n> on <hostname>``. For ``--load-seconds`` it is *loading*: bound
  but silent, as a LIM that is still loading its data.
* ``stop`` ends the server (SIGTERM, then SIGKILL) and removes its files; exit 0.
* ``status`` exits 0 when it runs and is loaded, STATUS_LOADING (150) while it is loading,
  3 when it is stopped (LSB codes; 150 is in the application range).

Files, per LIM, in the run dir (default /run/mxone): ``service-limN.pid`` (written once
the socket is bound) and ``service-limN.loaded`` (once loading is over).

Exchange data (reload and database data synchronised to the standby) comes later: a
Service Node would read it in :func:`_load`, the seam where loading happens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

DEFAULT_PORT = 7100
DEFAULT_RUN_DIR = "/run/mxone"
STATUS_RUNNING = 0
STATUS_STOPPED = 3
STATUS_LOADING = 150
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
START_TIMEOUT = 5.0


def pidfile(run_dir: str, lim: int) -> Path:
    return Path(run_dir) / f"service-lim{lim}.pid"


def loadedfile(run_dir: str, lim: int) -> Path:
    return Path(run_dir) / f"service-lim{lim}.loaded"


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"


def running_pid(run_dir: str, lim: int) -> int | None:
    """The PID of LIM ``lim``'s running service, or None."""
    try:
        pid = int(pidfile(run_dir, lim).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def status(run_dir: str, lim: int) -> int:
    if running_pid(run_dir, lim) is None:
        return STATUS_STOPPED
    return STATUS_RUNNING if loadedfile(run_dir, lim).exists() else STATUS_LOADING


def _bind(alias: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    s.bind((alias, port))
    return s


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load(lim: int, seconds: float) -> None:
    """Where a real LIM loads its exchange data; here only the configured delay."""
    if seconds > 0:
        time.sleep(seconds)


def _serve(sock: socket.socket, lim: int, run_dir: str, load_seconds: float) -> None:
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    _load(lim, load_seconds)
    _write_atomic(loadedfile(run_dir, lim), "1\n")
    reply = f"LIM {lim} on {socket.gethostname()}".encode()
    sock.settimeout(0.5)
    while not stop:
        try:
            _, peer = sock.recvfrom(2048)
        except (TimeoutError, InterruptedError):
            continue
        except OSError:
            continue
        with contextlib.suppress(OSError):
            sock.sendto(reply, peer)


def start(lim: int, alias: str, port: int, run_dir: str, load_seconds: float) -> int:
    """Start the service in the background; returns once it is bound (exit status)."""
    if running_pid(run_dir, lim) is not None:
        return 0
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    for f in (pidfile(run_dir, lim), loadedfile(run_dir, lim)):
        f.unlink(missing_ok=True)
    try:
        sock = _bind(alias, port)
    except OSError as e:
        print(f"LIM {lim}: cannot bind {alias}:{port}: {e.strerror}", file=sys.stderr)
        return 1
    r, w = os.pipe()
    pid = os.fork()
    if pid:  # the caller: wait for the grandchild to report it is bound
        os.close(w)
        sock.close()
        os.waitpid(pid, 0)
        with os.fdopen(r, "rb") as pipe:
            ok = pipe.read() == b"ok"
        return 0 if ok else 1
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        _write_atomic(pidfile(run_dir, lim), f"{os.getpid()}\n")
        os.write(w, b"ok")
        os.close(w)
        _serve(sock, lim, run_dir, load_seconds)
    finally:
        for f in (pidfile(run_dir, lim), loadedfile(run_dir, lim)):
            with contextlib.suppress(OSError):
                if f.name.endswith(".pid") and f.read_text().strip() != str(os.getpid()):
                    continue
                f.unlink()
        os._exit(0)


def stop(lim: int, run_dir: str, timeout: float = 3.0) -> int:
    pid = running_pid(run_dir, lim)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for f in (pidfile(run_dir, lim), loadedfile(run_dir, lim)):
        f.unlink(missing_ok=True)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--lim", type=int, required=True)
    p.add_argument("--alias", help="the LIM's alias IP (start)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--run-dir", "--state-dir", dest="run_dir", default=DEFAULT_RUN_DIR)
    p.add_argument("--load-seconds", type=float, default=0.0)


def run(args: argparse.Namespace) -> int:
    if args.action == "start":
        if not args.alias:
            print("service start needs --alias", file=sys.stderr)
            return 1
        return start(args.lim, args.alias, args.port, args.run_dir, args.load_seconds)
    if args.action == "stop":
        return stop(args.lim, args.run_dir)
    code = status(args.run_dir, args.lim)
    print({STATUS_RUNNING: "running", STATUS_LOADING: "loading"}.get(code, "stopped"))
    return code
