"""The steps of the master and the standby configuration, in the seed's order.

Each step does one thing the operator reads about on its own screen and gives the lines
that say what was done; the TUI runs them one screen at a time, the CLI's
``redundancy setup-master`` / ``setup-standby`` one after the other. Every answer is
checked (:mod:`mxone_web.vip`, :mod:`mxone_web.pwquality`) before the first step changes
anything, and a step that needs the administrator's sudo proves that password first.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import paramiko  # type: ignore[import-untyped]
from mxone_web import manager, pwquality, remote, settings, vip
from mxone_web.context import Say, Web
from mxone_web.discover import Pair
from mxone_web.errors import Refused, WebError
from mxone_web.stack.api import PairRole, PairSettings

MANAGER_PASSWORD = "mxone_manager password"
SUDOERS = "/etc/sudoers.d/mxone-webserver-status"
#: What mxone_manager may run as root on this server for its peer, without a password:
#: the peer's CheckStatus reads this server's status; the master's Fallback has this
#: server's database follow the master's again.
STATUS_WORDS = "redundancy status --here --json"
REJOIN_WORDS = "redundancy rejoin --here --json"
PEER_COMMANDS = (STATUS_WORDS, REJOIN_WORDS)


def require_role(pair: Pair, role: PairRole, what: str) -> None:
    """Refuse ``what`` on the wrong server of the pair, naming the right one."""
    if pair.role is role:
        return
    right = pair.master if role is PairRole.MASTER else pair.standby
    raise Refused(f"{what} runs on the {role} {right.name} ({right.base_ip}); this server "
                  f"{pair.local.name} is the {pair.role}")


@dataclass(frozen=True)
class Answers:
    """The operator's checked answers about the pair (no password of an account)."""

    vip: ipaddress.IPv4Address
    user: str
    password: str

    def settings(self, pair: Pair) -> PairSettings:
        return PairSettings(role=pair.role, master=pair.master, standby=pair.standby,
                            cluster=pair.cluster, network=pair.network,
                            interface=pair.interface, vip=self.vip, replication_user=self.user,
                            replication_password=self.password, fallback=pair.fallback,
                            witnesses=pair.witnesses)


def check_answers(web: Web, pair: Pair, vip_text: str, user: str, password: str,
                  again: str) -> Answers:
    """The virtual IP and replication role, every rule checked (the master probes the
    address; the standby's address is the one the master holds, checked equal instead)."""
    current = web.saved()
    probe = web.probe if pair.role is PairRole.MASTER else None
    address = vip.check_vip(vip_text, pair, probe, current.vip if current else None)
    name = vip.check_user(user)
    return Answers(address, name, vip.check_password(password, again, name))


def plan_lines(pair: Pair, answers: Answers | None, admin: str = "") -> list[str]:
    """What the configuration of this server will do, server by server."""
    here, peer = pair.local.name, pair.peer.name
    if pair.role is PairRole.MASTER:
        steps = [(here, "set the password of mxone_manager"),
                 (peer, (f"log in as {admin}, prove its sudo password, set the password of "
                  "mxone_manager")),
                 (here, (f"key pair for mxone_manager, authorized on {peer} (silent login, "
                  f"{peer}'s host key pinned)")),
                 (peer, f"check that {manager.PACKAGE} is installed (offer to install it)")]
    else:
        steps = [(here, (f"key pair for mxone_manager, authorized on {peer} (silent login, "
                  f"{peer}'s host key pinned)")),
                 (peer, ("read the master's virtual IP and replication role; refuse "
                  "answers that differ"))]
    if answers is not None:
        steps.append((here, (f"save the pair settings ({settings.SETTINGS}, 0600) and "
                      f"configure keepalived (virtual IP {answers.vip}), PostgreSQL "
                      f"({'primary' if pair.role is PairRole.MASTER else 'hot standby'}, "
                      f"replication role {answers.user}) and the web server")))
    return [f"  {server:<12} {what}" for server, what in steps]


# ---- the master --------------------------------------------------------------------------

def manager_passwords(web: Web, pair: Pair, password: str, admin: str, admin_password: str,
                      host_key: paramiko.PKey) -> list[str]:
    """mxone_manager's password here and on the standby (the seed's steps 6-8). The
    standby's sudo password is proven before either server is changed."""
    pwquality.require(MANAGER_PASSWORD, password, manager.MANAGER)
    with web.session(pair, admin, host_key, password=admin_password) as s:
        sudo = manager.Sudo(s, admin, admin_password)
        sudo.prove()
        lines = [manager.set_password(web.local_shell(pair.local.name), password),
                 manager.set_password(sudo, password)]
        lines += status_rule(web.local_shell(pair.local.name))
        lines += status_rule(sudo)
    return lines


