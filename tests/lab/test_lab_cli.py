"""End to end: the `mxone-lab` command as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mxone_lab import Lab, procs

pytestmark = pytest.mark.lab


def cli(
    *args: str, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mxone_lab", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        **kw,
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment, with a private current-lab link (the user's stays untouched)."""
    env = dict(os.environ, MXONE_LAB_CURRENT=str(tmp_path / "current"))
    env.pop("MXONE_LAB", None)
    return env


def test_up_status_exec_fault_down(cli_env: dict[str, str], tmp_path: Path) -> None:
    up = cli("up", "--hosts", "3", env=cli_env)
    assert up.returncode == 0, up.stderr
    m = re.search(r"lab (mx[0-9a-f]{6}) is up", up.stdout)
    assert m, up.stdout
    lab_id = m.group(1)
    try:
        assert os.readlink(tmp_path / "current") == f"/tmp/{lab_id}"
        lab = Lab.attach(lab_id)
        assert list(lab.hosts) == ["lim1", "lim2", "client"]
        # The CLI has exited; the lab lives on, its processes the children of its keeper.
        keeper = lab.state.data["keeper_pid"]
        assert procs.alive(keeper)
        for h in lab.hosts.values():
            assert _ppid(h.holder_pid) == keeper and _ppid(h.sshd_pid) == keeper

        st = cli("status", env=cli_env)
        assert st.returncode == 0
        assert re.search(
            r"^lim2\s+10\.77\.0\.12\s+02:77:00:00:00:0c\s+\d+ ok\s+\d+ ok\s+up\s+10\.77\.0\.12/24$",
            st.stdout,
            re.MULTILINE,
        )
        assert cli("exec", "lim2", "hostname", env=cli_env).stdout == "lim2\n"
        assert cli("exec", "lim2", "sh", "-c", "exit 7", env=cli_env).returncode == 7

        assert cli("fault", "cut", "lim2", env=cli_env).stdout.strip().endswith("faults: cut lim2")
        assert (
            cli("exec", "client", "ping", "-c1", "-W1", "10.77.0.12", env=cli_env).returncode == 1
        )
        assert "faults: cut lim2" in cli("status", env=cli_env).stdout
        cli("fault", "restore", env=cli_env)
        assert (
            cli("exec", "client", "ping", "-c1", "-W2", "10.77.0.12", env=cli_env).returncode == 0
        )
        pids = {
            keeper,
            *(h.holder_pid for h in lab.hosts.values()),
            *(h.sshd_pid for h in lab.hosts.values()),
        }
    finally:
        down = cli("down", lab_id, env=cli_env)
    assert down.returncode == 0, down.stderr
    assert "nothing left behind" in down.stdout
    assert not [n for n in os.listdir("/run/netns") if n.startswith(lab_id)]
    assert not [p for p in pids if procs.alive(p)]  # the keeper exited too
    assert not Path(f"/tmp/{lab_id}").exists()
    assert not (tmp_path / "current").is_symlink()


def _ppid(pid: int | None) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_user_errors_are_one_clear_line(lab: Lab, cli_env: dict[str, str]) -> None:
    cases = {
        (
            "exec",
            "--lab",
            lab.id,
            "nosuch",
            "true",
        ): "unknown host 'nosuch': the lab has lim1, lim2",
        ("status", "mx000000"): "lab mx000000 does not exist",
        ("status", "bogus"): "'bogus' is not a lab id",
        ("down",): "no current lab",
        ("up", "--spec", "/nonexistent/lab.toml"): "/nonexistent/lab.toml: cannot read",
        ("fault", "--lab", lab.id, "loss", "lim1", "150"): "loss percent 150 is invalid",
        ("up", "--hosts", "1"): "host count 1 is out of range",
    }
    for args, expected in cases.items():
        r = cli(*args, env=cli_env)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert expected in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_not_root_is_refused_clearly(cli_env: dict[str, str]) -> None:
    r = cli("up", env=cli_env, user=65534, group=65534, extra_groups=[])
    if "Permission denied" in r.stderr and "mxone-lab" not in r.stderr:
        pytest.skip("the venv is not readable by nobody")
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        == "mxone-lab: the lab needs root (it creates network namespaces): run it with sudo"
    )


def test_demo_runs_the_given_program_on_the_host_then_tears_down(cli_env: dict[str, str]) -> None:
    before = set(os.listdir("/run/netns"))
    r = cli("demo", "--on", "lim2", "--", "sh", "-c", "hostname; exit 4", env=cli_env)
    assert r.returncode == 4, r.stderr
    lines = r.stdout.splitlines()
    assert "lim2" in lines
    assert any("<- you are here" in line and line.split()[0] == "lim2" for line in lines)
    m = re.search(r"lab (mx[0-9a-f]{6}) torn down: nothing left behind", r.stdout)
    assert m, r.stdout
    assert set(os.listdir("/run/netns")) == before
    assert not Path(f"/tmp/{m.group(1)}").exists()
