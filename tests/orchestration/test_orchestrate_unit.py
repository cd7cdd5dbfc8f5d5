"""SshApplier's pure parts: the plan, the diff summary, how servers are reached, the status."""

from __future__ import annotations

from pathlib import Path

from mxone_maintenance import (
    actions,
    changeplan,
    nodechange,
    nodeconfig,
    orchestrate,
    phases,
    rollback,
    ssh,
    store,
)
from mxone_maintenance import status as agent_status
from mxone_maintenance.artefact import Artefact
from mxone_maintenance.model import System
from mxone_maintenance.service import Maintenance, Outcome

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "system.toml"


def system() -> System:
    return store.load(EXAMPLE).validated()


class StubPool(ssh.Pool):
    """A pool that reaches no network: connect_all records whom it was asked to reach."""

    def __init__(self, tmp_path: Path, unreachable: tuple[str, ...] = ()) -> None:
        super().__init__(tmp_path / "kh", tmp_path / "key")
        self.reached: list[str] = []
        self.unreachable = set(unreachable)

    def connect_all(self, targets):  # type: ignore[no-untyped-def]
        ts = list(targets)
        self.reached += [t.name for t in ts]
        return {t.name: ssh.SshError(f"server {t.name} unreachable: 10.77.0.11: no answer")
                for t in ts if t.name in self.unreachable}


def no_checks(pool: ssh.Pool, targets: list[ssh.Target]) -> dict[str, str]:
    """Every node has what the agent needs (the preflight has tests of its own)."""
    return {}


def applier(tmp_path: Path, pool: ssh.Pool | None = None) -> orchestrate.SshApplier:
    pool = pool or StubPool(tmp_path)
    art = tmp_path / "agent.tar.gz"
    art.write_bytes(b"artefact")
    return orchestrate.SshApplier(pool, tmp_path / "system.toml", lambda: Artefact(art, "0" * 64),
                                  secrets_dir=tmp_path / "secrets", local_name="lim1",
                                  lock_path=tmp_path / "apply.lock", checks=no_checks)


def test_plan_names_every_server_and_the_config_last(tmp_path: Path) -> None:
    change = actions.set_lock(system(), "north", 2, "standby")
    plan = applier(tmp_path).plan(change)
    assert [(p.server, p.what) for p in plan] == [
        ("lim2", "node config generation 1 -> 2: LIM 2 lock none -> standby"),
        ("lim2", "agent reloads; it must report generation 2"),
        ("lim3", "node config generation 1 -> 2: LIM 2 lock none -> standby"),
        ("lim3", "agent reloads; it must report generation 2"),
        ("standby1", "node config generation 1 -> 2: LIM 2 lock none -> standby"),
        ("standby1", "agent reloads; it must report generation 2"),
        ("lim1", f"system config generation 2 written to {tmp_path / 'system.toml'} once every "
                 "server above succeeded"),
    ]


def test_plan_for_delete_and_create(tmp_path: Path) -> None:
    a = applier(tmp_path)
    delete = actions.delete_cluster(system(), "north")
    whats = {(p.server, p.what) for p in a.plan(delete)}
    assert ("standby1", "leaves cluster north: agent stopped, node config, cluster key and "
            "sync key removed") in whats
    create = actions.create_cluster(delete.after, "south", "standby1",
                                    [actions.NewLim(2, "10.77.0.42")], fallback="automatic")
    lines = [p.what for p in a.plan(create) if p.server == "lim2"]
    assert lines[0].startswith("node config generation 2 -> 3: joins cluster south as regular; "
                               "LIMs LIM 2@lim2; fallback automatic")
    assert lines[1] == ("cluster key of south written; sync key written and authorized for "
                        "exchange-data sync only; agent installed (if missing) and started")


