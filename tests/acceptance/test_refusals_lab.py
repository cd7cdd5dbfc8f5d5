"""The rest of the issue's bad input in the real menus: an 11th LIM, a second standby and a
server already in another cluster, preloaded with two LIMs, an unreachable server. Each
shows the rule (or, where a form cannot even offer the choice, names what it leaves out and
the rule why), and nothing changes on any node or in LIM 1's config. (A changed host key:
test_host_keys_lab.py.)"""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import DOWN, Tui, node_state

pytestmark = pytest.mark.lab

# lim1..lim3 are the lab's hosts; lim4..lim11 exist only in the config (no form gets as far
# as reaching them: the rule refuses first).
ELEVEN = "generation = 1\n" + "".join(
    f'\n[[server]]\nname = "lim{i}"\nbase_ip = "10.77.0.{ip}/24"\ninterface = "eth0"\n'
    f'role = "lim"\nlim = {i}\n'
    for i, ip in [(1, 11), (2, 12), (3, 13)] + [(n, 60 + n) for n in range(4, 12)]
) + '\n[[server]]\nname = "standby1"\nbase_ip = "10.77.0.20/24"\ninterface = "eth0"\nrole = "standby"\n'


def reveal(t: Tui, text: str, moves: int = 60) -> None:
    """Scroll the form down (Down keys, bounded) until ``text`` is on the screen."""
    for _ in range(moves):
        t.pump()
        if text in t.text:
            return
        t.send(DOWN)
    raise AssertionError(f"{text!r} not reached:\n" + t.dump())


def test_an_eleventh_lim_is_refused_by_the_rule(lab, tui_factory) -> None:
    lab.exec("lim1", "mkdir -p /etc/mxone && cat > /etc/mxone/system.toml", input=ELEVEN)
    before = node_state(lab)
    t = tui_factory()
    t.wait_for("1. Server in system")
    t.open("Cluster handling", "Create new cluster in system")
    t.field("Cluster name", "big")
    for n in range(1, 12):
        reveal(t, f"LIM {n} on lim{n}")
        t.tick(f"LIM {n} on lim{n}")
        reveal(t, f"new base IP of LIM {n}")
        t.field(f"new base IP of LIM {n}", f"10.77.0.{120 + n}")
    reveal(t, "< Continue")
    t.submit()
    t.wait_for("Not accepted:")
    flat = t.flat
    assert ("cluster[big].lim = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]: 11 LIMs (rule "
            "cluster-max-lims: a cluster can have up to ten LIMs)") in flat, t.dump()
    assert "Apply this change?" not in flat
    assert t.exit() == 0
    assert node_state(lab) == before


def test_taken_servers_preloaded_and_an_unreachable_server(lab, admin, tui_factory) -> None:
    admin.build_system(clusters=False)
    lab.exec("lim1", "cat >> /etc/mxone/known_hosts", input=lab.hosts["client"].known_hosts_line + "\n")
    admin.run("server", "add", "client", lab.hosts["client"].cidr, check=True)
    admin.run("standby", "convert", "client", check=True)
    admin.run("cluster", "create", "c1", "--standby", "standby1", "--lim", "2:10.77.0.52",
              "--lim", "3:10.77.0.53", "--timers", "fast", check=True)
    before = node_state(lab)
    t = tui_factory()
    t.wait_for("1. Server in system")

    # a second standby for c1, or LIM 2 or 3 in another cluster: the form does not offer
    # them, and says which and why
    t.open("Cluster handling", "Create new cluster in system")
    t.wait_for("< Continue")
    flat = t.flat
    assert ("Not offered: standby1 (standby of cluster c1); rule standby-one-cluster: a standby "
            "server belongs to one cluster only.") in flat, t.dump()
    assert ("Not offered: lim2 (LIM 2 in cluster c1), lim3 (LIM 3 in cluster c1); rule "
            "lim-one-cluster: a LIM server belongs to one cluster only.") in flat, t.dump()
    assert "LIM 2 on lim2" not in flat and "LIM 1 on lim1" in flat

    # an unreachable server: LIM 1 with the free standby, lim1 itself reachable, client cut
    lab.faults.cut("client")
    t.field("Cluster name", "c2")
    t.tick("LIM 1 on lim1")
    t.field("new base IP of LIM 1", "10.77.0.51")
    t.submit()
    t.yes()
    t.wait_for("The change failed on some servers", timeout=90)
    flat = t.flat
    assert "client FAILED server client unreachable: 10.77.0.100: no answer" in flat, t.dump()
    assert "nothing was changed" in flat
    assert "lim1 FAILED /etc/mxone/system.toml not written: the system stays at generation 8" in flat
    assert t.generation() == 8
    lab.faults.restore("client")
    t.back_to_main()

    # preloaded with two LIMs
    t.open("Cluster handling", "Change failover behavior to preloaded")
    t.wait_for("No cluster qualifies")
    assert ("No cluster qualifies: c1 has 2 LIMs (rule preloaded-1+1: preloaded failover is "
            "only for one regular and one standby server).") in t.flat, t.dump()
    assert t.exit() == 0
    assert node_state(lab) == before
