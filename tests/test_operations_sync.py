"""Manual ordered sync as the tool reports it: one line per LIM from `ctl sync` answers."""

from __future__ import annotations

import json

from mxone_maintenance import operations, ssh
from mxone_maintenance.model import Cluster, ClusterLim, Server, System


def _result(data: object, exit_status: int = 0, error: str = "") -> ssh.Result:
    return ssh.Result("lim2", exit_status == 0 and not error,
                      json.dumps(data) if data is not None else "", "", exit_status, error)


def test_a_transfer_names_the_direction_version_files_and_bytes() -> None:
    r = _result({"ok": True, "results": [{"lim": 2, "ok": True, "direction": "to-standby",
                                          "version": "lim2-20261128T190000.000000Z",
                                          "fetched_files": 3, "fetched_bytes": 12288,
                                          "reused_files": 5, "seconds": 0.42}]})
    a = operations._sync_answer("lim2", 2, r)
    assert a.ok and a.server == "lim2"
    assert a.text == ("LIM 2: regular -> standby, version lim2-20261128T190000.000000Z: 3 file(s) "
                      "sent (12.0 KiB), 5 unchanged, in 0.4 s")


def test_nothing_to_send_says_why() -> None:
    r = _result({"ok": True, "results": [{"lim": 2, "ok": True, "direction": "none",
                                          "version": None, "notes": ["both sides hold the same data"]}]})
    assert operations._sync_answer("lim2", 2, r).text == \
        "LIM 2: nothing sent, both sides hold the same data"


def test_a_refused_sync_is_a_failure_with_the_agents_reason() -> None:
    why = "standby1: 2.0 MiB free, two backups of LIM 2 need 9.0 MiB"
    r = _result({"ok": False, "results": [{"lim": 2, "ok": False, "error": why}]}, exit_status=1)
    a = operations._sync_answer("lim2", 2, r)
    assert not a.ok and a.text == f"LIM 2: {why}"


def test_an_unreachable_regular_server_is_reported_for_its_lim() -> None:
    r = ssh.Result("lim2", False, error="server lim2 unreachable: 10.77.0.52: no route to host")
    a = operations._sync_answer("lim2", 2, r)
    assert not a.ok
    assert a.text == ("LIM 2: server lim2 unreachable: 10.77.0.52: no route to host; its data is "
                      "synced once lim2 answers again")


def test_an_agent_that_is_not_running_is_reported() -> None:
    r = ssh.Result("lim2", False, "", "agent not running", exit_status=2)
    a = operations._sync_answer("lim2", 2, r)
    assert not a.ok and a.text.startswith("LIM 2: agent not running")


class _Pool:
    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    def run(self, target: ssh.Target, argv: list[str], timeout: float) -> ssh.Result:
        self.asked.append((target.name, argv))
        lim = int(argv[-1])
        return _result({"ok": True, "results": [{"lim": lim, "ok": True, "direction": "none",
                                                 "notes": ["same"]}]})


def test_lims_are_synced_one_by_one_in_priority_order_with_progress() -> None:
    system = System(generation=5, servers=(
        Server("lim1", "10.0.0.11/24", role="lim", lim=1),
        Server("lim2", "10.0.0.12/24", role="lim", lim=2),
        Server("lim3", "10.0.0.13/24", role="lim", lim=3),
        Server("sb", "10.0.0.20/24", role="standby")),
        clusters=(Cluster("c1", ("sb",), (ClusterLim(2, "10.0.0.52", 2),
                                          ClusterLim(3, "10.0.0.53", 1))),))
    pool = _Pool()
    seen = []
    answers = operations.ClusterOperations(pool).sync(  # type: ignore[arg-type]
        system, "c1", lambda done, total, line: seen.append((done, total, line.split()[0])))
    assert [a.server for a in answers] == ["lim3", "lim2"]
    assert [argv[-3:] for _, argv in pool.asked] == [["ctl", "sync", "3"], ["ctl", "sync", "2"]]
    assert seen == [(1, 2, "lim3"), (2, 2, "lim2")]
