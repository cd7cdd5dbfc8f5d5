"""Show status reads each agent's status file when it is fresh, else asks `ctl status`."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from mxone_maintenance import operations, ssh
from mxone_maintenance import status as agent_status


def _group(**results: ssh.Result) -> ssh.GroupResult:
    return ssh.GroupResult(results)


def test_a_fresh_status_file_is_read_as_ctl_status() -> None:
    out = operations._from_status_files(_group(
        lim2=ssh.Result("lim2", True, '1000.5\n4242 999.0\n{"ok": true, "node": "lim2"}\n', "", 0)))
    assert out["lim2"] is not None and out["lim2"].stdout == '{"ok": true, "node": "lim2"}\n'


def test_a_stale_status_file_means_asking_the_agent() -> None:
    out = operations._from_status_files(_group(
        lim2=ssh.Result("lim2", True, '1010.0\n4242 1000.0\n{"ok": true}\n', "", 0),
        lim3=ssh.Result("lim3", True, 'garbage\n4242 1000.0\n{}\n', "", 0)))
    assert out == {"lim2": None, "lim3": None}


def test_ctl_status_answers_and_failures_pass_through() -> None:
    answered = ssh.Result("lim2", True, '{"ok": true, "node": "lim2"}\n', "", 0)
    not_running = ssh.Result("lim3", False, "", "agent not running", 2)
    unreachable = ssh.Result("sb", False, error="server sb unreachable")
    out = operations._from_status_files(_group(lim2=answered, lim3=not_running, sb=unreachable))
    assert out == {"lim2": answered, "lim3": not_running, "sb": unreachable}


def test_status_shows_each_lims_exchange_data_sync() -> None:
    assert agent_status.sync_status_text({"lim": 2, "disabled": "no sync key"}) == \
        "Exchange data LIM 2: sync off (no sync key)"
    assert agent_status.sync_status_text({"lim": 2, "last_success": None, "failures": 0}) == \
        "Exchange data LIM 2: not synced yet"
    assert agent_status.sync_status_text({
        "lim": 2, "last_success": "2026-11-28T19:30:00Z", "last_direction": "to-standby",
        "last_version": "lim2-20261128T193000.000000Z", "failures": 0}) == (
        "Exchange data LIM 2: synced 2026-11-28T19:30:00Z (to-standby, version "
        "lim2-20261128T193000.000000Z)")
    assert agent_status.sync_status_text({
        "lim": 3, "last_success": "2026-11-28T19:30:00Z", "failures": 2,
        "last_error": "standby1: 2.0 MiB free, two backups need 9.0 MiB",
        "last_error_at": "2026-11-28T19:40:00Z", "next_attempt": "2026-11-28T19:41:00Z"}) == (
        "Exchange data LIM 3: LAST SYNC FAILED (2026-11-28T19:40:00Z): standby1: 2.0 MiB free, "
        "two backups need 9.0 MiB; next attempt 2026-11-28T19:41:00Z")


def test_a_lim_that_runs_nowhere_is_shown_with_the_standbys_why() -> None:
    from pathlib import Path

    from mxone_maintenance import configfile

    system = configfile.parse(Path("examples/system.toml").read_text())
    cluster = system.cluster("north")
    why = ("lim3 is down and standby1 runs LIM 2 (priority 1), which LIM 3 (priority 2) does "
           "not replace: the standby runs one LIM")
    reports = {"standby1": {"lims": [{"lim": 2, "owner": "standby", "why": None},
                                     {"lim": 3, "owner": "none", "why": why}]},
               "lim2": {"lims": [{"lim": 2, "owner": "standby"}, {"lim": 3, "owner": "none"}]}}
    status = agent_status.cluster_status(system, cluster, _group(), reports)
    assert [(x.lim, x.owner, x.why) for x in status.lims] == [(2, "standby", None),
                                                               (3, "none", why)]
    lines = agent_status.render(agent_status.SystemStatus(system.generation, (status,)))
    assert f"        LIM 3 runs nowhere: {why}" in lines


def test_status_shows_pending_fallback_orders_and_lims_being_retired() -> None:
    from pathlib import Path

    from mxone_maintenance import configfile

    system = configfile.parse(Path("examples/system.toml").read_text())
    cluster = system.cluster("north")
    waits = ("fallback of LIM 2 waits for lim2 to be ready: lim2 missed 5 heartbeats (5.0 s); "
             "it expires in 540 s")
    reports = {"standby1": {
        "lims": [{"lim": 2, "owner": "standby"}, {"lim": 3, "owner": "regular"}],
        "fallback_orders": [{"lim": 2, "regular": "lim2", "state": "pending", "text": waits,
                             "expires_in_s": 540.0}],
        "fallback_orders_ended": [{"lim": 3, "ordered_at": "2026-12-01T10:00:00Z",
                                   "ended_at": "2026-12-01T10:10:00Z",
                                   "outcome": "expired after 600 s: lim3 is not heard yet"}],
        "retiring": [{"lim": 9, "alias_ip": "10.77.0.19", "here": "active",
                      "why": "no longer in this node's config"},
                     {"lim": 8, "alias_ip": "10.77.0.18", "here": None,
                      "why": "leaving the cluster"}]}}
    status = agent_status.cluster_status(system, cluster, _group(), reports)
    lines = agent_status.render(agent_status.SystemStatus(system.generation, (status,)))
    assert ("  Fallback of LIM 2 waits for lim2 to be ready: lim2 missed 5 heartbeats (5.0 s); it "
            "expires in 540 s (Cancel it with `mxone_maintenance cluster fallback 2 --cancel` "
            "(menu: Cluster handling > Move LIM from standby to regular server))") in lines
    assert ("  Last fallback order: LIM 3, ordered 2026-12-01T10:00:00Z, ended "
            "2026-12-01T10:10:00Z: expired after 600 s: lim3 is not heard yet") in lines
    assert ("  standby1 is stopping LIM 9 for good (no longer in this node's config); it still "
            "runs there (active)") in lines
    assert not any("LIM 8" in line for line in lines)


def test_fallback_answers_say_ok_pending_or_failed() -> None:
    pending = operations._answer("standby1", ssh.Result("standby1", True, (
        '{"ok": true, "pending": true, "text": "fallback of LIM 2 waits for lim2 to be ready: '
        'lim2 is not heard yet; it is carried out once lim2 is ready, or dropped after 600 s"}'),
        "", 0))
    assert pending.pending and pending.word == "PENDING"
    refused = operations._answer("standby1", ssh.Result("standby1", False, (
        '{"ok": false, "error": "fallback of LIM 2 refused: lim2 is not heard yet"}'), "", 1))
    assert not refused.pending and refused.word == "FAILED"
    assert refused.text == "refused (exit 1): fallback of LIM 2 refused: lim2 is not heard yet"
    done = operations._answer("standby1", ssh.Result("standby1", True, (
        '{"ok": true, "pending": false, "text": "fallback of LIM 2 ordered"}'), "", 0))
    assert operations.answer_lines([done, pending])[0] == (
        "standby1     OK      fallback of LIM 2 ordered")
    assert operations.answer_lines([pending])[0].startswith("standby1     PENDING fallback")


def _north() -> tuple[object, object]:
    from pathlib import Path

    from mxone_maintenance import configfile

    system = configfile.parse(Path("examples/system.toml").read_text())
    return system, system.cluster("north")


def test_status_shows_each_agents_version_and_flags_a_mixed_cluster() -> None:
    system, cluster = _north()
    reports = {"lim2": {"version": "0.1.0"}, "lim3": {"version": "0.1.0"},
               "standby1": {"version": "0.0.9"}}
    status = agent_status.cluster_status(system, cluster, _group(), reports)  # type: ignore[arg-type]
    assert [(s.server, s.version) for s in status.servers] == [
        ("lim2", "0.1.0"), ("lim3", "0.1.0"), ("standby1", "0.0.9")]
    lines = agent_status.render(agent_status.SystemStatus(1, (status,)))
    assert "  server       role     agent        version    gen  ready      seen by peers" in lines
    assert any(line.startswith("  standby1     standby  running      0.0.9") for line in lines)
    assert ("  [ATTENTION] agents of different versions: 0.1.0 on lim2, lim3; 0.0.9 on standby1 "
            "- redeploy") in lines
    assert agent_status.SystemStatus(1, (status,)).to_dict()["clusters"][0]["servers"][2][
        "version"] == "0.0.9"


def test_an_agent_without_a_version_is_unknown_and_one_version_is_not_flagged() -> None:
    system, cluster = _north()
    same = agent_status.cluster_status(system, cluster, _group(), {  # type: ignore[arg-type]
        "lim2": {"version": "0.1.0"}, "lim3": {"version": "0.1.0"}})
    lines = agent_status.render(agent_status.SystemStatus(1, (same,)))
    assert not any("different versions" in line for line in lines)
    assert any(line.startswith("  standby1     standby  error        -") for line in lines)
    old = agent_status.cluster_status(system, cluster, _group(), {  # type: ignore[arg-type]
        "lim2": {"version": "0.1.0"}, "lim3": {}, "standby1": {"version": 7}})
    assert [s.version for s in old.servers] == ["0.1.0", "unknown", "unknown"]
    assert ("  [ATTENTION] agents of different versions: unknown on lim3, standby1; 0.1.0 on "
            "lim2 - redeploy") in agent_status.render(agent_status.SystemStatus(1, (old,)))


def _bond(*slaves: tuple[str, str, int], mode: str = "active-backup", active: str | None = "eth1",
          degraded: tuple[str, ...] = ()) -> dict[str, object]:
    return {"name": "bond0", "mode": mode, "mii_status": "up", "active_slave": active,
            "aggregator": None, "degraded": list(degraded),
            "slaves": [{"name": n, "mii_status": m, "link_failures": f, "state": "backup",
                        "aggregator": None} for n, m, f in slaves]}


def test_status_shows_the_bond_under_a_server_and_warns_when_degraded() -> None:
    system, cluster = _north()
    down = "bond0: slave eth0 is down, 2 link failures"
    reports = {
        "lim2": {"network": {"interface": "bond0", "over": None, "bond": _bond(
            ("eth0", "down", 2), ("eth1", "up", 0), degraded=(down,))}},
        "lim3": {"network": {"interface": "bond0.100", "over": "bond0", "bond": _bond(
            ("eth0", "up", 0), ("eth1", "up", 3), mode="802.3ad", active=None)}},
        "standby1": {"network": {"interface": "eth0", "over": None, "bond": None}}}
    status = agent_status.cluster_status(system, cluster, _group(), reports)  # type: ignore[arg-type]
    lines = agent_status.render(agent_status.SystemStatus(1, (status,)))
    at = next(i for i, line in enumerate(lines) if line.startswith("  lim2 "))
    assert lines[at + 1:at + 3] == [
        "      bond0: active-backup, active eth1; eth0 down (2 link failures), eth1 up",
        f"      [WARNING] lim2: network redundancy degraded: {down}"]
    assert "      bond0.100 over bond0: 802.3ad; eth0 up, eth1 up" in lines
    at = next(i for i, line in enumerate(lines) if line.startswith("  standby1 "))
    assert not lines[at + 1].startswith("      ")  # a plain interface adds nothing


def test_odd_network_reports_do_not_break_the_status() -> None:
    assert agent_status.network_lines("lim2", None) == []
    assert agent_status.network_lines("lim2", {"bond": "garbage"}) == []
    assert agent_status.network_lines("lim2", {"interface": "bond0", "bond": {
        "slaves": ["x", {"name": "eth0"}], "mii_status": "down"}}) == [
        "      ?: unknown, down; unknown, eth0 unknown"]


def _run_status_command(shell: str, status_file: Path, env: dict[str, str]) -> ssh.Result:
    p = subprocess.run([shell, "-c", operations.status_command(str(status_file))],
                       capture_output=True, text=True, env=env, timeout=10, check=False)
    return ssh.Result("lim2", p.returncode == 0, p.stdout, p.stderr, p.returncode)


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_the_status_command_reads_a_live_agents_file_with_the_servers_clock(
        shell: str, tmp_path: Path) -> None:
    body = '{"node": "lim2", "ok": true, "text": "a \\\\ and a \\"quote\\""}'
    f = tmp_path / "status.json"
    f.write_text(f"{os.getpid()} {time.time():.3f}\n{body}\n")
    env = {"PATH": os.environ["PATH"], "LANG": "C"}
    out = operations._from_status_files(_group(lim2=_run_status_command(shell, f, env)))
    assert out["lim2"] is not None and out["lim2"].stdout == body + "\n"


def test_the_status_file_of_an_agent_that_is_gone_means_asking_the_agent(
        tmp_path: Path) -> None:
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                          check=True).stdout.strip()
    f = tmp_path / "status.json"
    f.write_text(f"{dead} {time.time():.3f}\n" + '{"ok": true}\n')
    r = _run_status_command("bash", f, {"PATH": os.environ["PATH"]})
    # exec of ctl status (not installed here): not the file
    assert not r.ok and '{"ok": true}' not in r.stdout


def test_a_clock_with_a_decimal_comma_is_read() -> None:
    out = operations._from_status_files(_group(
        lim2=ssh.Result("lim2", True, '1000,5\n4242 999.0\n{"ok": true}\n', "", 0)))
    assert out["lim2"] is not None and out["lim2"].stdout == '{"ok": true}\n'


def test_bash_reads_a_live_agents_file_without_starting_a_program(tmp_path: Path) -> None:
    # Nothing on PATH: only shell builtins can answer (bash 5's EPOCHREALTIME for the clock).
    f = tmp_path / "status.json"
    f.write_text(f"{os.getpid()} {time.time():.3f}\n" + '{"ok": true}\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _run_status_command("/bin/bash", f, {"PATH": str(empty)})
    out = operations._from_status_files(_group(lim2=r))
    assert out["lim2"] is not None and out["lim2"].stdout == '{"ok": true}\n', r
