"""Show status refreshing itself, sync with a progress bar, host keys asked in the menus."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from mxone_maintenance import actions, ssh
from mxone_maintenance import operations as core_ops
from mxone_maintenance.service import Maintenance
from mxone_menus import app as app_module
from mxone_menus import views
from mxone_maintenance.hostkeys import AskingKnownHosts, HostKeyRefused
from mxone_menus.operations import AgentOperations
from mxone_menus.runner import InlineRunner
from tests.menus.conftest import ThreadRunner, apply, build_lims


def _cluster(maint: Maintenance) -> None:
    build_lims(maint, 2)
    apply(maint, actions.create_cluster, "north", "sb1",
          [actions.NewLim(1, "10.0.2.111"), actions.NewLim(2, "10.0.2.112")])


# ---- Show status refreshes itself ---------------------------------------------------------

class CountingStatus:
    def __init__(self) -> None:
        self.calls = 0

    def status(self):
        self.calls += 1
        return [f"north: answer number {self.calls}"]


def test_status_refreshes_on_its_timer_and_on_r_and_stops_on_esc(drive):
    ops, runner = CountingStatus(), InlineRunner()
    d = drive(ops, runner=runner, status_refresh=2.5).open("Cluster handling", "Show status")
    assert "north: answer number 1" in d.flat
    assert "refreshed at " in d.flat and "every 2.5 s; r refreshes now" in d.flat
    assert "r refresh now" in d.flat  # the key line
    assert [s for s, _fn in runner.timers] == [2.5]
    runner.fire()
    assert ops.calls == 2 and "north: answer number 2" in d.flat
    assert len(runner.timers) == 1  # the next one, only after the answer
    d.keys("r")
    assert ops.calls == 3 and "north: answer number 3" in d.flat and len(runner.timers) == 1
    d.keys("esc")
    assert "2. Show status" in d.flat and runner.timers == []
    assert runner.fire() == 0 and ops.calls == 3


def test_status_never_starts_a_refresh_while_one_runs(drive):
    ops, runner = CountingStatus(), ThreadRunner()
    d = drive(ops, runner=runner, status_refresh=1.0)
    d.open("Cluster handling", "Show status")
    runner.pump(lambda: isinstance(d.top, views.StatusView))
    gate = __import__("threading").Event()
    slow_calls = []

    def slow():
        slow_calls.append(1)
        gate.wait(5)
        return ["slow answer"]

    ops.status = slow
    d.keys("r")
    d.keys("r")  # while the first runs: refused with a word, no second request
    assert "A refresh is already running." in d.flat
    assert "refreshing ..." in d.flat
    gate.set()
    runner.pump(lambda: "slow answer" in d.flat)
    assert len(slow_calls) == 1


def test_status_refresh_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv("MXONE_STATUS_REFRESH", "7")
    assert app_module.status_refresh_default() == 7.0
    monkeypatch.setenv("MXONE_STATUS_REFRESH", "soon")
    assert app_module.status_refresh_default() == app_module.DEFAULT_STATUS_REFRESH
    monkeypatch.delenv("MXONE_STATUS_REFRESH")
    assert app_module.status_refresh_default() == 3.0


def test_status_not_available_does_not_refresh(drive):
    runner = InlineRunner()
    d = drive(runner=runner).open("Cluster handling", "Show status")
    assert "not available yet" in d.flat and runner.timers == []


# ---- Sync exchange data: progress per LIM, a result line per LIM ---------------------------

class CoreSync:
    """The core's ClusterOperations.sync contract: AgentAnswer per LIM, progress per LIM."""

    def __init__(self) -> None:
        self.progress_seen: list[tuple[int, int, str]] = []

    def sync(self, system, cluster, progress=None):
        c = system.cluster(cluster)
        answers = []
        for i, cl in enumerate(c.lims, start=1):
            server = system.server_for_lim(cl.lim).name
            ok = cl.lim != 2
            line = (f"LIM {cl.lim}: to-standby lim{cl.lim}-20261128T190000Z, 3 files 12.0 KiB "
                    f"in 0.4 s" if ok else f"LIM {cl.lim}: standby sb1 has no room for two versions")
            answers.append(core_ops.AgentAnswer(server, ok, line))
            if progress is not None:
                progress(i, len(c.lims), line)
                self.progress_seen.append((i, len(c.lims), line))
        return answers


