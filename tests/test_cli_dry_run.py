"""--dry-run on every command that changes anything: it prints the plan and changes nothing.

The change commands' dry run is proven on real processes in test_cli_subcommands and on
the lab in tests/orchestration/test_apply_lab; here the agent commands that change nodes
(cluster repair finishes rollbacks, cluster status brings servers behind current) run on
the recording applier of tests/orchestration, which counts every node step.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mxone_maintenance import cli, operations, orchestrate
from mxone_maintenance.commands import registry
from mxone_maintenance.commands.base import Kind
from tests.orchestration.test_degraded_unit import Recording
from tests.test_cli_json import Backend, json_commands

ROOT = Path(__file__).resolve().parent.parent


def test_every_command_that_changes_anything_has_dry_run() -> None:
    """Every command but the two lists (they read the config on LIM 1 only)."""
    with_dry_run = {w for w, p in json_commands().items()
                    if any(a.dest == "dry_run" for a in p._actions)}
    changing = {" ".join(c.name.split(".")) for c in registry.COMMANDS
                if c.kind is not Kind.READ and c.only != "menu"}
    assert with_dry_run == changing
    assert changing >= {"cluster repair", "cluster status", "cluster sync", "cluster fallback",
                        "server add", "cluster lock"}


@pytest.fixture
def applier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recording:
    shutil.copy(ROOT / "examples" / "system.toml", tmp_path / "system.toml")
    a = Recording(tmp_path)
    monkeypatch.setattr(operations, "backend", lambda *_a, **_k: Backend(a))
    return a


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


ROLLBACK: dict[str, Any] = {
    "generation": 1, "switched": True, "retired": False, "agent_changed": True,
    "unretire": [], "remove_base": "10.77.0.52/24", "network": None,
    "snapshot": {"running": True, "current": "releases/old",
                 "files": {"/etc/mxone/node.json": "e30=", "/etc/mxone/keys/c1.key": None},
                 "dirs": {}}}


def test_repair_dry_run_names_each_server_and_file_and_undoes_nothing(
        applier: Recording, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    applier.journal.keep("lim2", ROLLBACK)
    before = tree(tmp_path)
    code = cli.main(["cluster", "repair", "--dry-run", "--config", str(applier.config_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Plan: finish 1 unfinished rollback(s)" in out
    assert "lim2         roll back to generation 1" in out
    assert "put back, byte for byte: /etc/mxone/keys/c1.key, /etc/mxone/node.json" in out
    assert "remove the base address 10.77.0.52/24" in out
    assert "switch the agent release back to releases/old" in out
    assert "restart the agent" in out
    assert out.rstrip().endswith("Dry run: nothing was changed.")
    code = cli.main(["--json", "cluster", "repair", "--dry-run",
                     "--config", str(applier.config_path)])
    data = json.loads(capsys.readouterr().out)
    assert data["dry_run"] is True and data["plan"][0]["server"] == "lim2"
    assert applier.undone == [] and tree(tmp_path) == before

    assert cli.main(["cluster", "repair", "--config", str(applier.config_path)]) == 0
    assert applier.undone == [("lim2", 1)]  # the same command without --dry-run does it


def test_status_dry_run_names_the_servers_it_would_bring_current(
        applier: Recording, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    orchestrate.behind_file(applier.config_path).write_text(json.dumps(
        {"lim2": {"has": 1, "cluster": "north", "missed": ["generation 2: x"]}}))
    config = applier.config_path
    config.write_text(config.read_text().replace("generation = 1", "generation = 2"))
    caught: list[int] = []
    monkeypatch.setattr(applier, "catch_up", lambda system, progress=None: caught.append(
        system.generation) or [])
    before = tree(tmp_path)
    code = cli.main(["cluster", "status", "--dry-run", "--json", "--config", str(config)])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["plan"] == [{"server": "lim2", "what": "bring current: generation 1 -> 2"}]
    assert caught == [] and tree(tmp_path) == before
    assert cli.main(["cluster", "status", "--config", str(config)]) == 0
    assert caught == [2]


def test_a_dry_run_pins_no_host_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    applier: Recording) -> None:
    asked: list[bool] = []

    def backend(*_a: object, **kw: Any) -> Backend:
        asked.append(kw["accept_new_host_key"])
        return Backend(applier)

    monkeypatch.setattr(operations, "backend", backend)
    args = ["server", "add", "lim4", "10.77.0.34/24", "--lim", "4", "--accept-new-host-key",
            "--config", str(applier.config_path)]
    assert cli.main([*args, "--dry-run"]) == 0
    assert asked == [False]
    cli.main(args)
    assert asked == [False, True]
