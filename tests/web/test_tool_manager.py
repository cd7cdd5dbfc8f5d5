"""mxone_manager's password, key pair and package checks, against a recording shell."""

from __future__ import annotations

import ipaddress
import os
import re
import stat

import paramiko
import pytest
from mxone_web import manager, remote
from mxone_web.errors import Refused
from mxone_web.remote import Ran
from mxone_web.stack.api import PairServer

SB = PairServer("sb", ipaddress.IPv4Address("10.77.0.20"))


class Shell:
    """Answers command lines by their first matching prefix; records every call."""

    def __init__(self, where: str = "sb", answers: dict[str, Ran] | None = None) -> None:
        self.where = where
        self.answers = answers or {}
        self.calls: list[tuple[str, str]] = []

    def run(self, command: str, stdin: str = "") -> Ran:
        self.calls.append((command, stdin))
        for prefix, ran in self.answers.items():
            if command.startswith(prefix):
                return ran
        return Ran(0, "", "")


NEEDS_PASSWORD = {"sudo -n true": Ran(1, "", "sudo: a password is required")}


def test_a_wrong_sudo_password_is_refused_before_anything_runs():
    shell = Shell(answers={**NEEDS_PASSWORD, "sudo -k -S -p '' true": Ran(
        1, "", "sudo: 1 incorrect password attempt")})
    sudo = manager.Sudo(shell, "admin", "wrong")
    with pytest.raises(Refused, match="sudo password of admin on sb: refused by sudo \\(sudo: 1 "
                       "incorrect password attempt\\); nothing was changed"):
        manager.set_password(sudo, "Xk8#pq2Lz!mR")
    assert [c for c, _ in shell.calls] == ["sudo -n true", "sudo -k -S -p '' true"]
    assert shell.calls[1][1] == "wrong\n"  # the password alone: no command input behind it


def test_the_password_is_set_through_sudo_with_the_proven_password():
    shell = Shell(answers=NEEDS_PASSWORD)
    line = manager.set_password(manager.Sudo(shell, "admin", "s3cret"), "Xk8#pq2Lz!mR")
    assert line == "password of mxone_manager set on sb"
    command, stdin = shell.calls[-1]
    assert command.startswith("sudo -k -S -p '' sh -c ") and "chpasswd" in command
    assert "useradd --create-home" in command
    assert stdin == "s3cret\nmxone_manager:Xk8#pq2Lz!mR\n"
    assert "Xk8#pq2Lz" not in command  # never on a command line


def test_root_needs_no_sudo_password():
    shell = Shell()
    manager.set_password(manager.Sudo(shell, "root", "unused"), "Xk8#pq2Lz!mR")
    assert shell.calls[-1][0].startswith("sudo -n sh -c ")
    assert shell.calls[-1][1] == "mxone_manager:Xk8#pq2Lz!mR\n"


def test_package_state_read_from_dpkg_and_the_version_file():
    shell = Shell(answers={"dpkg-query": Ran(0, "install ok installed\t1.0-1\n7.0.0.0.70\n", "")})
    state = manager.package_state(shell)
    assert state.installed and state.line == "sb: mxone-snm-7.0.0.0.70"
    missing = manager.package_state(Shell(answers={"dpkg-query": Ran(1, "\n", "")}))
    assert not missing.installed and missing.line == "sb: mxone-snm is NOT installed"


def test_install_goes_through_apt_when_its_sources_carry_the_package(monkeypatch):
    shell = Shell(answers={"dpkg-query": Ran(0, "install ok installed\t1.0\n\n", "")})
    assert manager.install_package(shell).version == "1.0"
    assert shell.calls[0][0].startswith("apt-cache show mxone-snm")
    assert "apt-get install -y mxone-snm" in shell.calls[1][0]


def test_install_brings_the_reference_application_when_apt_has_no_package(monkeypatch):
    shell = Shell(answers={"apt-cache": Ran(100, "", "E: No packages found"),
                           "dpkg-query": Ran(0, "\n7.0.0.0.70\n", "")})
    assert manager.install_package(shell).version == "7.0.0.0.70"
    assert [c[0] for c in shell.calls][1].endswith("webserver_config " + manager.INSTALL_APP_WORDS)
    assert not any("apt-get" in c[0] for c in shell.calls)


