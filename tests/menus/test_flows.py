from __future__ import annotations

from mxone_maintenance import actions
from tests.menus.conftest import apply, build_lims


def test_add_server_typed_in_by_keys(drive, maint):
    d = drive().open("Server in system", "Add a server to the system")
    assert "Server name" in d.flat and "Base IP/prefix" in d.flat and "LIM number" in d.flat
    d.type("lim1").keys("enter").type("10.0.2.11/24").keys("tab", "tab").type("1")
    d.keys("down", "enter")  # to Continue
    text = d.flat
    assert "This change will do:" in text
    assert "system: server lim1 (10.0.2.11/24 on eth0) joins the system as LIM server (LIM 1)" in text
    assert "lim1: write system config generation 1" in text
    assert "Apply this change?" in text
    d.yes()
    text = d.flat
    assert "Applied: system generation 1." in text
    assert "lim1 OK system config generation 1 written" in text
    assert "MX-ONE Maintenance Utility - lim1 - system generation 1" in text
    d.keys("enter")
    assert "1. Add a server to the system" in d.flat
    assert maint.system().server("lim1").lim == 1


def test_add_server_malformed_ip_stays_on_form(drive, maint):
    build_lims(maint, 1, standby=0)
    before = maint.path.read_bytes()
    d = drive().open("Server in system", "Add a server to the system")
    d.fill(name="lim2", base_ip="10.0.2.300/24", lim="2").submit()
    text = d.flat
    assert "Not accepted:" in text
    assert "server[lim2].base_ip = 10.0.2.300/24: not an IPv4 address" in text
    assert "(rule base-ip-syntax:" in text
    assert "Add a server to the system" in text and "Apply this change?" not in text
    assert maint.path.read_bytes() == before


def test_add_server_lim_number_not_a_number(drive, maint):
    d = drive().open("Server in system", "Add a server to the system")
    d.fill(name="x1", base_ip="10.0.2.11/24", lim="two").submit()
    assert "LIM number = two: a whole number from 1 to 124" in d.flat
    assert not maint.path.exists()


def test_no_on_the_plan_goes_back_to_the_form(drive, maint):
    d = drive().open("Server in system", "Add a server to the system")
    d.fill(name="f1", base_ip="10.0.2.40/24").submit()
    assert "joins the system as free server" in d.flat
    d.keys("enter")  # No has the focus
    assert "Server name" in d.flat
    assert not maint.path.exists()


def test_remove_server_offers_only_servers_outside_clusters(drive, maint):
    build_lims(maint, 2)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111")])
    d = drive().open("Server in system", "Remove a server from the system")
    assert "lim2 (10.0.2.12/24, LIM 2)" in d.flat
    assert "lim1 (" not in d.flat and "sb1 (" not in d.flat
    d.fill(server="lim2").submit()
    assert "server lim2 (10.0.2.12/24) leaves the system" in d.flat
    d.yes()
    assert "Applied" in d.flat
    assert [s.name for s in maint.system().servers] == ["lim1", "sb1"]


def test_convert_to_standby_offers_only_free_servers(drive, maint):
    build_lims(maint, 1, standby=0)
    apply(maint, actions.add_server, "f1", "10.0.2.61/24")
    d = drive().open("Standby server in system", "Convert a free server to standby server")
    assert "f1 (10.0.2.61/24, free)" in d.flat and "lim1 (" not in d.flat
    d.submit().yes()
    assert "Applied" in d.flat
    assert maint.system().server("f1").role == "standby"


def test_second_standby_beyond_lim_count_is_refused(drive, maint):
    build_lims(maint, 1, standby=1)
    apply(maint, actions.add_server, "f1", "10.0.2.61/24")
    before = maint.path.read_bytes()
    d = drive().open("Standby server in system", "Convert a free server to standby server")
    d.fill(server="f1").submit()
    assert "2 standby servers but 1 LIM servers in the system" in d.flat
    assert "rule cluster-count" in d.flat
    assert maint.path.read_bytes() == before


def test_no_free_server_is_a_message(drive, maint):
    d = drive().open("Standby server in system", "Convert a free server to standby server")
    assert "There is no free server." in d.flat
    d.keys("esc")
    assert "1. Convert a free server to standby server" in d.flat


def test_convert_standby_to_free(drive, maint):
    build_lims(maint, 1)
    d = drive().open("Standby server in system", "Convert a standby server to free server")
    d.submit().yes()
    assert "Applied" in d.flat and maint.system().server("sb1").role == "free"


