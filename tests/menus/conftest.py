from __future__ import annotations

from pathlib import Path

import pytest

from mxone_maintenance import actions
from mxone_maintenance.service import Maintenance
from mxone_menus.app import App

SIZE = (100, 30)


class Driver:
    """An App at 100x30, driven by keys and read as screen text."""

    def __init__(self, maintenance: Maintenance, operations=None, **kw) -> None:
        self.m = maintenance
        self.app = App(maintenance, operations, hostname="lim1", **kw)

    def keys(self, *keys: str) -> Driver:
        for k in keys:
            self.app.keypress(k, SIZE)
        return self

    def type(self, text: str) -> Driver:
        return self.keys(*text)

    @property
    def text(self) -> str:
        return "\n".join(self.app.screen(SIZE))

    @property
    def flat(self) -> str:
        """The screen as one line: wrapped text joined, runs of spaces made one."""
        return " ".join(" ".join(line.split()) for line in self.app.screen(SIZE) if line.strip())

    @property
    def top(self):
        return self.app.window.top

    def open(self, *labels: str) -> Driver:
        """Walk the menus by label with Down and Enter, as an operator would."""
        for label in labels:
            items = [i.label for i in self.top.menu.items]
            pos = self.top.listbox.focus_position
            index = items.index(label)
            self.keys(*(["down"] * (index - pos) if index >= pos else ["up"] * (pos - index)))
            self.keys("enter")
        return self

    def pick(self, label_start: str) -> Driver:
        """Choose the pick-list row whose label starts with label_start."""
        view = self.top
        rows = list(view.listbox.body)
        for i, row in enumerate(rows):
            if hasattr(row, "help") and row._w.original_widget.text.startswith(label_start):
                view.listbox.focus_position = i
                return self.keys("enter")
        raise AssertionError(f"no pick row {label_start!r} in:\n{self.text}")

    def fill(self, **values: object) -> Driver:
        """Set form fields by key: str for edits, bool for boxes, option value for radios."""
        form = self.top
        for key, value in values.items():
            fw = form.field_widget(key)
            if hasattr(fw, "edit"):
                fw.edit.set_edit_text(str(value))
            elif hasattr(fw, "box"):
                fw.box.set_state(bool(value))
            else:
                for button, (_l, v) in zip(fw.group, fw.field.options):
                    if v == value:
                        button.set_state(True)
                        break
                else:
                    raise AssertionError(f"{key}: no option {value!r}")
        return self

    def submit(self) -> Driver:
        """Focus Continue and press Enter."""
        form = self.top
        form.body.focus_position = form.continue_position
        return self.keys("enter")

    def yes(self) -> Driver:
        return self.keys("left", "enter")


@pytest.fixture
def maint(tmp_path: Path) -> Maintenance:
    return Maintenance(tmp_path / "system.toml")


def apply(m: Maintenance, action, *args, **kwargs):
    change = m.preview(action, *args, **kwargs)
    result = m.apply(change)
    assert result.ok
    return result


def build_lims(m: Maintenance, n: int, standby: int = 1) -> None:
    """LIM servers lim1..limN on 10.0.2.0/24 and `standby` standby servers sb1.."""
    for i in range(1, n + 1):
        apply(m, actions.add_server, f"lim{i}", f"10.0.2.{10 + i}/24", "eth0", i)
    for j in range(1, standby + 1):
        apply(m, actions.add_server, f"sb{j}", f"10.0.2.{50 + j}/24")
        apply(m, actions.convert_to_standby, f"sb{j}")


@pytest.fixture
def drive(maint: Maintenance):
    def make(operations=None, **kw) -> Driver:
        return Driver(maint, operations, **kw)
    return make


class ThreadRunner:
    """Jobs in real worker threads, UI calls queued until the test pumps them: what
    PipeRunner does with a loop, so a job can block on the operator (a host key)."""

    def __init__(self) -> None:
        import queue

        self.ui: queue.SimpleQueue = queue.SimpleQueue()
        self.timers: list = []

    def start(self, job, on_progress, on_done) -> None:
        import threading

        def work() -> None:
            try:
                result = job(lambda line, f: self.ui.put(lambda: on_progress(line, f)))
            except Exception as exc:
                self.ui.put(lambda exc=exc: on_done(None, exc))  # exc is unbound after except
            else:
                self.ui.put(lambda: on_done(result, None))

        threading.Thread(target=work, daemon=True).start()

    def call_in_ui(self, fn) -> None:
        self.ui.put(fn)

    def after(self, seconds, fn):
        self.timers.append(fn)
        return fn

    def cancel(self, handle) -> None:
        if handle in self.timers:
            self.timers.remove(handle)

    def pump(self, until, timeout: float = 5.0) -> None:
        """Run queued UI calls until ``until()`` is true (bounded)."""
        import queue
        import time

        end = time.monotonic() + timeout
        while not until():
            if time.monotonic() > end:
                raise AssertionError("timed out waiting for the UI")
            try:
                self.ui.get(timeout=0.05)()
            except queue.Empty:
                pass
