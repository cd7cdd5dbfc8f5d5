"""The PM/SNM stack's rendered files and pure rules (no server touched)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from pathlib import Path

import pytest
from mxone_web.stack import keepalived, postgres, webserver
from mxone_web.stack.api import PairRole, PairServer, PairSettings, StackStatus, WebFallback
from mxone_web.stack.cli import settings_from_mapping, settings_to_mapping

MASTER = PairServer("lim1", ipaddress.IPv4Address("10.77.0.11"))
STANDBY = PairServer("standby1", ipaddress.IPv4Address("10.77.0.20"))
PASSFILE = Path("/var/lib/postgresql/.pgpass")


def settings(role: PairRole = PairRole.MASTER, fallback: WebFallback = WebFallback.MANUAL,
             password: str = "Secret-pw1") -> PairSettings:
    return PairSettings(
        role=role, master=MASTER, standby=STANDBY, cluster="c1",
        network=ipaddress.IPv4Network("10.77.0.0/24"), interface="eth0",
        vip=ipaddress.IPv4Address("10.77.0.50"), replication_user="repl",
        replication_password=password, fallback=fallback,
    )


def block(conf: str, name: str) -> list[str]:
    """The stripped lines of keepalived's block that starts with ``name``."""
    lines = conf.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(name))
    out, depth = [], 0
    for line in lines[start:]:
        depth += line.count("{") - line.count("}")
        out.append(line.strip())
        if depth == 0:
            return out
    raise AssertionError(f"unclosed block {name}")


# ------------------------------------------------------------------ keepalived


def test_both_servers_agree_on_router_id_and_password_and_point_at_each_other() -> None:
    m, s = (keepalived.render(settings(r)) for r in (PairRole.MASTER, PairRole.STANDBY))
    for key in ("virtual_router_id", "auth_pass", "advert_int", "interface"):
        assert [x for x in m.splitlines() if key in x] == [x for x in s.splitlines() if key in x]
    mi, si = block(m, "vrrp_instance"), block(s, "vrrp_instance")
    assert "unicast_src_ip 10.77.0.11" in mi and "unicast_src_ip 10.77.0.20" in si
    assert mi[mi.index("unicast_peer {") + 1] == "10.77.0.20"
    assert si[si.index("unicast_peer {") + 1] == "10.77.0.11"
    assert "priority 150" in mi and "priority 100" in si
    assert "10.77.0.50/24 dev eth0" in mi and "10.77.0.50/24 dev eth0" in si
    assert "mxone_web_check" in block(m, "track_script")
    assert 'notify "/usr/bin/python3 /opt/mxone/web/bin/mxone-web-hook notify"' in mi


@pytest.mark.parametrize(
    ("fallback", "master_state", "nopreempt"),
    [(WebFallback.MANUAL, "BACKUP", True), (WebFallback.AUTOMATIC, "MASTER", False)],
)
def test_fallback_type_decides_state_and_preemption(
    fallback: WebFallback, master_state: str, nopreempt: bool
) -> None:
    m = block(keepalived.render(settings(PairRole.MASTER, fallback)), "vrrp_instance")
    s = block(keepalived.render(settings(PairRole.STANDBY, fallback)), "vrrp_instance")
    assert f"state {master_state}" in m and "state BACKUP" in s
    assert ("nopreempt" in m) is nopreempt and ("nopreempt" in s) is nopreempt


def test_router_id_is_deterministic_and_in_range() -> None:
    ids = {keepalived.router_id(ipaddress.IPv4Address(f"10.0.{i // 256}.{i % 256}"))
           for i in range(2000)}
    assert min(ids) == 1 and max(ids) == 255
    assert keepalived.router_id(ipaddress.IPv4Address("10.77.0.50")) == 138


def test_vrrp_password_is_eight_characters_and_not_the_replication_password() -> None:
    a = keepalived.auth_pass(settings(password="Secret-pw1"))
    assert len(a) == 8 and a not in "Secret-pw1"
    assert a != keepalived.auth_pass(settings(password="Secret-pw2"))
    assert "Secret-pw1" not in keepalived.render(settings())


