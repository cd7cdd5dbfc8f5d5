"""A change the rules allow with a warning: the CLI applies it and prints the warning with
the result (``[WARNING]`` lines; ``"warnings"`` in ``--json``), the dry run too; ``validate``
lists warnings and exits 0 when there are only warnings.

The commands run in this process on the recording applier of tests/orchestration (no
network), as in tests/test_cli_json.py.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mxone_maintenance import cli, configtools, operations, ssh, store
from tests.orchestration.test_degraded_unit import Recording
from tests.test_cli_json import Backend

ROOT = Path(__file__).resolve().parent.parent
WARNING = ("[WARNING] cluster[south].timers = bfd: preset bfd detects a failed server in 0.15 s "
           "(3 missed heartbeats 0.05 s apart); it demands a dedicated, low-loss LAN between the "
           "cluster's servers, servers that are not overloaded and that let the agent run its "
           "loop real-time (SCHED_FIFO), or a late or lost heartbeat causes a false failover "
           "(rule short-detection: a failure detection time under 0.3 s raises the risk of false "
           "failover; allowed, with this warning)")
CREATE = ("cluster", "create", "south", "--standby", "standby1", "--lim", "2:10.77.0.52")

Tool = Callable[..., tuple[int, str]]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The example system without its cluster: standby1 and LIMs 1-3 are free to cluster."""
    path = tmp_path / "system.toml"
    text = (ROOT / "examples" / "system.toml").read_text()
    path.write_text(text[:text.index("[[cluster]]")])
    return path


@pytest.fixture
def tool(tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Tool:
    """Run one command line on the recording applier: its exit code and stdout."""
    applier = Recording(tmp_path)
    monkeypatch.setattr(operations, "backend", lambda *_a, **_k: Backend(applier))

    def no_network(target: ssh.Target) -> None:  # the recording applier's later phases
        raise ssh.SshError(f"server {target.name}: no network in this test")
    monkeypatch.setattr(applier.stub, "_open", no_network)

    def run(*args: str) -> tuple[int, str]:
        code = cli.main([*args, "--config", str(config)])
        out = capsys.readouterr().out
        return code, out
    return run


def test_a_bfd_cluster_is_created_and_the_warning_printed_with_the_result(
        tool: Tool, config: Path) -> None:
    code, out = tool(*CREATE, "--timers", "bfd")
    assert code == 0, out
    lines = out.splitlines()
    assert WARNING in lines
    assert lines.index(WARNING) < lines.index("Applied: system generation 2.")
    assert str(store.load(config).cluster("south").timers.preset) == "bfd"


def test_the_dry_run_shows_the_warning_and_changes_nothing(tool: Tool, config: Path) -> None:
    before = config.read_bytes()
    code, out = tool(*CREATE, "--timers", "bfd", "--dry-run")
    assert code == 0, out
    assert out.splitlines()[-2:] == [WARNING, "Dry run: nothing was changed."]
    assert config.read_bytes() == before


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "applied"])
def test_json_carries_the_warnings(tool: Tool, dry_run: bool) -> None:
    code, out = tool(*CREATE, "--timers", "bfd", "--json", *(["--dry-run"] if dry_run else []))
    data = json.loads(out)
    assert code == 0 and next(iter(data)) == "schema"
    assert data["warnings"] == [WARNING.removeprefix("[WARNING] ")]
    assert data["dry_run"] is dry_run and data.get("ok", True) is True


@pytest.mark.parametrize("preset", ["mxone", "fast", "fastest"])
def test_other_presets_bring_no_warning(tool: Tool, preset: str) -> None:
    code, out = tool(*CREATE, "--timers", preset)
    assert code == 0 and "[WARNING]" not in out and "Applied: system generation 2." in out
    code, out = tool("cluster", "add-lim", "south", "3:10.77.0.53", "--json", "--dry-run")
    assert code == 0 and json.loads(out)["warnings"] == []


def test_a_later_change_does_not_repeat_the_warning(tool: Tool) -> None:
    assert tool(*CREATE, "--timers", "bfd")[0] == 0
    code, out = tool("cluster", "set", "south", "--fallback", "automatic")
    assert code == 0 and "[WARNING]" not in out


def test_the_timers_option_offers_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["cluster", "create", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"failure detection preset: mxone \(default\), fast, fastest, bfd;", text)
    assert "bfd (0.15 s) is allowed with a warning" in text


def test_validate_lists_warnings_and_exits_zero_with_only_warnings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "system.toml"
    shutil.copy(ROOT / "examples" / "system.toml", path)
    path.write_text(path.read_text().replace('timers = "fast"', 'timers = "bfd"'))
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"[WARNING] {path}:36: cluster[north].timers = bfd: preset bfd "
                             "detects a failed server in 0.15 s")
    assert out[1].endswith("1 cluster(s); disk rule not checked (no --facts); 1 warning(s)")
    assert cli.main(["validate", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is True and data["violations"] == []
    assert [(w["rule"], w["field"], w["value"], w["line"]) for w in data["warnings"]] == [
        ("short-detection", "cluster[north].timers", "bfd", 36)]
    # with a broken rule as well: both listed, exit 1
    path.write_text(path.read_text().replace("priority = 2", "priority = 200"))
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any("(rule priority:" in line for line in out) and out[-1].endswith("1 broken rule(s)")
    assert any(line.startswith("[WARNING] ") for line in out)


def test_rules_lists_the_warning_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["warnings"] == [{"rule": "short-detection", "text": (
        "a failure detection time under 0.3 s raises the risk of false failover; allowed, "
        "with this warning")}]
    assert configtools.RULES_SCHEMA == 1
