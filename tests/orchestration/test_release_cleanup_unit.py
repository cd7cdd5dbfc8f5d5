"""A change refused or rolled back takes back the agent release it unpacked on a server
that did not have it; a successful change keeps it (it is current). Without a network."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mxone_maintenance import degraded, nodechange, orchestrate, ssh, store
from tests.orchestration.test_network_config_unit import create
from tests.orchestration.test_orchestrate_unit import EXAMPLE, applier, tracker

RELEASES = "/opt/mxone/agent/releases"
SNAPSHOT = {"ok": True, "files": {}, "dirs": {}, "addresses": [], "running": True,
            "xdata": {"free": 10**12, "used": 0, "newest": {}}}


class ReleasePool(ssh.Pool):
    """Servers in ``has`` hold the release already; the others get it uploaded. Records the
    bootstrap's requests per server (``probe``, ``install``, ``remove``) and answers node
    operations from ``answers`` (op -> answer; ``ok`` by default)."""

    def __init__(self, tmp_path: Path, has: set[str], answers: Mapping[str, Any]) -> None:
        super().__init__(tmp_path / "kh", tmp_path / "key")
        self.has, self.answers = has, answers
        self.bootstrap: list[tuple[str, str]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.ops: list[tuple[str, str]] = []

    def connect_all(self, targets):  # type: ignore[no-untyped-def]
        return {}

    def put(self, target, path, data, mode=0o644):  # type: ignore[no-untyped-def]
        return ssh.Result(target.name, True, "", "", 0)

    def run(self, target, command, *, input=None, timeout=None):  # type: ignore[no-untyped-def]
        req = json.loads(input or "{}")
        if command.startswith("python3 -c "):
            kind = "remove" if req.get("remove") else "install" if req.get("upload") else "probe"
            self.bootstrap.append((target.name, kind))
            self.requests.append((target.name, req))
            answer = {"ok": True, "has": target.name in self.has,
                      "created": [] if target.name in self.has else [RELEASES]
                      } if kind == "probe" else {"ok": True, "removed": True}
        else:
            op = command.rsplit(" ", 1)[-1]
            self.ops.append((target.name, op))
            answer = self.answers.get(op, {"ok": True})
        return ssh.Result(target.name, True, json.dumps(answer), "", 0)

    def removed(self) -> list[str]:
        return sorted(name for name, kind in self.bootstrap if kind == "remove")


def test_a_refused_change_takes_back_the_release_it_unpacked(tmp_path: Path) -> None:
    pool = ReleasePool(tmp_path, has={"lim2"}, answers={
        "snapshot": SNAPSHOT, "net-inspect": {"ok": False, "error": "a netplan file"}})
    a = applier(tmp_path, pool)
    change = create()
    (tmp_path / "system.toml").write_text(EXAMPLE.read_text())
    store.save(tmp_path / "system.toml", change.before)
    result = a.apply(change, lambda line, f: None)
    assert not all(o.ok for o in result.outcomes)
    uploaded = sorted(n for n, kind in pool.bootstrap if kind == "install")
    assert uploaded and "lim2" not in uploaded
    assert pool.removed() == uploaded  # lim2 had it before: it keeps it
    removes = [r for _, r in pool.requests if r.get("remove")]
    assert all(r["releases"] == RELEASES and r["release"] == "0" * 12 and r["sha256"] == "0" * 64
               and r["dirs"] == [RELEASES] for r in removes)  # the dirs its probe made
    # Taken back: the next change probes again (and would upload again).
    reach = orchestrate.targets(change.before, change.after)
    assert not any(a.calls.uploaded(reach[n]) for n in uploaded)


def test_a_rollback_takes_it_back_except_where_the_rollback_is_journaled(
        tmp_path: Path) -> None:
    class Undo(orchestrate.SshApplier):
        def _undo(self, t: ssh.Target, plan: Mapping[str, Any]) -> ssh.Result:
            return ssh.Result(t.name, t.name != "lim3", error="no answer")

    pool = ReleasePool(tmp_path, has={"standby1"}, answers={})
    a = Undo(pool, tmp_path / "system.toml", applier(tmp_path).artefact,
             secrets_dir=tmp_path / "secrets", local_name="lim1", lock_path=tmp_path / "lock")
    change = create()
    reach = orchestrate.targets(change.before, change.after)
    nodes = {}
    for name in ("lim2", "lim3", "standby1", "lim1"):
        node = nodechange.Node(reach[name], None, None)
        node.snapshot = {"running": True}
        node.changed = name != "lim1"  # lim1: unpacked, then not changed (another failed)
        assert a.calls.ensure_release(reach[name]).ok
        nodes[name] = node
    result = a._roll_back(nodes, 5, 6, [], tracker())
    assert "ROLLBACK NOT FINISHED" in {o.server: o.message for o in result.outcomes}["lim3"]
    assert pool.removed() == ["lim1", "lim2"]  # not standby1 (had it), nor lim3 (journaled)


def test_a_successful_change_keeps_it(tmp_path: Path) -> None:
    pool = ReleasePool(tmp_path, has=set(), answers={})
    a = applier(tmp_path, pool)
    t = ssh.Target("lim2", ("10.77.0.12",))
    assert a.calls.ensure_release(t).ok and a.calls.uploaded(t)
    a.calls.keep_unpacked()
    assert not a.calls.remove_unpacked([t]) and pool.removed() == []
    assert [kind for _, kind in pool.bootstrap] == ["probe", "install"]


def test_a_catch_up_takes_it_back_where_the_server_is_not_brought_current(
        tmp_path: Path) -> None:
    class Fails(orchestrate.SshApplier):
        def _change_node(self, node, art, gen, tracker):  # type: ignore[no-untyped-def]
            return ssh.Result(node.target.name, node.target.name != "lim3", error="disk full")

    pool = ReleasePool(tmp_path, has=set(), answers={"snapshot": SNAPSHOT})
    a = Fails(pool, tmp_path / "system.toml", applier(tmp_path).artefact,
              secrets_dir=tmp_path / "secrets", local_name="lim1", lock_path=tmp_path / "lock")
    s = store.load(EXAMPLE).validated()
    store.save(tmp_path / "system.toml", s)
    a.keys.cluster_keys(s, []), a.keys.sync_keys(s, [])  # made with the cluster
    degraded.save_behind(a.behind_path, {n: {"has": s.generation - 1, "cluster": "north"}
                                         for n in ("lim2", "lim3")})
    outcomes = {o.server: o for o in a.catch_up(s)}
    assert outcomes["lim2"].ok and not outcomes["lim3"].ok
    assert "disk full" in outcomes["lim3"].message
    assert sorted(n for n, kind in pool.bootstrap if kind == "install") == ["lim2", "lim3"]
    assert pool.removed() == ["lim3"]  # lim2 runs it now; lim3 stays as it was
    assert not a.calls.remove_unpacked([ssh.Target("lim2", ("10.77.0.12",))])