def test_summary_of_each_kind_of_change() -> None:
    s = system()
    before = nodeconfig.all_nodes(s)["lim2"]
    for change, expect in [
        (actions.change_fallback_or_priority(s, "north", "automatic", {3: 5}),
         "LIM 3 priority 2 -> 5; fallback manual -> automatic"),
        (actions.remove_lim(s, "north", 3), "LIMs LIM 2@lim2, LIM 3@lim3 -> LIM 2@lim2"),
        (actions.add_server(s, "lim4", "10.77.0.14/24", lim=4), "no change but the generation"),
    ]:
        after = nodeconfig.all_nodes(change.after)["lim2"]
        assert changeplan.summarize(before, after) == expect


def test_targets_try_every_base_address_then_the_alias() -> None:
    s = system()
    removed = actions.remove_lim(s, "north", 3).after
    t = orchestrate.targets(s, removed)
    assert t["lim3"] == ssh.Target("lim3", ("10.77.0.33", "10.77.0.13"), aliases=("10.77.0.13",))
    assert t["standby1"] == ssh.Target("standby1", ("10.77.0.20",))


def test_missing_new_base_address_is_found_for_configuring() -> None:
    s = system()
    cfg = nodeconfig.all_nodes(s)["lim2"]
    node = nodechange.Node(ssh.Target("lim2", ("10.77.0.32",)), cfg, "00" * 32,
                             snapshot={"addresses": [["eth0", "10.77.0.12"]]})
    missing = phases.missing_base_addresses({"lim2": node})
    assert missing["lim2"] == {"interface": "eth0", "address": "10.77.0.32", "prefix": 24}
    node.snapshot["addresses"].append(["eth0", "10.77.0.32"])
    assert phases.missing_base_addresses({"lim2": node}) == {}


def test_adding_a_server_only_reaches_that_server(tmp_path: Path) -> None:
    pool = StubPool(tmp_path)
    m = Maintenance(tmp_path / "system.toml", applier(tmp_path, pool))
    change = m.preview(actions.add_server, "lim1", "10.77.0.11/24", lim=1)
    lines: list[tuple[str, float]] = []
    result = m.apply(change, lambda line, f: lines.append((line, f)))
    assert result.ok and result.generation == 1
    assert pool.reached == ["lim1"]
    assert [(o.server, o.message) for o in result.outcomes] == [
        ("lim1", "reached over SSH, host key pinned"),
        ("lim1", f"system config generation 1 written to {tmp_path / 'system.toml'}")]
    assert lines[-1] == ("done", 1.0)
    assert store.load(tmp_path / "system.toml").generation == 1


def test_a_server_that_cannot_be_reached_is_not_added(tmp_path: Path) -> None:
    m = Maintenance(tmp_path / "system.toml", applier(tmp_path, StubPool(tmp_path, ("lim1",))))
    change = m.preview(actions.add_server, "lim1", "10.77.0.11/24", lim=1)
    result = m.apply(change)
    assert not result.ok and result.generation == 0
    assert result.outcomes[0] == Outcome(
        "lim1", False, "server lim1 unreachable: 10.77.0.11: no answer (a server joins the "
        "system only once this server can reach it over SSH); nothing was changed")
    assert not (tmp_path / "system.toml").exists()


