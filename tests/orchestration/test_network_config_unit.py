"""SshApplier and the servers' own network configuration, without a network: which server
gets what request, what the plan says, a refusal stopping the change before anything
changes, and the rollback putting the network files back before the agent's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mxone_agent.netconfig import write as netconfig_write
from mxone_maintenance import actions, changeplan, ssh
from mxone_maintenance.model import System
from tests.orchestration.test_orchestrate_unit import applier, system


def clusterless() -> System:
    """The example system with its cluster deleted: lim2 at 10.77.0.12 again."""
    return actions.delete_cluster(system(), "north").after


def create() -> actions.Change:
    return actions.create_cluster(clusterless(), "c1", "standby1",
                                  [actions.NewLim(2, "10.77.0.52")])


def test_a_joining_lim_server_gets_its_new_base_written() -> None:
    change = create()
    req = changeplan.network_request(change, "lim2", leaves=False)
    assert req == {"interface": "eth0", "old": "10.77.0.12", "new": "10.77.0.52",
                   "why": "base address 10.77.0.52 replaces 10.77.0.12, now the alias of LIM 2 "
                   "in cluster c1, which only the agent brings up; undone when the LIM leaves "
                   "the cluster"}
    assert changeplan.network_request(change, "standby1", leaves=False) is None
    lines = [(s.server, s.what) for s in changeplan.network_plan(change)]
    assert lines == [("lim2", ("base address 10.77.0.12 -> 10.77.0.52: 10.77.0.52 added on eth0 "
                      "and written into the server's network configuration in place of "
                      "10.77.0.12, so that it comes back after a reboot and 10.77.0.12 (the "
                      "alias) comes up only by the agent; refused before any change if that "
                      "configuration is in a form the tool cannot change"))]


def test_leaving_undoes_it_and_other_changes_leave_it_alone() -> None:
    s = system()
    delete = actions.delete_cluster(s, "north")
    assert changeplan.network_request(delete, "lim2", leaves=True) == {"interface": "eth0",
                                                                        "revert": True}
    assert [(x.server, x.what) for x in changeplan.network_plan(delete)] == [
        (n, ("network configuration put back as it was before the cluster (the tool's change "
            "for its base address undone)")) for n in ("lim2", "lim3")]
    fallback = actions.change_fallback_or_priority(s, "north", fallback="automatic")
    assert all(changeplan.network_request(fallback, n, leaves=False) is None
               for n in ("lim2", "lim3", "standby1"))
    assert changeplan.network_plan(fallback) == []
    removed = actions.remove_lim(s, "north", 3)
    assert changeplan.network_request(removed, "lim3", leaves=True) == {"interface": "eth0",
                                                                         "revert": True}
    assert changeplan.network_request(removed, "lim2", leaves=False) is None


class _NodePool(ssh.Pool):
    """Answers node operations as a node would (``net-*``: the network configuration's,
    recorded as ``netconfig OP``; the others as ``helper OP``); records every one. The
    release the operations run from is there already: its probe is recorded apart."""

    def __init__(self, tmp_path: Path, answers: dict[str, dict[str, Any]]) -> None:
        super().__init__(tmp_path / "kh", tmp_path / "key")
        self.answers = answers
        self.commands: list[tuple[str, str, dict[str, Any]]] = []
        self.release_probes: list[tuple[str, dict[str, Any]]] = []

    def connect_all(self, targets):  # type: ignore[no-untyped-def]
        return {}

    def run(self, target, command, *, input=None, timeout=None):  # type: ignore[no-untyped-def]
        if isinstance(command, str) and command.startswith("python3 -c "):
            self.release_probes.append((target.name, json.loads(input or "{}")))
            return ssh.Result(target.name, True, json.dumps({"ok": True, "has": True}), "", 0)
        op = command.rsplit(" ", 1)[-1] if isinstance(command, str) else " ".join(command)
        program = "netconfig" if op.startswith("net-") else "helper"
        op = op.removeprefix("net-")
        self.commands.append((target.name, f"{program} {op}", json.loads(input or "{}")))
        answer = self.answers.get(f"{program} {op}", {"ok": True})
        return ssh.Result(target.name, True, json.dumps(answer), "", 0)


def test_a_node_whose_config_cannot_follow_stops_the_change(tmp_path: Path) -> None:
    refusal = ("10.77.0.12 is brought up at boot by network configuration the tool cannot "
               "change: /etc/netplan/01-netcfg.yaml: a netplan file, a format the tool does "
               "not change")
    pool = _NodePool(tmp_path, {
        "helper snapshot": {"ok": True, "files": {}, "dirs": {}, "addresses": [],
                            "xdata": {"free": 10**12, "used": 0, "newest": {}}},
        "netconfig inspect": {"ok": False, "error": refusal}})
    a = applier(tmp_path, pool)
    (tmp_path / "system.toml").write_text((Path(__file__).resolve().parents[2] / "examples" /
                                           "system.toml").read_text())
    change = actions.delete_cluster(system(), "north")
    # From the system on disk: the cluster is deleted, then created again.
    from mxone_maintenance import store
    store.save(tmp_path / "system.toml", change.after)
    change = actions.create_cluster(change.after, "c1", "standby1",
                                    [actions.NewLim(2, "10.77.0.52")])
    result = a.apply(change, lambda line, f: None)
    by = {o.server: o for o in result.outcomes}
    assert not by["lim2"].ok and by["lim2"].message == (
        f"its network configuration cannot follow: {refusal}; nothing was changed")
    assert by["standby1"].ok and "not changed" in by["standby1"].message
    # Only reads happened: snapshots and the inspection, nothing was written anywhere
    # (the release the operations run from was found, not uploaded).
    assert {c for _, c, _ in pool.commands} == {"helper snapshot", "netconfig inspect"}
    assert pool.release_probes and all("upload" not in r for _, r in pool.release_probes)
    asked = [r for n, c, r in pool.commands if c == "netconfig inspect"]
    assert asked == [{"interface": "eth0", "old": "10.77.0.12", "new": "10.77.0.52",
                      "why": changeplan.network_request(change, "lim2", False)["why"]}]


def test_rollback_restores_the_network_files_first(tmp_path: Path) -> None:
    pool = _NodePool(tmp_path, {})
    a = applier(tmp_path, pool)
    files = {"/etc/systemd/network/10-eth0.network": {"data": "5b5d0a", "mode": 420},
             f"{netconfig_write.BACKUP_ROOT}/etc/systemd/network/10-eth0.network": None}
    plan = {"generation": 5, "switched": False, "retired": False, "agent_changed": False,
            "remove_base": None, "network": {"files": files, "dirs": {"/etc/mxone": True}},
            "snapshot": {"running": True, "files": {}, "dirs": {"/etc/mxone": False}}}
    assert a._undo(ssh.Target("lim2", ("10.77.0.52",)), plan).ok
    assert [c for _, c, _ in pool.commands] == ["netconfig restore", "helper restore"]
    assert pool.commands[0][2] == {"files": files, "dirs": {"/etc/mxone": True}}
