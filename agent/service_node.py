"""The reference Service Node: a stand-in for an MX-ONE LIM's service, for the lab and tests.

``mxone-agent service start|stop|status|data_backup --lim N [--alias IP] [--port 7100]
[--run-dir D] [--load-seconds S] [--xdata-root D] [--control SOCK]``

* ``start`` daemonizes a small UDP server bound to ``IP:port`` with IP_FREEBIND (so it can
  bind an alias that is absent or blocked, as on a preloaded passive side) and returns
  once it is bound (exit 0; 1 if it could not start). For ``--load-seconds`` it is
  *loading*: bound but silent, as a LIM that is still loading its data; then it loads the
  newest *valid* exchange-data version of its LIM from the xdata root (none: no
  extensions) and answers datagrams (:func:`answer`):

  - ``REGISTER <ext>`` registers an extension: ``OK LIM <n> registered <ext> on <host>``;
  - ``EXTENSIONS``: ``LIM <n> on <host> extensions: <comma-separated sorted list>``;
  - anything else: ``LIM <n> on <host>``.

* ``stop`` ends the server (SIGTERM, then SIGKILL) and removes its files; exit 0.
* ``status`` exits 0 when it runs and is loaded, STATUS_LOADING (150) while it is loading,
  3 when it is stopped (LSB codes; 150 is in the application range); it prints ``running
  (data <version>)`` / ``running (no data)``, ``loading`` or ``stopped``.
* ``data_backup`` writes a new exchange-data version of the running LIM's live data (reload
  data ``reload/extensions.json``, system database data ``sysdb/lim<n>.json``), keeps the
  newest :data:`xdata.KEEP_ON_REGULAR`, prints the version and tells the local agent
  (best-effort, over its control socket) so it syncs at once. Exit 0; 1 with the reason
  when the LIM does not run here or the version cannot be written (older versions stay).

Files, per LIM, in the run dir (default /run/mxone): ``service-limN.pid`` (written once
the socket is bound), ``service-limN.loaded`` (once loading is over; holds the loaded
version's name, empty when there was none) and ``service-limN.data.json`` (the live data,
rewritten atomically - temp file, fsync, rename - on every change).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mxone_agent import files, paths
from mxone_agent.errors import AgentError

if TYPE_CHECKING:
    from mxone_agent import xdata
# xdata is imported where it is used: starting the service (on a takeover's path) needs it
# only when there is data to load.

DEFAULT_PORT = 7100
DEFAULT_RUN_DIR = paths.RUN_DIR
STATUS_RUNNING = 0
STATUS_STOPPED = 3
STATUS_LOADING = 150
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
START_TIMEOUT = 5.0
DEFAULT_XDATA_ROOT = paths.XDATA
DEFAULT_CONTROL = paths.CONTROL
RELOAD_FILE = "reload/extensions.json"
DATA_FORMAT = 1
_EXTENSION = re.compile(r"[0-9]{1,20}")


def pidfile(run_dir: str, lim: int) -> Path:
    return Path(run_dir) / f"service-lim{lim}.pid"


def loadedfile(run_dir: str, lim: int) -> Path:
    return Path(run_dir) / f"service-lim{lim}.loaded"


def datafile(run_dir: str, lim: int) -> Path:
    return Path(run_dir) / f"service-lim{lim}.data.json"


def sysdb_file(lim: int) -> str:
    return f"sysdb/lim{lim}.json"


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
    """Replace ``path`` with ``text`` (UTF-8, mode 0644) so a reader sees the old or the new
    file, never half of one, also after a crash (:func:`mxone_agent.files.atomic_write`)."""
    files.atomic_write(path, text.encode("utf-8"), 0o644)


# ---- the LIM's data ---------------------------------------------------------------------

def reload_data(lim: int, extensions: set[str]) -> bytes:
    """The reload data file of a version: the registered extensions."""
    return json.dumps({"format": DATA_FORMAT, "lim": lim, "extensions": sorted(extensions)},
                      indent=1).encode() + b"\n"


def sysdb_data(lim: int, extensions: set[str]) -> bytes:
    """The system database data file of a version (a summary, in this reference node)."""
    return json.dumps({"format": DATA_FORMAT, "lim": lim, "extension_count": len(extensions)},
                      indent=1).encode() + b"\n"


def parse_reload_data(data: bytes, lim: int, where: str) -> set[str]:
    """The extensions of a reload data file; XdataError naming the file and what is wrong."""
    from mxone_agent import xdata

    try:
        doc = json.loads(data)
        if doc.get("format") != DATA_FORMAT or doc.get("lim") != lim:
            raise ValueError(f"format {doc.get('format')!r} of LIM {doc.get('lim')!r}, expected "
                             f"format {DATA_FORMAT} of LIM {lim}")
        extensions = {str(e) for e in doc["extensions"]}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise xdata.XdataError(f"{where}: not reload data of LIM {lim} ({exc})") from None
    bad = sorted(e for e in extensions if not _EXTENSION.fullmatch(e))
    if bad:
        raise xdata.XdataError(f"{where}: {bad[0]!r} is not an extension (1-20 digits)")
    return extensions


def newest_loadable(root: Path, lim: int) -> tuple[str, set[str]] | None:
    """The newest version of ``lim`` that passes the full check (every sha256) and whose
    reload data parses: (its name, its extensions); None when there is none."""
    if not root.is_dir():  # no data at all: nothing to import or read
        return None
    from mxone_agent import xdata

    for path in xdata.versions(root, lim):
        if xdata.verify(path):
            continue
        try:
            return path.name, parse_reload_data((path / RELOAD_FILE).read_bytes(), lim,
                                                str(path / RELOAD_FILE))
        except (OSError, xdata.XdataError):
            continue
    return None


def _load(lim: int, seconds: float, xdata_root: str) -> tuple[str | None, set[str]]:
    """Where a LIM loads its exchange data: after the configured delay, the newest valid
    version of its LIM. Returns (the version loaded or None, the extensions)."""
    if seconds > 0:
        time.sleep(seconds)
    found = newest_loadable(Path(xdata_root), lim)
    return (None, set()) if found is None else found


def _save_live(run_dir: str, lim: int, loaded: str | None, extensions: set[str]) -> None:
    _write_atomic(datafile(run_dir, lim), json.dumps(
        {"lim": lim, "loaded": loaded, "extensions": sorted(extensions)}) + "\n")


def loaded_version(run_dir: str, lim: int) -> str | None:
    """The exchange-data version the running service loaded (None: none, or not loaded)."""
    try:
        return loadedfile(run_dir, lim).read_text().strip() or None
    except OSError:
        return None


def answer(lim: int, hostname: str, extensions: set[str], datagram: bytes) -> tuple[bytes, bool]:
    """The reply to one datagram and whether ``extensions`` changed (it is updated)."""
    words = datagram.decode("utf-8", errors="replace").split()
    if len(words) == 2 and words[0] == "REGISTER":
        ext = words[1]
        if not _EXTENSION.fullmatch(ext):
            return (f"ERROR LIM {lim} on {hostname}: {ext[:40]!r} is not an extension "
                    "(1-20 digits)").encode(), False
        changed = ext not in extensions
        extensions.add(ext)
        return f"OK LIM {lim} registered {ext} on {hostname}".encode(), changed
    if words == ["EXTENSIONS"]:
        return (f"LIM {lim} on {hostname} extensions: "
                + ",".join(sorted(extensions))).encode(), False
    return f"LIM {lim} on {hostname}".encode(), False


def _serve(sock: socket.socket, lim: int, run_dir: str, load_seconds: float,
           xdata_root: str) -> None:
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    loaded, extensions = _load(lim, load_seconds, xdata_root)
    _save_live(run_dir, lim, loaded, extensions)
    _write_atomic(loadedfile(run_dir, lim), f"{loaded or ''}\n")
    hostname = socket.gethostname()
    sock.settimeout(0.5)
    while not stop:
        try:
            data, peer = sock.recvfrom(2048)
        except (TimeoutError, InterruptedError):
            continue
        except OSError:
            continue
        reply, changed = answer(lim, hostname, extensions, data)
        if changed:
            with contextlib.suppress(OSError):  # a full disk must not end the LIM
                _save_live(run_dir, lim, loaded, extensions)
        with contextlib.suppress(OSError):
            sock.sendto(reply, peer)


def start(lim: int, alias: str, port: int, run_dir: str, load_seconds: float,
          xdata_root: str = DEFAULT_XDATA_ROOT) -> int:
    """Start the service in the background; returns once it is bound (exit status)."""
    if running_pid(run_dir, lim) is not None:
        return 0
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    for f in (pidfile(run_dir, lim), loadedfile(run_dir, lim), datafile(run_dir, lim)):
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
        _serve(sock, lim, run_dir, load_seconds, xdata_root)
    finally:
        for f in (pidfile(run_dir, lim), loadedfile(run_dir, lim), datafile(run_dir, lim)):
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
    for f in (pidfile(run_dir, lim), loadedfile(run_dir, lim), datafile(run_dir, lim)):
        f.unlink(missing_ok=True)
    return 0


# ---- data backup ---------------------------------------------------------------------------

class BackupError(AgentError):
    """A data backup was not written; the message says why. Older versions are intact."""


def live_extensions(run_dir: str, lim: int) -> set[str]:
    """The running LIM's live extensions; BackupError when it does not run (or is loading)."""
    host = socket.gethostname()
    code = status(run_dir, lim)
    if code == STATUS_STOPPED:
        raise BackupError(f"LIM {lim} does not run on {host} (no service in {run_dir}); "
                          "back up on the server that runs it")
    if code == STATUS_LOADING:
        raise BackupError(f"LIM {lim} on {host} is still loading its data; back up once it runs")
    try:
        doc = json.loads(datafile(run_dir, lim).read_text(encoding="utf-8"))
        return {str(e) for e in doc["extensions"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"LIM {lim} on {host}: its live data "
                          f"{datafile(run_dir, lim)} cannot be read ({exc})") from None


def data_backup(lim: int, run_dir: str, xdata_root: str) -> xdata.Manifest:
    """Write a new version of the running LIM's live data under ``xdata_root`` and keep the
    newest :data:`xdata.KEEP_ON_REGULAR`. BackupError naming the cause; on any failure no
    version was added and the existing ones are untouched."""
    from mxone_agent import xdata

    extensions = live_extensions(run_dir, lim)
    files = {RELOAD_FILE: reload_data(lim, extensions), sysdb_file(lim): sysdb_data(lim, extensions)}
    root = Path(xdata_root)
    try:
        manifest = xdata.write_version(root, lim, files)
    except OSError as exc:
        raise BackupError(f"LIM {lim}: no data backup written under {root}: "
                          f"{exc.strerror or exc}; the previous versions are kept") from None
    except xdata.XdataError as exc:
        raise BackupError(f"LIM {lim}: no data backup written under {root}: {exc}; the "
                          "previous versions are kept") from None
    with contextlib.suppress(OSError, xdata.XdataError):  # pruning later is no failure
        xdata.prune(root, lim, xdata.KEEP_ON_REGULAR)
    return manifest


def _passive_here(lim: int, control: str) -> str | None:
    """Why a backup must not be made here: the LIM is the passive (preloaded) side, whose
    data comes from the active side; its files would look newer than the active side's
    data and win the next sync. None when it may (or no agent answers: no cluster here)."""
    from mxone_agent import xdata_serve

    status = xdata_serve.notify_agent({"cmd": "status"}, control)
    rows = (status or {}).get("lims")
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("lim") == lim and row.get("here") == "preloaded":
            active = "the standby" if row.get("owner") == "standby" else "its regular server"
            return (f"LIM {lim} is the passive (preloaded) side on {socket.gethostname()}: make "
                    f"the data backup on the active side ({active}); the passive side "
                    "receives it from there")
    return None


def _data_backup_main(args: argparse.Namespace) -> int:
    from mxone_agent import xdata_serve

    if problem := _passive_here(args.lim, args.control):
        print(f"data backup refused: {problem}", file=sys.stderr)
        return 1
    try:
        manifest = data_backup(args.lim, args.run_dir, args.xdata_root)
    except BackupError as exc:
        print(f"data backup failed: {exc}", file=sys.stderr)
        return 1
    answer = xdata_serve.notify_agent({"cmd": "backup", "lim": args.lim,
                                      "version": manifest.version}, args.control)
    told = f"agent: {answer.get('result')}" if answer and answer.get("ok") else \
        "no agent answered (its scan finds the new version)"
    print(f"LIM {args.lim}: data backup {manifest.version} written on {socket.gethostname()} "
          f"({len(manifest.files)} files, {manifest.total_bytes} bytes) in {args.xdata_root}; "
          f"{told}")
    return 0


# ---- command line ----------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("start", "stop", "status", "data_backup"),
                   help="start or stop the LIM's service, its status (exit 0 running, 3 "
                   "stopped, 150 loading), or a data backup of its live data")
    p.add_argument("--lim", type=int, required=True, help="the LIM number (required)")
    p.add_argument("--alias", help="the LIM's alias IP (start)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="the UDP port it answers on (default: %(default)s)")
    p.add_argument("--run-dir", "--state-dir", dest="run_dir", default=DEFAULT_RUN_DIR,
                   help="where its pidfile is (default: %(default)s)")
    p.add_argument("--load-seconds", type=float, default=0.0,
                   help="start: seconds it takes to load before it answers (default: "
                   "%(default)s)")
    p.add_argument("--xdata-root", default=DEFAULT_XDATA_ROOT,
                   help="where exchange-data versions are (start loads, data_backup writes; "
                   "default: %(default)s)")
    p.add_argument("--control", default=DEFAULT_CONTROL,
                   help="the local agent's control socket (data_backup tells it; default: "
                   "%(default)s)")


def main(argv: list[str]) -> int:
    """``mxone-agent service ...`` (main hands it over before anything else is imported).
    ``service warm`` waits for one JSON list of these arguments on stdin and runs them
    (:mod:`mxone_agent.warm_start`); end-of-file: exit 0."""
    if argv[:1] == ["warm"]:
        line = sys.stdin.buffer.readline()
        if not line:
            return 0
        args = json.loads(line)
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args) or \
                args[:1] == ["warm"]:
            print("service warm: not a list of arguments", file=sys.stderr)
            return 2
        argv = args
    p = argparse.ArgumentParser(prog="mxone-agent service",
                                description="The reference Service Node (a LIM stand-in).")
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    if args.action == "start":
        if not args.alias:
            print("service start needs --alias", file=sys.stderr)
            return 1
        return start(args.lim, args.alias, args.port, args.run_dir, args.load_seconds,
                     args.xdata_root)
    if args.action == "stop":
        return stop(args.lim, args.run_dir)
    if args.action == "data_backup":
        return _data_backup_main(args)
    code = status(args.run_dir, args.lim)
    if code == STATUS_RUNNING:
        version = loaded_version(args.run_dir, args.lim)
        print(f"running (data {version})" if version else "running (no data)")
    else:
        print("loading" if code == STATUS_LOADING else "stopped")
    return code
