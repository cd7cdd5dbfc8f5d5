"""The commands of webserver_config through its CLI, against a recording peer and stack:
plans, refusals (nothing changed) and the order across the pair."""

from __future__ import annotations

import io
import json
import sys

import pytest
from mxone_web import cli, settings
from mxone_web.stack.api import PairRole, WebFallback

from tests.web import fakes
from tests.web.builders import settings as pair_settings

GOOD = "Xk8#pq2Lz!mR"
REPL = "Tr4in-Sh3d-Vault"
MASTER = ["redundancy", "setup-master", "--vip", "10.77.0.50", "--replication-user",
          "replicator", "--standby-admin", "admin"]
STANDBY = ["redundancy", "setup-standby", "--vip", "10.77.0.50", "--replication-user",
           "replicator"]


def run(capsys, monkeypatch, web, argv, *stdin: str):
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in stdin)))
    code = cli.main(argv, web=web)
    out, err = capsys.readouterr()
    return code, out, err


def test_master_dry_run_shows_the_pair_and_the_plan(tmp_path, capsys, monkeypatch):
    w = fakes.web(tmp_path)
    code, out, err = run(capsys, monkeypatch, w, [*MASTER, "--dry-run"], GOOD, "Adm1n-Pass", REPL)
    assert code == 0, err
    assert "Master:        lim1 10.77.0.11 (runs LIM 1)" in out
    assert "sb           log in as admin, prove its sudo password" in out
    assert "configure keepalived (virtual IP 10.77.0.50)" in out
    assert "Dry run: nothing was changed." in out
    assert w.peer.calls == [] and not w.settings_path.exists()


@pytest.mark.parametrize(("args", "passwords", "refusal"), [
    (["--vip", "10.77.1.50"], (GOOD, "x", REPL),
     "virtual IP = 10.77.1.50: not in the cluster's subnet 10.77.0.0/24"),
    (["--vip", "10.77.0.60"], (GOOD, "x", REPL),
     "virtual IP = 10.77.0.60: in use: answered on eth0 by 02:00:00:00:00:60 (ARP probe)"),
    ([], ("abc", "x", REPL), ("mxone_manager password: BAD PASSWORD: The password is shorter "
     "than 8 characters")),
    ([], ("abcdefgh", "x", REPL), ("mxone_manager password: BAD PASSWORD: The password fails "
     "the dictionary check - it is too simplistic/systematic")),
    (["--replication-user", "Rep"], (GOOD, "x", REPL), ("replication user = Rep: must be a "
     "PostgreSQL identifier")),
])
def test_master_refusals_change_nothing(tmp_path, capsys, monkeypatch, args, passwords, refusal):
    w = fakes.web(tmp_path, answered={"10.77.0.60": {"02:00:00:00:00:60"}})
    code, _out, err = run(capsys, monkeypatch, w, [*MASTER, *args], *passwords)
    assert code == 1
    assert f"webserver_config: refused: {refusal}" in err
    assert w.peer.calls == [] and w.locals == [] and not w.settings_path.exists()


def test_master_configuration_end_to_end(tmp_path, capsys, monkeypatch):
    w = fakes.web(tmp_path)
    code, out, err = run(capsys, monkeypatch, w, [*MASTER, "--json"], GOOD, "Adm1n-Pass", REPL)
    assert code == 0, err
    data = json.loads(out)
    lines = data["lines"]
    assert "password of mxone_manager set on lim1" in lines
    assert "password of mxone_manager set on sb" in lines
    assert w.peer.passwords["mxone_manager"] == GOOD
    assert any(line.startswith("silent login mxone_manager@lim1 -> mxone_manager@sb") for line
               in lines)
    assert "sb: mxone-snm-7.0.0.0.58" in lines
    assert ("configure", settings.load(w.settings_path)) in w.stack.calls
    saved = settings.load(w.settings_path)
    assert saved.role is PairRole.MASTER and saved.replication_password == REPL
    answers = json.loads(w.answers_path.read_text())
    assert answers["vip"] == "10.77.0.50" and REPL not in json.dumps(answers)
    assert lines[-1] == "Next: run webserver_config > Redundancy on the standby sb"
    # the password never travels on a command line
    assert all(GOOD not in command for _u, command, _s in w.peer.calls)


@pytest.mark.parametrize(("peer", "refusal"), [
    (fakes.Peer(), "login of admin on sb refused with the password given; nothing was changed"),
    # sudo asking another password than the login's (rootpw): refused by sudo itself
    (fakes.Peer(passwords={"admin": "Wr0ng-Pass"}), ("sudo password of admin on sb: refused by "
     "sudo (sudo: 1 incorrect password attempt); nothing was changed")),
])
def test_wrong_sudo_password_refused_and_nothing_changed(tmp_path, capsys, monkeypatch, peer,
                                                         refusal):
    w = fakes.web(tmp_path, peer=peer)
    code, _out, err = run(capsys, monkeypatch, w, MASTER, GOOD, "Wr0ng-Pass", REPL)
    assert code == 1
    assert f"refused: {refusal}" in err
    assert "mxone_manager" not in w.peer.passwords
    assert w.locals == []  # not even this server's password was set
    assert not w.settings_path.exists() and w.stack.calls == []


