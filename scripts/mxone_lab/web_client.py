"""``python -m mxone_lab.web_client``: an HTTP client of the PM/SNM pages, run on the lab's
client host (standard library only). One JSON object per line on stdout.

- ``get URL``: one ``GET URL?format=json``; the page, or ``{"error": ...}``.
- ``poll URL SECONDS COUNT``: a ``GET`` every 50 ms, each in its own thread (a request
  stuck on a dead server never delays the next), at most COUNT requests over SECONDS or
  until stdin closes (start it with stdin a pipe the caller holds open); a line per request: ``{"sent", "t", "server"}`` for a page (HTTP
  200), ``{"sent", "t", "error"}`` otherwise (times: ``time.monotonic()`` of the client).
- ``write URL PREFIX SECONDS``: ``POST`` rows ``PREFIX-1``, ``PREFIX-2``... one after the
  other (a pause of 50 ms between two; each given up after 2 s, so a write stuck on a dead
  server does not hide the next) for SECONDS or until stdin closes, one at least; a line per
  write: ``{"n", "t", "took", "id", "server"}`` when acknowledged (201), ``{"n", "t",
  "took", "error"}`` otherwise. Only an acknowledged row counts as committed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

PERIOD = 0.05
_out = threading.Lock()


def _emit(record: dict[str, Any]) -> None:
    with _out:
        print(json.dumps(record), flush=True)


def get(url: str, timeout: float = 2.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url + "?format=json", timeout=timeout) as r:
            page: dict[str, Any] = json.loads(r.read())
            return page
    except urllib.error.HTTPError as exc:
        return {"error": f"{exc.code} {exc.read().decode(errors='replace')[:200]}"}
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}


def post(url: str, body: str, timeout: float = 8.0) -> dict[str, Any]:
    data = urllib.parse.urlencode({"body": body}).encode()
    try:
        with urllib.request.urlopen(url + "?format=json", data=data, timeout=timeout) as r:
            answer: dict[str, Any] = json.loads(r.read())
            return answer
    except urllib.error.HTTPError as exc:
        return {"error": f"{exc.code} {exc.read().decode(errors='replace')[:200]}"}
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}


def _stop_on_eof(stop: threading.Event) -> None:
    """Set ``stop`` once stdin closes (the caller's way to end a run early)."""
    def watch() -> None:
        sys.stdin.read()
        stop.set()
    threading.Thread(target=watch, daemon=True).start()


def poll(url: str, seconds: float, count: int, stop: threading.Event) -> None:
    def one() -> None:
        sent = time.monotonic()
        page = get(url, timeout=1.0)
        record = {"sent": sent, "t": time.monotonic()}
        if "server" in page and "error" not in page:
            record["server"] = page["server"]
        else:
            record["error"] = page.get("error", "no server named")
        _emit(record)

    threads: list[threading.Thread] = []
    end = time.monotonic() + seconds
    tick = time.monotonic()
    while len(threads) < count and time.monotonic() < end and not stop.is_set():
        t = threading.Thread(target=one)
        t.start()
        threads.append(t)
        tick += PERIOD
        time.sleep(max(0.0, tick - time.monotonic()))
    for t in threads:
        t.join()


def write(url: str, prefix: str, seconds: float, stop: threading.Event) -> None:
    end, n = time.monotonic() + seconds, 0
    while n == 0 or (time.monotonic() < end and not stop.is_set()):  # one write at least
        n += 1
        before = time.monotonic()
        answer = post(url, f"{prefix}-{n}", timeout=2.0)
        record: dict[str, Any] = {"n": n, "t": time.monotonic()}
        record["took"] = record["t"] - before
        if "id" in answer:
            record.update(id=answer["id"], server=answer.get("server"))
        else:
            record["error"] = answer.get("error", "no id in the answer")
        _emit(record)
        time.sleep(PERIOD)


def main(argv: list[str]) -> int:
    stop = threading.Event()
    cmd, url = argv[0], argv[1]
    if cmd == "get":
        _emit(get(url))
    elif cmd == "poll":
        _stop_on_eof(stop)
        poll(url, float(argv[2]), int(argv[3]), stop)
    elif cmd == "write":
        _stop_on_eof(stop)
        write(url, argv[2], float(argv[3]), stop)
    else:
        print(f"unknown command {cmd!r}: get, poll or write", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
