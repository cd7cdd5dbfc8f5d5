"""A changed host key in the real menus: refused with the reason, never offered, nothing
changed. (An unknown key, refused then accepted, is part of the operator walk.)"""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import node_state

pytestmark = pytest.mark.lab


def test_changed_host_key_is_refused_never_offered_and_nothing_changes(lab, admin, tui_factory) -> None:
    admin.build_system()  # c1: LIMs 2 and 3, standby1, generation 6
    kh = lab.exec("lim1", ["cat", "/etc/mxone/known_hosts"]).stdout
    forged = kh.replace(lab.hosts["lim3"].host_key, lab.hosts["lim2"].host_key)
    lab.exec("lim1", "cat > /etc/mxone/known_hosts", input=forged)
    before = node_state(lab)

    t = tui_factory()
    t.open("Cluster handling", "Change fallback type or priority")
    t.pick("c1 (LIMs 2, 3")
    t.choose("automatic")
    t.submit()
    t.yes()
    t.wait_for(lambda s: "The change failed" in s.text or "Accept this host key?" in s.text,
               timeout=60)
    flat = t.flat
    assert "Accept this host key?" not in flat, t.dump()
    assert "lim3 FAILED server lim3 (10.77.0.53): HOST KEY CHANGED: pinned" in flat, t.dump()
    assert "remove the line for lim3 from /etc/mxone/known_hosts" in flat, t.dump()
    assert "/etc/mxone/system.toml not written: the system stays at generation 6" in flat
    assert t.generation() == 6
    assert t.exit() == 0
    assert node_state(lab) == before
    assert lab.exec("lim1", ["cat", "/etc/mxone/known_hosts"]).stdout == forged