def test_sync_shows_progress_and_a_result_line_per_lim(drive, maint):
    _cluster(maint)
    core = CoreSync()
    ops = AgentOperations(maint, core)
    runner = ThreadRunner()
    d = drive(ops, runner=runner)
    d.open("Cluster handling", "Sync exchange data within cluster").pick("north")
    assert "(LIMs 1, 2) and standby sb1 now?" in d.flat
    progress_lines: list[tuple[str, float]] = []
    d.yes()
    view = d.top
    assert isinstance(view, views.ProgressView)
    original = view.update
    view.update = lambda line, f: (progress_lines.append((line, f)), original(line, f))
    runner.pump(lambda: "Sync of exchange data" in d.flat)
    assert [f for _l, f in progress_lines] == [0.0, 0.0, 0.5, 1.0]
    assert progress_lines[1][0] == "syncing the exchange data of 2 LIM(s) with standby sb1"
    assert progress_lines[2][0].startswith("1/2  LIM 1: to-standby")
    text = d.flat
    assert "Sync of exchange data in cluster north: 1 of 2 LIM(s) OK." in text
    assert "lim1 OK LIM 1: to-standby lim1-20261128T190000Z, 3 files 12.0 KiB in 0.4 s" in text
    assert "lim2 FAILED LIM 2: standby sb1 has no room for two versions" in text
    assert len(core.progress_seen) == 2


def test_agent_operations_sync_without_progress_keeps_the_old_call(maint):
    _cluster(maint)

    class Old:
        def sync(self, system, cluster):
            return [core_ops.AgentAnswer("lim1", True, "LIM 1: up to date")]

    assert AgentOperations(maint, Old()).sync("north")[-1] == "lim1         OK      LIM 1: up to date"


# ---- host keys -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server_key() -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key_file(str(_keyfile()))


def _keyfile() -> Path:
    import subprocess
    import tempfile

    d = Path(tempfile.mkdtemp())
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "k")], check=True)
    return d / "k"


class ConnectingOps:
    """status() meets the server's host key as the SSH pool does, from the worker thread."""

    def __init__(self, known: AskingKnownHosts, key: paramiko.PKey) -> None:
        self.known, self.key = known, key

    def status(self):
        try:
            self.known.check("sb1", "10.0.2.51", self.key)
        except ssh.HostKeyError as exc:
            return [f"sb1: unreachable: {exc}"]
        return ["sb1: agent running"]


def _status_with_key(drive, tmp_path, key, answer_keys):
    known = AskingKnownHosts(tmp_path / "known_hosts")
    runner = ThreadRunner()
    d = drive(ConnectingOps(known, key), runner=runner, host_keys=known, status_refresh=0)
    d.open("Cluster handling", "Show status")
    runner.pump(lambda: isinstance(d.top, views.HostKeyView))
    shown = d.flat
    d.keys(*answer_keys)
    runner.pump(lambda: isinstance(d.top, views.StatusView))
    return known, shown, d.flat


def test_unknown_host_key_is_shown_and_accept_pins_it(drive, tmp_path, server_key):
    known, shown, after = _status_with_key(drive, tmp_path, server_key, ["left", "enter"])
    assert "The host key of server sb1 is not known yet." in shown
    assert "address: 10.0.2.51" in shown and "key type: ssh-ed25519" in shown
    assert f"fingerprint: {ssh.fingerprint(server_key)}" in shown
    assert "Accept this host key?" in shown and "[ Accept ]" not in shown
    assert "sb1: agent running" in after
    line = known.path.read_text()
    assert line == f"sb1,10.0.2.51 ssh-ed25519 {server_key.get_base64()}\n"
    known.check("sb1", "10.0.2.51", server_key)  # pinned: no question


@pytest.mark.parametrize("answer", [["enter"], ["esc"]], ids=["Refuse", "Esc"])
def test_unknown_host_key_refused_pins_nothing(drive, tmp_path, server_key, answer):
    known, _shown, after = _status_with_key(drive, tmp_path, server_key, answer)
    assert "refused by the operator; the key was not pinned and the action was cancelled" in after
    assert not known.path.exists()


