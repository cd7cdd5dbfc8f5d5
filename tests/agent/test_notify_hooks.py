"""The notify hooks: which files run, in which order, with which environment, bounded in
time and output, and never blocking the one who submits an event."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path

import pytest

from mxone_agent import notify_hooks, paths
from mxone_agent.actions import AlarmCode
from mxone_agent.alarms import AlarmBook
from mxone_agent.model import Role
from mxone_agent.notify_hooks import HookEvent, HookRunner, Notifier
from mxone_agent.outcomes import Transition

from tests.agent.builders import cluster_config

ME = os.getuid()
EVENT = HookEvent(env={"MXONE_EVENT": "transition", "MXONE_LIM": "2"}, summary="test event")


def hook(d: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = d / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    d = tmp_path / "notify.d"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    return d


def runner(d: Path, **kw: object) -> HookRunner:
    return HookRunner(str(d), owner=ME, **kw)  # type: ignore[arg-type]


def gone(pid: int, timeout: float = 3.0) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie not yet reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_hooks_run_in_name_order_and_dot_files_are_left_out(hooks_dir: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "order"
    for name in ("20-b", "10-a", "30-c", ".swap"):
        hook(hooks_dir, name, f'echo {name} >> {out}')
    results = runner(hooks_dir).run_event(EVENT)
    assert out.read_text().split() == ["10-a", "20-b", "30-c"]
    assert [(r.name, r.result) for r in results] == [("10-a", "ok"), ("20-b", "ok"),
                                                     ("30-c", "ok")]


def test_the_environment_is_path_and_the_event_only(hooks_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    out = tmp_path / "env"
    hook(hooks_dir, "10-env", f"exec /usr/bin/env > {out}")
    runner(hooks_dir).run_event(EVENT)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    env.pop("PWD", None)  # the shell's own
    assert env == {"PATH": notify_hooks.HOOK_PATH, "MXONE_EVENT": "transition",
                   "MXONE_LIM": "2"}


def test_a_hook_past_its_timeout_is_killed_with_what_it_started(hooks_dir: Path,
                                                                tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    hook(hooks_dir, "10-slow", f"sleep 30 &\necho $! > {pid_file}\necho started\nsleep 30")
    hook(hooks_dir, "20-next", "echo after")
    t0 = time.monotonic()
    slow, after = runner(hooks_dir, timeout=0.5).run_event(EVENT)
    assert time.monotonic() - t0 < 5
    assert slow.timed_out and slow.result == "timeout" and slow.output == "started"
    assert gone(int(pid_file.read_text()))  # its background child went with its group
    assert after.result == "ok" and after.output == "after"  # the next one still ran


def test_a_hook_that_exits_is_not_waited_for_beyond_its_exit(hooks_dir: Path) -> None:
    """A background child that keeps the output open does not hold the runner up."""
    hook(hooks_dir, "10-bg", "sleep 3 >/dev/null 2>&1 &\necho quick")
    t0 = time.monotonic()
    [r] = runner(hooks_dir, timeout=5).run_event(EVENT)
    assert r.result == "ok" and r.output == "quick" and time.monotonic() - t0 < 2


def test_output_is_kept_bounded_and_failures_are_warned(hooks_dir: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    hook(hooks_dir, "10-loud", "head -c 10000 /dev/zero | tr '\\0' x\necho; echo oops >&2\n"
                               "exit 3")
    with caplog.at_level(logging.INFO, "mxone_agent"):
        [r] = runner(hooks_dir, output_kept=100).run_event(EVENT)
    assert r.returncode == 3 and r.result == "failed"
    assert r.output == "x" * 100 + " ... (9906 more bytes)"
    [rec] = [x for x in caplog.records if "10-loud" in x.getMessage()]
    assert rec.levelno == logging.WARNING and "failed (exit 3)" in rec.getMessage()
    hook(hooks_dir, "10-loud", "printf 'one\\033[2J\\rtwo\\nthree\\n'")
    [r] = runner(hooks_dir).run_event(EVENT)
    assert r.output == "one?[2J | two | three"  # one log line, no control characters


@pytest.mark.parametrize("make, rule", [
    (lambda d: hook(d, "10-x", "true", 0o644), "it is not executable"),
    (lambda d: hook(d, "10-x", "true", 0o775), "lets group or others write it"),
    (lambda d: hook(d, "10-x", "true", 0o757), "lets group or others write it"),
    (lambda d: (d / "10-x").symlink_to(hook(d.parent, "target", "true")),
     "it is a symbolic link"),
    (lambda d: (d / "10-x").mkdir(), "it is not a regular file"),
])
def test_untrusted_files_are_refused_with_the_file_and_the_rule(
        hooks_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, make, rule) -> None:
    make(hooks_dir)
    out = tmp_path / "ran"
    hook(hooks_dir, "20-ok", f"echo ok >> {out}")
    r = runner(hooks_dir)
    with caplog.at_level(logging.WARNING, "mxone_agent"):
        assert [x.name for x in r.run_event(EVENT)] == ["20-ok"]
        r.run_event(EVENT)
    warned = [x.getMessage() for x in caplog.records]
    assert len(warned) == 1, warned  # once, not at every event
    assert str(hooks_dir / "10-x") in warned[0] and rule in warned[0]
    assert out.read_text().split() == ["ok", "ok"] and r.counts.refused == 2


@pytest.mark.skipif(ME != 0, reason="needs root to give a file away")
def test_a_hook_not_owned_by_root_is_refused(hooks_dir: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    os.chown(hook(hooks_dir, "10-x", "true"), 65534, 65534)
    with caplog.at_level(logging.WARNING, "mxone_agent"):
        assert HookRunner(str(hooks_dir)).run_event(EVENT) == []
    assert "owned by uid 65534, not root" in caplog.text


def test_a_directory_others_may_write_runs_nothing(hooks_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "ran"
    hook(hooks_dir, "10-ok", f"echo ok >> {out}")
    hooks_dir.chmod(0o777)
    with caplog.at_level(logging.WARNING, "mxone_agent"):
        assert runner(hooks_dir).run_event(EVENT) == []
    assert not out.exists()
    assert f"notify directory {hooks_dir} is not used" in caplog.text


def test_no_directory_no_hooks(tmp_path: Path) -> None:
    assert runner(tmp_path / "absent").run_event(EVENT) == []
    assert HookRunner(None).submit(EVENT)


def test_a_full_queue_drops_counts_and_warns_once(hooks_dir: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    r = runner(hooks_dir, queue_size=2)  # not started: nothing takes events out
    with caplog.at_level(logging.WARNING, "mxone_agent"):
        t0 = time.monotonic()
        assert [r.submit(EVENT) for _ in range(50)] == [True, True] + [False] * 48
        assert time.monotonic() - t0 < 0.5  # never blocks
    assert r.counts.dropped == 48
    assert len(caplog.records) == 1 and "dropped" in caplog.text


def test_the_worker_thread_runs_submitted_events(hooks_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    hook(hooks_dir, "10-log", f'echo "$MXONE_LIM" >> {out}')
    r = runner(hooks_dir)
    r.start()
    try:
        for lim in ("1", "2", "3"):
            r.submit(HookEvent(env={"MXONE_LIM": lim}, summary=f"event {lim}"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and r.counts.runs["ok"] < 3:
            time.sleep(0.02)
    finally:
        r.stop()
    assert out.read_text().split() == ["1", "2", "3"]


# ---- the events -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind, role, expect", [
    ("failover", Role.STANDBY, ("lim2", "sb")),
    ("fallback", Role.STANDBY, ("sb", "lim2")),
    ("fallback", Role.REGULAR, ("sb", "lim2")),
    ("split-brain", Role.STANDBY, ("sb", "lim2")),
    ("stop", Role.REGULAR, ("lim2", "")),
    ("start", Role.REGULAR, ("", "lim2")),
    ("reload", Role.STANDBY, ("sb", "sb")),
    ("something new", Role.STANDBY, ("", "")),
])
def test_from_and_to_of_each_kind(kind: str, role: Role, expect: tuple[str, str]) -> None:
    here = "sb" if role is Role.STANDBY else "lim2"
    assert notify_hooks.moved(kind, role, here, "lim2", "sb") == expect


def failover(lim: int = 2) -> Transition:
    return Transition(lim=lim, kind="failover", reason="lim2 missed 3 heartbeats; sb takes "
                      "LIM 2 over.", detected="2026-12-02T10:00:00.000Z",
                      decided="2026-12-02T10:00:00.010Z", alias_up="2026-12-02T10:00:00.050Z",
                      first_garp="2026-12-02T10:00:00.060Z")


def test_a_transitions_environment() -> None:
    cfg = cluster_config("sb")
    env = notify_hooks.transition_event(cfg, failover(), cfg.lim(2)).env
    assert {k: v for k, v in env.items() if k not in ("MXONE_TIME", "MXONE_TIMELINE")} == {
        "MXONE_EVENT": "transition", "MXONE_CLUSTER": "cluster1", "MXONE_SERVER": "sb",
        "MXONE_LIM": "2", "MXONE_REASON": "lim2 missed 3 heartbeats; sb takes LIM 2 over.",
        "MXONE_KIND": "failover", "MXONE_FROM": "lim2", "MXONE_TO": "sb",
        "MXONE_RESULT": "ok", "MXONE_ERROR": ""}
    assert json.loads(env["MXONE_TIMELINE"]) == {
        "detected": "2026-12-02T10:00:00.000Z", "decided": "2026-12-02T10:00:00.010Z",
        "alias_up": "2026-12-02T10:00:00.050Z", "first_garp": "2026-12-02T10:00:00.060Z"}
    assert env["MXONE_TIME"].endswith("Z")


def test_an_alarms_environment(tmp_path: Path) -> None:
    book = AlarmBook(None, None, use_syslog=False)
    seen: list[tuple[str, str]] = []
    cfg = cluster_config("sb")
    book.on_change = lambda a, state: seen.append(
        (state, json.dumps(dict(notify_hooks.alarm_event(cfg, a, state).env), sort_keys=True)))
    book.raise_(AlarmCode.LIM_ON_STANDBY, 2, "LIM 2 runs on sb")
    book.clear(AlarmCode.LIM_ON_STANDBY, 2)
    raised, cleared = (json.loads(e) for _, e in seen)
    assert raised["MXONE_ALARM"] == "lim-running-on-standby" and raised["MXONE_LIM"] == "2"
    assert raised["MXONE_ALARM_STATE"] == "raised" and raised["MXONE_SEVERITY"] != "0"
    assert raised["MXONE_REASON"] == "LIM 2 runs on sb" and raised["MXONE_EVENT"] == "alarm"
    assert cleared["MXONE_ALARM_STATE"] == "cleared" and cleared["MXONE_SEVERITY"] == "0"
    assert cleared["MXONE_ALARM_HANDLE"] == raised["MXONE_ALARM_HANDLE"]


def test_a_listener_that_fails_does_not_fail_the_alarm() -> None:
    book = AlarmBook(None, None, use_syslog=False)

    def broken(alarm: object, state: str) -> None:
        raise RuntimeError("bug")

    book.on_change = broken
    assert book.raise_(AlarmCode.LIM_ON_STANDBY, 2, "x").lim == 2
    assert book.active_keys() == {(AlarmCode.LIM_ON_STANDBY, 2)}


def test_only_the_transitions_recorded_within_the_block_are_notified() -> None:
    kept: deque[Transition] = deque(maxlen=3)
    kept.extend([failover(1), failover(2)])
    r = HookRunner(None)
    submitted: list[HookEvent] = []
    r.submit = submitted.append  # type: ignore[method-assign, assignment]
    cfg = cluster_config("sb")
    notifier = Notifier(lambda: cfg, cfg.lim, None, runner=r)
    with notifier.watching(kept):
        kept.extend([failover(3), failover(4)])  # the bounded record drops the oldest
    assert [e.env["MXONE_LIM"] for e in submitted] == ["3", "4"]
    empty: deque[Transition] = deque(maxlen=2)
    with notifier.watching(empty):
        empty.extend([failover(2), failover(3), failover(4)])  # more than it keeps
    assert [e.env["MXONE_LIM"] for e in submitted[2:]] == ["3", "4"]


@pytest.mark.skipif(ME != 0, reason="the agent runs hooks owned by root only")
def test_the_agent_runs_its_hooks_on_an_alarm(hooks_dir: Path, tmp_path: Path) -> None:
    from mxone_agent import daemon
    from mxone_agent.network import RecordingNetwork

    from tests.agent.test_daemon import loopback_doc, write_files

    out = tmp_path / "ran"
    hook(hooks_dir, "10-log", f'echo "$MXONE_EVENT $MXONE_ALARM $MXONE_ALARM_STATE" >> {out}')
    cfg, sec = write_files(tmp_path, loopback_doc("lim2"))
    agent = daemon.Agent(cfg, sec, str(tmp_path / "state"), str(tmp_path / "a.sock"),
                         RecordingNetwork, alarm_file=None, notify_dir=str(hooks_dir),
                         metrics_file=None)
    agent.hooks.start()
    try:
        agent.alarms.raise_(AlarmCode.STANDBY_OUT_OF_ORDER, None, "sb is dead")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not out.exists():
            time.sleep(0.02)
    finally:
        agent.hooks.stop()
    assert out.read_text() == "alarm standby-out-of-order raised\n"


def test_run_hands_the_notify_dir_and_the_metrics_file_to_the_agent(monkeypatch) -> None:
    from mxone_agent import agent_log, daemon, main
    from mxone_agent.errors import AgentError

    given: dict[str, object] = {}
    # The agent's logger as the other tests have it: no handler of run's own.
    monkeypatch.setattr(agent_log, "set_up", lambda dest: logging.NullHandler())

    def agent(*args: object, **kwargs: object) -> None:
        given.update(kwargs)
        raise AgentError("stop here")
    monkeypatch.setattr(daemon, "Agent", agent)
    code = main.main(["run", "--log", "stderr", "--notify-dir", "/srv/hooks",
                      "--metrics-file", "/srv/textfile/mxone.prom"])
    assert code != 0
    assert (given["notify_dir"], given["metrics_file"]) == ("/srv/hooks",
                                                             "/srv/textfile/mxone.prom")
    main.main(["run", "--log", "stderr"])
    assert (given["notify_dir"], given["metrics_file"]) == (paths.NOTIFY_DIR,
                                                             paths.METRICS_TEXTFILE)
