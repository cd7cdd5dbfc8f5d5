"""The watch between decisions: a LIM kept here through a split brain is announced again
the moment the other server lets it go (its copy may have pointed neighbours at itself)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from mxone_agent.config import NodeConfig, load_node_config
from mxone_agent.decide import LocalState
from mxone_agent.model import LimRun, Mode
from mxone_agent.service_watch import ServiceWatch

from tests.agent.builders import config_dict

CONFIG = load_node_config(config_dict("sb"))


class FakeExecutor:
    def __init__(self) -> None:
        self.announced: list[set[int]] = []

    def next_announce(self) -> float | None:
        return None

    def claims_ended(self, config: NodeConfig, lims: Collection[int]) -> int:
        self.announced.append(set(lims))
        return len(lims)


def watch() -> tuple[ServiceWatch, FakeExecutor]:
    def submit(kind: str, fn: Callable[[], Any]) -> None:
        if kind == "announce":
            fn()  # what the worker does, at once

    w = ServiceWatch(lambda: CONFIG, "/nonexistent", lambda n: None, submit)
    ex = FakeExecutor()
    w.executor = ex  # type: ignore[assignment]
    w._next_health_poll = w._next_mac_refresh = float("inf")  # only the announcements here
    return w, ex


def runs(*lims: int, mode: Mode = Mode.ACTIVE, fenced: bool = False) -> LocalState:
    return LocalState(runs=tuple(LimRun(n, mode, fenced=fenced) for n in lims))


def test_the_kept_lim_is_announced_once_the_other_copy_is_gone() -> None:
    w, ex = watch()
    w.due(1.0, runs(2), claimed=set())
    w.due(1.1, runs(2), claimed={2})  # split brain: the other side stops its copy
    w.due(1.2, runs(2), claimed={2})
    assert ex.announced == []  # not while the other copy still answers
    w.due(1.3, runs(2), claimed=set())
    assert ex.announced == [{2}]
    w.due(1.4, runs(2), claimed=set())
    assert ex.announced == [{2}]  # once


def test_the_side_that_stops_announces_nothing() -> None:
    w, ex = watch()
    w.due(1.0, runs(2), claimed={2})
    w.due(1.1, runs(), claimed={2})  # stopped here; the other keeps it
    w.due(1.2, runs(), claimed=set())
    assert ex.announced == []


def test_a_lim_not_answering_here_is_never_contested() -> None:
    """Preloaded (blocked) or fenced here, the other server's copy is the only one."""
    w, ex = watch()
    for local in (runs(2, mode=Mode.PRELOADED), runs(2, fenced=True)):
        w.due(1.0, local, claimed={2})
        w.due(1.1, local, claimed=set())
    assert ex.announced == []