def test_key_pair_private_key_0600_from_its_first_byte(tmp_path, monkeypatch):
    from mxone_agent import files

    modes = []
    real_open = os.open

    def spy(path, flags, mode=0o777, **kw):
        if str(path).endswith(".tmp"):
            modes.append((os.path.basename(path).split(".")[1], mode))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(files.os, "open", spy)
    account = manager.Account(tmp_path, None)
    key = manager.key_pair(account)
    assert ("id_ed25519", 0o600) in modes
    assert stat.S_IMODE(account.private_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(account.ssh_dir.stat().st_mode) == 0o700
    assert manager.key_pair(account) == key  # kept on a second run
    pub = (tmp_path / ".ssh" / "id_ed25519.pub").read_text()
    assert pub.startswith("ssh-ed25519 " + key.get_base64())


def test_the_peers_host_key_pinned_for_mxone_manager(tmp_path):
    account = manager.Account(tmp_path, None)
    old = paramiko.Ed25519Key.from_private_key_file(str(manager.key_pair(account) and
                                                        account.private_key))
    manager.trust_host_key(account, SB, old)
    new = paramiko.Ed25519Key.from_private_key_file(str(account.private_key))
    manager.trust_host_key(account, SB, new)
    lines = (tmp_path / ".ssh" / "known_hosts").read_text().splitlines()
    assert lines == [f"10.77.0.20,sb ssh-ed25519 {new.get_base64()}"]


def test_authorize_sends_the_key_line_on_stdin():
    shell = Shell()
    manager.authorize(shell, "ssh-ed25519 AAAA mxone_manager@lim1")
    assert shell.calls == [(manager.AUTHORIZE, "ssh-ed25519 AAAA mxone_manager@lim1\n")]


def test_pinned_key_by_base_address_then_name(tmp_path):
    key = paramiko.Ed25519Key.from_private_key_file(
        str(manager.key_pair(manager.Account(tmp_path, None)) and tmp_path / ".ssh/id_ed25519"))
    agent_hosts = tmp_path / "agent_known_hosts"
    agent_hosts.write_text(f"10.77.0.20 ssh-ed25519 {key.get_base64()}\n")
    tool_hosts = tmp_path / "tool_known_hosts"
    tool_hosts.write_text(f"sb,10.77.0.99 ssh-ed25519 {key.get_base64()}\n")
    assert remote.pinned_key(SB, [tmp_path / "none", agent_hosts]) == key
    assert remote.pinned_key(SB, [tool_hosts]) == key
    assert remote.pinned_key(PairServer("x", ipaddress.IPv4Address("10.0.0.1")),
                             [agent_hosts]) is None


def test_the_application_installed_by_the_stack_counts_too():
    shell = Shell(answers={"dpkg-query": Ran(0, "\n7.0.0.1\n", "")})
    state = manager.package_state(shell)
    assert state.installed and state.version == "7.0.0.1"
    assert "/opt/mxone/snm/VERSION" in shell.calls[0][0]


def test_an_unpinned_peer_key_is_refused_with_its_fingerprint_until_confirmed(monkeypatch,
                                                                             tmp_path):
    from mxone_web import context

    from mxone_maintenance.knownhosts import fingerprint
    from tests.web import fakes
    from tests.web.builders import pair

    monkeypatch.setattr(remote, "offered_key", lambda server, port=22: fakes.HOST_KEY)
    web = context.Web(host_key_files=(tmp_path / "none",))
    shown = fingerprint(fakes.HOST_KEY)
    with pytest.raises(Refused, match=f"peer host key: no host key of sb \\(10.77.0.20\\) is "
                       f"pinned here .*; it offers ssh-ed25519 {re.escape(shown)}.*"
                       "--peer-host-key"):
        web.peer_host_key(pair(), None)
    with pytest.raises(Refused):
        web.peer_host_key(pair(), "SHA256:somethingelse")
    assert web.peer_host_key(pair(), shown) == fakes.HOST_KEY
