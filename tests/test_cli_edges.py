"""The edges an administrator hits on day one: --version, global options before or after
the command, a missing config file, a closed pipe, no terminal for the menus.

Real processes where the edge is the process's (exit code, pipe, terminal); no network:
the tool runs in a network namespace of its own (as in test_cli_subcommands).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pexpect
import pytest

from mxone_agent.version import VERSION

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ISOLATED = ["unshare", "--net", "--"] if os.geteuid() == 0 else []
TOOL = [sys.executable, "-m", "mxone_maintenance"]
ENTRY = [sys.executable, "-m", "mxone_menus.entry"]  # the console script: menus or CLI


def run(*args: str, entry: bool = False, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*ISOLATED, *(ENTRY if entry else TOOL), *args], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL,
                       env={**os.environ, **(env or {})})
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "system.toml"
    shutil.copy(EXAMPLES / "system.toml", p)
    return p


# ---- --version -----------------------------------------------------------------------

@pytest.mark.parametrize("args", [("--version",), ("cluster", "status", "--version"),
                                  ("cluster", "--version"), ("validate", "--version"),
                                  ("--config", "/nowhere.toml", "--version")], ids=" ".join)
def test_version_is_the_one_source_and_exits_zero(args: tuple[str, ...]) -> None:
    for entry in (False, True):
        r = run(*args, entry=entry)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"mxone_maintenance {VERSION}\n"


# ---- global options anywhere ---------------------------------------------------------

@pytest.mark.parametrize("order", [
    ("--config", "{c}", "--json", "cluster", "list"),
    ("cluster", "list", "--config", "{c}", "--json"),
    ("--json", "cluster", "--config", "{c}", "list"),
    ("--config", "/nowhere.toml", "cluster", "list", "--json", "--config", "{c}"),
], ids=["before", "after", "between", "after-wins"])
def test_global_options_go_before_or_after_the_command(config: Path,
                                                       order: tuple[str, ...]) -> None:
    for entry in (False, True):
        r = run(*(a.format(c=config) for a in order), entry=entry)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["clusters"][0]["name"] == "north"
    assert run("--json", "rules").stdout == run("rules", "--json").stdout


def test_a_global_option_the_command_has_not_is_named(config: Path) -> None:
    r = run("--config", str(config), "validate", str(config))
    assert r.returncode == 2
    assert "--config: `validate` has no --config option" in r.stderr


# ---- a missing config ----------------------------------------------------------------

@pytest.mark.parametrize("words", [("server", "list"), ("cluster", "list"),
                                   ("cluster", "status"), ("cluster", "repair", "--dry-run"),
                                   ("server", "add", "lim1", "10.0.2.11/24", "--lim", "1")],
                         ids=" ".join)
def test_a_missing_config_is_an_error_naming_the_path(tmp_path: Path,
                                                      words: tuple[str, ...]) -> None:
    missing = tmp_path / "nope.toml"
    r = run(*words, "--config", str(missing))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{missing}: no such file" in r.stderr
    assert f"server add NAME BASE_IP/PREFIX --lim 1 --new --config {missing}" in r.stderr
    r = run(*words, "--json", env={"MXONE_SYSTEM_CONFIG": str(missing)})
    data = json.loads(r.stdout)
    assert data["schema"] == 1 and data["failure"] == "unusable"
    assert data["lines"][0].startswith(f"{missing}: no such file")
    assert not missing.exists()


def test_new_starts_a_system_explicitly_and_only_a_new_one(tmp_path: Path,
                                                           config: Path) -> None:
    missing = tmp_path / "new.toml"
    r = run("server", "add", "lim1", "10.0.2.11/24", "--lim", "1", "--new", "--dry-run",
            "--config", str(missing))
    assert r.returncode == 0, r.stderr
    assert "Plan: generation 0 -> 1" in r.stdout and f"to {missing}" in r.stdout
    assert not missing.exists()
    before = config.read_bytes()
    r = run("server", "add", "lim4", "10.77.0.34/24", "--lim", "4", "--new", "--dry-run",
            "--config", str(config))
    assert r.returncode == 1
    assert f"refused: --new: {config} exists already: this is not a new system" in r.stderr
    assert config.read_bytes() == before


class Menus:
    """The console script in a pseudo terminal."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "TERM": "xterm", "ESCDELAY": "25"}
        self.child = pexpect.spawn(ENTRY[0], [*ENTRY[1:], *args], env=env,
                                   dimensions=(30, 100), timeout=10, encoding="utf-8")

    def __enter__(self) -> pexpect.spawn:
        return self.child

    def __exit__(self, *exc: object) -> None:
        self.child.close(force=True)