def test_detection_time_is_three_adverts_plus_the_standbys_skew() -> None:
    assert keepalived.DETECTION_SECONDS == pytest.approx(3 + 156 / 256)


# ------------------------------------------------------------------ PostgreSQL


def test_conf_follows_the_peer_as_its_own_name_with_synchronous_commit() -> None:
    conf = postgres.render_conf(settings(PairRole.STANDBY), PASSFILE)
    assert "wal_level = replica" in conf and "hot_standby = on" in conf
    assert "synchronous_commit = remote_apply" in conf and "listen_addresses = '*'" in conf
    line = next(x for x in conf.splitlines() if x.startswith("primary_conninfo"))
    assert "host=''10.77.0.11''" in line and "application_name=''standby1''" in line
    assert "passfile=''/var/lib/postgresql/.pgpass''" in line
    assert "Secret" not in conf
    master = postgres.render_conf(settings(PairRole.MASTER), PASSFILE)
    assert "host=''10.77.0.20''" in master and "application_name=''lim1''" in master


def test_hba_allows_replication_from_the_peer_only_and_is_replaced_not_repeated() -> None:
    hba = "local all postgres peer\n"
    once = postgres.with_hba_block(hba, postgres.render_hba_block(settings()))
    twice = postgres.with_hba_block(once, postgres.render_hba_block(settings()))
    assert once == twice
    rules = [x.split() for x in once.splitlines() if x and not x.startswith("#")]
    assert rules[-2:] == [["host", "replication", "repl", "10.77.0.20/32", "scram-sha-256"],
                          ["host", "postgres", "repl", "10.77.0.20/32", "scram-sha-256"]]
    assert postgres.with_hba_block(once, "") == hba


def test_pgpass_escapes_colons_and_backslashes() -> None:
    text = postgres.pgpass_text(settings(password="a:b\\c"))
    assert text == ("*:5432:replication:repl:a\\:b\\\\c\n"
                    "*:5432:postgres:repl:a\\:b\\\\c\n")


def test_scram_verifier_is_what_a_scram_client_proves() -> None:
    salt = b"0123456789abcdef"
    v = postgres.scram_verifier("pencil", salt=salt, iterations=4096)
    head, keys = v.split("$", 1)[1].split("$")
    iterations, salt_b64 = head.split(":")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    assert v.startswith("SCRAM-SHA-256$4096:") and base64.b64decode(salt_b64) == salt
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert stored == hashlib.sha256(client_key).digest()
    assert server == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert postgres.scram_verifier("pencil") != postgres.scram_verifier("pencil")  # salted


def test_a_base_backup_keeps_no_setting_only_the_primary_may_hold() -> None:
    auto = ("# Do not edit\nsynchronous_standby_names = '\"standby1\"'\nwork_mem = '8MB'\n"
            "default_transaction_read_only = 'on'\nprimary_conninfo = 'x'\n")
    assert postgres.without_primary_settings(auto) == "# Do not edit\nwork_mem = '8MB'\n"


# ------------------------------------------------------------------ web server, contract


def test_nginx_proxies_mp_snm_and_health_to_the_application() -> None:
    site = webserver.render_site()
    assert "listen 80 default_server;" in site
    for loc in ("location /mp {", "location /snm {", "location = /health {"):
        assert loc in site
    assert site.count("proxy_pass http://127.0.0.1:8070;") == 3
    unit = webserver.render_unit()
    assert "User=mxone_snm" in unit and "ExecStart=/usr/bin/python3 /opt/mxone/snm/app.py" in unit


def test_settings_travel_as_json_and_repr_hides_the_password() -> None:
    s = settings(PairRole.STANDBY, WebFallback.AUTOMATIC, password="p:w'\"x")
    assert settings_from_mapping(settings_to_mapping(s)) == s
    assert "p:w" not in repr(s)


def test_status_round_trips() -> None:
    st = StackStatus("lim1", True, "mxone_snm-7.0.0.0.70", "primary", "streaming (sync)",
                     "standby1", 0, 0.0, "10.77.0.50", True)
    assert StackStatus.from_mapping(st.to_mapping()) == st