def status_rule(root: remote.Shell) -> list[str]:
    """Let mxone_manager run :data:`PEER_COMMANDS` here for the peer (by sudo without a
    password, those two command lines only); skipped where the tool is not found."""
    path = manager.tool()
    if not root.run(f"test -x {remote.quote([path])}").ok:
        return [(f"{root.where}: webserver_config not found: CheckStatus from the peer "
                "will not see this server")]
    rule = "".join(f"{manager.MANAGER} ALL=(root) NOPASSWD: {path} {command}\n"
                   for command in PEER_COMMANDS)
    tmp = SUDOERS + ".new"
    ran = root.run(f"umask 0337 && cat > {tmp} && visudo -cqf {tmp} && mv -f {tmp} {SUDOERS}",
                   rule)
    if not ran.ok:
        return [f"{root.where}: the status rule for the peer was not written: {ran.why()}"]
    return [f"{root.where}: mxone_manager may ask this server's status and have it rejoin "
            f"({SUDOERS})"]


def silent_login(web: Web, pair: Pair, peer_password: str,
                 host_key: paramiko.PKey) -> list[str]:
    """mxone_manager's key pair here, authorized on the peer (seed steps 9-11; standby 3)."""
    def connect(user: str, *, password: str | None = None,
                key: paramiko.PKey | None = None) -> remote.Session:
        return web.session(pair, user, host_key, password=password, key=key)

    return manager.silent_login(web.account(), pair.local, pair.peer, host_key, peer_password,
                                connect)


def standby_package(web: Web, pair: Pair, admin: str, admin_password: str,
                    host_key: paramiko.PKey, install: bool) -> list[str]:
    """The management package on the standby (seed step 12): checked, installed when
    ``install``; refused when missing and not to be installed."""
    with web.session(pair, admin, host_key, password=admin_password) as s:
        state = manager.package_state(s)
        if state.installed:
            return [state.line]
        if not install:
            raise Refused(f"{pair.standby.name}: {manager.PACKAGE} is not installed; install "
                          "it (--install-package, or Yes on the screen) and set up again")
        sudo = manager.Sudo(s, admin, admin_password)
        return [f"{pair.standby.name}: installed " + manager.install_package(sudo).line]


def package_here(web: Web, pair: Pair) -> manager.PackageState:
    return manager.package_state(web.local_shell(pair.local.name))


# ---- this server's half: saved, then configured ---------------------------------------------

def apply(web: Web, s: PairSettings, say: Say, restart: bool = True) -> list[str]:
    """Save the settings here (and on the master, its answers for the standby's check),
    then configure this server's stack (unless ``restart`` is False: saved only)."""
    settings.save(s, web.settings_path)
    lines = [f"{s.local.name}: pair settings saved ({web.settings_path})"]
    if s.role is PairRole.MASTER:
        settings.save_master_answers(s, web.account().owner, web.answers_path)
        lines.append(f"{s.local.name}: answers left for {s.standby.name}'s check "
                     f"({web.answers_path})")
    if not restart:
        return [*lines, f"{s.local.name}: web server NOT restarted: run Reconfigure to apply"]
    shown: list[str] = []

    def tell(line: str) -> None:
        shown.append(line)
        say(line)

    web.stack.configure(s, tell)
    return [*lines, *shown]


def apply_fallback(web: Web, s: PairSettings, say: Say) -> list[str]:
    """Reconfigure Fallback: save the settings with their new fallback type (and, on the
    master, its answers for the standby's check), then have this server's keepalived follow
    it - and nothing else: the databases and the VIP stay as they are."""
    settings.save(s, web.settings_path)
    lines = [f"{s.local.name}: pair settings saved ({web.settings_path})"]
    if s.role is PairRole.MASTER:
        settings.save_master_answers(s, web.account().owner, web.answers_path)
    shown: list[str] = []

    def tell(line: str) -> None:
        shown.append(line)
        say(line)

    web.stack.reconfigure_fallback(s, tell)
    return [*lines, *shown, f"{s.local.name}: PM/SNM fallback is {s.fallback}"]


# ---- the standby -------------------------------------------------------------------------

def master_answers(web: Web, pair: Pair, host_key: paramiko.PKey) -> object:
    """The master's answers, read over the silent login (seed standby step 4)."""
    with web.session(pair, manager.MANAGER, host_key, key=web.manager_key()) as s:
        text = manager.fetch_master_answers(s, str(settings.MASTER_ANSWERS))
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise WebError(f"{pair.master.name}: the master's answers are not JSON: {e.msg}") from e


def check_against_master(web: Web, pair: Pair, answers: Answers,
                         host_key: paramiko.PKey) -> list[str]:
    settings.check_same(master_answers(web, pair, host_key), answers.vip, answers.user,
                        answers.password)
    return [(f"{pair.standby.name}: virtual IP {answers.vip} and replication role "
            f"{answers.user} equal the master's ({pair.master.name})")]