def test_the_menus_on_a_missing_file_say_so_and_new_opens_them(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with Menus("--config", str(missing)) as child:
        child.expect(pexpect.EOF)
        out = child.before
        child.close()
        assert child.exitstatus == 2, out
        assert f"{missing}: no such file" in out and f"mxone_maintenance --new --config {missing}" in out
    with Menus("--config", str(missing), "--new") as child:
        child.expect("system generation 0")
        child.expect("Server in system")
    assert not missing.exists()


# ---- a closed pipe -------------------------------------------------------------------

def error_log() -> Path:
    directory = Path("/var/log/mxone") if os.access("/var/log", os.W_OK) else Path(
        tempfile.gettempdir())
    return directory / "mxone_maintenance-errors.log"


def log_size() -> int:
    try:
        return error_log().stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("args", [("rules",), ("cluster", "list", "--json"), ("--help",)],
                         ids=" ".join)
def test_a_closed_pipe_ends_quietly(config: Path, args: tuple[str, ...]) -> None:
    """The reader goes away before the tool writes (as `| head -1` does on a long output):
    no "internal error", no traceback in the error log; 141 as for SIGPIPE."""
    before = log_size()
    for entry in (False, True):
        p = subprocess.Popen([*(ENTRY if entry else TOOL), *args, "--config", str(config)]
                             if args[0] == "cluster" else [*(ENTRY if entry else TOOL), *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # closed before the tool has even started writing
        err = p.stderr.read().decode()
        assert p.wait(timeout=60) == 141, err
        assert err == ""
    assert log_size() == before


def test_a_failure_with_a_closed_pipe_keeps_its_reason_and_exit_code(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    p = subprocess.Popen([*TOOL, "cluster", "list", "--json", "--config", str(missing)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 2, err
    assert err.startswith(f"{missing}: no such file") and "BrokenPipe" not in err


def test_a_shell_pipe_closed_early_ends_quietly() -> None:
    before = log_size()
    r = subprocess.run(["bash", "-o", "pipefail", "-c",
                        f"{sys.executable} -m mxone_menus.entry rules | true"],
                       capture_output=True, text=True, timeout=60)
    assert r.stderr == "" and r.returncode in (0, 141)
    assert log_size() == before


# ---- no terminal ---------------------------------------------------------------------

@pytest.mark.parametrize("stdin", ["devnull", "pipe"])
def test_the_menus_without_a_terminal_say_what_to_do(config: Path, stdin: str) -> None:
    """As from cron, or `ssh host mxone_maintenance` without -t: no tty at all."""
    before = log_size()
    r = subprocess.run([*ENTRY, "--config", str(config)], capture_output=True, text=True,
                       timeout=60, start_new_session=True,  # no controlling terminal either
                       stdin=subprocess.DEVNULL if stdin == "devnull" else None,
                       input=None if stdin == "devnull" else "")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the menus need a terminal" in r.stderr and "ssh -t" in r.stderr
    assert "cluster status" in r.stderr and "internal error" not in r.stderr
    assert r.stdout == ""
    assert log_size() == before


def test_a_subcommand_needs_no_terminal(config: Path) -> None:
    r = run("server", "list", "--config", str(config), entry=True)
    assert r.returncode == 0 and "lim2" in r.stdout