def test_missing_package_refused_unless_installing(tmp_path, capsys, monkeypatch):
    w = fakes.web(tmp_path, peer=fakes.Peer(package=None))
    code, out, err = run(capsys, monkeypatch, w, MASTER, GOOD, "Adm1n-Pass", REPL)
    assert code == 1 and "sb: mxone-snm is not installed; install it" in err
    assert not w.settings_path.exists()
    code, out, err = run(capsys, monkeypatch, w, [*MASTER, "--install-package"], GOOD,
                         "Adm1n-Pass", REPL)
    assert code == 0, err
    assert "sb: installed sb: mxone-snm-7.0.0.0.70" in out


def test_setup_master_on_the_standby_is_refused_by_name(tmp_path, capsys, monkeypatch):
    w = fakes.web(tmp_path, node="sb")
    code, _out, err = run(capsys, monkeypatch, w, [*MASTER, "--dry-run"], GOOD, "x", REPL)
    assert code == 1
    assert ("the master configuration runs on the master lim1 (10.77.0.11); this server sb is "
            "the standby") in err


def test_redundancy_when_lim1_is_in_no_cluster(tmp_path, capsys, monkeypatch):
    w = fakes.web(tmp_path)
    w.node_json.unlink()
    for argv, stdin in (([*MASTER, "--dry-run"], (GOOD, "x", REPL)),
                        (["redundancy", "fallback"], ()), (["redundancy", "status"], ())):
        code, _out, err = run(capsys, monkeypatch, w, argv, *stdin)
        assert code == 1
        assert "refused: Server redundancy must be set first: LIM 1 is not in a cluster" in err


def standby_web(tmp_path, **kw):
    peer = fakes.Peer("lim1", passwords={"mxone_manager": GOOD})
    fakes.master_answers_on(peer, pair_settings())
    return fakes.web(tmp_path, node="sb", peer=peer, **kw)


def test_standby_configuration(tmp_path, capsys, monkeypatch):
    w = standby_web(tmp_path)
    code, out, err = run(capsys, monkeypatch, w, STANDBY, GOOD, REPL)
    assert code == 0, err
    assert "sb: virtual IP 10.77.0.50 and replication role replicator equal the master's (lim1)" \
        in out
    saved = settings.load(w.settings_path)
    assert saved.role is PairRole.STANDBY and saved.interface == "eth1"
    assert w.stack.calls == [("configure", saved)]
    assert not w.answers_path.exists()  # only the master leaves answers


def test_standby_no_restart_saves_only(tmp_path, capsys, monkeypatch):
    w = standby_web(tmp_path)
    code, out, _err = run(capsys, monkeypatch, w, [*STANDBY, "--no-restart"], GOOD, REPL)
    assert code == 0 and "web server NOT restarted" in out and w.stack.calls == []


@pytest.mark.parametrize(("args", "password", "refusal"), [
    (["--replication-user", "other"], REPL,
     "replication user = other: differs from the master's (lim1) replicator"),
    ([], "Wr0ng-Repl-Pass", "replication password: differs from the one given on the master"),
    (["--vip", "10.77.0.51"], REPL,
     "virtual IP = 10.77.0.51: differs from the master's (lim1) 10.77.0.50"),
])
def test_standby_answers_must_equal_the_masters(tmp_path, capsys, monkeypatch, args, password,
                                                refusal):
    w = standby_web(tmp_path)
    code, _out, err = run(capsys, monkeypatch, w, [*STANDBY, *args], GOOD, password)
    assert code == 1 and refusal in err
    assert not w.settings_path.exists() and w.stack.calls == []


def test_standby_with_a_wrong_master_password_is_refused(tmp_path, capsys, monkeypatch):
    w = standby_web(tmp_path)
    code, _out, err = run(capsys, monkeypatch, w, STANDBY, "Wr0ng", REPL)
    assert code == 1 and "login of mxone_manager on lim1 refused" in err


def configured(tmp_path, node="lim1", role=PairRole.MASTER, **kw):
    w = standby_web(tmp_path, **kw) if node == "sb" else fakes.web(tmp_path, **kw)
    s = pair_settings(role)
    if node == "sb":
        import dataclasses
        s = dataclasses.replace(s, interface="eth1")
    settings.save(s, w.settings_path)
    if node == "sb":  # the silent login was set up
        from mxone_web import manager
        key = manager.key_pair(w.account())
        w.peer.authorized.append(manager.public_line(key, "mxone_manager@sb"))
    return w


def test_status_shows_both_servers(tmp_path, capsys, monkeypatch):
    w = configured(tmp_path, "sb", PairRole.STANDBY)
    code, out, err = run(capsys, monkeypatch, w, ["redundancy", "status"])
    assert code == 0, err
    assert out.splitlines()[:4] == ["Checking servers in system, please wait ...", "", "lim1",
                                    "  Keepalived (Redundancy) is running"]
    assert "  mxone_snm-7.0.0.0.70" in out and "  database primary: streaming (sync) with sb" in out
    assert "  virtual IP 10.77.0.50: held here" in out