def test_status_rendering_flags_what_needs_attention() -> None:
    s = system()
    reports = {
        "standby1": {"generation": 1, "readiness": "ready", "lims": [
            {"lim": 2, "owner": "standby"}, {"lim": 3, "owner": "regular"}],
            "peers": [{"name": "lim2", "liveness": "dead"}, {"name": "lim3", "liveness": "alive"}],
            "alarms": [{"code": "lim-running-on-standby", "severity": 3, "name": "LIM is running "
                        "on standby server", "lim": 2, "handle": 1, "raised_at": "T1",
                        "text": "LIM 2 runs on standby1"}],
            "transitions": [{"lim": 2, "kind": "failover", "reason": "lim2 dead", "detected": "T0",
                             "decided": "T0", "alias_up": "T0", "first_garp": "T0",
                             "service_up": "T1"}],
            "last_decision": "standby1 takes over LIM 2"},
        "lim3": {"generation": 1, "readiness": "ready", "lims": [],
                 "peers": [{"name": "lim2", "liveness": "dead"},
                           {"name": "standby1", "liveness": "alive"}]},
    }
    results = ssh.GroupResult(
        lim2=ssh.Result("lim2", False, error="server lim2 unreachable: 10.77.0.32: no answer"),
        lim3=ssh.Result("lim3", True), standby1=ssh.Result("standby1", True))
    cs = agent_status.cluster_status(s, s.cluster("north"), results, reports)
    assert [(x.lim, x.owner) for x in cs.lims] == [(2, "standby"), (3, "regular")]
    assert not cs.healthy
    lines = agent_status.render(agent_status.SystemStatus(1, (cs,)))
    text = "\n".join(lines)
    assert "Cluster north: standby standby1, fallback manual, failover regular  [ATTENTION]" in text
    assert "     2  lim2         10.77.0.12      standby   none     1" in text
    assert "  lim2         lim      unreachable  -            -  -          dead" in text
    assert "lim-running-on-standby 3 LIM is running on standby server LIM 2: LIM 2 runs on standby1" in text
    assert "Last transition: LIM 2 failover (lim2 dead)" in text


