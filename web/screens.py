"""The screens of Redundancy, in the seed's order: the master configuration, the standby
configuration, and the utilities while redundancy is set.

Each screen asks one thing; its answer is checked by the rules
(:mod:`mxone_web.vip`, :mod:`mxone_web.pwquality`, :mod:`mxone_web.settings`) or done by
the steps (:mod:`mxone_web.setup`, :mod:`mxone_web.utilities`) in the background, and a
refusal is shown on the screen that asked, which stays. The utilities are the registry's
commands (:mod:`mxone_web.commands`): form, plan, confirm, per-server result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paramiko  # type: ignore[import-untyped]
from mxone_menus import steps, tree, views
from mxone_web import commands, manager, pwquality, remote, setup, vip
from mxone_web.discover import Pair
from mxone_web.errors import failure_lines
from mxone_web.stack.api import PairRole

from mxone_maintenance.knownhosts import fingerprint

if TYPE_CHECKING:
    from mxone_web.tui import WebApp

LIMITATIONS = [
    "Considerations and limitations of PM/SNM redundancy:", "",
    ("1) Protocol changes, authentication changes and certificate changes of webserver_config "
    "are made on each server separately: make them on the active server AND on the standby."),
    ("2) Files the management UI stores on the server are not replicated to the other server "
    "(for example database backups made from the GUI): keep them elsewhere too."),
]
LIMITATIONS_HELP = " ".join(LIMITATIONS[2:])
UTILITIES = ("redundancy.status", "redundancy.reconfigure", "redundancy.fallback",
             "redundancy.reconfigure-fallback", "redundancy.remove")


def redundancy(app: WebApp, base: int) -> None:
    """Redundancy: the utilities once it is set here, else this server's configuration."""
    if app.web.saved() is not None:
        items: list[tree.Item] = [tree.Choice(commands.command(n).label, commands.command(n).help,
                                              n) for n in UTILITIES]
        app.window.push(views.MenuView(tree.SubMenu("Redundancy", "Utilities while redundancy "
                                                    "is set.", tuple(items)), app.choose))
        return
    pair = app.web.pair()
    Setup(app, pair, base).start()