def test_status_here_is_json_for_the_peer(tmp_path, capsys, monkeypatch):
    w = configured(tmp_path)
    code, out, _err = run(capsys, monkeypatch, w, ["redundancy", "status", "--here", "--json"])
    assert code == 0 and json.loads(out)["db_role"] == "primary"


def test_reconfigure_on_the_standby_before_the_master_is_refused(tmp_path, capsys, monkeypatch):
    w = configured(tmp_path, "sb", PairRole.STANDBY)
    code, _out, err = run(capsys, monkeypatch, w, ["redundancy", "reconfigure", "--vip",
                                                  "10.77.0.51", "--replication-user",
                                                  "replicator"], REPL)
    assert code == 1
    assert ("Reconfigure runs on the master lim1 first, then on the standby: virtual IP = "
            "10.77.0.51: differs from the master's (lim1) 10.77.0.50") in err
    assert w.stack.calls == []


def test_reconfigure_on_the_master(tmp_path, capsys, monkeypatch):
    w = configured(tmp_path)
    code, out, err = run(capsys, monkeypatch, w, ["redundancy", "reconfigure", "--vip",
                                                  "10.77.0.51", "--replication-user",
                                                  "replicator"], REPL)
    assert code == 0, err
    assert settings.load(w.settings_path).vip.exploded == "10.77.0.51"
    assert "Next: Reconfigure on the standby sb" in out


def test_fallback_runs_on_the_master_only(tmp_path, capsys, monkeypatch):
    w = configured(tmp_path)
    from mxone_web import manager
    w.peer.authorized.append(manager.public_line(manager.key_pair(w.account()), "mxone_manager@lim1"))
    code, out, err = run(capsys, monkeypatch, w, ["redundancy", "fallback"])
    assert code == 0 and "lim1: primary again" in out, err
    assert "sb: sb: follows lim1" in out  # then the standby was asked to rejoin
    w2 = configured(tmp_path / "sb", "sb", PairRole.STANDBY)
    code, out, err = run(capsys, monkeypatch, w2, ["redundancy", "fallback"])
    assert code == 1 and "Fallback runs on the master lim1 (10.77.0.11); this server sb" in err


def test_reconfigure_fallback_follows_the_cluster_master_first(tmp_path, capsys, monkeypatch):
    w = configured(tmp_path, "sb", PairRole.STANDBY, fallback="automatic")
    code, out, err = run(capsys, monkeypatch, w, ["redundancy", "reconfigure-fallback"])
    assert code == 1
    assert ("Reconfigure Fallback runs on the master lim1 first: its PM/SNM fallback is "
            "manual, the cluster's is automatic") in err
    m = configured(tmp_path / "m", fallback="automatic")
    code, out, err = run(capsys, monkeypatch, m, ["redundancy", "reconfigure-fallback",
                                                  "--dry-run"])
    assert code == 0 and "PM/SNM fallback manual -> automatic" in out
    code, out, err = run(capsys, monkeypatch, m, ["redundancy", "reconfigure-fallback"])
    assert code == 0 and settings.load(m.settings_path).fallback is WebFallback.AUTOMATIC
    # only keepalived follows: no database is set up again (a standby holding the primary
    # after a failover must never be cloned over)
    assert [c[0] for c in m.stack.calls] == ["reconfigure_fallback"]
    assert "lim1: keepalived follows fallback automatic" in out


def test_remove_master_first_then_standby(tmp_path, capsys, monkeypatch):
    w = configured(tmp_path, "sb", PairRole.STANDBY)
    code, out, err = run(capsys, monkeypatch, w, ["redundancy", "remove"])
    assert code == 1
    assert ("Remove Redundancy runs on the master first: lim1 still has PM/SNM redundancy "
            "set") in err
    assert w.settings_path.exists() and w.stack.calls == []
    w.peer.files.clear()  # the master's removed
    code, out, err = run(capsys, monkeypatch, w, ["redundancy", "remove"])
    assert code == 0, err
    assert "sb: the master lim1 has removed its redundancy" in out
    assert not w.settings_path.exists() and w.stack.calls[0][0] == "remove"


def test_remove_on_the_master_forgets_its_answers(tmp_path, capsys, monkeypatch):
    w = configured(tmp_path)
    settings.save_master_answers(settings.load(w.settings_path), None, w.answers_path)
    code, out, _err = run(capsys, monkeypatch, w, ["redundancy", "remove", "--json"])
    assert code == 0 and json.loads(out)["ok"]
    assert not w.answers_path.exists() and not w.settings_path.exists()


def test_utilities_need_redundancy_set(tmp_path, capsys, monkeypatch):
    w = fakes.web(tmp_path)
    code, _out, err = run(capsys, monkeypatch, w, ["redundancy", "fallback"])
    assert code == 1 and "Fallback: PM/SNM redundancy is not set on this server" in err


def test_a_password_missing_on_stdin_is_refused(tmp_path, capsys, monkeypatch):
    w = fakes.web(tmp_path)
    code, _out, err = run(capsys, monkeypatch, w, MASTER, GOOD)
    assert code == 1 and "sudo password of the standby's administrator: not given" in err
