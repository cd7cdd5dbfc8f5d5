"""Every step and utility of ``webserver_config`` > Redundancy, once, as a named command.

Built on the maintenance tool's command layer: the same :class:`Param`, :class:`Result`,
``report`` and :func:`~mxone_maintenance.commands.base.explain` (so a refusal reads and
exits the same way). A :class:`WebCommand` runs against :class:`~mxone_web.context.Web`
(this server) instead of the system config on LIM 1, and names its *secrets*, which the
faces ask at a prompt or read from stdin - never from the command line. ``plan`` checks
every answer and says what the command will do (its dry run); ``run`` does it, after the
same checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mxone_web import manager, pwquality, setup, utilities
from mxone_web.context import Web
from mxone_web.stack.api import PairRole

from mxone_maintenance.commands.base import Dotted, Param, Report, Result, Values

GROUPS = {"redundancy": "PM/SNM redundancy: set up, check, reconfigure, fall back, remove"}


@dataclass(frozen=True)
class Secret:
    """A password the command needs: asked at a prompt (twice when ``twice``) or read
    from stdin, one line each, in the command's order."""

    name: str
    prompt: str
    twice: bool = False


@dataclass(frozen=True)
class WebCommand(Dotted):
    name: str
    help: str
    label: str  # the menu's words
    run: Callable[[Web, Values, Report], Result]
    params: tuple[Param, ...] = ()
    secrets: tuple[Secret, ...] = ()
    plan: Callable[[Web, Values], Result] | None = None
    schema: int = 1  # the version of the shape its --json prints (docs/json.md)


def again(v: Values, name: str) -> str:
    """The second typing of a secret asked twice (the same value when read from stdin)."""
    return str(v.get(f"{name}_again", v[name]))


def _say(report: Report) -> Callable[[str], None]:
    return lambda line: report(line, 0.5)


def _kept(report: Report) -> tuple[list[str], Callable[[str], None]]:
    """The lines a step tells (shown as they come, and kept for its result)."""
    lines: list[str] = []

    def tell(line: str) -> None:
        lines.append(line)
        report(line, 0.5)

    return lines, tell


def _done(lines: list[str], data: dict[str, Any], ok: bool = True) -> Result:
    return Result(ok, {"ok": ok, **data, "lines": lines}, tuple(lines))


# ---- Master and Standby Configuration -----------------------------------------------------

VIP = Param("vip", "the virtual IP: a free address of the cluster's subnet", flag="--vip",
            metavar="IP", required=True)
USER = Param("replication_user", "the PostgreSQL replication role's name",
             flag="--replication-user", metavar="NAME", required=True)
HOST_KEY = Param("peer_host_key", "the other server's SSH host key fingerprint (SHA256:...), "
                 "compared on its console; only needed when no key of it is pinned here",
                 flag="--peer-host-key", metavar="FINGERPRINT")
REPLICATION_PASSWORD = Secret("replication_password", "Replication role password", twice=True)


def _master_plan(web: Web, v: Values) -> Result:
    pair = web.pair()
    setup.require_role(pair, PairRole.MASTER, "the master configuration")
    pwquality.require_twice(setup.MANAGER_PASSWORD, v["manager_password"],
                            again(v, "manager_password"), manager.MANAGER)
    answers = setup.check_answers(web, pair, v["vip"], v["replication_user"],
                                  v["replication_password"], again(v, "replication_password"))
    lines = [*pair.lines(), "", "Plan:", *setup.plan_lines(pair, answers, v["standby_admin"])]
    return Result(True, {"dry_run": True, "role": "master", "vip": str(answers.vip),
                         "plan": lines}, tuple(lines))