@dataclass
class Setup:
    """One run of the master or the standby configuration: the answers so far."""

    app: WebApp
    pair: Pair
    base: int
    host_key: paramiko.PKey | None = None
    answers: dict[str, Any] = field(default_factory=dict)

    @property
    def master(self) -> bool:
        return self.pair.role is PairRole.MASTER

    @property
    def title(self) -> str:
        return "Redundancy: " + ("master" if self.master else "standby") + " configuration"

    def start(self) -> None:
        p = self.pair
        self.app.confirm("Redundancy", [
            f"Set up PM/SNM redundancy on this server, {p.local.name}: the "
            + ("master (it runs LIM 1)." if self.master else "standby of LIM 1's cluster."),
            "SN redundancy must be set first (it is: LIM 1 is in cluster " + p.cluster + ").",
            "" if self.master else "The master configuration must be done first, on "
            + p.master.name + ".",
            "The system finds the master, standby and cluster addresses by itself."],
            "Continue?", self.found)

    def found(self) -> None:
        self.app.confirm("SNM Configuration", [
            "System is automatically fetching details of master and its standby:", "",
            *self.pair.lines()], "Continue?", self.peer_key)

    # ---- the peer's host key: pinned, or shown and confirmed ------------------------------

    def peer_key(self) -> None:
        def job(report: Any) -> tuple[paramiko.PKey | None, paramiko.PKey | None]:
            pinned = remote.pinned_key(self.pair.peer, self.app.web.host_key_files)
            if pinned is not None:
                return pinned, None
            return None, remote.offered_key(self.pair.peer, self.app.web.ssh_port)

        def done(found: tuple[paramiko.PKey | None, paramiko.PKey | None]) -> None:
            pinned, offered = found
            if pinned is not None:
                self.host_key = pinned
                self.after_key()
                return
            assert offered is not None
            peer = self.pair.peer

            def answer(accepted: bool) -> None:
                self.app.window.pop()
                if accepted:
                    self.host_key = offered
                    self.after_key()

            self.app.window.push(views.HostKeyView(
                peer.name, str(peer.base_ip), offered.get_name(), fingerprint(offered),
                f"{manager.MANAGER}'s known_hosts", answer))

        self.app.work(self.title, job, done)

    def after_key(self) -> None:
        (self.manager_password if self.master else self.master_password)()

    # ---- the master: mxone_manager's password, sudo, silent login, package ----------------

    def manager_password(self) -> None:
        def submit(v: dict[str, object]) -> None:
            pwquality.require_twice(setup.MANAGER_PASSWORD, str(v["password"]),
                                    str(v["again"]), manager.MANAGER)
            self.answers["manager_password"] = str(v["password"])
            self.standby_sudo()

        self.app.form("mxone_manager password", "Enter the new or existing password for "
                      f"mxone_manager, set on {self.pair.master.name} and on "
                      f"{self.pair.standby.name}.", (
                          steps.TextField("password", "provide password:", secret=True,
                                          help="Checked by libpwquality (pwquality.conf)."),
                          steps.TextField("again", "Retype new password:", secret=True)),
                      submit)

    def standby_sudo(self) -> None:
        sb = self.pair.standby

        def submit(v: dict[str, object]) -> None:
            admin, password = str(v["admin"]).strip(), str(v["sudo"])
            self.answers.update(admin=admin, sudo=password)
            assert self.host_key is not None
            key = self.host_key
            self.app.work(self.title, lambda report: setup.manager_passwords(
                self.app.web, self.pair, self.answers["manager_password"], admin, password,
                key), lambda lines: self.show(lines, self.silent_login), self.form_errors)

        self.app.form(f"sudo password of {sb.name}", f"The password of mxone_manager is also "
                      f"set on the standby {sb.name} ({sb.base_ip}): the tool logs in there as "
                      "an administrator and uses sudo. Nothing is changed on either server "
                      "unless sudo accepts the password.", (
                          steps.TextField("admin", "administrator account:", "root"),
                          steps.TextField("sudo", "[sudo] password:", secret=True)), submit)

    def silent_login(self) -> None:
        peer = self.pair.peer
        assert self.host_key is not None
        key = self.host_key
        password = self.answers["manager_password" if self.master else "master_password"]
        self.app.confirm("Silent login", [
            (f"Configuring silent login between {self.pair.local.name} and {peer.name}: an "
            f"ed25519 key pair for mxone_manager (no passphrase), authorized on {peer.name} "
            "with mxone_manager's password there."),
            f"{peer.name}'s host key: {key.get_name()} {fingerprint(key)} (pinned)"],
            "Set up the silent login now?", lambda: self.app.work(
                self.title, lambda report: setup.silent_login(self.app.web, self.pair,
                                                              password, key),
                lambda lines: self.show(lines, self.package if self.master else
                                        self.virtual_ip)))

    def package(self) -> None:
        sb, key = self.pair.standby, self.host_key
        assert key is not None
        admin, sudo = self.answers["admin"], self.answers["sudo"]

        def check(install: bool) -> None:
            self.app.work(self.title, lambda report: setup.standby_package(
                self.app.web, self.pair, admin, sudo, key, install),
                lambda lines: self.show(lines, self.virtual_ip), offer)

        def install() -> None:
            self.app.window.pop()
            check(True)

        def offer(lines: list[str]) -> None:
            self.app.confirm("SW Package Installation", [
                *lines, "", (f"{manager.PACKAGE} (SNM) must be installed on {sb.name}; in a "
                "co-existing system PM must be installed on both servers too.")],
                f"Install {manager.PACKAGE} on {sb.name} now?",
                install,
                lambda: self.app.message(self.title, [("Not set up: the standby needs "
                                                      f"{manager.PACKAGE}.")], self.base))

        check(False)

    # ---- the standby: the master's mxone_manager password ---------------------------------

    def master_password(self) -> None:
        m = self.pair.master

        def submit(v: dict[str, object]) -> None:
            self.answers["master_password"] = str(v["password"])
            self.silent_login()

        self.app.form("Silent login to the master", f"Enter the password of mxone_manager on "
                      f"the master {m.name} ({m.base_ip}), as set by the master configuration.",
                      (steps.TextField("password", "password of mxone_manager:", secret=True),),
                      submit)

    # ---- both: the virtual IP and the replication role ------------------------------------

    def virtual_ip(self) -> None:
        def submit(v: dict[str, object]) -> None:
            vip.check_vip(str(v["vip"]), self.pair,
                                self.app.web.probe if self.master else None)
            self.answers["vip"] = str(v["vip"]).strip()
            self.replication()

        same = "" if self.master else " Enter the virtual IP given on the master."
        self.app.form("Virtual IP", "The common address of PM/SNM: it moves to the active "
                      f"server. A free address of {self.pair.network}.{same}",
                      (steps.TextField("vip", "Virtual IP:"),), submit)

    def replication(self) -> None:
        def submit(v: dict[str, object]) -> None:
            again = str(v.get("again", v["password"]))
            answers = setup.check_answers(self.app.web, self.pair, self.answers["vip"],
                                          str(v["user"]), str(v["password"]), again)
            if self.master:
                self.plan(answers)
                return
            key = self.host_key
            assert key is not None
            self.app.work(self.title, lambda report: setup.check_against_master(
                self.app.web, self.pair, answers, key),
                lambda lines: self.restart(answers, lines), self.form_errors)

        fields = [steps.TextField("user", "Replication user name:"),
                  steps.TextField("password", "Replication role password:", secret=True)]
        if self.master:
            fields.append(steps.TextField("again", "Retype password:", secret=True))
        same = ("Give the same user name and password when setting up the standby."
                if self.master else "The same as given on the master.")
        self.app.form("Replication role", "User name and password for the replication role: "
                      "the PostgreSQL role the standby's database replicates with. " + same,
                      fields, submit)

    def plan(self, answers: setup.Answers) -> None:
        self.app.confirm(self.title, ["This will do:", "",
                                      *setup.plan_lines(self.pair, answers)[-1:]],
                         "Configure now?", lambda: self.apply(answers, True))

    def restart(self, answers: setup.Answers, lines: list[str]) -> None:
        self.app.window.pop()  # the form: its answers are taken
        self.app.confirm("Webserver Restart", [*lines, "", "Re-start webserver now?",
                                               ("Please note that this will restart the "
                                               "application :"), "SNM"],
                         "Re-start webserver now?", lambda: self.apply(answers, True),
                         lambda: self.apply(answers, False))

    def apply(self, answers: setup.Answers, restart: bool) -> None:
        s = answers.settings(self.pair)

        def done(lines: list[str]) -> None:
            url = f"http://{answers.vip}/mp" if restart else ""
            self.app.message(f"{self.title}: done", [
                *lines, "", *([(f"The active server answers at {url} and "
                               f"http://{answers.vip}/snm")] if url else []),
                *([("Next: run webserver_config > Redundancy on the standby "
                   f"{self.pair.standby.name}.")] if self.master else []), "",
                *LIMITATIONS], self.base)

        self.app.work(self.title, lambda report: setup.apply(
            self.app.web, s, lambda line: report(line, 0.5), restart), done)

    # ---- the steps between screens ---------------------------------------------------------

    def show(self, lines: list[str], then: Any) -> None:
        """The lines a step gave, then (Enter) the next screen."""
        self.app.window.push(views.TextView(self.title, [*lines, "", "Enter: continue"],
                                            lambda: then(), "result"))

    def form_errors(self, lines: list[str]) -> None:
        top = self.app.window.top
        if isinstance(top, views.FormView):
            top.show_errors(lines)
            self.app.window.refresh()
        else:
            self.app.message(f"{self.title}: stopped", lines, self.base)


