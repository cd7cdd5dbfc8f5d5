from __future__ import annotations

import pytest

from mxone_maintenance import actions
from mxone_menus import tree
from tests.menus.conftest import apply, build_lims

CLUSTER_ACTIONS = [
    "List all clusters", "Show status", "Create new cluster in system",
    "Change fallback type or priority", "Change failover behavior to preloaded",
    "Add a LIM to existing cluster", "Remove a LIM from existing cluster",
    "Delete cluster in system", "Move LIM from standby to regular server", "Lock LIM to server",
    "Unlock LIM from server", "Sync exchange data within cluster",
]


def test_tree_mirrors_the_real_utility():
    main = tree.main_menu()
    assert [i.label for i in main.items] == [
        "Server in system", "Standby server in system", "Cluster handling", "Exit"]
    assert [i.label for i in main.items[2].items] == CLUSTER_ACTIONS
    for sub in main.items[:3]:
        for item in sub.items:
            assert item.help, item.label


def test_main_menu_screen(drive):
    d = drive()
    lines = d.app.screen((100, 30))
    assert lines[0].startswith("MX-ONE Maintenance Utility - lim1 - system generation 0")
    assert "1. Server in system  >" in d.text
    assert "4. Exit" in d.text
    assert lines[-1].strip() == "↑↓ move  1-9 choose  Enter select  Esc back  ? help  F1 help  ^X exit"


def test_cluster_handling_lists_twelve_actions_and_esc_goes_back(drive):
    d = drive().open("Cluster handling")
    for i, label in enumerate(CLUSTER_ACTIONS, start=1):
        assert f"{i}. {label}" in d.text
    d.keys("esc")
    assert "1. Server in system" in d.text and "Create new cluster" not in d.text
    d.keys("esc")
    assert "choose Exit to leave" in d.text


def test_help_for_the_focused_item(drive):
    d = drive().open("Cluster handling").keys(*["down"] * 4, "?")
    assert "Help" in d.text
    assert "Going back from preloaded means" in d.text
    d.keys("x")  # any key closes the help
    assert "Help" not in d.text.splitlines()[4]


def test_exit_ends_the_loop(drive):
    import urwid
    d = drive().keys("down", "down", "down")
    with pytest.raises(urwid.ExitMainLoop):
        d.keys("enter")
    assert d.app.exit_code == 0


def test_list_servers_and_clusters(drive, maint):
    build_lims(maint, 2)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111", 3)])
    d = drive().open("Server in system", "List servers")
    text = d.text
    assert "Server  Role     LIM  Base IP        Alias IP   Iface  Cluster  Prio  Lock" in text
    assert "lim1    lim      1    10.0.2.111/24  10.0.2.11  eth0   north    3     none" in text
    assert "sb1     standby       10.0.2.51/24" in text
    assert "3 server(s), system generation 5" in text
    d.keys("enter").keys("esc").open("Cluster handling", "List all clusters")
    text = d.text
    assert "Cluster  Server  Role     LIM  Base IP        Alias IP   Prio  Lock  Fallback  Failover  Timers" in text
    assert "north    lim1    regular  1    10.0.2.111/24  10.0.2.11  3     none  manual    regular   mxone" in text
    assert "north    sb1     standby" in text


def test_empty_system_lists_say_none(drive):
    d = drive().open("Server in system", "List servers")
    assert "(none)" in d.text


def test_config_file_unreadable_is_a_message_not_a_crash(drive, maint):
    maint.path.write_text("this is [ not toml")
    d = drive()
    assert "generation ? (the config file cannot be read)" in d.text
    d.open("Server in system", "List servers")
    assert "The system config cannot be used" in d.text