def _master(web: Web, v: Values, report: Report) -> Result:
    _master_plan(web, v)  # every answer checked before anything is changed
    pair = web.pair()
    answers = setup.check_answers(web, pair, v["vip"], v["replication_user"],
                                  v["replication_password"], again(v, "replication_password"))
    host_key = web.peer_host_key(pair, v.get("peer_host_key"))
    admin, sudo_password = v["standby_admin"], v["standby_sudo_password"]
    report("setting the password of mxone_manager on both servers", 0.1)
    lines = setup.manager_passwords(web, pair, v["manager_password"], admin, sudo_password,
                                    host_key)
    report("setting up the silent login", 0.3)
    lines += setup.silent_login(web, pair, v["manager_password"], host_key)
    report(f"checking {manager.PACKAGE} on {pair.standby.name}", 0.4)
    lines += setup.standby_package(web, pair, admin, sudo_password, host_key,
                                   bool(v.get("install_package")))
    lines += setup.apply(web, answers.settings(pair), _say(report))
    lines.append(f"Next: run webserver_config > Redundancy on the standby {pair.standby.name}")
    return _done(lines, {"role": "master", "vip": str(answers.vip)})


def _standby_plan(web: Web, v: Values) -> Result:
    pair = web.pair()
    setup.require_role(pair, PairRole.STANDBY, "the standby configuration")
    answers = setup.check_answers(web, pair, v["vip"], v["replication_user"],
                                  v["replication_password"], again(v, "replication_password"))
    lines = [*pair.lines(), "", "Plan:", *setup.plan_lines(pair, answers)]
    return Result(True, {"dry_run": True, "role": "standby", "vip": str(answers.vip),
                         "plan": lines}, tuple(lines))


def _standby(web: Web, v: Values, report: Report) -> Result:
    _standby_plan(web, v)
    pair = web.pair()
    answers = setup.check_answers(web, pair, v["vip"], v["replication_user"],
                                  v["replication_password"], again(v, "replication_password"))
    host_key = web.peer_host_key(pair, v.get("peer_host_key"))
    report("setting up the silent login to the master", 0.1)
    lines = setup.silent_login(web, pair, v["master_manager_password"], host_key)
    lines += setup.check_against_master(web, pair, answers, host_key)
    lines += setup.apply(web, answers.settings(pair), _say(report),
                         restart=not v.get("no_restart"))
    return _done(lines, {"role": "standby", "vip": str(answers.vip)})


# ---- Utilities ------------------------------------------------------------------------------

def _status(web: Web, v: Values, report: Report) -> Result:
    found, lines = utilities.check_status(web, bool(v.get("here")))
    if v.get("here"):
        return Result(True, dict(found[0]), tuple(lines))
    return Result(all("unknown" not in s for s in found),
                  {"servers": [dict(s) for s in found]}, tuple(lines))


def _reconfigure_plan(web: Web, v: Values) -> Result:
    pair = web.pair()
    web.need_saved("Reconfigure")
    answers = setup.check_answers(web, pair, v["vip"], v["replication_user"],
                                  v["replication_password"], again(v, "replication_password"))
    order = ("the master first: the standby next" if pair.role is PairRole.MASTER
             else "the standby, after the master")
    lines = [f"Reconfigure {pair.local.name} ({order})", *setup.plan_lines(pair, answers)[-1:]]
    return Result(True, {"dry_run": True, "role": str(pair.role), "plan": lines}, tuple(lines))


def _reconfigure(web: Web, v: Values, report: Report) -> Result:
    _reconfigure_plan(web, v)
    pair = web.pair()
    answers = setup.check_answers(web, pair, v["vip"], v["replication_user"],
                                  v["replication_password"], again(v, "replication_password"))
    lines: list[str] = []
    if pair.role is PairRole.STANDBY:
        lines += utilities.reconfigure_standby(web, pair, answers,
                                               web.peer_host_key(pair, v.get("peer_host_key")))
    lines += setup.apply(web, answers.settings(pair), _say(report))
    if pair.role is PairRole.MASTER:
        lines.append(f"Next: Reconfigure on the standby {pair.standby.name}")
    return _done(lines, {"role": str(pair.role)})


