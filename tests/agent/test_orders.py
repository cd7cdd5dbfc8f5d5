"""The orders the agent keeps between decisions: when a fallback order ends."""

from __future__ import annotations

from mxone_agent.config import NodeConfig
from mxone_agent.orders import Orders

from tests.agent.builders import NOW, active, alive, cluster_config, fenced, local, peers


def pending_order() -> tuple[Orders, NodeConfig]:
    """A manual fallback order of LIM 2 on the standby, waiting for lim2 to finish loading."""
    cfg = cluster_config(fallback="manual")
    orders = Orders()
    reply, changed = orders.order_fallback(cfg, peers(alive("lim2", ready=False)),
                                           local(active(2), standby=True), 2, {"wait": 60}, NOW)
    assert reply["pending"] is True and changed
    return orders, cfg


def test_a_pending_order_outlives_a_lapsed_lease_of_its_lim() -> None:
    """The standby's loop stalled longer than the lease: LIM 2 is fenced, not gone (the next
    decision takes it again). The operator's order is not done, and stays pending."""
    orders, cfg = pending_order()
    views = peers(alive("lim2", ready=False))
    assert orders.drop_done(cfg, views, local(fenced(2), standby=True), NOW + 1) is False
    assert list(orders.fallback) == [2] and list(orders.ended) == []
    assert orders.into(local(fenced(2))).fallback_requests == {2}


def test_a_pending_order_is_done_once_its_lim_left_the_standby() -> None:
    orders, cfg = pending_order()
    assert orders.drop_done(cfg, peers(alive("lim2")), local(standby=True), NOW + 1) is True
    assert orders.fallback == {}
    assert [e["outcome"] for e in orders.ended] == ["done: LIM 2 no longer runs on sb"]


def test_a_pending_order_expires_after_its_wait() -> None:
    orders, cfg = pending_order()
    state = local(active(2), standby=True)
    assert orders.drop_done(cfg, peers(alive("lim2", ready=False)), state, NOW + 61) is True
    assert [e["outcome"] for e in orders.ended] == [
        "expired after 60 s: lim2 is alive but its agent is still loading"]
