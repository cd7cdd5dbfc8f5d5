"""The mxone-agent command: check-config, and an honest answer for everything else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mxone_agent.main import EXIT_INVALID, EXIT_NOT_BUILT, EXIT_OK, main

from tests.agent.builders import config_dict


def write(tmp_path: Path, doc) -> str:
    path = tmp_path / "node.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, config_dict("lim3"))
    assert main(["check-config", path]) == EXIT_OK
    out = capsys.readouterr().out
    assert "valid node config" in out and "lim3 (regular, LIM 3)" in out
    assert "failure detection 3.0 s (3 x 1 s)" in out


def test_invalid_config_lists_every_problem(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    doc = config_dict()
    doc["timers"]["misses"] = 1
    doc["lims"][0]["lock"] = "always"
    assert main(["check-config", write(tmp_path, doc)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "2 problems" in err
    assert "$.timers.misses: 1 is below the minimum 2" in err
    assert "$.lims[0].lock: 'always' is not one of none, regular, standby" in err


def test_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", write(tmp_path, "{ not json")]) == EXIT_INVALID
    assert "not valid JSON" in capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.json")]) == EXIT_INVALID
    assert "cannot read" in capsys.readouterr().err


def test_no_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_NOT_BUILT
    assert "usage" in capsys.readouterr().err


def test_ctl_without_agent_says_not_running(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ctl", "status", "--control", str(tmp_path / "none.sock")]) == 2
    assert "not running" in capsys.readouterr().err


def test_run_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = config_dict()
    doc["timers"]["misses"] = 1
    key = tmp_path / "cluster.key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    assert main(["run", "--config", write(tmp_path, doc), "--secret", str(key)]) == 1
    assert "$.timers.misses" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == EXIT_OK
    assert "check-config" in capsys.readouterr().out


def test_entry_point_runs_as_a_process(tmp_path: Path) -> None:
    path = write(tmp_path, config_dict())
    done = subprocess.run([sys.executable, "-m", "mxone_agent.main", "check-config", path],
                          check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "valid node config" in done.stdout