def test_changed_host_key_is_refused_without_a_question(tmp_path, server_key):
    other = paramiko.Ed25519Key.from_private_key_file(str(_keyfile()))
    path = tmp_path / "known_hosts"
    path.write_text(f"sb1,10.0.2.51 ssh-ed25519 {other.get_base64()}\n")
    asked = []
    known = AskingKnownHosts(path, lambda u: asked.append(u) or True)
    with pytest.raises(ssh.ChangedHostKey, match="HOST KEY CHANGED"):
        known.check("sb1", "10.0.2.51", server_key)
    assert asked == [] and path.read_text().count("\n") == 1


def test_after_one_refusal_the_same_action_asks_no_more(tmp_path, server_key):
    asked = []
    known = AskingKnownHosts(tmp_path / "kh", lambda u: asked.append(u.server) and False)
    with pytest.raises(HostKeyRefused, match="refused by the operator"):
        known.check("sb1", "10.0.2.51", server_key)
    with pytest.raises(HostKeyRefused, match="another host key was refused in this action"):
        known.check("lim2", "10.0.2.12", server_key)
    assert asked == ["sb1"]
    with pytest.raises(ssh.UnknownHostKey):  # an alias address: the pool decides, no question
        known.check("lim2", "", server_key)


def test_inline_runner_cannot_ask_so_it_refuses(drive, tmp_path, server_key):
    known = AskingKnownHosts(tmp_path / "kh")
    d = drive(ConnectingOps(known, server_key), host_keys=known, status_refresh=0)
    d.open("Cluster handling", "Show status")
    assert "refused by the operator" in d.flat and not known.path.exists()


def test_entry_sorts_menu_options_from_commands():
    from mxone_menus import entry

    assert entry.menu_options([]) is not None
    o = entry.menu_options(["--config", "/x.toml", "--agent-artefact=/a.tgz", "--status-refresh", "1"])
    assert (o.config, o.agent_artefact, o.status_refresh) == ("/x.toml", "/a.tgz", 1.0)
    assert entry.menu_options(["cluster", "status"]) is None
    assert entry.menu_options(["--help"]) is None
    assert entry.menu_options(["--config", "x", "validate"]) is None


def test_tab_moves_by_whole_fields_past_radio_buttons(drive, maint):
    build_lims(maint, 2)
    d = drive().open("Cluster handling", "Create new cluster in system")
    form = d.top
    keys = [fw.field.key for fw in form.fields]

    def at() -> str:
        return keys[form.body.focus_position - 2]

    assert at() == "name"
    d.keys("tab")
    assert at() == "standby"
    d.keys("tab")
    assert at() == "fallback"
    d.keys("tab")  # past "automatic", the fallback's second button
    assert at() == "timers"
    d.keys("shift tab", "shift tab", "shift tab")
    assert at() == "name"
    d.type("c1").keys("enter")  # Enter in an edit: the next field
    assert at() == "standby"


def test_a_key_refused_on_the_status_screen_is_not_asked_again_by_its_refreshes(
        drive, tmp_path, server_key):
    known = AskingKnownHosts(tmp_path / "known_hosts")
    runner = ThreadRunner()
    d = drive(ConnectingOps(known, server_key), runner=runner, host_keys=known, status_refresh=1)
    d.open("Cluster handling", "Show status")
    runner.pump(lambda: isinstance(d.top, views.HostKeyView))
    d.keys("enter")  # Refuse has the focus
    runner.pump(lambda: isinstance(d.top, views.StatusView) and "refreshed at" in d.flat)
    assert "refused by the operator" in d.flat
    runner.timers.pop()()  # the automatic refresh
    runner.pump(lambda: "another host key was refused in this action" in d.flat)
    assert isinstance(d.top, views.StatusView)
    d.keys("esc").open("Show status")  # a new visit asks again
    runner.pump(lambda: isinstance(d.top, views.HostKeyView))
    d.keys("left", "enter")
    runner.pump(lambda: "sb1: agent running" in d.flat)
    assert known.path.read_text().startswith("sb1,10.0.2.51 ssh-ed25519 ")
