"""webserver_config's menus rendered headless at 100x30, driven by keys, against the
recording peer and stack (tests.web.fakes)."""

from __future__ import annotations

import json

from mxone_web import manager, settings
from mxone_web.stack.api import PairRole
from mxone_web.tui import WebApp

from tests.menus import conftest as menus_conftest
from tests.web import fakes
from tests.web.builders import settings as pair_settings

GOOD = "Xk8#pq2Lz!mR"
REPL = "Tr4in-Sh3d-Vault"


class Driver(menus_conftest.Driver):
    """The menus' test driver (keys, screen text, forms), on webserver_config's app."""

    def __init__(self, web) -> None:
        self.web = web
        self.app = WebApp(web, hostname="sb" if web.node_json.exists() and
                          web.pair().role is PairRole.STANDBY else "lim1")


def test_redundancy_when_lim1_is_in_no_cluster(tmp_path):
    w = fakes.web(tmp_path)
    w.node_json.unlink()
    d = Driver(w)
    text = d.flat
    assert "MX-ONE Web Server Configuration - lim1" in text and "Configure web server" in text
    assert ("1. Redundancy (not available: Server redundancy must be set first: LIM 1 is not in "
            "a cluster") in text
    d.keys("enter")
    assert "Server redundancy must be set first: LIM 1 is not in a cluster" in d.flat
    assert "↑↓ move" in d.flat or "Enter back to menu" in d.flat


def test_the_master_configuration_screen_by_screen(tmp_path):
    w = fakes.web(tmp_path, answered={"10.77.0.60": {"02:00:00:00:00:60"}})
    d = Driver(w)
    assert "1. Redundancy" in d.flat and "2. Considerations and limitations" in d.flat
    d.keys("enter")
    assert "Set up PM/SNM redundancy on this server, lim1: the master (it runs LIM 1)." in d.flat
    assert "Continue?" in d.flat
    d.yes()
    text = d.flat
    assert "System is automatically fetching details of master and its standby" in text
    assert "Master: lim1 10.77.0.11 (runs LIM 1)" in text and "Standby: sb 10.77.0.20" in text
    d.yes()
    # mxone_manager's password, twice, with pwquality's own refusals
    assert "Enter the new or existing password for mxone_manager" in d.flat
    d.fill(password="abc", again="abc").submit()
    assert "BAD PASSWORD: The password is shorter than 8 characters" in d.flat
    assert "*" * 3 in d.flat and "abc" not in d.flat.split("Not accepted")[0]
    d.fill(password="abcdefgh", again="abcdefgh").submit()
    assert "BAD PASSWORD: The password fails the dictionary check - it is too simplistic" in d.flat
    d.fill(password=GOOD, again=GOOD).submit()
    # the standby's sudo password: a wrong one is refused, nothing changed, the form stays
    assert "sudo password of sb" in d.flat and "[sudo] password:" in d.flat
    d.fill(admin="admin", sudo="Wr0ng").submit()
    assert "login of admin on sb refused with the password given; nothing was changed" in d.flat
    assert "mxone_manager" not in w.peer.passwords and w.locals == []
    d.fill(admin="admin", sudo="Adm1n-Pass").submit()
    assert "password of mxone_manager set on lim1" in d.flat
    assert "password of mxone_manager set on sb" in d.flat
    d.keys("enter")
    assert "Configuring silent login between lim1 and sb" in d.flat
    d.yes()
    assert "silent login mxone_manager@lim1 -> mxone_manager@sb: works" in d.flat
    d.keys("enter")
    assert "sb: mxone-snm-7.0.0.0.58" in d.flat
    d.keys("enter")
    # the virtual IP: one in use is refused, the form stays
    assert "Virtual IP" in d.flat and "A free address of 10.77.0.0/24" in d.flat
    d.fill(vip="10.77.0.60").submit()
    assert "virtual IP = 10.77.0.60: in use: answered on eth0 by 02:00:00:00:00:60" in d.flat
    d.fill(vip="10.77.1.5").submit()
    assert "not in the cluster's subnet 10.77.0.0/24" in d.flat
    d.fill(vip="10.77.0.50").submit()
    assert "Replication user name:" in d.flat
    d.fill(user="replicator", password=REPL, again=REPL).submit()
    assert "configure keepalived (virtual IP 10.77.0.50)" in d.flat and "Configure now?" in d.flat
    d.yes()
    text = d.flat
    assert "Redundancy: master configuration: done" in text
    assert "lim1: configured as master" in text
    assert "The active server answers at http://10.77.0.50/mp" in text
    assert "Next: run webserver_config > Redundancy on the standby sb." in text
    assert "Protocol changes, authentication changes and certificate changes" in text
    assert settings.load(w.settings_path).vip.exploded == "10.77.0.50"
    d.keys("enter")
    assert "1. Redundancy" in d.flat


