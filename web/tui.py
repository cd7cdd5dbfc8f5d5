"""``webserver_config``'s menus: the maintenance utility's window, keys and views
(:mod:`mxone_menus`), with the screens of :mod:`mxone_web.screens`.

:class:`WebApp` is the driver: it pushes views, runs work off the loop (the menus'
runner), and shows every failure through the command layer's shared mapping. It works
without a loop too (``runner=InlineRunner()``): tests feed it keys and read the screen.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import TypeVar

import urwid
from mxone_menus import steps, tree, views
from mxone_menus.runner import InlineRunner, PipeRunner, Runner
from mxone_menus.window import PALETTE, Window
from mxone_web import discover, screens
from mxone_web.context import Web
from mxone_web.errors import failure_lines

T = TypeVar("T")
TITLE = "MX-ONE Web Server Configuration"


def _no_call(values: steps.Values) -> steps.Call:
    raise NotImplementedError("webserver_config's forms are submitted by its screens")


class WebApp:
    """The window with the "Configure web server" list, and the helpers the screens use."""

    def __init__(self, web: Web, runner: Runner | None = None, hostname: str | None = None) -> None:
        self.web = web
        self.runner: Runner = runner or InlineRunner()
        self.hostname = hostname or socket.gethostname()
        self.exit_code: int | None = None
        self.window = Window(lambda: f"{TITLE} - {self.hostname}", self.exit)
        self.window.push(views.MenuView(self.main_menu(), self.choose))

    # ---- the menu -------------------------------------------------------------------------

    def main_menu(self) -> tree.SubMenu:
        """"Configure web server": Redundancy only when LIM 1 is in a cluster (else the
        item says why)."""
        try:
            self.web.pair()
            why = ""
        except Exception as exc:  # noqa: BLE001 - any reason is shown on the item
            why = failure_lines(exc)[0]
        if why:
            item = tree.Choice(f"Redundancy (not available: {why})", why, "redundancy.none")
        else:
            item = tree.Choice("Redundancy", "PM/SNM redundancy between LIM 1's server (the "
                               "master) and its cluster's standby: set it up, or, once set, "
                               "its utilities.", "redundancy")
        return tree.SubMenu("Configure web server", "Choose what to configure.", (
            item,
            tree.Choice("Considerations and limitations", screens.LIMITATIONS_HELP,
                        "limitations"),
            tree.Exit("Exit", "Leave webserver_config."),
        ))

    def choose(self, item: tree.Item) -> None:
        if isinstance(item, tree.Exit):
            self.exit()
            return
        if isinstance(item, tree.Choice):
            base = len(self.window.stack)
            if item.command == "redundancy.none":
                self.message(item.label, [item.help, "", discover.NOT_IN_CLUSTER + " (set "
                             "it with mxone_maintenance > Cluster handling on LIM 1)."], base)
            elif item.command == "limitations":
                self.message(item.label, screens.LIMITATIONS, base)
            elif item.command == "redundancy":
                screens.redundancy(self, base)
            else:
                screens.utility(self, item.command, base)
        elif isinstance(item, tree.SubMenu):
            self.window.push(views.MenuView(item, self.choose))

    def exit(self) -> None:
        self.exit_code = 0
        raise urwid.ExitMainLoop()

    # ---- helpers for the screens ----------------------------------------------------------

    def keypress(self, key: str, size: tuple[int, int] = (100, 30)) -> None:
        self.window.keypress(size, key)

    def screen(self, size: tuple[int, int] = (100, 30)) -> list[str]:
        return [line.decode("utf-8") for line in self.window.render(size, focus=True).text]

    def back_to(self, base: int) -> Callable[[], None]:
        return lambda: self.window.pop_to(base)

    def message(self, title: str, lines: Sequence[views.Markup], base: int) -> None:
        self.window.push(views.TextView(title, lines, self.back_to(base), "result"))

    def confirm(self, title: str, lines: Sequence[views.Markup], question: str,
                on_yes: Callable[[], None], on_no: Callable[[], None] | None = None) -> None:
        self.window.push(views.ConfirmView(title, lines, question, on_yes,
                                           on_no or self.window.pop))

    def form(self, title: str, intro: str, fields: Sequence[steps.Field],
             on_submit: Callable[[dict[str, object]], None]) -> None:
        """A form whose Continue calls ``on_submit``; what it raises is shown on the form,
        which stays."""
        form = steps.Form(title, intro, tuple(fields), _no_call)
        view: views.FormView | None = None

        def submit(values: dict[str, object]) -> None:
            assert view is not None
            view.show_errors([])  # before: work started here may show its own refusal
            try:
                on_submit(values)
            except Exception as exc:  # noqa: BLE001 - shown on the form
                view.show_errors(failure_lines(exc))
                self.window.refresh()

        view = views.FormView(form, submit, self.window.pop)
        self.window.push(view)

    def work(self, title: str, job: Callable[[Callable[[str, float], None]], T],
             done: Callable[[T], None], failed: Callable[[list[str]], None] | None = None,
             ) -> None:
        """Run ``job`` off the loop behind a progress screen; ``done(result)`` after, or
        ``failed(lines)`` (default: a result screen naming the failure)."""
        progress = views.ProgressView(title)
        self.window.push(progress)

        def report(line: str, fraction: float) -> None:
            progress.update(line, fraction)
            self.window.refresh()

        def finish(result: T | None, error: Exception | None) -> None:
            self.window.pop()
            if error is not None:
                lines = failure_lines(error)
                if failed is not None:
                    failed(lines)
                else:
                    self.window.push(views.TextView(f"{title}: failed", lines, self.window.pop,
                                                    "result"))
                return
            done(result)  # type: ignore[arg-type]

        self.runner.start(job, report, finish)


def run(web: Web) -> int:
    """The menus on a terminal, until Exit."""
    app = WebApp(web)
    loop = urwid.MainLoop(app.window, PALETTE, handle_mouse=False)
    app.runner = PipeRunner(loop)
    loop.run()
    return app.exit_code or 0
