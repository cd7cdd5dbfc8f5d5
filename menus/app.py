"""The app: the window, the menu tree and the flows, wired to Maintenance and Operations.

Every error on every screen goes through :func:`mxone_menus.failures.failure_lines` (the
shared mapping of :mod:`mxone_maintenance.commands.base`, worded for the screen);
background work runs off the loop (:mod:`mxone_menus.runner`) and reports its failure
there, never as a crash.
``run(maintenance)`` builds the MainLoop and runs it. :class:`App` also works without a
loop (``App(..., runner=InlineRunner())``): tests feed it keys and render it headless.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urwid

from mxone_maintenance import orchestrate
from mxone_maintenance.actions import Change
from mxone_maintenance.commands.base import Context, ok_word, outcome_line
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.service import ApplyResult, Maintenance
from mxone_menus import colours, flows, steps, tree, views
from mxone_menus.failures import failure_lines
from mxone_menus.operations import NoOperations, Operations
from mxone_menus.runner import Done, InlineRunner, Job, PipeRunner, Progress, Runner, T
from mxone_menus.window import PALETTE, Window

if TYPE_CHECKING:  # the real one brings paramiko: only the entry point imports it
    from mxone_maintenance import ssh
    from mxone_maintenance.hostkeys import AskingKnownHosts

DEFAULT_STATUS_REFRESH = 3.0  # seconds between two Show status refreshes


def status_refresh_default() -> float:
    """$MXONE_STATUS_REFRESH (seconds; 0 turns the automatic refresh off), else 3 s."""
    text = os.environ.get("MXONE_STATUS_REFRESH", "").strip()
    try:
        return max(0.0, float(text)) if text else DEFAULT_STATUS_REFRESH
    except ValueError:
        return DEFAULT_STATUS_REFRESH


@dataclass
class _Applied:
    result: ApplyResult
    agent_lines: list[str]


@dataclass
class _Refresh:
    """One Show status screen's refresh state (UI thread only)."""

    view: views.StatusView | None = None
    timer: object = None
    running: bool = False
    closed: bool = False


