"""The server/standby/cluster subcommands as real processes, without a network.

--dry-run, list and refusal paths need no SSH; the lab tests in tests/orchestration run
the same commands end to end on lim1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SUBCOMMANDS = [
    ("server", "add"), ("server", "remove"), ("server", "list"),
    ("standby", "convert"), ("standby", "free"),
    ("cluster", "list"), ("cluster", "status"), ("cluster", "create"), ("cluster", "add-lim"),
    ("cluster", "remove-lim"), ("cluster", "delete"), ("cluster", "set"),
    ("cluster", "preloaded"), ("cluster", "lock"), ("cluster", "unlock"), ("cluster", "fallback"),
    ("cluster", "repair"),
]


# These tests run outside the lab: the tool runs in a network namespace of its own with
# nothing but a loopback that is down, so no packet to a configured address ever leaves.
ISOLATED = ["unshare", "--net", "--"] if os.geteuid() == 0 else []


def run(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config else []
    r = subprocess.run([*ISOLATED, sys.executable, "-m", "mxone_maintenance", *args, *extra],
                       capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "system.toml"
    shutil.copy(EXAMPLES / "system.toml", p)
    return p


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(words: tuple[str, str]) -> None:
    r = run(*words, "--help")
    assert r.returncode == 0
    assert "--json" in r.stdout and "--known-hosts" in r.stdout and "--ssh-key" in r.stdout
    if words[1] not in ("list", "status", "repair"):
        assert "--dry-run" in r.stdout


def test_lists_read_the_config(config: Path) -> None:
    r = run("server", "list", config=config)
    assert r.returncode == 0
    assert "lim2         10.77.0.32/24      eth0   lim         2  north" in r.stdout
    data = json.loads(run("cluster", "list", "--json", config=config).stdout)
    assert data["clusters"][0]["name"] == "north"
    assert [x["lim"] for x in data["clusters"][0]["lims"]] == [2, 3]


def test_dry_run_prints_the_plan_and_changes_nothing(config: Path) -> None:
    before = config.read_bytes()
    r = run("cluster", "set", "north", "--fallback", "automatic", "--dry-run", config=config)
    assert r.returncode == 0, r.stderr
    assert "Plan: generation 1 -> 2" in r.stdout
    assert "lim2         node config generation 1 -> 2: fallback manual -> automatic" in r.stdout
    assert "Dry run: nothing was changed." in r.stdout
    data = json.loads(run("cluster", "lock", "2", "--to", "standby", "--dry-run", "--json",
                          config=config).stdout)
    assert data["dry_run"] and data["effects"] == ["LIM 2 is locked to the standby server"]
    assert {"server": "standby1", "what": "node config generation 1 -> 2: LIM 2 lock none -> standby"} \
        in data["plan"]
    r = run("cluster", "create", "south", "--standby", "standby1", "--lim", "1:10.77.0.51",
            "--dry-run", config=config)
    assert r.returncode == 1  # standby1 is already the standby of north
    assert config.read_bytes() == before
    assert not config.with_name("system.toml.prev").exists()


@pytest.mark.parametrize(("args", "expect"), [
    (("server", "remove", "nobody"), "server = nobody: no server with this name is in the system"),
    (("server", "remove", "lim2"), "server = lim2: is in cluster north"),
    (("standby", "convert", "lim2"), "only a free server can become standby"),
    (("cluster", "delete", "south"), "cluster = south: no cluster with this name"),
    (("cluster", "lock", "9", "--to", "regular"), "LIM = 9: in no cluster"),
    (("cluster", "unlock", "2"), "lock = none: LIM 2 already has this lock"),
    (("cluster", "create", "x", "--standby", "standby1", "--lim", "2:10.77.0.52", "--timers", "slow"),
     "--timers = slow: not a timer preset"),
    (("cluster", "set", "north"), "give --fallback and/or --priority"),
    (("cluster", "add-lim", "north", "1:10.78.0.51"), "(rule same-subnet: all servers in a cluster"),
    (("cluster", "set", "north", "--priority", "2:200"),
     "cluster[north].lim[2].priority = 200: must be a whole number from 0 to 99 (rule priority"),
])
def test_refused_input_exits_one_naming_field_and_rule(config: Path, args: tuple[str, ...],
                                                       expect: str) -> None:
    before = config.read_bytes()
    r = run(*args, "--dry-run", config=config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert expect in r.stderr
    assert config.read_bytes() == before


def test_refusal_as_json(config: Path) -> None:
    r = run("server", "remove", "nobody", "--json", config=config)
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"schema": 1, "ok": False, "failure": "refused", "lines": [
        "server = nobody: no server with this name is in the system"]}


def test_bad_lim_spec_is_a_usage_error(config: Path) -> None:
    r = run("cluster", "add-lim", "north", "4-10.77.0.54", config=config)
    assert r.returncode == 2
    assert "expected LIM:NEW_BASE_IP or LIM:NEW_BASE_IP:PRIORITY" in r.stderr


def test_unreachable_server_fails_with_exit_two_and_nothing_written(config: Path, tmp_path: Path) -> None:
    """Outside the lab no server answers: the change stops before touching anything."""
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    before = config.read_bytes()
    r = run("cluster", "set", "north", "--priority", "3:4", "--ssh-key", str(key),
            "--known-hosts", str(tmp_path / "kh"), config=config)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "NOT applied: the system stays at generation 1." in r.stdout
    assert "server lim2 unreachable" in r.stdout
    assert config.read_bytes() == before


def test_fallback_is_refused_for_a_cluster_with_automatic_fallback(config: Path) -> None:
    """Manual fallback is the command of a manual-fallback cluster (the vendor's directions);
    the menu offers no other cluster, and the CLI refuses it the same way (one rule, in the
    command)."""
    config.write_text(config.read_text().replace('fallback = "manual"', 'fallback = "automatic"'))
    r = run("cluster", "fallback", "2", "--dry-run", config=config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert ("LIM = 2: cluster north has fallback type automatic: its agents move the LIM back "
            "to its regular server as soon as that server has recovered; manual fallback is "
            "only for clusters with fallback type manual") in r.stderr
    config.write_text(config.read_text().replace('fallback = "automatic"', 'fallback = "manual"'))
    r = run("cluster", "fallback", "2", "--dry-run", config=config)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Plan: order standby standby1 of cluster north to hand LIM 2 back" in r.stdout
