"""The watch between decisions: a LIM kept here while another server may answer for it too
(a split brain, its regular server cut off) is announced again the moment the other copy
is gone (it may have pointed neighbours at itself)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from mxone_agent.config import NodeConfig, load_node_config
from mxone_agent.service_watch import ServiceWatch, contested

from tests.agent.builders import (
    active,
    alive,
    config_dict,
    dead,
    fenced,
    local,
    passive,
    peers,
    unknown,
)

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


def test_the_kept_lim_is_announced_once_the_other_copy_is_gone() -> None:
    w, ex = watch()
    w.due(1.0, local(active(2)), disputed=frozenset())
    w.due(1.1, local(active(2)), disputed=frozenset({2}))  # split brain: the other side stops its copy
    w.due(1.2, local(active(2)), disputed=frozenset({2}))
    assert ex.announced == []  # not while the other copy still answers
    w.due(1.3, local(active(2)), disputed=frozenset())
    assert ex.announced == [{2}]
    w.due(1.4, local(active(2)), disputed=frozenset())
    assert ex.announced == [{2}]  # once


def test_the_side_that_stops_announces_nothing() -> None:
    w, ex = watch()
    w.due(1.0, local(active(2)), disputed=frozenset({2}))
    w.due(1.1, local(), disputed=frozenset({2}))  # stopped here; the other keeps it
    w.due(1.2, local(), disputed=frozenset())
    assert ex.announced == []


def test_a_lim_not_answering_here_is_never_contested() -> None:
    """Preloaded (blocked) or fenced here, the other server's copy is the only one."""
    w, ex = watch()
    for state in (local(passive(2)), local(fenced(2))):
        w.due(1.0, state, disputed=frozenset({2}))
        w.due(1.1, state, disputed=frozenset())
    assert ex.announced == []


def test_a_lim_is_contested_while_its_server_is_unheard_or_another_copy_answers() -> None:
    """LIM 2 (lim2's) and LIM 3 (lim3's) run here, on the standby."""
    here = local(active(2), active(3))
    assert contested(CONFIG, peers(alive("lim2"), alive("lim3")), here) == set()
    # lim2 dead or not heard: cut off, it may still answer for LIM 2 on its side
    assert contested(CONFIG, peers(dead("lim2"), alive("lim3")), here) == {2}
    assert contested(CONFIG, peers(unknown("lim2"), alive("lim3")), here) == {2}
    # lim3 heard and answering for LIM 3: a split brain
    assert contested(CONFIG, peers(alive("lim2"), alive("lim3", [active(3)])), here) == {3}
    # what does not answer here is never contested
    assert contested(CONFIG, peers(dead("lim2"), dead("lim3")),
                     local(passive(2), fenced(3))) == set()
