"""Degraded changes: which changes may leave an unreachable server behind, the plan and the
refusal that name it, the behind marks on LIM 1, and the catch-up that brings it current.

No network: the applier's per-node steps are replaced by recorders (the real ones run in
tests/orchestration/test_degraded_lab.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from mxone_maintenance import actions, cli, degraded, orchestrate, ssh, store
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.service import Maintenance
from tests.menus.conftest import Driver
from tests.orchestration.test_orchestrate_unit import StubPool, no_checks, system


class Recording(orchestrate.SshApplier):
    """An SshApplier whose node steps are recorded instead of run over SSH."""

    def __init__(self, tmp_path: Path, unreachable: tuple[str, ...] = (),
                 fail: tuple[str, ...] = ()) -> None:
        self.stub = StubPool(tmp_path, unreachable)
        art = SimpleNamespace(release="test-release", sha256="0" * 64)
        super().__init__(self.stub, tmp_path / "system.toml", lambda: art,  # type: ignore[arg-type,return-value]
                         secrets_dir=tmp_path / "secrets", local_name="lim1",
                         lock_path=tmp_path / "apply.lock", checks=no_checks)
        self.fail = set(fail)
        self.changed: list[tuple[str, int, str]] = []
        self.undone: list[tuple[str, int]] = []

    def _call(self, target, op, request, timeout=None, command=None):  # type: ignore[no-untyped-def]
        return ssh.Result(target.name, True, stdout=json.dumps({"ok": True}))

    def _change_node(self, node, art, gen1, tracker):  # type: ignore[no-untyped-def]
        node.changed = True
        if node.target.name in self.fail:
            node.error = "agent reports generation: no answer"
            return ssh.Result(node.target.name, False, error=node.error)
        assert node.config is not None
        self.changed.append((node.target.name, gen1, str(node.config.lims[0].lock)))
        return ssh.Result(node.target.name, True)

    undo_fails = False

    def _undo(self, t, plan):  # type: ignore[no-untyped-def]
        self.undone.append((t.name, plan["generation"]))
        return ssh.Result(t.name, not self.undo_fails, error="restore: disk full"
                          if self.undo_fails else "")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "system.toml"
    store.save(path, system())
    return path


def unlock_lim2(path: Path):  # type: ignore[no-untyped-def]
    s = store.load(path).validated()
    return actions.set_lock(s, "north", 2, "none" if s.cluster("north").cluster_lim(2).lock
                            != "none" else "regular")


# ---- which changes, and the words ----------------------------------------------------

def test_only_changes_that_recover_or_make_safer_may_leave_a_server_behind() -> None:
    s = system()
    down = {"lim2": "server lim2 unreachable: no answer"}
    for change in (actions.set_lock(s, "north", 3, "regular"),
                   actions.change_fallback_or_priority(s, "north", "automatic"),
                   actions.remove_lim(s, "north", 3)):
        assert change.degradable
        assert orchestrate.degraded_problem(change, down) is None
    preloaded = actions.add_server(s, "lim4", "10.77.0.34/24", "eth0", 4)
    assert not preloaded.degradable
    assert orchestrate.degraded_problem(preloaded, down) == (
        "lim2 unreachable; this change needs every server of the system reachable (only lock, "
        "unlock, fallback type or priority, remove LIM, delete cluster and remove server can "
        "be made while a server is down)")
    assert orchestrate.degraded_problem(preloaded, {}) is None


def test_a_server_that_leaves_its_cluster_must_be_reached() -> None:
    s = system()
    down = {"lim2": "no answer"}
    assert "lim2 unreachable and leaves its cluster" in orchestrate.degraded_problem(
        actions.remove_lim(s, "north", 2), down)
    assert "leaves its cluster" in orchestrate.degraded_problem(
        actions.delete_cluster(s, "north"), down)
    assert orchestrate.degraded_problem(actions.remove_lim(s, "north", 3),
                                        {"standby1": "no answer"}) == (
        "standby1 unreachable: LIM 3 leaves cluster north and its standby must be told to let "
        "it go (else it takes LIM 3 over while lim3 runs it outside the cluster); remove the "
        "LIM once standby1 can be reached")
    every = {"lim2": "x", "lim3": "x", "standby1": "x"}
    assert orchestrate.degraded_problem(actions.set_lock(s, "north", 2, "regular"), every) == (
        "lim2, lim3, standby1 unreachable: no server of the change can be reached")


def test_the_plan_names_the_servers_and_what_they_miss() -> None:
    change = actions.set_lock(system(), "north", 2, "regular")
    down = {"lim2": "server lim2 unreachable: 10.77.0.32: timed out"}
    [step] = orchestrate.degraded_plan(change, down)
    assert step.server == "lim2"
    assert step.what == ("UNREACHABLE (server lim2 unreachable: 10.77.0.32: timed out): misses "
                         "generation 2 (LIM 2 lock none -> regular); marked behind, brought to "
                         "the current generation the next time the tool reaches it")


# ---- apply --------------------------------------------------------------------------

def test_unconfirmed_the_change_stops_with_nothing_changed_and_says_how(cfg: Path,
                                                                        tmp_path: Path) -> None:
    a = Recording(tmp_path, unreachable=("lim2",))
    before = cfg.read_bytes()
    result = a.apply(actions.set_lock(system(), "north", 2, "regular"), lambda *_: None)
    assert not result.ok and result.generation == 1
    msg = {o.server: o.message for o in result.outcomes}["lim2"]
    assert msg.startswith("server lim2 unreachable: 10.77.0.11: no answer (this change can be "
                          "made without it: it then misses this change, is marked behind")
    assert "confirm that with --degraded on the command line, or the second confirmation" in msg
    assert msg.endswith("nothing was changed")
    assert a.changed == [] and cfg.read_bytes() == before and a.behind() == {}


def test_confirmed_the_reachable_servers_get_it_and_the_missing_one_is_marked(
        cfg: Path, tmp_path: Path) -> None:
    a = Recording(tmp_path, unreachable=("lim2",))
    change = actions.set_lock(system(), "north", 2, "regular")
    change = actions.Change(change.before, change.after, change.effects, False, True, ("lim2",))
    result = a.apply(change, lambda *_: None)
    assert result.ok and result.generation == 2
    assert sorted(n for n, _g, _l in a.changed) == ["lim3", "standby1"]
    out = {o.server: o.message for o in result.outcomes}
    assert out["lim2"].startswith("BEHIND: missed generation 2 (LIM 2 lock none -> regular")
    assert store.load(cfg).generation == 2
    assert a.behind() == {"lim2": {"has": 1, "cluster": "north", "missed": [
        "generation 2: LIM 2 lock none -> regular (unreachable: server lim2 unreachable: "
        "10.77.0.11: no answer)"]}}
    assert stat.S_IMODE(os.stat(a.behind_path).st_mode) == 0o600
    lines = orchestrate.behind_lines(a.behind(), 2)
    assert lines[0].startswith("BEHIND: lim2 has generation 1, the system is at 2 (missed: ")

    # A second degraded change: lim2 still has generation 1 and misses both.
    unlock = unlock_lim2(cfg)
    unlock = actions.Change(unlock.before, unlock.after, unlock.effects, False, True, ("lim2",))
    assert a.apply(unlock, lambda *_: None).ok
    mark = a.behind()["lim2"]
    assert mark["has"] == 1 and len(mark["missed"]) == 2

    # The next change that reaches lim2 brings it current and clears its mark.
    a.stub.unreachable.clear()
    a.changed.clear()
    assert a.apply(unlock_lim2(cfg), lambda *_: None).ok
    assert ("lim2", 4, "regular") in a.changed
    assert a.behind() == {} and not a.behind_path.exists()


def test_confirmed_for_another_server_only_is_not_degraded(cfg: Path, tmp_path: Path) -> None:
    a = Recording(tmp_path, unreachable=("lim2", "lim3"))
    change = actions.set_lock(system(), "north", 2, "regular")
    change = actions.Change(change.before, change.after, change.effects, False, True, ("lim2",))
    result = a.apply(change, lambda *_: None)
    assert not result.ok and a.changed == [] and a.behind() == {}
    assert store.load(cfg).generation == 1


def test_a_failure_on_a_reachable_server_rolls_all_back_and_marks_nobody(
        cfg: Path, tmp_path: Path) -> None:
    a = Recording(tmp_path, unreachable=("lim2",), fail=("lim3",))
    change = actions.set_lock(system(), "north", 2, "regular")
    change = actions.Change(change.before, change.after, change.effects, False, True, ("lim2",))
    result = a.apply(change, lambda *_: None)
    assert not result.ok and result.generation == 1
    assert {n for n, _g in a.undone} == {"lim3", "standby1"}
    assert {o.server: o.message for o in result.outcomes}["lim2"] == (
        "unreachable, not changed (stays at generation 1)")
    assert a.behind() == {} and store.load(cfg).generation == 1


# ---- catch-up -----------------------------------------------------------------------

def behind_lim2(cfg: Path, tmp_path: Path) -> Recording:
    a = Recording(tmp_path, unreachable=("lim2",))
    change = actions.set_lock(system(), "north", 2, "regular")
    change = actions.Change(change.before, change.after, change.effects, False, True, ("lim2",))
    assert a.apply(change, lambda *_: None).ok
    a.changed.clear()
    return a


def test_catch_up_brings_a_server_that_answers_again_to_the_current_generation(
        cfg: Path, tmp_path: Path) -> None:
    a = behind_lim2(cfg, tmp_path)
    [still] = a.catch_up(store.load(cfg).validated())
    assert not still.ok and still.message.startswith("BEHIND: still unreachable")
    assert a.changed == [] and "lim2" in a.behind()
    a.stub.unreachable.clear()
    [done] = a.catch_up(store.load(cfg).validated())
    assert done.ok and done.message == "was behind: brought to generation 2 (it had 1)"
    assert a.changed == [("lim2", 2, "regular")] and a.behind() == {}
    assert a.catch_up(store.load(cfg).validated()) == []


def test_catch_up_that_fails_puts_the_server_back_and_keeps_it_behind(
        cfg: Path, tmp_path: Path) -> None:
    a = behind_lim2(cfg, tmp_path)
    a.stub.unreachable.clear()
    a.fail = {"lim2"}
    [out] = a.catch_up(store.load(cfg).validated())
    assert not out.ok and "put back as it was; stays behind" in out.message
    assert a.undone == [("lim2", 1)] and "lim2" in a.behind()


def test_catch_up_never_deploys_a_cluster_key_made_for_it_alone(cfg: Path,
                                                                 tmp_path: Path) -> None:
    a = behind_lim2(cfg, tmp_path)
    for f in a.secrets_dir.iterdir():
        f.unlink()
    a.stub.unreachable.clear()
    [out] = a.catch_up(store.load(cfg).validated())
    assert not out.ok and out.message.startswith("BEHIND, refused: the cluster keys of its "
                                                 "cluster are missing in")
    assert a.changed == [] and not a.secrets_dir.exists() and "lim2" in a.behind()


def test_catch_up_waits_for_an_unfinished_rollback(cfg: Path, tmp_path: Path) -> None:
    a = behind_lim2(cfg, tmp_path)
    a.journal.keep("lim2", {"generation": 1, "snapshot": {}})
    a.stub.unreachable.clear()
    a.undo_fails = True
    [out] = a.catch_up(store.load(cfg).validated())
    assert not out.ok and out.message == ("BEHIND: an earlier rollback is unfinished here and "
                                          "still fails: restore: disk full; stays behind")
    assert a.changed == [] and "lim2" in a.behind() and "lim2" in a.pending_rollbacks()
    a.undo_fails = False
    [out] = a.catch_up(store.load(cfg).validated())
    assert out.ok and a.pending_rollbacks() == {} and a.behind() == {}


def test_catch_up_refuses_a_server_that_changed_cluster_meanwhile(cfg: Path,
                                                                  tmp_path: Path) -> None:
    a = behind_lim2(cfg, tmp_path)
    marks = a.behind()
    marks["lim2"]["cluster"] = "south"
    degraded.save_behind(a.behind_path, marks)
    a.stub.unreachable.clear()
    [out] = a.catch_up(store.load(cfg).validated())
    assert not out.ok and out.message == (
        "BEHIND, refused: lim2 fell behind in cluster south and is in cluster north now: not "
        "brought current; remove it from its cluster and add it again")
    assert a.changed == [] and "lim2" in a.behind()


def test_catch_up_waits_while_a_change_runs_or_when_the_config_moved_on(
        cfg: Path, tmp_path: Path) -> None:
    import fcntl

    a = behind_lim2(cfg, tmp_path)
    a.stub.unreachable.clear()
    old = system()  # generation 1: the config moved on to 2
    assert a.catch_up(old) == []
    with open(a.lock_path, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert a.catch_up(store.load(cfg).validated()) == []
    assert a.changed == [] and "lim2" in a.behind()


def test_a_damaged_marks_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "behind.json"
    path.write_text("[1, 2]")
    with pytest.raises(MxoneError, match="behind.json: not an object of server marks"):
        orchestrate.load_behind(path)
    path.write_text("{")
    with pytest.raises(MxoneError, match="behind.json: unreadable"):
        orchestrate.load_behind(path)


# ---- CLI: the flag ------------------------------------------------------------------

class _Backend:
    def __init__(self, applier: Recording) -> None:
        self.maintenance = Maintenance(applier.config_path, applier)
        self.operations = None
        self.pool = applier.stub

    def close(self) -> None:
        pass


def test_cli_refuses_without_the_flag_naming_the_server_and_the_flag(
        cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from mxone_maintenance import operations

    a = Recording(tmp_path, unreachable=("lim2",))
    monkeypatch.setattr(operations, "backend", lambda *_a, **_k: _Backend(a))
    before = cfg.read_bytes()
    code = cli.main(["cluster", "set", "north", "--fallback", "automatic", "--config", str(cfg)])
    out = capsys.readouterr().out
    assert code == cli.EXIT_FAILED
    assert "NOT applied: the system stays at generation 1." in out
    assert "lim2         FAILED  server lim2 unreachable: 10.77.0.11: no answer (this change " in out
    assert "confirm that with --degraded on the command line" in out
    assert cfg.read_bytes() == before and a.changed == [] and a.behind() == {}

    # --degraded for a change that needs every server: refused, naming the flag and the rule
    code = cli.main(["server", "add", "lim4", "10.77.0.34/24", "--lim", "4", "--degraded",
                     "--config", str(cfg)])
    assert code == cli.EXIT_REFUSED
    assert "refused: --degraded: this change needs every server of the system reachable" in \
        capsys.readouterr().err
    assert cfg.read_bytes() == before

    code = cli.main(["cluster", "set", "north", "--fallback", "automatic", "--degraded",
                     "--config", str(cfg)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "lim2         UNREACHABLE (server lim2 unreachable" in out
    assert "lim3         agent reloads" in out and "lim2         agent reloads" not in out
    assert "DEGRADED: lim2 cannot be reached and will miss this change (confirmed by --degraded)" in out
    assert "lim2         OK      BEHIND: missed generation 2" in out
    assert store.load(cfg).cluster("north").fallback == "automatic"
    assert list(a.behind()) == ["lim2"]

    code = cli.main(["cluster", "list", "--config", str(cfg)])
    assert "BEHIND: lim2 has generation 1, the system is at 2" in capsys.readouterr().out


# ---- menus: the second confirmation -------------------------------------------------

def test_menu_asks_a_second_time_naming_the_server_and_what_it_misses(
        cfg: Path, tmp_path: Path) -> None:
    a = Recording(tmp_path, unreachable=("lim2",))
    m = Maintenance(cfg, a)
    d = Driver(m).open("Cluster handling", "Lock LIM to server").pick("north")
    d.fill(lim=2, lock="regular").submit()
    assert "DEGRADED: lim2 cannot be reached:" in d.flat
    assert "Apply this change?" in d.flat
    assert "lim3: agent reloads; it must report generation 2" in d.flat
    assert "lim2: agent reloads" not in d.flat  # lim2 shows what it misses instead
    d.yes()
    assert "lim2 cannot be reached now and will MISS this change:" in d.flat
    assert "misses generation 2 (LIM 2 lock none -> regular)" in d.flat
    assert "Make this change without lim2?" in d.flat
    assert store.load(cfg).generation == 1 and a.changed == []
    d.keys("enter")  # No (the focus): back to the plan, nothing changed
    assert "Apply this change?" in d.flat and store.load(cfg).generation == 1
    d.yes().yes()
    assert "Applied: system generation 2." in d.flat
    assert "BEHIND: missed generation 2" in d.flat
    assert store.load(cfg).cluster("north").cluster_lim(2).lock == "regular"
    assert list(a.behind()) == ["lim2"]


def test_menu_show_status_brings_a_server_behind_current_and_names_those_still_behind(
        cfg: Path, tmp_path: Path) -> None:
    from mxone_maintenance import operations
    from mxone_menus.operations import AgentOperations

    class Status:
        def status(self, s):  # type: ignore[no-untyped-def]
            return operations.SystemStatus(s.generation, ())

    a = behind_lim2(cfg, tmp_path)
    ops = AgentOperations(Maintenance(cfg, a), Status())
    lines = list(ops.status())
    assert lines[0].startswith("lim2: BEHIND: still unreachable")
    assert lines[-1].startswith("BEHIND: lim2 has generation 1, the system is at 2")
    a.stub.unreachable.clear()
    lines = list(ops.status())
    assert lines[0] == "lim2: was behind: brought to generation 2 (it had 1)"
    assert not any("BEHIND" in line for line in lines)
    assert a.changed == [("lim2", 2, "regular")]


def test_a_server_with_a_changed_host_key_is_not_unreachable(cfg: Path) -> None:
    """A server that answers with another key than the pinned one is refused by the change
    itself (HOST KEY CHANGED), never left behind as if it were down."""
    changed = ssh.HostKeyError("server lim3 (10.77.0.53): HOST KEY CHANGED: pinned ...")
    down = ssh.SshError("server lim2 unreachable: 10.77.0.52: no answer")
    pool = SimpleNamespace(connect_all=lambda targets: (list(targets), {"lim2": down,
                                                                       "lim3": changed})[1])
    applier = SimpleNamespace(pool=pool)
    got = orchestrate.SshApplier.unreachable(applier, unlock_lim2(cfg))  # type: ignore[arg-type]
    assert got == {"lim2": "server lim2 unreachable: 10.77.0.52: no answer"}