# ---- the utilities ---------------------------------------------------------------------------

def utility(app: WebApp, name: str, base: int) -> None:
    """A utility: its answers (a form when it has any), its plan, Yes, the result."""
    cmd = commands.command(name)

    def planned(values: dict[str, object]) -> None:
        assert cmd.plan is not None
        plan = cmd.plan(app.web, values)
        app.confirm(cmd.label, [*plan.lines], f"{cmd.label} now?", lambda: app.work(
            cmd.label, lambda report: cmd.run(app.web, values, report),
            lambda r: app.message(f"{cmd.label}: {'done' if r.ok else 'failed'}",
                                  list(r.shown()), base)))

    if name == "redundancy.status":
        app.work(cmd.label, lambda report: cmd.run(app.web, {"here": False}, report),
                 lambda r: app.message(cmd.label, [*r.shown(), *LIMITATIONS], base))
    elif name == "redundancy.reconfigure":
        saved = app.web.need_saved(cmd.label)

        def submit(v: dict[str, object]) -> None:
            planned({"vip": v["vip"], "replication_user": v["user"],
                     "replication_password": v["password"],
                     "replication_password_again": v["again"], "peer_host_key": None})

        app.form(cmd.label, cmd.help + ". " + LIMITATIONS[2], (
            steps.TextField("vip", "Virtual IP:", str(saved.vip)),
            steps.TextField("user", "Replication user name:", saved.replication_user),
            steps.TextField("password", "Replication role password:", secret=True),
            steps.TextField("again", "Retype password:", secret=True)), submit)
    else:
        try:
            planned({"peer_host_key": None, "master_down": False})
        except Exception as exc:  # noqa: BLE001 - a refusal is shown, never a crash
            app.message(cmd.label, failure_lines(exc), base)
