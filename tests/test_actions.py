"""The maintenance actions as pure functions: results, effects, and refusals."""

from __future__ import annotations

import pytest

from mxone_maintenance import actions
from mxone_maintenance.actions import ActionError, NewLim
from mxone_maintenance.errors import ValidationError
from mxone_maintenance.model import ClusterLim, Server, System


def bare_system() -> System:
    return System(generation=1, servers=(
        Server("lim1", "10.0.2.11/24", "eth0", "lim", 1),
        Server("lim2", "10.0.2.12/24", "eth0", "lim", 2),
        Server("lim3", "10.0.2.13/24", "eth0", "lim", 3),
        Server("spare", "10.0.2.20/24", "eth0", "free"),
    ))


def with_cluster() -> System:
    s = actions.convert_to_standby(bare_system(), "spare").after
    return actions.create_cluster(s, "north", "spare", [NewLim(2, "10.0.2.32", 1),
                                                          NewLim(3, "10.0.2.33", 2)]).after


def test_add_and_remove_server() -> None:
    s = bare_system()
    ch = actions.add_server(s, "lim4", "10.0.2.14/24", lim=4)
    assert ch.after.generation == 2
    assert ch.after.server("lim4").role == "lim"
    assert ch.effects == ("server lim4 (10.0.2.14/24 on eth0) joins the system as LIM server (LIM 4)",)
    assert actions.remove_server(ch.after, "lim4").after.servers == s.servers


def test_add_server_refusals_name_the_field() -> None:
    with pytest.raises(ActionError, match="name = lim1: a server with this name is already"):
        actions.add_server(bare_system(), "lim1", "10.0.2.99/24")
    with pytest.raises(ValidationError, match="unique-address"):
        actions.add_server(bare_system(), "x", "10.0.2.11/24")
    with pytest.raises(ValidationError, match="base-ip-syntax"):
        actions.add_server(bare_system(), "x", "10.0.2.311/24")


def test_create_cluster_swaps_base_and_alias() -> None:
    s = with_cluster()
    c = s.cluster("north")
    assert c.standby == ("spare",)
    assert c.lims == (ClusterLim(2, "10.0.2.12", 1), ClusterLim(3, "10.0.2.13", 2))
    assert s.server("lim2").base_ip == "10.0.2.32/24"
    assert s.server("lim3").base_ip == "10.0.2.33/24"
    assert s.generation == 3


def test_create_cluster_effects_and_xdata() -> None:
    s = actions.convert_to_standby(bare_system(), "spare").after
    ch = actions.create_cluster(s, "north", "spare", [NewLim(2, "10.0.2.32", 1)])
    assert ch.removes_old_xdata
    assert "LIM 2 on lim2: base address becomes 10.0.2.32, the old base 10.0.2.12 becomes its alias" \
        in "\n".join(ch.effects)
    assert "older exchange-data versions" in ch.effects[-1]


def test_create_cluster_refusals() -> None:
    s = actions.convert_to_standby(bare_system(), "spare").after
    with pytest.raises(ValidationError, match="standby-role"):
        actions.create_cluster(bare_system(), "north", "spare", [NewLim(2, "10.0.2.32")])
    with pytest.raises(ValidationError, match="alias-subnet"):
        actions.create_cluster(s, "north", "spare", [NewLim(2, "10.0.3.32")])
    with pytest.raises(ActionError, match="new base IP of LIM 2 = 10.0.2: not an IPv4"):
        actions.create_cluster(s, "north", "spare", [NewLim(2, "10.0.2")])
    with pytest.raises(ActionError, match="LIM = 9: no LIM server"):
        actions.create_cluster(s, "north", "spare", [NewLim(9, "10.0.2.39")])
    with pytest.raises(ValidationError, match="unique-address"):
        actions.create_cluster(s, "north", "spare", [NewLim(2, "10.0.2.13")])


def test_second_cluster_cannot_take_the_same_standby_or_lim() -> None:
    s = with_cluster()
    s = actions.add_server(s, "sb2", "10.0.2.21/24").after
    s = actions.convert_to_standby(s, "sb2").after
    with pytest.raises(ValidationError, match="standby-one-cluster"):
        actions.create_cluster(s, "south", "spare", [NewLim(1, "10.0.2.31")])
    with pytest.raises(ValidationError, match="lim-one-cluster"):
        actions.create_cluster(s, "south", "sb2", [NewLim(2, "10.0.2.42")])


def test_eleventh_lim_is_refused() -> None:
    s = bare_system()
    for n in range(4, 13):
        s = actions.add_server(s, f"lim{n}", f"10.0.2.{n + 50}/24", lim=n).after
    s = actions.convert_to_standby(s, "spare").after
    s = actions.create_cluster(s, "big", "spare", [NewLim(n, f"10.0.2.{n + 100}") for n in range(1, 11)]).after
    with pytest.raises(ValidationError, match="cluster-max-lims"):
        actions.add_lim(s, "big", NewLim(11, "10.0.2.111"))


def test_remove_lim_restores_base_and_last_lim_removes_cluster() -> None:
    s = with_cluster()
    ch = actions.remove_lim(s, "north", 2)
    assert ch.after.server("lim2").base_ip == "10.0.2.12/24"
    assert ch.after.cluster("north").lim_numbers() == (3,)
    ch2 = actions.remove_lim(ch.after, "north", 3)
    assert ch2.after.clusters == ()
    assert "it was the last LIM: cluster north is removed" in ch2.effects


def test_delete_cluster_restores_every_base() -> None:
    s = with_cluster()
    after = actions.delete_cluster(s, "north").after
    assert after.clusters == ()
    assert [x.base_ip for x in after.servers] == [x.base_ip for x in actions.convert_to_standby(
        bare_system(), "spare").after.servers]
    assert actions.convert_to_free(after, "spare").after.server("spare").role == "free"


def test_convert_refusals() -> None:
    s = with_cluster()
    with pytest.raises(ActionError, match="is the standby of cluster north"):
        actions.convert_to_free(s, "spare")
    with pytest.raises(ActionError, match="only a free server can become standby"):
        actions.convert_to_standby(s, "lim1")
    with pytest.raises(ActionError, match="is in cluster north"):
        actions.remove_server(s, "lim2")


def test_fallback_priority_preloaded_and_locks() -> None:
    s = with_cluster()
    ch = actions.change_fallback_or_priority(s, "north", fallback="automatic", priorities={3: 0})
    assert ch.after.cluster("north").fallback == "automatic"
    assert ch.after.cluster("north").cluster_lim(3).priority == 0
    with pytest.raises(ActionError, match="nothing to change"):
        actions.change_fallback_or_priority(s, "north", fallback="manual")
    with pytest.raises(ValidationError, match="preloaded-1\\+1"):
        actions.change_to_preloaded(s, "north")
    one = actions.remove_lim(s, "north", 3).after
    pre = actions.change_to_preloaded(one, "north")
    assert pre.after.cluster("north").failover == "preloaded"
    assert "to undo, delete the cluster" in pre.effects[0]
    with pytest.raises(ActionError, match="is preloaded"):
        actions.add_lim(pre.after, "north", NewLim(3, "10.0.2.33"))
    locked = actions.set_lock(s, "north", 2, "regular")
    assert locked.after.cluster("north").cluster_lim(2).lock == "regular"
    assert locked.effects == ("LIM 2 is locked to its regular server",)
    with pytest.raises(ValidationError, match="choice"):
        actions.set_lock(s, "north", 2, "sideways")