def _fallback_plan(web: Web, v: Values) -> Result:
    pair = web.pair()
    setup.require_role(pair, PairRole.MASTER, "Fallback")
    web.need_saved("Fallback")
    lines = [(f"Fallback: PM/SNM returns to the master {pair.master.name}: its database "
             f"catches up as a standby of {pair.standby.name}'s, then the roles switch and "
             "the virtual IP comes back (no committed row lost)")]
    return Result(True, {"dry_run": True, "plan": lines}, tuple(lines))


def _fallback(web: Web, v: Values, report: Report) -> Result:
    _fallback_plan(web, v)
    saved = web.need_saved("Fallback")
    lines, tell = _kept(report)
    web.stack.fallback(saved, tell)
    for line in utilities.peer_rejoin(web, web.pair()):
        tell(line)
    return _done(lines, {"server": saved.local.name})


def _install_app(web: Web, v: Values, report: Report) -> Result:
    lines, tell = _kept(report)
    web.stack.install_app(tell)
    return _done(lines, {"package": manager.PACKAGE})


def _rejoin_plan(web: Web, v: Values) -> Result:
    pair = web.pair()
    web.need_saved("Rejoin")
    lines = [(f"Rejoin on {pair.local.name}: if the virtual IP is on {pair.peer.name}, this "
              f"server's database becomes a standby of {pair.peer.name}'s again (pg_rewind, "
              "or a fresh base backup)")]
    return Result(True, {"dry_run": True, "plan": lines}, tuple(lines))


def _rejoin(web: Web, v: Values, report: Report) -> Result:
    _rejoin_plan(web, v)
    saved = web.need_saved("Rejoin")
    lines, tell = _kept(report)
    web.stack.rejoin(saved, tell)
    return _done(lines, {"server": saved.local.name})


def _refallback_plan(web: Web, v: Values) -> Result:
    pair = web.pair()
    saved = web.need_saved("Reconfigure Fallback")
    lines = [(f"Reconfigure Fallback on {pair.local.name}: PM/SNM fallback {saved.fallback} -> "
             f"{pair.fallback} (the cluster's fallback type)")]
    if pair.role is PairRole.MASTER:
        lines.append(f"  then on the standby {pair.standby.name}")
    return Result(True, {"dry_run": True, "from": str(saved.fallback), "to": str(pair.fallback),
                         "plan": lines}, tuple(lines))


def _refallback(web: Web, v: Values, report: Report) -> Result:
    _refallback_plan(web, v)
    pair = web.pair()
    saved = web.need_saved("Reconfigure Fallback")
    host_key = (web.peer_host_key(pair, v.get("peer_host_key"))
                if pair.role is PairRole.STANDBY else None)
    follows = utilities.fallback_follows(web, pair, saved, host_key)
    lines = setup.apply_fallback(web, follows, _say(report))
    if pair.role is PairRole.MASTER:
        lines.append(f"Next: Reconfigure Fallback on the standby {pair.standby.name}")
    return _done(lines, {"fallback": str(follows.fallback)})


def _remove_plan(web: Web, v: Values) -> Result:
    pair = web.pair()
    web.need_saved("Remove Redundancy")
    lines = [(f"Remove Redundancy on {pair.local.name}: keepalived stopped and disabled, "
             "replication removed, the database stand-alone and writable, the page served "
             f"at http://{pair.local.base_ip}/mp")]
    lines.append(f"  the standby {pair.standby.name} next" if pair.role is PairRole.MASTER
                 else f"  after the master {pair.master.name} (checked)")
    return Result(True, {"dry_run": True, "plan": lines}, tuple(lines))


def _remove(web: Web, v: Values, report: Report) -> Result:
    _remove_plan(web, v)
    pair = web.pair()
    saved = web.need_saved("Remove Redundancy")
    host_key = (web.peer_host_key(pair, v.get("peer_host_key"))
                if pair.role is PairRole.STANDBY and not v.get("master_down") else None)
    lines = utilities.remove_allowed(web, pair, host_key, bool(v.get("master_down")))
    lines += utilities.remove(web, saved, _say(report))
    return _done(lines, {"server": saved.local.name})