def test_one_change_at_a_time(tmp_path: Path) -> None:
    import fcntl

    a = applier(tmp_path)
    m = Maintenance(tmp_path / "system.toml", a)
    change = m.preview(actions.add_server, "lim1", "10.77.0.11/24", lim=1)
    with open(tmp_path / "apply.lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = m.apply(change)
    assert not result.ok and "another mxone_maintenance is applying a change" in result.outcomes[0].message
    assert not (tmp_path / "system.toml").exists()
    assert m.apply(change).ok


def test_the_plan_says_a_new_server_is_reached_first(tmp_path: Path) -> None:
    change = actions.add_server(System(generation=1), "lim1", "10.77.0.11/24", lim=1)
    assert [(p.server, p.what) for p in applier(tmp_path).plan(change)] == [
        ("lim1", "reached over SSH first, its host key checked (a key never seen before is "
                 "shown for you to accept)"),
        ("lim1", f"system config generation 2 written to {tmp_path / 'system.toml'} once every "
                 "server above succeeded")]


# ---- LIMs that leave their cluster ----------------------------------------------------------

def test_plan_says_what_becomes_of_a_leaving_lim_and_its_addresses(tmp_path: Path) -> None:
    change = actions.remove_lim(system(), "north", 2)
    plan = [(p.server, p.what) for p in applier(tmp_path).plan(change)]
    assert plan[0] == ("standby1", "first, before any config changes: LIM 2 leaves cluster "
                       "north; if it runs on standby1 now, standby1 stops it and removes its "
                       "alias 10.77.0.12 (calls to LIM 2 drop until lim2 runs it, a few "
                       "seconds) and takes it over no more; the change stops with nothing "
                       "changed if standby1 still runs it after 30 s")
    assert plan[1] == ("lim2", "LIM 2 then runs on lim2 outside any cluster (started there if "
                       "it does not run), reachable at 10.77.0.12, the address its phones and "
                       "gateways use, which is its base address again; 10.77.0.32, its base "
                       "address in the cluster, is no longer used (it stays up on lim2 until its "
                       "network is restarted)")
    delete = [(p.server, p.what) for p in applier(tmp_path).plan(
        actions.delete_cluster(system(), "north"))]
    assert [s for s, w in delete if w.startswith("first, before any config changes")] == [
        "standby1", "standby1"]
    assert ("standby1", "holds no LIM once cluster north is deleted (any LIM still on it is "
            "stopped and its alias removed); its own base address stays") in delete
    assert changeplan.leaving_lims(actions.set_lock(system(), "north", 2, "standby")) == []


class HandBack(orchestrate.SshApplier):
    """The hand-back phase with the node helper's answers made up: ``answers`` maps an op
    to the Result it gives."""

    def __init__(self, tmp_path: Path, answers: dict[str, ssh.Result]) -> None:
        super().__init__(StubPool(tmp_path), tmp_path / "system.toml", lambda: None,  # type: ignore[arg-type,return-value]
                         secrets_dir=tmp_path / "secrets", local_name="lim1",
                         lock_path=tmp_path / "apply.lock")
        self.answers = answers
        self.ops: list[tuple[str, str, dict]] = []

    def _call(self, target, op, request, timeout=None, command=None):  # type: ignore[no-untyped-def,override]
        self.ops.append((target.name, op, dict(request)))
        return self.answers[op]


def nodes_for(change: actions.Change, running: bool = True) -> dict:
    reach = orchestrate.targets(change.before, change.after)
    out = {}
    for name in ("lim2", "lim3", "standby1"):
        node = nodechange.Node(reach[name], None, None)
        node.snapshot = {"running": running}
        out[name] = node
    return out


def tracker() -> nodechange.Tracker:
    return nodechange.Tracker(lambda line, fraction: None, total=10)


def test_a_leaving_lim_is_let_go_on_the_standby_before_any_config_changes(tmp_path: Path) -> None:
    change = actions.remove_lim(system(), "north", 2)
    said = '{"ok": true, "said": ["LIM 2 is leaving cluster north: standby1 stops it"]}'
    a = HandBack(tmp_path, {"retire-lims": ssh.Result("standby1", True, said, "", 0)})
    nodes = nodes_for(change)
    assert a._hand_back_leaving_lims(change, nodes, tracker()) == {}
    assert a.ops == [("standby1", "retire-lims", {"lims": [2], "timeout": 30.0})]
    assert nodes["standby1"].retired_lims == [2]
    assert rollback.undo_plan(nodes["standby1"], 1)["unretire"] == [2]


def test_a_lim_the_standby_does_not_let_go_refuses_the_change_and_is_taken_back(
        tmp_path: Path) -> None:
    change = actions.delete_cluster(system(), "north")
    a = HandBack(tmp_path, {
        "retire-lims": ssh.Result("standby1", False, error="LIM 2 still runs here after 30 s"),
        "unretire": ssh.Result("standby1", True, '{"ok": true}', "", 0)})
    nodes = nodes_for(change)
    refused = a._hand_back_leaving_lims(change, nodes, tracker())
    assert refused == {"standby1": "LIM 2 still runs here after 30 s: move the LIM back to its "
                       "regular server first (`mxone_maintenance cluster fallback LIM`), then "
                       "try again"}
    assert [op for _, op, _ in a.ops] == ["retire-lims", "unretire"]
    assert a.ops[0][2]["lims"] == [2, 3] and nodes["standby1"].retired_lims == []


def test_no_hand_back_when_the_standbys_agent_does_not_run(tmp_path: Path) -> None:
    change = actions.remove_lim(system(), "north", 2)
    a = HandBack(tmp_path, {})
    assert a._hand_back_leaving_lims(change, nodes_for(change, running=False), tracker()) == {}
    assert a.ops == []


def test_a_lim_whose_standby_cannot_be_reached_does_not_leave(tmp_path: Path) -> None:
    """A degraded remove-LIM without the standby would have the standby take the LIM over
    once its regular server's agent stops, while that server runs it outside the cluster."""
    change = actions.remove_lim(system(), "north", 2)
    a = HandBack(tmp_path, {})
    nodes = nodes_for(change)
    del nodes["standby1"]
    assert a._hand_back_leaving_lims(change, nodes, tracker()) == {"lim2": (
        "LIM 2 leaves cluster north, but standby1, its standby, cannot be told to let it go: "
        "once lim2's agent stops, standby1 would take LIM 2 over while lim2 runs it outside "
        "the cluster (two servers on 10.77.0.12); remove the LIM once standby1 can be "
        "reached")}
    assert a.ops == []
