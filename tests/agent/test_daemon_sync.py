"""The daemon's side of exchange-data sync, in-process on loopback: ``ctl sync`` refusals
and its answer's shape, the ``sync`` section of status, backup and received notices."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxone_agent import daemon
from mxone_agent.control_client import ctl_request

from tests.agent.test_daemon import loopback_doc, start_agent_thread, stop_agent_thread


def start(tmp_path: Path, node: str, port: int) -> tuple[daemon.Agent, threading.Thread]:
    doc = loopback_doc(node, port=port)
    doc["sync"] = {"interval": 86400, "retry_min": 10, "retry_max": 600, "clock_bound": 2.0,
                   "timeout": 60, "key": str(tmp_path / "sync.key"),
                   "known_hosts": str(tmp_path / "known_hosts"), "user": "root",
                   "xdata_root": str(tmp_path / "xdata")}
    tmp_path.mkdir(parents=True, exist_ok=True)
    return start_agent_thread(tmp_path, doc)


@pytest.fixture
def agent_of(tmp_path: Path) -> Iterator:
    running: list[tuple[daemon.Agent, threading.Thread]] = []

    def make(node: str) -> daemon.Agent:
        port = 18000 + os.getpid() % 900 + len(running)
        running.append(start(tmp_path / node, node, port))
        return running[-1][0]

    yield make
    for agent, t in running:
        stop_agent_thread(agent, t)


def ask(agent: daemon.Agent, **req: object) -> dict:
    return ctl_request(agent.control_path, req)


def test_status_says_sync_is_off_without_the_key(agent_of) -> None:
    agent = agent_of("lim2")
    sync = ask(agent, cmd="status")["sync"]
    assert sync["enabled"] is False and sync["reason"].startswith("no sync key (")
    assert [row["lim"] for row in sync["lims"]] == [2]
    assert sync["lims"][0]["next_attempt"] is None


def test_ctl_sync_without_the_key_answers_per_lim_with_the_reason(agent_of) -> None:
    agent = agent_of("lim2")
    reply = ask(agent, cmd="sync")
    assert reply["ok"] is False
    [row] = reply["results"]
    assert row["lim"] == 2 and row["ok"] is False
    assert row["error"].startswith("sync is off on lim2: no sync key (")


def test_ctl_sync_on_the_standby_needs_a_lim(agent_of) -> None:
    agent = agent_of("sb")
    reply = ask(agent, cmd="sync")
    assert reply == {"ok": False, "results": [], "error": (
        "sb is the standby server of cluster cluster1 and regular for no LIM; order the sync "
        "on a regular server, or name the LIM")}
    assert ask(agent, cmd="sync", lim=9)["error"] == "LIM 9 is not in cluster cluster1"


def test_backup_and_received_notices_are_answered(agent_of) -> None:
    agent = agent_of("lim2")
    reply = ask(agent, cmd="backup", lim=2, version="lim2-20261128T100000.000000Z")
    assert reply["ok"] and reply["result"].startswith("sync is off: no sync key")
    reply = ask(agent, cmd="received", lim=2, version="lim2-20261128T100000.000000Z")
    assert reply == {"ok": True, "lim": 2,
                     "result": "new data noted; no preloaded service of it runs here"}
    assert ask(agent, cmd="backup", lim="x")["ok"] is False


def test_ctl_sync_is_answered_when_the_sync_raises_what_nobody_expected(
        agent_of, tmp_path: Path) -> None:
    """The sync function raising a TypeError (a bug, or a peer's answer nobody foresaw):
    ``ctl sync`` still gets its answer, and the sync alarm is raised with the reason."""
    agent = agent_of("lim2")
    (tmp_path / "lim2" / "sync.key").write_text("k")

    def broken(*args: object, **kw: object) -> None:
        raise TypeError("'NoneType' object is not subscriptable")

    agent.sync._sync = broken  # the sync function the worker calls
    reply = ask(agent, cmd="sync")
    assert reply["ok"] is False
    [row] = reply["results"]
    error = ("internal error of the sync worker while syncing LIM 2 with sb: TypeError: "
             "'NoneType' object is not subscriptable")
    assert (row["lim"], row["ok"], row["error"]) == (2, False, error)
    st = ask(agent, cmd="status")
    [alarm] = st["alarms"]
    assert alarm["code"] == "standby-sync-failed" and alarm["text"].endswith(error)
    assert st["sync"]["lims"][0]["failures"] == 1