COMMANDS: tuple[WebCommand, ...] = (
    WebCommand("redundancy.setup-master", "Master Configuration, on LIM 1's server: "
               "mxone_manager's password on both servers, the silent login, the management "
               "package on the standby, the virtual IP and the replication role",
               "Master configuration", _master, (
                   VIP, USER,
                   Param("standby_admin", "the standby's administrator account (logs in with "
                         "its password and uses sudo)", flag="--standby-admin", metavar="USER",
                         default="root"),
                   Param("install_package", f"install {manager.PACKAGE} on the standby when it "
                         "is missing", kind="flag", flag="--install-package"),
                   HOST_KEY),
               (Secret("manager_password", "New or existing password for mxone_manager",
                       twice=True),
                Secret("standby_sudo_password", "sudo password of the standby's administrator"),
                REPLICATION_PASSWORD), _master_plan),
    WebCommand("redundancy.setup-standby", "Standby Configuration, on the standby: the "
               "silent login to the master, the master's virtual IP and replication role "
               "repeated (checked equal), the web server restarted", "Standby configuration",
               _standby, (
                   VIP, USER,
                   Param("no_restart", "save the settings, do not restart the web server now",
                         kind="flag", flag="--no-restart"),
                   HOST_KEY),
               (Secret("master_manager_password", "Password of mxone_manager on the master"),
                Secret("replication_password", "Replication role password")), _standby_plan),
    WebCommand("redundancy.status", "CheckStatus: keepalived, the management package, the "
               "database role, replication state and lag, per server", "CheckStatus",
               _status, (Param("here", "this server only (what the peer's CheckStatus asks)",
                               kind="flag", flag="--here"),)),
    WebCommand("redundancy.reconfigure", "Reconfigure: on the master first, then on the "
               "standby (enforced: the standby must repeat the master's current answers)",
               "Reconfigure", _reconfigure, (VIP, USER, HOST_KEY), (REPLICATION_PASSWORD,),
               _reconfigure_plan),
    WebCommand("redundancy.fallback", "Fallback, on the master after a manual fallback of "
               "the cluster: PM/SNM returns to the master", "Fallback", _fallback,
               plan=_fallback_plan),
    WebCommand("redundancy.rejoin", "Rejoin, on the server that is not active: its "
               "database follows the active server's again (the master's Fallback runs it "
               "on the standby)", "Rejoin", _rejoin,
               (Param("here", "this server only (what the master's Fallback asks)",
                      kind="flag", flag="--here"),), plan=_rejoin_plan),
    WebCommand("redundancy.install-app", f"Install the management application "
               f"({manager.PACKAGE}, the reference mxone_snm) on this server, not started: "
               "what the master's configuration offers when the standby lacks it",
               "Install the management application", _install_app,
               (Param("here", "this server (what the master's configuration asks)",
                      kind="flag", flag="--here"),)),
    WebCommand("redundancy.reconfigure-fallback", "Reconfigure Fallback: PM/SNM follows the "
               "cluster's fallback type (master first, then standby)", "Reconfigure Fallback",
               _refallback, (HOST_KEY,), plan=_refallback_plan),
    WebCommand("redundancy.remove", "Remove Redundancy: on the master first, then on the "
               "standby; both left stand-alone", "Remove Redundancy", _remove, (
                   Param("master_down", "on the standby: the master is down for good, remove "
                         "here without checking it", kind="flag", flag="--master-down"),
                   HOST_KEY), plan=_remove_plan),
)

_BY_NAME = {c.name: c for c in COMMANDS}


def command(name: str) -> WebCommand:
    """The command named ``name``; KeyError when there is none."""
    return _BY_NAME[name]
