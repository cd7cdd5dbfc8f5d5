"""A node leaving its cluster (``mxone-agent leave``): its own LIM keeps running outside any
cluster on its alias, other LIMs are stopped, the fence goes - in that order."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mxone_agent import leave
from mxone_agent.network import RecordingNetwork

from tests.agent.builders import cluster_config


class Services:
    """The LIMs' service commands, modelled: ``running`` LIM numbers; records every call."""

    def __init__(self, running: set[int], start_fails: bool = False) -> None:
        self.running = set(running)
        self.start_fails = start_fails
        self.calls: list[tuple[str, int]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> int:
        verb, lim = argv[argv.index("service") + 1], int(argv[argv.index("--lim") + 1])
        self.calls.append((verb, lim))
        if verb == "status":
            return 0 if lim in self.running else 3
        if verb == "stop":
            self.running.discard(lim)
            return 0
        if self.start_fails:
            return 1
        self.running.add(lim)
        return 0


def test_a_regular_server_keeps_its_lim_running_on_its_alias(tmp_path) -> None:
    net = RecordingNetwork()
    run = Services(running=set())
    fence: list[str] = []
    lines = leave.leave(cluster_config("lim2"), {}, net, lambda: fence.append("released"),
                        run=run, run_dir=str(tmp_path))
    assert lines == ["fence removed: the addresses left answer as plain addresses",
                     "LIM 2 started on lim2 outside any cluster, at 10.77.0.12 (address added) "
                     "on eth0"]
    assert run.running == {2} and fence == ["released"]
    assert net.calls == [("unblock", 2), ("add_alias", "eth0", "10.77.0.12", 24),
                         ("garp", "eth0", "10.77.0.12", leave.GARP_COUNT)]


def test_a_running_lim_is_left_alone_and_announced(tmp_path) -> None:
    net = RecordingNetwork(aliases={("eth0", "10.77.0.12")})
    run = Services(running={2})
    lines = leave.leave(cluster_config("lim2"), {}, net, lambda: None, run=run,
                        run_dir=str(tmp_path))
    assert lines[-1] == "LIM 2 runs on lim2 outside any cluster, at 10.77.0.12 on eth0"
    assert ("start", 2) not in run.calls and ("eth0", "10.77.0.12") in net.aliases


def test_the_standby_stops_every_lim_before_the_fence_goes(tmp_path) -> None:
    net = RecordingNetwork(aliases={("eth0", "10.77.0.13")})
    run = Services(running={3})
    order: list[str] = []
    retired = {9: cluster_config(lims=((9, 1),)).lim(9)}
    run_before = run.__call__

    def traced(argv: Sequence[str], timeout: float) -> int:
        order.append(argv[argv.index("service") + 1])
        return run_before(argv, timeout)

    lines = leave.leave(cluster_config(), retired, net, lambda: order.append("fence"),
                        run=traced, run_dir=str(tmp_path))
    assert lines == ["LIM 3 stopped on sb and its alias 10.77.0.13 removed; it belongs to lim3",
                     "fence removed: the addresses left answer as plain addresses",
                     "sb runs no LIM"]
    assert run.running == set() and ("eth0", "10.77.0.13") not in net.aliases
    assert order.index("fence") > order.index("stop")
    assert ("status", 9) in run.calls  # the retired LIM is looked for too


def test_a_lim_that_does_not_start_is_reported(tmp_path) -> None:
    net = RecordingNetwork()
    with pytest.raises(leave.LeaveError, match="LIM 2 did not start on lim2 .exit status 1.; "
                       "its address 10.77.0.12 is up"):
        leave.leave(cluster_config("lim2"), {}, net, lambda: None,
                    run=Services(set(), start_fails=True), run_dir=str(tmp_path))
