"""Show status reads each agent's status file when it is fresh, else asks `ctl status`."""

from __future__ import annotations

from mxone_maintenance import operations, ssh


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
    assert operations.sync_status_text({"lim": 2, "disabled": "no sync key"}) == \
        "Exchange data LIM 2: sync off (no sync key)"
    assert operations.sync_status_text({"lim": 2, "last_success": None, "failures": 0}) == \
        "Exchange data LIM 2: not synced yet"
    assert operations.sync_status_text({
        "lim": 2, "last_success": "2026-11-28T19:30:00Z", "last_direction": "to-standby",
        "last_version": "lim2-20261128T193000.000000Z", "failures": 0}) == (
        "Exchange data LIM 2: synced 2026-11-28T19:30:00Z (to-standby, version "
        "lim2-20261128T193000.000000Z)")
    assert operations.sync_status_text({
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
    status = operations._cluster_status(system, cluster, _group(), reports)
    assert [(x.lim, x.owner, x.why) for x in status.lims] == [(2, "standby", None),
                                                               (3, "none", why)]
    lines = operations.render(operations.SystemStatus(system.generation, (status,)))
    assert f"        LIM 3 runs nowhere: {why}" in lines
