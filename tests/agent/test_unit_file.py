"""The agent's systemd unit: one copy of its text, installed where package units live, a
stale copy of an earlier deployer removed only when it is ours, every systemctl result
checked. The unit's own behaviour under systemd is tests/orchestration/test_systemd_lab.py."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mxone_agent import paths, sdnotify
from mxone_agent.node import service

ROOT = Path(__file__).resolve().parents[2]
UNIT_FILE = ROOT / "agent" / "systemd" / "mxone-agent.service"


def test_one_copy_of_the_unit_text() -> None:
    assert sdnotify.unit_text() == UNIT_FILE.read_text()
    assert Path(sdnotify.UNIT_FILE) == UNIT_FILE
    copies = [p for d in ("agent", "mxone_maintenance", "menus", "web", "scripts")
              for p in (ROOT / d).rglob("*") if p.is_file() and p != UNIT_FILE
              and p.suffix in (".py", ".service", "") and "__pycache__" not in p.parts
              and re.search(r"^(WatchdogSec|Type=notify|ExecStart=.*mxone-agent)",
                            p.read_text(errors="replace"), re.M)]
    assert copies == []


def test_the_unit_runs_the_agent_of_current_under_notify_and_watchdog() -> None:
    text = UNIT_FILE.read_text()
    assert "ExecStart=/opt/mxone/agent/current/bin/mxone-agent run\n" in text  # no --log
    for line in ("Type=notify", "WatchdogSec=10s", "Restart=on-failure", "KillMode=process"):
        assert f"\n{line}\n" in text


HARDENING = ("ProtectSystem=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK "
             "AF_PACKET", "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectClock=yes",
             "ProtectControlGroups=yes", "RestrictNamespaces=yes", "RestrictSUIDSGID=yes",
             "LockPersonality=yes")
LEFT_OUT = ("ProtectSystem=full", "ProtectKernelTunables", "ProtectHome", "PrivateTmp",
            "NoNewPrivileges", "CapabilityBoundingSet", "SystemCallFilter",
            "MemoryDenyWriteExecute", "RestrictRealtime", "SystemCallArchitectures",
            "PrivateDevices", "ProtectProc", "ProtectHostname")


def test_hardening_is_there_and_every_omission_says_why() -> None:
    text = UNIT_FILE.read_text()
    settings = [line for line in text.splitlines() if line and not line.startswith(("#", "["))]
    for line in HARDENING:
        assert line in settings
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for name in LEFT_OUT:
        assert not any(s.startswith(name.split("=")[0] + "=") and s != "ProtectSystem=yes"
                       for s in settings), name
        assert re.search(rf"^# - .*{re.escape(name)}.*:", comments, re.M), name


def test_the_unit_goes_where_package_units_live() -> None:
    assert paths.UNIT == "/usr/lib/systemd/system/mxone-agent.service"
    assert paths.OLD_UNIT == "/etc/systemd/system/mxone-agent.service"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_units_earlier_deployers_wrote_are_known() -> None:
    """Their texts, as the old fallback and the first unit files were (by their sha256)."""
    old_fallback = ("[Unit]\nDescription=MX-ONE server redundancy agent\n"
                    "After=network-online.target\n\n[Service]\n"
                    "ExecStart=/opt/mxone/agent/current/bin/mxone-agent run --log "
                    "/var/log/mxone/agent.log\nRestart=always\nRestartSec=2\n\n[Install]\n"
                    "WantedBy=multi-user.target\n")
    assert sha(old_fallback) in service.SHIPPED_UNITS
    assert len(service.SHIPPED_UNITS) == 3


UNIT = UNIT_FILE.read_text()


def test_install_writes_the_unit_once(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert service.install_unit(UNIT, root) == (True, [])
    assert (tmp_path / paths.UNIT.lstrip("/")).read_text() == UNIT
    assert service.install_unit(UNIT, root) == (False, [])  # unchanged: no daemon-reload


def test_a_stale_copy_we_shipped_is_removed_and_an_admins_own_is_kept(tmp_path: Path) -> None:
    root = str(tmp_path)
    stale = tmp_path / paths.OLD_UNIT.lstrip("/")
    stale.parent.mkdir(parents=True)
    # A release unpacked on the node carries a unit: byte-identical to it counts as ours.
    release_unit = tmp_path / paths.RELEASES.lstrip("/") / "abcdef012345" / service.UNIT_SOURCE
    release_unit.parent.mkdir(parents=True)
    release_unit.write_text(UNIT.replace("10s", "11s"))
    stale.write_text(UNIT.replace("10s", "11s"))
    assert service.install_unit(UNIT, root) == (True, [])
    assert not stale.exists()

    (tmp_path / paths.UNIT.lstrip("/")).unlink()
    stale.write_text(UNIT + "Nice=-5\n")  # edited by hand (systemctl edit --full)
    changed, warnings = service.install_unit(UNIT, root)
    assert changed and stale.read_text() == UNIT + "Nice=-5\n"
    assert warnings == [f"{paths.OLD_UNIT} is not a unit this tool wrote: left in place; it "
                        f"shadows {paths.UNIT}, so the agent runs as that file says (remove it "
                        "and keep your settings in a drop-in: `systemctl edit mxone-agent`)"]
    stale.unlink()
    stale.symlink_to("/dev/null")  # masked
    changed, warnings = service.install_unit(UNIT, root)
    assert not changed and stale.is_symlink()
    assert warnings[0].startswith(f"{paths.OLD_UNIT} is a link to /dev/null: left in place")


class Systemctl:
    """Stands in for subprocess.run: records systemctl calls, fails ``fail`` with
    ``words``; ``active`` is what is-active says."""

    def __init__(self, active: bool, fail: str = "", words: str = "") -> None:
        self.calls: list[list[str]] = []
        self.active, self.fail, self.words = active, fail, words

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        assert argv[0] == "systemctl"
        self.calls.append(argv[1:])
        if argv[1] == "is-active":
            return subprocess.CompletedProcess(argv, 0 if self.active else 3, "", "")
        if argv[1] == self.fail:
            return subprocess.CompletedProcess(argv, 1, "", self.words)
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.fixture
def fake_unit_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "UNIT", str(tmp_path / "usr-lib" / "mxone-agent.service"))
    monkeypatch.setattr(paths, "OLD_UNIT", str(tmp_path / "etc" / "mxone-agent.service"))
    monkeypatch.setattr(paths, "RELEASES", str(tmp_path / "releases"))
    return tmp_path


@pytest.mark.parametrize(("active", "last"), [(False, "start"), (True, "restart")])
def test_enable_then_start_or_restart_never_both(fake_unit_dir: Path, active: bool, last: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Systemctl(active)
    monkeypatch.setattr(subprocess, "run", fake)
    assert service.start_unit(UNIT) == (True, "", [])
    assert fake.calls == [["is-active", "--quiet", "mxone-agent"], ["daemon-reload"],
                          ["enable", "--quiet", "mxone-agent"], [last, "mxone-agent"]]
    fake.calls.clear()
    assert service.start_unit(UNIT) == (True, "", [])  # the unit unchanged: no daemon-reload
    assert ["daemon-reload"] not in fake.calls and fake.calls[-1] == [last, "mxone-agent"]


@pytest.mark.parametrize("step", ["daemon-reload", "enable", "start"])
def test_a_failing_systemctl_is_reported_in_its_words(fake_unit_dir: Path, step: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    words = "Failed to enable unit: Unit file mxone-agent.service is masked."
    fake = Systemctl(False, fail=step, words=words)
    monkeypatch.setattr(subprocess, "run", fake)
    ok, why, _ = service.start_unit(UNIT)
    assert not ok
    args = {"daemon-reload": "daemon-reload", "enable": "enable --quiet mxone-agent",
            "start": "start mxone-agent"}[step]
    assert why == f"systemctl {args} failed: {words}"
    assert fake.calls[-1][0] == step  # nothing after the step that failed


def test_the_release_logrotate_config_is_installed_once_where_logrotate_reads(
        tmp_path: Path) -> None:
    release = tmp_path / "release"
    source = release / service.LOGROTATE_SOURCE
    source.parent.mkdir(parents=True)
    source.write_bytes(b"/var/log/mxone/agent.log {\n    weekly\n}\n")
    root = tmp_path / "root"
    target = root / paths.LOGROTATE.lstrip("/")
    # No logrotate on the node: nothing written, nothing said.
    assert service.install_logrotate(str(release), str(root)) == []
    assert not target.exists()
    target.parent.mkdir(parents=True)
    assert service.install_logrotate(str(release), str(root)) == []
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o644
    first = target.stat().st_ino
    assert service.install_logrotate(str(release), str(root)) == []
    assert target.stat().st_ino == first  # unchanged: not rewritten
    source.unlink()
    [warning] = service.install_logrotate(str(release), str(root))
    assert paths.LOGROTATE in warning and "No such file" in warning
