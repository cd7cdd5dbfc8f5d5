"""Discovery, password quality, the virtual IP and replication role rules, the settings."""

from __future__ import annotations

import ipaddress
import json
import os
import stat

import pytest
from mxone_web import discover, pwquality, settings, vip
from mxone_web.errors import Refused, WebError
from mxone_web.stack.api import PairRole, WebFallback

from tests.web.builders import node_doc, pair, write_node
from tests.web.builders import settings as pair_settings

A = ipaddress.IPv4Address


# ---- discovery -----------------------------------------------------------------------------

def test_master_found_on_lim1s_server(tmp_path):
    p = discover.discover(write_node(tmp_path, node="lim1"), tmp_path / "no-system.toml")
    assert p.role is PairRole.MASTER
    assert (p.master.name, p.master.base_ip) == ("lim1", A("10.77.0.11"))
    assert (p.standby.name, p.standby.base_ip) == ("sb", A("10.77.0.20"))
    assert p.cluster == "north" and str(p.network) == "10.77.0.0/24"
    assert p.interface == "eth0" and p.witnesses == (A("10.77.0.12"),)
    assert p.fallback is WebFallback.MANUAL
    assert p.taken[A("10.77.0.111")] == "alias address of LIM 1"
    assert "Master:        lim1 10.77.0.11 (runs LIM 1)" in p.lines()


def test_standby_found_on_the_standby_with_its_own_interface(tmp_path):
    p = discover.discover(write_node(tmp_path, node="sb", fallback="automatic"),
                          tmp_path / "none")
    assert p.role is PairRole.STANDBY and p.local.name == "sb" and p.peer.name == "lim1"
    assert p.interface == "eth1" and p.fallback is WebFallback.AUTOMATIC


def test_no_node_config_means_lim1_is_in_no_cluster(tmp_path):
    with pytest.raises(Refused, match="Server redundancy must be set first: LIM 1 is not in "
                       "a cluster"):
        discover.discover(tmp_path / "node.json", tmp_path / "none")


def test_another_regular_server_is_refused_by_name():
    with pytest.raises(Refused, match="server lim2 is neither LIM 1's server \\(lim1, the "
                       "master\\) nor the standby of cluster north \\(sb\\)"):
        pair("lim2")


def test_a_cluster_without_lim1_is_refused_by_name():
    with pytest.raises(Refused, match="server lim2 is neither .* its cluster north does not "
                       "hold LIM 1"):
        pair("lim2", lims=(2, 3))


def test_a_broken_node_config_is_a_failure_naming_the_file(tmp_path):
    path = tmp_path / "node.json"
    path.write_text(json.dumps({**node_doc(), "fallback": "sometimes"}))
    with pytest.raises(WebError, match="(?s)node.json: 1 problem .*fallback"):
        discover.discover(path, tmp_path / "none")


# ---- password quality (the real libpwquality) ----------------------------------------------

def test_a_short_password_gets_pwqualitys_own_message():
    v = pwquality.check("abc")
    assert not v.ok and v.line == "BAD PASSWORD: The password is shorter than 8 characters"


def test_a_simple_password_gets_the_dictionary_message():
    v = pwquality.check("abcdefgh")
    assert not v.ok and "it is too simplistic/systematic" in v.message


def test_a_good_password_is_accepted():
    assert pwquality.check("Xk8#pq2Lz!mR", user="mxone_manager").ok


def test_require_twice_names_the_field():
    with pytest.raises(Refused, match="mxone_manager password: the two passwords typed differ"):
        pwquality.require_twice("mxone_manager password", "Xk8#pq2Lz!mR", "Xk8#pq2Lz!mQ")
    with pytest.raises(Refused, match="mxone_manager password: BAD PASSWORD: The password is "
                       "shorter"):
        pwquality.require_twice("mxone_manager password", "abc", "abc")


# ---- the virtual IP ------------------------------------------------------------------------

def nobody(interface, address):
    return set()


@pytest.mark.parametrize(("text", "why"), [
    ("10.77.1.50", "virtual IP = 10.77.1.50: not in the cluster's subnet 10.77.0.0/24"),
    ("10.77.0.0", "the network address of 10.77.0.0/24"),
    ("10.77.0.255", "the broadcast address of 10.77.0.0/24"),
    ("10.77.0.20", "already the base address of server sb"),
    ("10.77.0.112", "already the alias address of LIM 2"),
    ("10.77.0.300", "virtual IP = 10.77.0.300: not an IPv4 address"),
    ("", "virtual IP = (empty): not an IPv4 address"),
])
def test_vip_refusals_name_the_field_and_rule(text, why):
    with pytest.raises(Refused, match=why.replace("(", "\\(").replace(")", "\\)")):
        vip.check_vip(text, pair(), nobody)


