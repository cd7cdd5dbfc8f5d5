"""`mxone_maintenance validate` and `rules`, run as the operator runs them: a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mxone_maintenance", *args],
                          capture_output=True, text=True, timeout=60)


def test_valid_file_exits_zero() -> None:
    r = run("validate", str(EXAMPLES / "system.toml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid: generation 1, 4 server(s), 1 cluster(s)" in r.stdout


def test_five_broken_rules_are_all_printed_and_exit_one() -> None:
    r = run("validate", str(EXAMPLES / "broken-five-rules.toml"))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    rules = sorted(line.split("(rule ")[1].split(":")[0] for line in lines if "(rule " in line)
    assert rules == sorted(["host-address", "same-subnet", "alias-subnet", "preloaded-1+1", "priority"])
    assert lines[-1].endswith("5 broken rule(s)")
    assert "Traceback" not in r.stdout + r.stderr


def test_json_output_lists_every_violation_with_its_line() -> None:
    r = run("validate", "--json", str(EXAMPLES / "broken-five-rules.toml"))
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["valid"] is False
    assert len(data["violations"]) == 5
    assert all(isinstance(v["line"], int) for v in data["violations"])


def test_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('generation = 1\n[[server]\nname = "a"\n')
    r = run("validate", str(f))
    assert r.returncode == 1
    assert f"{f}:2:9: syntax error" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_missing_and_unreadable_files_exit_two_without_traceback(tmp_path: Path) -> None:
    r = run("validate", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert "no such file" in r.stderr
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    r = run("validate", str(binary))
    assert r.returncode == 2
    assert "not UTF-8 text" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_disk_facts_are_checked_when_given(tmp_path: Path) -> None:
    facts = tmp_path / "facts.toml"
    facts.write_text("[standby1]\nfree_data_bytes = 100\nbackup_bytes = 0\n"
                     "[lim2]\nfree_data_bytes = 0\nbackup_bytes = 40\n"
                     "[lim3]\nfree_data_bytes = 0\nbackup_bytes = 20\n")
    r = run("validate", "--facts", str(facts), str(EXAMPLES / "system.toml"))
    assert r.returncode == 1
    assert "standby has 100 B free, two backups of each regular need 120 B" in r.stdout
    facts.write_text("[standby1]\nfree_data_bytes = -1\n")
    r = run("validate", "--facts", str(facts), str(EXAMPLES / "system.toml"))
    assert r.returncode == 2
    assert "[standby1] must hold exactly free_data_bytes and backup_bytes" in r.stderr


def test_rules_lists_every_rule() -> None:
    r = run("rules", "--json")
    assert r.returncode == 0
    codes = {x["rule"] for x in json.loads(r.stdout)["rules"]}
    assert {"cluster-max-lims", "one-standby", "standby-one-cluster", "lim-one-cluster",
            "cluster-count", "same-subnet", "alias-subnet", "preloaded-1+1", "standby-disk"} <= codes
