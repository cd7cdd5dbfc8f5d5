from __future__ import annotations

import pytest

from mxone_maintenance import actions
from mxone_menus import views
from tests.menus.conftest import apply, build_lims


class FakeOperations:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def status(self):
        return ["north: LIM 1 runs on lim1 (generation 5)"]

    def fallback(self, cluster, lim, **how):
        self.calls.append(("fallback", cluster, lim, *sorted(how.items())))
        if how.get("cancel"):
            return [f"sb1          OK      fallback of LIM {lim} cancelled; LIM {lim} stays on sb1"]
        if how.get("wait"):
            return [f"sb1          PENDING fallback of LIM {lim} waits for lim1 to be ready: "
                    "lim1 is not heard yet"]
        return [f"LIM {lim} is back on its regular server"]

    def sync(self, cluster, progress=None):
        raise RuntimeError("sb1 did not answer")

    def lock(self, cluster, lim, lock):
        self.calls.append(("lock", cluster, lim, lock))
        return [f"{cluster}: agents know LIM {lim} lock {lock}"]


def _cluster(maint):
    build_lims(maint, 1)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111")])


def test_show_status_not_available_yet(drive):
    d = drive().open("Cluster handling", "Show status")
    assert "Show status: not available yet: cluster status comes from the node agents" in d.flat
    d.keys("enter")
    assert "2. Show status" in d.flat


def test_show_status_with_operations(drive):
    d = drive(FakeOperations()).open("Cluster handling", "Show status")
    assert "north: LIM 1 runs on lim1 (generation 5)" in d.flat


def test_move_lim_back_not_available_yet_and_with_operations(drive, maint):
    _cluster(maint)
    d = drive().open("Cluster handling", "Move LIM from standby to regular server").pick("north")
    d.pick("LIM 1")
    assert "sb1 hands LIM 1 back only once lim1 is ready" in d.flat
    d.pick("Now")
    assert "Move LIM 1 from standby sb1 back to lim1 now (manual fallback)?" in d.flat
    d.yes()
    assert "not available yet: manual fallback of LIM 1 in cluster north" in d.flat
    ops = FakeOperations()
    d = drive(ops).open("Cluster handling", "Move LIM from standby to regular server")
    d.pick("north").pick("LIM 1").pick("Now").yes()
    assert "LIM 1 is back on its regular server" in d.flat and ops.calls == [("fallback", "north", 1)]


def test_fallback_may_wait_for_the_regular_server_and_be_cancelled(drive, maint):
    _cluster(maint)
    ops = FakeOperations()
    d = drive(ops).open("Cluster handling", "Move LIM from standby to regular server")
    d.pick("north").pick("LIM 1").pick("Wait up to 1 hour")
    assert "Order the fallback of LIM 1 from standby sb1 to lim1, waiting up to 1 hour" in d.flat
    d.yes()
    assert "PENDING fallback of LIM 1 waits for lim1 to be ready" in d.flat
    d = drive(ops).open("Cluster handling", "Move LIM from standby to regular server")
    d.pick("north").pick("LIM 1").pick("Cancel")
    assert "Cancel the pending fallback order of LIM 1 on sb1?" in d.flat
    d.yes()
    assert "fallback of LIM 1 cancelled; LIM 1 stays on sb1" in d.flat
    assert ops.calls == [("fallback", "north", 1, ("wait", 3600.0)),
                         ("fallback", "north", 1, ("cancel", True))]


def test_sync_failure_is_shown_not_raised(drive, maint):
    _cluster(maint)
    d = drive(FakeOperations()).open("Cluster handling", "Sync exchange data within cluster")
    d.pick("north").yes()
    assert "failed: sb1 did not answer" in d.flat


def test_lock_updates_config_and_reports_agents_not_available(drive, maint):
    _cluster(maint)
    d = drive().open("Cluster handling", "Lock LIM to server").pick("north")
    d.fill(lock="standby").submit()
    assert "LIM 1 is locked to the standby server" in d.flat
    assert "Then the cluster's agents are told." in d.flat
    d.yes()
    assert "Applied: system generation 5." in d.flat
    assert "Agents: not available yet: the agents of cluster north learn the lock" in d.flat
    assert maint.system().cluster("north").cluster_lim(1).lock == "standby"


def test_unlock_offers_locked_lims_and_tells_the_agents(drive, maint):
    _cluster(maint)
    d = drive().open("Cluster handling", "Unlock LIM from server").pick("north")
    assert "No LIM of cluster north is locked." in d.flat
    apply(maint, actions.set_lock, "north", 1, "regular")
    ops = FakeOperations()
    d = drive(ops).open("Cluster handling", "Unlock LIM from server").pick("north")
    d.submit().yes()
    assert "north: agents know LIM 1 lock none" in d.flat
    assert maint.system().cluster("north").cluster_lim(1).lock == "none"


def test_lock_same_lock_refused(drive, maint):
    _cluster(maint)
    apply(maint, actions.set_lock, "north", 1, "regular")
    before = maint.path.read_bytes()
    d = drive().open("Cluster handling", "Lock LIM to server").pick("north")
    d.submit()
    assert "lock = regular: LIM 1 already has this lock" in d.flat
    assert maint.path.read_bytes() == before


def test_apply_refused_when_system_moved_on(drive, maint):
    build_lims(maint, 1, standby=0)
    d = drive().open("Server in system", "Add a server to the system")
    d.fill(name="f1", base_ip="10.0.2.40/24").submit()
    apply(maint, actions.add_server, "f2", "10.0.2.41/24")  # meanwhile
    d.yes()
    assert "The change was NOT applied:" in d.flat and "the system changed meanwhile" in d.flat
    assert [s.name for s in maint.system().servers] == ["lim1", "f2"]


def test_progress_view_renders_bar_and_lines():
    v = views.ProgressView("Add a server to the system")
    v.update("lim1: writing /etc/mxone/system.toml", 0.5)
    text = "\n".join(line.decode() for line in v.render((60, 8), focus=True).text)
    assert "50 %" in text and "lim1: writing /etc/mxone/system.toml" in text
    assert v.on_back() is True  # Esc cannot abandon the work


def test_help_on_a_form_field_with_f1(drive):
    d = drive().open("Server in system", "Add a server to the system").keys("down", "f1")
    assert "Its base address with prefix, e.g. 10.0.2.11/24." in d.flat


def test_fallback_is_offered_and_ordered_only_for_manual_fallback_clusters(drive, maint):
    """The same rule as `cluster fallback` (tests/test_cli_subcommands.py): the command's."""
    build_lims(maint, 2, standby=2)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111")])
    apply(maint, actions.create_cluster, "south", "sb2", [actions.NewLim(2, "10.0.2.112")],
          fallback="automatic")
    d = drive(FakeOperations()).open("Cluster handling", "Move LIM from standby to regular server")
    assert "north (LIMs 1;" in d.flat and "south (" not in d.flat
    apply(maint, actions.change_fallback_or_priority, "north", "automatic")
    d = drive(FakeOperations()).open("Cluster handling", "Move LIM from standby to regular server")
    assert "There is no cluster for this action in the system." in d.flat
    # Reached without the pick list (the system changed meanwhile), the command refuses.
    from mxone_maintenance.operations import OperationError
    from mxone_menus.operations import AgentOperations

    with pytest.raises(OperationError, match="LIM = 1: cluster north has fallback type automatic"):
        AgentOperations(maint, None).fallback("north", 1)  # type: ignore[arg-type]
