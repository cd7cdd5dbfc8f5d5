"""The waiting interpreter of the reference service's commands (mxone_agent.warm_start)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mxone_agent.config import load_node_config
from mxone_agent.executor import REFERENCE_PREFIX, command_env, reference_service
from mxone_agent.service_node import STATUS_STOPPED
from mxone_agent.warm_start import WarmStarter

from tests.agent.builders import config_dict


def commands(tmp_path: Path):
    return reference_service(load_node_config(config_dict("sb")).lim(2), str(tmp_path / "run"),
                             str(tmp_path / "xdata"))


def test_a_reference_command_runs_in_the_waiting_interpreter_and_another_waits_after(
        tmp_path: Path) -> None:
    w = WarmStarter(REFERENCE_PREFIX, command_env)
    w.prepare()
    first = w._proc
    try:
        assert w.run(commands(tmp_path).status, 10) == STATUS_STOPPED
        assert w.used == 1 and first is not None and first.poll() is not None
        assert w._proc is not None and w._proc is not first and w._proc.poll() is None
        assert w.run(commands(tmp_path).status, 10) == STATUS_STOPPED and w.used == 2
    finally:
        w.close()


def test_other_commands_and_a_missing_interpreter_are_left_to_the_caller(tmp_path: Path) -> None:
    w = WarmStarter(REFERENCE_PREFIX, command_env)
    assert w.run(commands(tmp_path).status, 10) is None  # none was prepared
    w.prepare()
    try:
        assert w.run(["true"], 1) is None  # not the reference service
        assert w.used == 0
    finally:
        w.close()
    assert w._proc is None


def test_the_waiting_interpreter_ends_when_its_pipe_closes() -> None:
    w = WarmStarter(REFERENCE_PREFIX, command_env)
    w.prepare()
    proc = w._proc
    assert proc is not None
    w.close()
    assert proc.returncode == 0  # end-of-file: exit 0, nothing run


def test_service_warm_refuses_anything_but_a_list_of_arguments() -> None:
    for line, code in ((b'"status"\n', 2), (b'["warm"]\n', 2), (b"", 0)):
        r = subprocess.run([*REFERENCE_PREFIX, "warm"], input=line, capture_output=True,
                           env=command_env(), timeout=20, check=False)
        assert r.returncode == code, (line, r.stderr)
    r = subprocess.run([*REFERENCE_PREFIX, "warm"], input=b'["status", "--lim", "7", '
                       b'"--run-dir", "/nonexistent-s21"]\n', capture_output=True,
                       env=command_env(), timeout=20, check=False)
    assert r.returncode == STATUS_STOPPED and r.stdout.strip() == b"stopped"