def test_create_cluster_explains_new_ip_and_applies(drive, maint):
    build_lims(maint, 2)
    d = drive().open("Cluster handling", "Create new cluster in system")
    text = d.flat
    assert "becomes the server's base address and the old base address becomes" in text
    assert "no restart is needed" in text
    assert "new base IP of LIM 1" in text
    d.fill(name="north", use_1=True, ip_1="10.0.2.111", use_2=True, ip_2="10.0.2.112",
           prio_2="2", fallback="automatic").submit()
    text = d.flat
    assert "cluster north is created with standby sb1, fallback automatic" in text
    assert ("LIM 1 on lim1: base address becomes 10.0.2.111, the old base 10.0.2.11 "
            "becomes its alias (priority 1)") in text
    assert "older exchange-data versions (reload and system database data) are removed" in text
    d.yes()
    assert "Applied: system generation 5." in d.flat
    c = maint.system().cluster("north")
    assert c.lim_numbers() == (1, 2) and c.fallback == "automatic"


def test_create_cluster_new_ip_on_another_subnet_is_refused(drive, maint):
    build_lims(maint, 1)
    before = maint.path.read_bytes()
    d = drive().open("Cluster handling", "Create new cluster in system")
    d.fill(name="north", use_1=True, ip_1="10.9.9.9").submit()
    text = d.flat
    assert "cluster[north].lim[1].alias_ip = 10.0.2.11: not in base subnet 10.9.9.0/24" in text
    assert "rule alias-subnet" in text
    assert "Create new cluster in system" in text
    assert maint.path.read_bytes() == before


def test_create_cluster_malformed_new_ip(drive, maint):
    build_lims(maint, 1)
    before = maint.path.read_bytes()
    d = drive().open("Cluster handling", "Create new cluster in system")
    d.fill(name="north", use_1=True, ip_1="10.0.2").submit()
    assert "new base IP of LIM 1 = 10.0.2: not an IPv4 address" in d.flat
    assert maint.path.read_bytes() == before


def test_create_cluster_standby_taken_meanwhile(drive, maint):
    build_lims(maint, 2)
    d = drive().open("Cluster handling", "Create new cluster in system")
    apply(maint, actions.create_cluster, "south", "sb1", [actions.NewLim(2, "10.0.2.112")])
    before = maint.path.read_bytes()
    d.fill(name="north", use_1=True, ip_1="10.0.2.111").submit()
    assert "standby server sb1 is already in cluster south" in d.flat
    assert "rule standby-one-cluster" in d.flat
    assert maint.path.read_bytes() == before


def test_eleventh_lim_is_refused(drive, maint):
    build_lims(maint, 11)
    apply(maint, actions.create_cluster, "big", "sb1",
          [actions.NewLim(i, f"10.0.2.{110 + i}") for i in range(1, 11)])
    before = maint.path.read_bytes()
    d = drive().open("Cluster handling", "Add a LIM to existing cluster").pick("big")
    assert "LIM" in d.flat and "lim11 (10.0.2.21/24, LIM 11)" in d.flat
    d.fill(ip_new="10.0.2.121").submit()
    assert "11 LIMs (rule cluster-max-lims: a cluster can have up to ten LIMs)" in d.flat
    assert maint.path.read_bytes() == before


def test_lim_taken_by_another_cluster_meanwhile(drive, maint):
    build_lims(maint, 3, standby=2)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111")])
    apply(maint, actions.create_cluster, "south", "sb2", [actions.NewLim(2, "10.0.2.112")])
    d = drive().open("Cluster handling", "Add a LIM to existing cluster").pick("north")
    apply(maint, actions.add_lim, "south", actions.NewLim(3, "10.0.2.113"))
    before = maint.path.read_bytes()
    d.fill(lim=3, ip_new="10.0.2.123").submit()
    assert "LIM 3 is already in cluster north" in d.flat or "LIM 3 is already in cluster south" in d.flat
    assert "rule lim-one-cluster" in d.flat
    assert maint.path.read_bytes() == before


def test_preloaded_only_offers_one_lim_clusters_and_says_no_way_back(drive, maint):
    build_lims(maint, 3, standby=2)
    apply(maint, actions.create_cluster, "one", "sb1", [actions.NewLim(1, "10.0.2.111")])
    apply(maint, actions.create_cluster, "two", "sb2",
          [actions.NewLim(2, "10.0.2.112"), actions.NewLim(3, "10.0.2.113")])
    d = drive().open("Cluster handling", "Change failover behavior to preloaded")
    assert "one (LIMs 1;" in d.flat and "two (LIMs" not in d.flat
    assert "going back from preloaded means deleting the cluster" in d.flat
    d.pick("one")
    assert "going back from preloaded means deleting the cluster" in d.flat
    d.submit().yes()
    assert "Applied" in d.flat
    assert maint.system().cluster("one").failover == "preloaded"


