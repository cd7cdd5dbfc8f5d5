"""Every `--json` output carries "schema", and docs/json.md documents every command that
has --json (so the document cannot fall behind the parser).

The commands run in this process against the example system; the ones that reach servers
run on the recording applier of tests/orchestration (no network) and stand-in agents.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from mxone_maintenance import cli, configtools, operations, ssh
from mxone_maintenance.commands import argv, registry
from mxone_maintenance.commands.base import ERROR_SCHEMA
from mxone_maintenance.operations import AgentAnswer
from mxone_maintenance.service import Maintenance
from mxone_maintenance.status import SystemStatus
from tests.orchestration.test_degraded_unit import Recording

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "json.md"


class Agents:
    """Stand-in node agents: every answer OK."""

    def status(self, system):  # type: ignore[no-untyped-def]
        return SystemStatus(system.generation, ())

    def fallback(self, system, cluster, lim, **how):  # type: ignore[no-untyped-def]
        return AgentAnswer("standby1", True, "fallback ordered")

    def sync(self, system, cluster, progress=None):  # type: ignore[no-untyped-def]
        return [AgentAnswer(s, True, "synced") for s in ("lim2", "lim3")]

    def tell_lock(self, system, cluster, lim, lock, skip=None):  # type: ignore[no-untyped-def]
        return [AgentAnswer(s, True, f"lock {lock}") for s in ("lim2", "lim3", "standby1")]


class Backend:
    def __init__(self, applier: Recording) -> None:
        self.maintenance = Maintenance(applier.config_path, applier)
        self.operations = Agents()
        self.pool = applier.stub

    def close(self) -> None:
        pass


@pytest.fixture
def tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run one command line with --json; its exit code and the JSON printed."""
    config = tmp_path / "system.toml"
    shutil.copy(ROOT / "examples" / "system.toml", config)
    applier = Recording(tmp_path)
    monkeypatch.setattr(operations, "backend", lambda *_a, **_k: Backend(applier))

    def no_network(target: ssh.Target) -> None:  # the recording applier's later phases
        raise ssh.SshError(f"server {target.name}: no network in this test")
    monkeypatch.setattr(applier.stub, "_open", no_network)

    def run(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        extra = [] if args[0] in ("validate", "rules") else ["--config", str(config)]
        code = cli.main([*args, "--json", *extra])
        out = capsys.readouterr().out
        return code, json.loads(out)
    return run


EXAMPLE = str(ROOT / "examples" / "system.toml")

CASES = [
    ("server", "list"), ("cluster", "list"),
    ("server", "add", "lim4", "10.77.0.34/24", "--lim", "4", "--dry-run"),
    ("server", "add", "lim4", "10.77.0.34/24", "--lim", "4", "--new"),  # an error
    ("server", "remove", "lim1", "--dry-run"),
    ("standby", "convert", "lim1", "--dry-run"),
    ("standby", "free", "standby1", "--dry-run"),
    ("cluster", "create", "south", "--standby", "standby1", "--lim", "1:10.77.0.51", "--dry-run"),
    ("cluster", "add-lim", "north", "1:10.77.0.51", "--dry-run"),
    ("cluster", "remove-lim", "north", "3", "--dry-run"),
    ("cluster", "delete", "north", "--dry-run"),
    ("cluster", "set", "north", "--fallback", "automatic", "--dry-run"),
    ("cluster", "set", "north", "--fallback", "automatic"),  # applied (recorded)
    ("cluster", "preloaded", "north", "--dry-run"),
    ("cluster", "lock", "2", "--to", "standby", "--dry-run"),
    ("cluster", "lock", "2", "--to", "standby"),
    ("cluster", "unlock", "2", "--dry-run"),
    ("cluster", "status"), ("cluster", "status", "--dry-run"),
    ("cluster", "fallback", "2"), ("cluster", "fallback", "2", "--dry-run"),
    ("cluster", "sync", "north"), ("cluster", "sync", "north", "--dry-run"),
    ("cluster", "repair"), ("cluster", "repair", "--dry-run"),
    ("validate", EXAMPLE), ("validate", str(ROOT / "examples" / "broken-five-rules.toml")),
    ("rules",),
]


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
            ) -> dict[str, argparse.ArgumentParser]:
    subs = argv.subparsers(parser)
    if not subs:
        return {" ".join(words): parser}
    out: dict[str, argparse.ArgumentParser] = {}
    for word, child in subs.items():
        out.update(_leaves(child, (*words, word)))
    return out


def json_commands() -> dict[str, argparse.ArgumentParser]:
    """Every command whose parser has --json, by its words."""
    return {w: p for w, p in _leaves(cli._parser()).items()
            if any(a.dest == "json" for a in p._actions)}


def schema_of(words: str) -> int:
    if words == "validate":
        return configtools.VALIDATE_SCHEMA
    if words == "rules":
        return configtools.RULES_SCHEMA
    return registry.command(words.replace(" ", ".", 1)).schema


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_every_json_output_starts_with_its_schema(tool, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    code, data = tool(*args)
    assert next(iter(data)) == "schema", data
    words = " ".join(a for a in args[:2] if not a.startswith(("-", "/")))
    if data.get("ok") is False and "failure" in data:
        assert code != 0 and data["schema"] == ERROR_SCHEMA
    else:
        assert data["schema"] == schema_of(words if args[0] not in ("validate", "rules")
                                           else args[0])


def test_the_cases_cover_every_command_with_json() -> None:
    covered = {" ".join(a for a in c[:2] if not a.startswith(("-", "/"))) if c[0] not in (
        "validate", "rules") else c[0] for c in CASES}
    assert covered == set(json_commands())


def doc_sections() -> dict[str, str]:
    """Command words -> the text of its docs/json.md section (a ### heading names one or
    more commands, each in backquotes)."""
    out: dict[str, str] = {}
    for part in re.split(r"^### ", DOC.read_text(), flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        for words in re.findall(r"`([^`]+)`", heading):
            out[words] = body.split("\n## ")[0]
    return out


def test_the_document_names_every_command_with_json_and_its_schema() -> None:
    sections = doc_sections()
    missing = sorted(set(json_commands()) - set(sections))
    assert not missing, f"docs/json.md has no section for: {missing}"
    for words in json_commands():
        assert f"Schema {schema_of(words)}." in sections[words], words
    assert f'{{"schema": {ERROR_SCHEMA}, "ok": false, "failure": "refused"' in DOC.read_text()


@pytest.mark.parametrize("args", [c for c in CASES if c[0] in ("server", "standby", "cluster")
                                  and registry.command(".".join(c[:2])).kind.value == "change"],
                         ids=" ".join)
def test_every_key_a_change_prints_is_documented(tool, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    _code, data = tool(*args)
    if "failure" in data:
        return  # an error's shape has a section of its own
    section = doc_sections()[" ".join(args[:2])]
    assert "warnings" in data  # every change says what it warns of (empty when nothing)
    missing = [key for key in data if f"`{key}`" not in section]
    assert not missing, f"docs/json.md does not document {missing} of {' '.join(args[:2])}"
