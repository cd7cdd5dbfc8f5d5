"""Every ``webserver_config ... --json`` output is one object with "schema" first (results,
dry runs and errors of every kind), and docs/json.md documents every command with its
schema (so the document cannot fall behind the registry).

The commands run in this process against the recording peer and stack of tests/web/fakes:
nothing leaves the process.
"""

from __future__ import annotations

import json

import pytest
from mxone_web import commands
from mxone_web.errors import WebError
from mxone_web.stack.api import PairRole

from mxone_maintenance.commands.base import ERROR_SCHEMA
from tests.test_cli_json import doc_sections
from tests.web import fakes
from tests.web.test_tool_commands import (
    GOOD,
    MASTER,
    REPL,
    STANDBY,
    configured,
    run,
    standby_web,
)

RECONFIGURE = ["redundancy", "reconfigure", "--vip", "10.77.0.50", "--replication-user",
               "replicator"]


def fresh_master(tmp_path):  # type: ignore[no-untyped-def]
    return fakes.web(tmp_path)


def ready_master(tmp_path):  # type: ignore[no-untyped-def]
    """A configured master whose silent login to the standby is set (Fallback asks it)."""
    from mxone_web import manager
    w = configured(tmp_path)
    w.peer.authorized.append(manager.public_line(manager.key_pair(w.account()),
                                                 "mxone_manager@lim1"))
    return w


def configured_standby(tmp_path):  # type: ignore[no-untyped-def]
    return configured(tmp_path, "sb", PairRole.STANDBY)


def _raising(exc: BaseException):  # type: ignore[no-untyped-def]
    def build(tmp_path):  # type: ignore[no-untyped-def]
        w = configured(tmp_path)

        def install_app(say):  # type: ignore[no-untyped-def]
            raise exc
        w.stack.install_app = install_app
        return w
    return build


# (id, how the server is set, the command line, the passwords on stdin, the exit code,
# the error's failure or None for the command's own shape)
CASES = [
    ("setup-master-dry", fresh_master, [*MASTER, "--dry-run"], (GOOD, "Adm1n-Pass", REPL), 0,
     None),
    ("setup-master", fresh_master, MASTER, (GOOD, "Adm1n-Pass", REPL), 0, None),
    ("setup-master-refused", fresh_master, [*MASTER[:2], "--vip", "10.77.1.50",
                                            *MASTER[4:]], (GOOD, "x", REPL), 1, "refused"),
    ("setup-master-no-stdin", fresh_master, MASTER, (GOOD,), 1, "refused"),
    ("setup-standby-dry", standby_web, [*STANDBY, "--dry-run"], (GOOD, REPL), 0, None),
    ("setup-standby", standby_web, STANDBY, (GOOD, REPL), 0, None),
    ("status", configured_standby, ["redundancy", "status"], (), 0, None),
    ("status-here", configured, ["redundancy", "status", "--here"], (), 0, None),
    ("status-no-cluster", lambda t: _no_cluster(t), ["redundancy", "status"], (), 1,
     "refused"),
    ("reconfigure-dry", configured, [*RECONFIGURE, "--dry-run"], (REPL,), 0, None),
    ("reconfigure", configured, RECONFIGURE, (REPL,), 0, None),
    ("fallback-dry", ready_master, ["redundancy", "fallback", "--dry-run"], (), 0, None),
    ("fallback", ready_master, ["redundancy", "fallback"], (), 0, None),
    ("fallback-on-the-standby", configured_standby, ["redundancy", "fallback"], (), 1,
     "refused"),
    ("rejoin-dry", configured_standby, ["redundancy", "rejoin", "--dry-run"], (), 0, None),
    ("rejoin", configured_standby, ["redundancy", "rejoin", "--here"], (), 0, None),
    ("install-app", configured, ["redundancy", "install-app", "--here"], (), 0, None),
    ("install-app-failed", _raising(WebError("lim1: apt-get failed")),
     ["redundancy", "install-app"], (), 2, "failed"),
    ("install-app-internal", _raising(RuntimeError("a bug")),
     ["redundancy", "install-app"], (), 2, "internal"),
    ("install-app-interrupted", _raising(KeyboardInterrupt()),
     ["redundancy", "install-app"], (), 130, "interrupted"),
    ("reconfigure-fallback-dry", configured, ["redundancy", "reconfigure-fallback",
                                              "--dry-run"], (), 0, None),
    ("reconfigure-fallback", configured, ["redundancy", "reconfigure-fallback"], (), 0, None),
    ("remove-dry", configured, ["redundancy", "remove", "--dry-run"], (), 0, None),
    ("remove", configured, ["redundancy", "remove"], (), 0, None),
]


def _no_cluster(tmp_path):  # type: ignore[no-untyped-def]
    w = fakes.web(tmp_path)
    w.node_json.unlink()
    return w


@pytest.mark.parametrize(("build", "argv", "stdin", "code", "failure"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_json_output_starts_with_its_schema(tmp_path, capsys, monkeypatch, build, argv,
                                                  stdin, code, failure):
    w = build(tmp_path)
    got, out, err = run(capsys, monkeypatch, w, [*argv, "--json"], *stdin)
    assert got == code, err
    data = json.loads(out)  # one object, nothing else on stdout
    assert next(iter(data)) == "schema", data
    if failure is None:
        cmd = commands.command(f"{argv[0]}.{argv[1]}")
        assert data["schema"] == cmd.schema
        if "--dry-run" in argv:
            assert data["dry_run"] is True and data["plan"], data
    else:
        assert data == {"schema": ERROR_SCHEMA, "ok": False, "failure": failure,
                        "lines": data["lines"]}
        assert data["lines"] and all(isinstance(line, str) for line in data["lines"])
        assert data["lines"][0] in err  # the same words on stderr


def test_the_cases_cover_every_command_and_its_dry_run() -> None:
    ran = {f"{c[2][0]}.{c[2][1]}" for c in CASES}
    assert ran == {c.name for c in commands.COMMANDS}
    dry = {f"{c[2][0]}.{c[2][1]}" for c in CASES if "--dry-run" in c[2]}
    assert dry == {c.name for c in commands.COMMANDS if c.plan is not None}


def test_the_peer_status_keeps_its_schema_out_of_the_servers(tmp_path, capsys, monkeypatch):
    w = configured_standby(tmp_path)  # the peer answers with "schema" first (tests/web/fakes)
    code, out, err = run(capsys, monkeypatch, w, ["redundancy", "status", "--json"])
    assert code == 0, err
    data = json.loads(out)
    assert len(data["servers"]) == 2  # this server and its peer
    assert all("schema" not in s for s in data["servers"]), data


def test_the_document_names_every_command_with_its_schema() -> None:
    sections = doc_sections()
    for cmd in commands.COMMANDS:
        words = f"webserver_config {cmd.group} {cmd.word}"
        assert words in sections, f"docs/json.md has no section for {words}"
        assert f"Schema {cmd.schema}." in sections[words], words