def test_preloaded_with_two_lims_is_refused(drive, maint):
    build_lims(maint, 2)
    apply(maint, actions.create_cluster, "one", "sb1", [actions.NewLim(1, "10.0.2.111")])
    d = drive().open("Cluster handling", "Change failover behavior to preloaded").pick("one")
    apply(maint, actions.add_lim, "one", actions.NewLim(2, "10.0.2.112"))  # meanwhile
    before = maint.path.read_bytes()
    d.submit()
    assert "cluster[one].failover = preloaded: cluster has 2 regular LIMs" in d.flat
    assert "rule preloaded-1+1" in d.flat
    assert maint.path.read_bytes() == before


def test_remove_last_lim_says_the_cluster_goes(drive, maint):
    build_lims(maint, 1)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111")])
    d = drive().open("Cluster handling", "Remove a LIM from existing cluster").pick("north")
    assert "LIM 1 is the only LIM of north: removing it removes the cluster." in d.flat
    d.submit()
    assert "it was the last LIM: cluster north is removed" in d.flat
    d.yes()
    assert "Applied" in d.flat and maint.system().clusters == ()


def test_change_fallback_and_priority(drive, maint):
    build_lims(maint, 2)
    apply(maint, actions.create_cluster, "north", "sb1",
          [actions.NewLim(1, "10.0.2.111"), actions.NewLim(2, "10.0.2.112")])
    d = drive().open("Cluster handling", "Change fallback type or priority").pick("north")
    d.fill(fallback="automatic", prio_2="5").submit()
    assert "cluster north: fallback manual -> automatic" in d.flat
    assert "LIM 2: priority 1 -> 5" in d.flat
    d.yes()
    c = maint.system().cluster("north")
    assert c.fallback == "automatic" and c.cluster_lim(2).priority == 5


def test_change_nothing_is_refused(drive, maint):
    build_lims(maint, 1)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111")])
    before = maint.path.read_bytes()
    d = drive().open("Cluster handling", "Change fallback type or priority").pick("north")
    d.submit()
    assert "nothing to change: the values are the current ones" in d.flat
    d.fill(prio_1="500").submit()
    assert "must be a whole number from 0 to 99 (rule priority" in d.flat
    assert maint.path.read_bytes() == before


def test_delete_cluster(drive, maint):
    build_lims(maint, 1)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111")])
    d = drive().open("Cluster handling", "Delete cluster in system").pick("north")
    d.submit()
    assert "alias 10.0.2.11 becomes its base address again" in d.flat
    d.yes()
    assert maint.system().clusters == ()
    assert maint.system().server("lim1").base_ip == "10.0.2.11/24"


def test_no_cluster_yet_is_a_message(drive):
    d = drive().open("Cluster handling", "Delete cluster in system")
    assert "There is no cluster in the system yet." in d.flat


def test_preloaded_when_no_cluster_qualifies_names_each_cluster_and_the_rule(drive, maint):
    build_lims(maint, 2)
    apply(maint, actions.create_cluster, "two", "sb1",
          [actions.NewLim(1, "10.0.2.111"), actions.NewLim(2, "10.0.2.112")])
    d = drive().open("Cluster handling", "Change failover behavior to preloaded")
    assert ("No cluster qualifies: two has 2 LIMs (rule preloaded-1+1: preloaded failover is "
            "only for one regular and one standby server).") in d.flat


def test_forms_name_the_servers_they_leave_out_and_the_rule(drive, maint):
    build_lims(maint, 3, standby=2)
    apply(maint, actions.create_cluster, "one", "sb1", [actions.NewLim(1, "10.0.2.111")])
    d = drive().open("Cluster handling", "Create new cluster in system")
    flat = d.flat
    assert ("Not offered: sb1 (standby of cluster one); rule standby-one-cluster: a standby "
            "server belongs to one cluster only.") in flat
    assert ("Not offered: lim1 (LIM 1 in cluster one); rule lim-one-cluster: a LIM server "
            "belongs to one cluster only.") in flat
    assert "LIM 1 on lim1" not in flat and "LIM 2 on lim2" in flat
    d = drive().open("Cluster handling", "Add a LIM to existing cluster").pick("one")
    assert "Not offered: lim1 (LIM 1 in cluster one); rule lim-one-cluster" in d.flat


def test_add_server_empty_interface_is_refused_not_defaulted(drive, maint):
    d = drive().open("Server in system", "Add a server to the system")
    d.fill(name="x9", base_ip="10.0.2.40/24", interface="").submit()
    assert 'server[x9].interface = "": not a network interface name' in d.flat
    assert "Apply this change?" not in d.flat and not maint.path.exists()