class App:
    def __init__(self, maintenance: Maintenance, operations: Operations | None = None,
                 runner: Runner | None = None, hostname: str | None = None,
                 menu: tree.SubMenu | None = None, host_keys: AskingKnownHosts | None = None,
                 status_refresh: float | None = None) -> None:
        self.maintenance = maintenance
        self.operations = operations or NoOperations()
        self.runner: Runner = runner or InlineRunner()
        self.hostname = hostname or socket.gethostname()
        self.exit_code: int | None = None
        self.status_refresh = status_refresh_default() if status_refresh is None else status_refresh
        self.host_keys = host_keys
        if host_keys is not None:
            host_keys.ask = self.ask_host_key
        self._ui_thread = threading.get_ident()
        self.window = Window(self.title, self.exit)
        self.window.push(views.MenuView(menu or tree.main_menu(), self.choose))

    # ---- screen and keys ---------------------------------------------------------------

    def title(self) -> str:
        try:
            generation: object = self.maintenance.system().generation
        except MxoneError:
            generation = "? (the config file cannot be read)"
        return f"MX-ONE Maintenance Utility - {self.hostname} - system generation {generation}"

    def keypress(self, key: str, size: tuple[int, int] = (100, 30)) -> None:
        """Feed one key as the loop would (tests use this)."""
        self.window.keypress(size, key)

    def screen(self, size: tuple[int, int] = (100, 30)) -> list[str]:
        canvas = self.window.render(size, focus=True)
        return [line.decode("utf-8") for line in canvas.text]

    def exit(self) -> None:
        self.exit_code = 0
        raise urwid.ExitMainLoop()

    # ---- menu and steps ----------------------------------------------------------------

    def choose(self, item: tree.Item) -> None:
        if isinstance(item, tree.Exit):
            self.exit()
        elif isinstance(item, tree.SubMenu):
            self.window.push(views.MenuView(item, self.choose))
        else:
            base = len(self.window.stack)
            try:
                system = self.maintenance.system()
                step = flows.FLOWS[item.command](system)
                if isinstance(step, steps.Table):
                    step = self._with_behind(step, system.generation)
            except Exception as exc:  # a file that breaks rules must not crash the menus
                step = steps.Message(item.label, failure_lines(exc, "read")[0])
            self.show(step, base)

    def _with_behind(self, table: steps.Table, generation: int) -> steps.Table:
        """A list of the system names the servers that missed a change (behind)."""
        lines = orchestrate.behind_lines(Context(self.maintenance).behind(), generation)
        if not lines:
            return table
        return dataclasses.replace(table, note="\n".join(filter(None, [table.note, *lines])))

    def _close(self, base: int) -> Callable[[], None]:
        return lambda: self.window.pop_to(base)

    def show(self, step: steps.Step, base: int) -> None:
        """Push the view for a step; ``base`` is the stack depth of the menu to return to."""
        w = self.window
        if isinstance(step, steps.Form):
            w.push(views.FormView(step, lambda values: self.submit(step, values, base), w.pop))
        elif isinstance(step, steps.Pick):
            if not step.options:
                self.show(steps.Message(step.title, "There is nothing to choose from."), base)
            else:
                w.push(views.PickView(step, lambda value: self.show(step.next(value), base)))
        elif isinstance(step, steps.Table):
            w.push(views.TableView(step, self._close(base)))
        elif isinstance(step, steps.Message):
            w.push(views.TextView(step.title, [step.text], self._close(base)))
        elif isinstance(step, steps.AgentRequest) and step.refresh:
            self.show_status(step, base)
        elif isinstance(step, steps.AgentRequest):
            if step.question:
                w.push(views.ConfirmView(step.title, [], step.question,
                                         lambda: self.ask_agents(step, base), w.pop))
            else:
                self.ask_agents(step, base)

    # ---- a form: preview, plan, confirm, apply -----------------------------------------

    def submit(self, form: steps.Form, values: dict[str, Any], base: int) -> None:
        view = self.window.top
        try:
            call = form.to_call(values)
            assert call.command.change is not None
            change = self.maintenance.preview(call.command.change, call.values)
            plan = self.maintenance.plan(change)
        except Exception as exc:
            view.show_errors(failure_lines(exc, "form"))  # type: ignore[attr-defined]
            return
        view.show_errors([])  # type: ignore[attr-defined]

        def plan_lines(unreachable: dict[str, str]) -> list[views.Markup]:
            lines: list[views.Markup] = ["This change will do:", ""]
            lines += [f"  {step.server}: {step.what}" for step in plan
                      if step.server not in unreachable]
            if change.removes_old_xdata:
                lines += ["", "Note: older exchange-data versions (reload and system database "
                          "data) are removed; only one version is kept."]
            if form.then is not None:
                lines += ["", "Then the cluster's agents are told."]
            # last, next to the question: allowed, but the operator must read it before Yes
            for warning in change.after.warnings(since=change.before):
                lines += ["", (colours.ATTENTION, f"[WARNING] {warning}")]
            return lines

        applier = self.maintenance.applier
        if not (change.degradable and isinstance(applier, orchestrate.SshApplier)):
            self._confirm(form, values, change, base, plan_lines({}), {})
            return
        # A change that may be made without a server that is down: find out first which
        # servers answer, so the plan can name those that would miss it.
        progress = views.ProgressView(form.title)
        self.window.push(progress)

        def job(report: Progress) -> dict[str, str]:
            report("reaching every server of the change", 0.0)
            return dict(applier.unreachable(change))

        def done(unreachable: dict[str, str] | None, error: Exception | None) -> None:
            if error is not None or unreachable is None:
                self.window.replace_top(views.TextView(f"{form.title}: not applied",
                                                       failure_lines(error or ValueError(), "reach"),
                                                       self._close(base), "result"))
                return
            self.window.pop()
            self._confirm(form, values, change, base, plan_lines(unreachable), unreachable)

        self._start(job, lambda line, f: self._progress(progress, line, f), done)

    def _confirm(self, form: steps.Form, values: dict[str, Any], change: Change, base: int,
                 lines: list[views.Markup], unreachable: dict[str, str]) -> None:
        """The plan and "Apply this change?"; when servers cannot be reached, a second
        screen names them and what they miss, and only its Yes applies (degraded)."""
        if not unreachable:
            self.window.push(views.ConfirmView(form.title, lines, "Apply this change?",
                                               lambda: self.apply(form, values, change, base),
                                               self.window.pop))
            return
        names = ", ".join(sorted(unreachable))
        problem = orchestrate.degraded_problem(change, unreachable)
        if problem is not None:
            self.window.push(views.TextView(f"{form.title}: not possible now", [
                f"{problem}.", "", "Nothing was changed."], self.window.pop, "result"))
            return
        missed = [f"  {step.server}: {step.what}"
                  for step in orchestrate.degraded_plan(change, unreachable)]
        first = [*lines, "", f"DEGRADED: {names} cannot be reached:", *missed]
        second = [f"{names} cannot be reached now and will MISS this change:", "", *missed, "",
                  "The servers that answer get the change, all or nothing. Each server that "
                  "misses it is marked BEHIND (Show status, List all clusters) and is brought "
                  "to the current generation the next time this tool reaches it (any action "
                  "or a status refresh).",
                  "", "Only make this change if it is needed to recover or makes the "
                  "system safer."]
        accepted = dataclasses.replace(change, accept_behind=tuple(sorted(unreachable)))

        def degraded() -> None:
            self.window.push(views.ConfirmView(
                f"{form.title}: without {names}", second,
                f"Make this change without {names}?",
                lambda: self.apply(form, values, accepted, base), self.window.pop))

        self.window.push(views.ConfirmView(form.title, first, "Apply this change?", degraded,
                                           self.window.pop))

    def apply(self, form: steps.Form, values: dict[str, Any], change: Change, base: int) -> None:
        progress = views.ProgressView(form.title)
        self.window.push(progress)

        then = form.then

        def job(report: Progress) -> _Applied:
            result = self.maintenance.apply(change, report)
            agent_lines: list[str] = []
            if then is not None and result.ok:
                agent_lines = self._agent_call(lambda: then(values, self.operations))
            return _Applied(result, agent_lines)

        def done(applied: _Applied | None, error: Exception | None) -> None:
            if error is not None or applied is None:
                lines = failure_lines(error or ValueError(), "apply")
                ok = False
            else:
                r = applied.result
                ok = r.ok
                lines = [("Applied: system generation %d." % r.generation) if r.ok
                         else "The change failed on some servers:", ""]
                lines += [f"  {outcome_line(o.server, ok_word(o.ok), o.message)}"
                          for o in r.outcomes]
                lines += applied.agent_lines
            self.window.replace_top(views.TextView(
                f"{form.title}: {'done' if ok else 'failed'}", lines, self._close(base), "result"))

        self._start(job, lambda line, fraction: self._progress(progress, line, fraction), done)

    def _start(self, job: Job[T], on_progress: Progress, on_done: Done[T],
               new_action: bool = True) -> None:
        """Start one piece of background work. A new action asks about unknown host keys
        again; a status refresh does not (a key refused on this screen stays refused)."""
        if new_action and self.host_keys is not None:
            self.host_keys.refuse_all = False
        self.runner.start(job, on_progress, on_done)

    def _progress(self, view: views.ProgressView, line: str, fraction: float) -> None:
        view.update(line, fraction)
        self.window.refresh()

    # ---- the agents --------------------------------------------------------------------

    @staticmethod
    def _agent_call(call: Callable[[], Sequence[str]]) -> list[str]:
        try:
            return ["", "Agents:", *(f"  {line}" for line in call())]
        except Exception as exc:  # an agent failure is shown, never a crash
            return failure_lines(exc, "agents")

    @staticmethod
    def _request_lines(request: steps.AgentRequest, lines: Sequence[str] | None,
                       error: Exception | None) -> list[str]:
        if error is not None:
            return failure_lines(error, "ask", request.title)
        return list(lines or ["(no answer)"])

    def ask_agents(self, request: steps.AgentRequest, base: int) -> None:
        progress = views.ProgressView(request.title)
        self.window.push(progress)

        def job(report: Progress) -> Sequence[str]:
            report("asking the node agents", 0.0)
            return list(request.run(self.operations, report))

        def done(lines: Sequence[str] | None, error: Exception | None) -> None:
            shown = self._request_lines(request, lines, error)
            self.window.replace_top(views.TextView(request.title, shown, self._close(base), "result"))

        self._start(job, lambda line, f: self._progress(progress, line, f), done)

    # ---- Show status: refreshes itself until the operator leaves ------------------------

    def show_status(self, request: steps.AgentRequest, base: int) -> None:
        """A status screen that asks again ``status_refresh`` s after each answer (never
        while a request runs); ``r`` asks now; leaving stops the timer."""
        state = _Refresh()
        progress = views.ProgressView(request.title)
        self.window.push(progress)

        def close() -> None:
            state.closed = True
            if state.running and self.host_keys is not None:
                self.host_keys.refuse_all = True  # no question about a screen already left
            if state.timer is not None:
                self.runner.cancel(state.timer)
                state.timer = None
            self.window.pop_to(base)

        def fetch() -> None:
            state.timer = None
            if state.closed or state.running:
                return
            state.running = True
            if state.view is not None:
                state.view.set_stamp("refreshing ...")

            def job(report: Progress) -> Sequence[str]:
                if state.view is None:
                    report("asking the node agents", 0.0)
                return list(request.run(self.operations, report))

            def on_progress(line: str, fraction: float) -> None:
                if state.view is None and not state.closed:
                    self._progress(progress, line, fraction)

            def done(lines: Sequence[str] | None, error: Exception | None) -> None:
                state.running = False
                if state.closed:
                    return
                shown = self._request_lines(request, lines, error)
                now = time.strftime("%H:%M:%S")
                stamp = f"refreshed at {now}" if error is None else f"refresh failed at {now}"
                if state.view is None:
                    state.view = views.StatusView(request.title, shown, close, refresh_now,
                                                  self.status_refresh)
                    state.view.set_stamp(stamp)
                    self.window.replace_top(state.view)
                else:
                    state.view.show(shown, stamp)
                if self.status_refresh > 0 and not isinstance(error, NotImplementedError):
                    state.timer = self.runner.after(self.status_refresh, fetch)

            self._start(job, on_progress, done, new_action=state.view is None)

        def refresh_now() -> None:
            if state.running:
                self.window.set_status("A refresh is already running.")
                return
            if state.timer is not None:
                self.runner.cancel(state.timer)
            fetch()

        fetch()

    # ---- host keys: asked from a worker thread, answered in the UI ---------------------

    def ask_host_key(self, unknown: ssh.UnknownHostKey) -> bool:
        """Show an unknown host key and wait for Accept (True) or Refuse (False).

        Called by the SSH layer from a worker thread, which blocks until the operator
        answers. Without a worker thread (a job run inline) nobody could answer: refused.
        """
        if threading.get_ident() == self._ui_thread:
            return False
        answers: queue.Queue[bool] = queue.Queue(maxsize=1)

        def ask() -> None:
            view: views.HostKeyView

            def answer(accepted: bool) -> None:
                if self.window.top is view:
                    self.window.pop()
                answers.put(accepted)

            path = str(self.host_keys.path) if self.host_keys is not None else "the known-hosts file"
            view = views.HostKeyView(unknown.server, unknown.address, unknown.key_type,
                                     unknown.fingerprint, path, answer)
            self.window.push(view)

        self.runner.call_in_ui(ask)
        return answers.get()


def run(maintenance: Maintenance, operations: Operations | None = None, *,
        host_keys: AskingKnownHosts | None = None, status_refresh: float | None = None) -> int:
    """Run the menus on the terminal until Exit; returns the exit code (130 on Ctrl-C)."""
    loop = urwid.MainLoop(urwid.SolidFill(" "), PALETTE)
    app = App(maintenance, operations, runner=PipeRunner(loop), host_keys=host_keys,
              status_refresh=status_refresh)
    loop.widget = app.window
    try:
        loop.run()
    except KeyboardInterrupt:
        return 130
    return app.exit_code or 0
