#!/usr/bin/python3
"""mxone_snm, the reference management application (a stand-in for PM/SNM).

A WSGI application on the standard library's server (a thread per request), run as a
systemd unit by the server's ``/usr/bin/python3`` with Debian's python3-psycopg2, behind
nginx. It reaches its database ``mxone_snm`` over the local socket (peer login as the
system user ``mxone_snm``), a new connection per request: a promotion or a fence between
two requests is seen by the next one.

- ``GET /mp``, ``GET /snm``: a page naming the server that served it (its hostname), the
  database's role and the rows stored; ``?format=json`` gives the same as JSON.
- ``POST /mp``, ``POST /snm`` (a form with ``body``): stores a row, answers with its id
  (201); a database that refuses writes (a standby, a fenced primary) gives 503.
- ``GET /health``: 200 while the application runs.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

NAME = "mxone_snm"
DATABASE = "mxone_snm"
SOCKET_DIR = "/var/run/postgresql"
HERE = Path(__file__).resolve().parent
TITLES = {"/mp": "MX-ONE Provisioning Manager", "/snm": "MX-ONE Service Node Manager"}
MAX_BODY = 4096

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def version() -> str:
    try:
        return (HERE / "VERSION").read_text().strip()
    except OSError:
        return "unknown"


def package() -> str:
    """What CheckStatus shows: ``mxone_snm-<version>``."""
    return f"{NAME}-{version()}"


class DatabaseError(Exception):
    """The database could not answer; ``read_only`` when it refused a write."""

    def __init__(self, message: str, read_only: bool = False) -> None:
        super().__init__(message)
        self.read_only = read_only


#: SQLSTATE read_only_sql_transaction: a standby, or a primary fenced by the pair's hook.
READ_ONLY = "25006"


def _driver() -> Any:
    """psycopg2 (Debian's python3-psycopg2, on the system python only: imported late so
    the page can be rendered and tested without it)."""
    import psycopg2  # type: ignore[import-untyped, import-not-found, unused-ignore]

    return psycopg2


def _connect() -> Any:
    psycopg2 = _driver()
    try:
        return psycopg2.connect(dbname=DATABASE, host=SOCKET_DIR, connect_timeout=3)
    except psycopg2.Error as exc:
        raise DatabaseError(str(exc).strip()) from None


def read_rows() -> tuple[str, list[tuple[int, str, str]]]:
    """The database's role (primary/standby) and every row, oldest first."""
    psycopg2 = _driver()
    conn = _connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            role = "standby" if cur.fetchone()[0] else "primary"
            cur.execute("SELECT id, body, served_by FROM entries ORDER BY id")
            rows = [(int(i), str(b), str(s)) for i, b, s in cur.fetchall()]
        return role, rows
    except psycopg2.Error as exc:
        raise DatabaseError(str(exc).strip()) from None
    finally:
        conn.close()


def store(body: str, served_by: str) -> int:
    """Store one row; its id once committed."""
    psycopg2 = _driver()
    conn = _connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO entries (body, served_by) VALUES (%s, %s) RETURNING id",
                (body, served_by),
            )
            return int(cur.fetchone()[0])
    except psycopg2.Error as exc:
        raise DatabaseError(str(exc).strip(), read_only=exc.pgcode == READ_ONLY) from None
    finally:
        conn.close()


def render_page(title: str, server: str, role: str, rows: list[tuple[int, str, str]],
                note: str = "") -> str:
    """The HTML page: the serving server's name first, then the rows."""
    e = html.escape
    items = "\n".join(
        f'<li data-id="{i}">#{i} {e(b)} <small>(stored on {e(s)})</small></li>' for i, b, s in rows
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{e(title)} - {e(server)}</title></head><body>\n"
        f"<h1>{e(title)}</h1>\n"
        f'<p id="server">Served by {e(server)}</p>\n'
        f'<p id="database">Database: {e(role)}, {len(rows)} rows</p>\n'
        + (f'<p id="note">{e(note)}</p>\n' if note else "")
        + '<form method="post"><input name="body" maxlength="200">'
        '<button type="submit">Store</button></form>\n'
        f'<ul id="rows">\n{items}\n</ul>\n'
        f"<footer>{e(package())}</footer>\n</body></html>\n"
    )


class App:
    """The WSGI application; ``server`` is the name pages carry (the hostname)."""

    def __init__(self, server: str) -> None:
        self.server = server

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        as_json = query.get("format") == ["json"]
        if path == "/health":
            return self._answer(start, "200 OK", "text/plain", "ok\n")
        if path not in TITLES:
            return self._answer(start, "404 Not Found", "text/plain", "not found\n")
        try:
            if method == "POST":
                return self._post(environ, start, path, as_json)
            if method in ("GET", "HEAD"):
                role, rows = read_rows()
                if as_json:
                    data = {"server": self.server, "role": role, "package": package(),
                            "rows": [{"id": i, "body": b, "served_by": s} for i, b, s in rows]}
                    return self._answer(start, "200 OK", "application/json", json.dumps(data))
                page = render_page(TITLES[path], self.server, role, rows)
                return self._answer(start, "200 OK", "text/html; charset=utf-8", page)
            return self._answer(start, "405 Method Not Allowed", "text/plain", "GET or POST\n")
        except DatabaseError as exc:
            what = "refuses writes here" if exc.read_only else "cannot be reached"
            message = f"{self.server}: the database {what}: {exc}"
            if as_json:
                body = json.dumps({"server": self.server, "error": message})
                return self._answer(start, "503 Service Unavailable", "application/json", body)
            return self._answer(start, "503 Service Unavailable", "text/plain", message + "\n")

    def _post(self, environ: dict[str, Any], start: StartResponse, path: str,
              as_json: bool) -> Iterable[bytes]:
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
        except ValueError:
            length = 0
        form = urllib.parse.parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
        body = (form.get("body") or [""])[0].strip()
        if not body:
            return self._answer(start, "400 Bad Request", "text/plain", "body is empty\n")
        row = store(body[:200], self.server)
        if as_json:
            data = json.dumps({"id": row, "server": self.server})
            return self._answer(start, "201 Created", "application/json", data)
        role, rows = read_rows()
        page = render_page(TITLES[path], self.server, role, rows,
                           note=f"stored row {row} on {self.server}")
        return self._answer(start, "201 Created", "text/html; charset=utf-8", page)

    @staticmethod
    def _answer(start: StartResponse, status: str, ctype: str, text: str) -> list[bytes]:
        data = text.encode()
        start(status, [("Content-Type", ctype), ("Content-Length", str(len(data))),
                       ("Cache-Control", "no-store")])
        return [data]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=NAME, description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8070", help="ADDRESS:PORT")
    args = parser.parse_args(argv)
    address, _, port = args.listen.rpartition(":")
    server = make_server(address, int(port), App(socket.gethostname()),
                         server_class=_Server, handler_class=_QuietHandler)
    print(f"{package()} on {args.listen}, pid {os.getpid()}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
