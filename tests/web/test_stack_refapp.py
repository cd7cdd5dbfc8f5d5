"""The reference management application (mxone_snm) as a WSGI app, its database replaced."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from mxone_web.refapp import app


class Db:
    def __init__(self, role: str = "primary", read_only: bool = False) -> None:
        self.role = role
        self.read_only = read_only
        self.rows: list[tuple[int, str, str]] = [(1, "first <row>", "lim1")]

    def read(self) -> tuple[str, list[tuple[int, str, str]]]:
        return self.role, list(self.rows)

    def store(self, body: str, served_by: str) -> int:
        if self.read_only:
            raise app.DatabaseError("cannot execute INSERT in a read-only transaction", True)
        self.rows.append((len(self.rows) + 1, body, served_by))
        return len(self.rows)


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> Db:
    d = Db()
    monkeypatch.setattr(app, "read_rows", d.read)
    monkeypatch.setattr(app, "store", d.store)
    return d


def call(method: str, path: str, query: str = "", body: str = "") -> tuple[str, str]:
    seen: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    data = body.encode()
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data)}
    out = b"".join(app.App("lim1")(environ, start)).decode()
    return seen["status"], out


def test_the_page_names_the_server_and_lists_the_rows_escaped(db: Db) -> None:
    status, page = call("GET", "/mp")
    assert status == "200 OK"
    assert '<p id="server">Served by lim1</p>' in page
    assert "first &lt;row&gt;" in page and "mxone_snm-7.0.0.0.70" in page
    status, snm = call("GET", "/snm/")
    assert status == "200 OK" and "Service Node Manager" in snm


def test_a_form_stores_a_row_and_answers_its_id(db: Db) -> None:
    status, page = call("POST", "/mp", body="body=hello+world")
    assert status == "201 Created" and "stored row 2 on lim1" in page
    status, out = call("POST", "/snm", "format=json", "body=x")
    assert status == "201 Created" and json.loads(out) == {"id": 3, "server": "lim1"}
    status, out = call("GET", "/mp", "format=json")
    data = json.loads(out)
    assert [r["body"] for r in data["rows"]] == ["first <row>", "hello world", "x"]
    assert data["server"] == "lim1" and data["role"] == "primary"


def test_a_database_that_refuses_writes_gives_503_naming_the_server(db: Db) -> None:
    db.read_only = True
    status, out = call("POST", "/mp", body="body=x")
    assert status == "503 Service Unavailable"
    assert out.startswith("lim1: the database refuses writes here")


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/health", "", "200 OK"),
    ("GET", "/other", "", "404 Not Found"),
    ("DELETE", "/mp", "", "405 Method Not Allowed"),
    ("POST", "/mp", "body=", "400 Bad Request"),
])
def test_other_requests(db: Db, method: str, path: str, body: str, status: str) -> None:
    assert call(method, path, body=body)[0] == status