def test_vip_answered_by_a_host_is_in_use():
    probed = []

    def answered(interface, address):
        probed.append((interface, address))
        return {"02:00:00:00:00:99"}

    with pytest.raises(Refused, match="virtual IP = 10.77.0.50: in use: answered on eth0 by "
                       "02:00:00:00:00:99 \\(ARP probe\\)"):
        vip.check_vip("10.77.0.50", pair(), answered)
    assert probed == [("eth0", A("10.77.0.50"))]


def test_a_free_vip_is_accepted_and_the_current_one_is_not_probed():
    assert vip.check_vip(" 10.77.0.50 ", pair(), nobody) == A("10.77.0.50")
    assert vip.check_vip("10.77.0.50", pair(), lambda i, a: {"aa"}, current=A("10.77.0.50"))


def test_system_addresses_of_lim1s_config_are_taken(tmp_path):
    from mxone_maintenance import actions
    from mxone_maintenance.service import Maintenance

    m = Maintenance(tmp_path / "system.toml")
    m.apply(m.preview(actions.add_server, "far", "10.77.0.60/24"))
    p = discover.discover(write_node(tmp_path), tmp_path / "system.toml")
    with pytest.raises(Refused, match="already the base address of server far"):
        vip.check_vip("10.77.0.60", p, nobody)


# ---- the replication role ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Replicator", "1rep", "pg_rep", "postgres", "rep-user",
                                  "", "a" * 64])
def test_replication_user_rule(name):
    with pytest.raises(Refused, match="replication user = .*: must be a PostgreSQL identifier"):
        vip.check_user(name)


def test_replication_user_accepted():
    assert vip.check_user(" replicator ") == "replicator"
    assert vip.check_user("_r2") == "_r2"


def test_replication_password_rules():
    with pytest.raises(Refused, match="replication password: holds ':'"):
        vip.check_password("Tr4in:Sh3d", "Tr4in:Sh3d", "replicator")
    with pytest.raises(Refused, match="replication password: BAD PASSWORD: The password is "
                       "shorter"):
        vip.check_password("a1", "a1", "replicator")
    with pytest.raises(Refused, match="differ"):
        vip.check_password("Tr4in-Sh3d-Vault", "Tr4in-Sh3d-Vaul", "replicator")
    assert vip.check_password("Tr4in-Sh3d-Vault", "Tr4in-Sh3d-Vault", "replicator")


# ---- settings ------------------------------------------------------------------------------

def test_settings_saved_0600_and_read_back(tmp_path, monkeypatch):
    path = tmp_path / "web" / "pair.json"
    old = os.umask(0)
    try:
        settings.save(pair_settings(), path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.load(path) == pair_settings()
    assert "Tr4in" not in repr(settings.load(path))
    assert settings.load(tmp_path / "none.json") is None


def test_settings_written_atomically_mode_0600_from_the_first_byte(tmp_path, monkeypatch):
    from mxone_agent import files

    seen = []
    real_open = os.open

    def spy(path, flags, mode=0o777, **kw):
        if str(path).endswith(".tmp"):
            seen.append(mode)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(files.os, "open", spy)
    settings.save(pair_settings(), tmp_path / "pair.json")
    assert seen == [0o600]


def test_broken_settings_named(tmp_path):
    path = tmp_path / "pair.json"
    path.write_text('{"format": 1, "role": "boss"}')
    with pytest.raises(WebError, match="pair.json: not the pair settings"):
        settings.load(path)


def test_the_standbys_answers_must_equal_the_masters():
    answers = settings.master_answers(pair_settings())
    assert "Tr4in" not in json.dumps(answers)
    settings.check_same(answers, A("10.77.0.50"), "replicator", "Tr4in-Sh3d-Vault")
    with pytest.raises(Refused) as e:
        settings.check_same(answers, A("10.77.0.51"), "rep2", "Tr4in-Sh3d-Vaulx")
    text = str(e.value)
    assert "virtual IP = 10.77.0.51: differs from the master's (lim1) 10.77.0.50" in text
    assert "replication user = rep2: differs from the master's (lim1) replicator" in text
    assert "replication password: differs from the one given on the master (lim1)" in text