def test_the_standby_configuration_refuses_a_mismatch_then_restarts(tmp_path):
    peer = fakes.Peer("lim1", passwords={"mxone_manager": GOOD})
    fakes.master_answers_on(peer, pair_settings())
    w = fakes.web(tmp_path, node="sb", peer=peer)
    d = Driver(w).keys("enter")
    assert "the standby of LIM 1's cluster" in d.flat
    assert "The master configuration must be done first, on lim1." in d.flat
    d.yes().yes()
    d.fill(password=GOOD).submit()
    assert "Configuring silent login between sb and lim1" in d.flat
    d.yes()
    assert "silent login mxone_manager@sb -> mxone_manager@lim1: works" in d.flat
    d.keys("enter")
    d.fill(vip="10.77.0.50").submit()
    assert "Retype password" not in d.flat  # asked once on the standby
    d.fill(user="replicator", password="Wr0ng-Repl-Pass").submit()
    assert "replication password: differs from the one given on the master (lim1)" in d.flat
    d.fill(user="other", password=REPL).submit()
    assert "replication user = other: differs from the master's (lim1) replicator" in d.flat
    d.fill(user="replicator", password=REPL).submit()
    text = d.flat
    assert "Re-start webserver now?" in text and "SNM" in text
    d.yes()
    assert "sb: configured as standby" in d.flat
    assert settings.load(w.settings_path).role is PairRole.STANDBY


def configured(tmp_path):
    w = fakes.web(tmp_path)
    settings.save(pair_settings(), w.settings_path)
    settings.save_master_answers(pair_settings(), None, w.answers_path)
    key = manager.key_pair(w.account())  # the silent login was set up
    w.peer.authorized.append(manager.public_line(key, "mxone_manager@lim1"))
    return w


def test_the_utilities_once_redundancy_is_set(tmp_path):
    w = configured(tmp_path)
    d = Driver(w).keys("enter")
    text = d.flat
    for i, label in enumerate(("CheckStatus", "Reconfigure", "Fallback", "Reconfigure Fallback",
                               "Remove Redundancy"), start=1):
        assert f"{i}. {label}" in text
    d.keys("enter")
    text = d.flat
    assert "Checking servers in system, please wait ..." in text
    assert "lim1 Keepalived (Redundancy) is running mxone_snm-7.0.0.0.70" in text
    assert "sb Keepalived (Redundancy) is running" in text
    d.keys("enter")
    d.keys("down", "down", "enter")  # Fallback
    assert "Fallback: PM/SNM returns to the master lim1" in d.flat and "Fallback now?" in d.flat
    d.yes()
    assert "Fallback: done" in d.flat and "lim1: primary again" in d.flat
    assert w.stack.calls[-1][0] == "fallback"


def test_reconfigure_shows_the_per_server_limitation_and_refuses_bad_input(tmp_path):
    w = configured(tmp_path)
    d = Driver(w).keys("enter", "down", "enter")
    assert "Protocol changes, authentication changes and certificate changes" in d.flat
    assert d.top.field_widget("vip").edit.edit_text == "10.77.0.50"
    d.fill(password=REPL, again="x").submit()
    assert "replication password: the two passwords typed differ" in d.flat
    d.fill(vip="10.77.0.51", password=REPL, again=REPL).submit()
    assert "Reconfigure lim1 (the master first: the standby next)" in d.flat
    d.yes()
    assert "Next: Reconfigure on the standby sb" in d.flat


def test_remove_on_the_master(tmp_path):
    w = configured(tmp_path)
    d = Driver(w).keys("enter", *["down"] * 4, "enter")
    assert "Remove Redundancy on lim1: keepalived stopped and disabled" in d.flat
    d.yes()
    assert "Remove Redundancy: done" in d.flat and not w.settings_path.exists()
    assert json.dumps([c[0] for c in w.stack.calls]) == '["remove"]'


def test_the_entry_point_opens_the_menus_only_without_a_command():
    from mxone_web import entry

    assert entry.menu_options([]) is not None
    assert entry.menu_options(["--settings", "/tmp/x.json"]).settings == "/tmp/x.json"
    assert entry.menu_options(["redundancy", "status"]) is None
    assert entry.menu_options(["--json"]) is None


def test_an_unpinned_host_key_is_shown_and_asked(tmp_path, monkeypatch):
    from mxone_web import remote

    from mxone_maintenance.knownhosts import fingerprint

    w = fakes.web(tmp_path)
    w.host_key_files = (tmp_path / "none",)
    monkeypatch.setattr(remote, "offered_key", lambda server, port=22: fakes.HOST_KEY)
    d = Driver(w).keys("enter").yes().yes()
    text = d.flat
    assert "The host key of server sb is not known yet." in text
    assert f"fingerprint: {fingerprint(fakes.HOST_KEY)}" in text
    d.keys("enter")  # Refuse has the focus: back to the found pair, nothing asked
    assert "SNM Configuration" in d.flat
    d.yes().yes()
    assert "Enter the new or existing password for mxone_manager" in d.flat
