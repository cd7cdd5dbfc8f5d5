"""The one window: a title bar, a stack of views, one overlay, a status line and a key line."""

from __future__ import annotations

from collections.abc import Callable

import urwid

from mxone_menus import colours, keymap
from mxone_menus.views import HelpBox, Size, View

# (name, foreground, background, mono): on a monochrome terminal urwid draws the mono
# column, so the focus, the bars and the states stay visible without colour.
PALETTE = [
    ("header", "black", "light gray", "standout"),
    ("heading", "bold", "", "bold"),
    ("focus", "black", "light cyan", "standout"),
    ("edit", "", "", ""),
    ("edit focus", "black", "light cyan", "standout"),
    ("button", "", "", ""),
    ("error", "light red", "", "bold"),
    ("status", "yellow", "", ""),
    ("keys", "black", "light gray", "standout"),
    ("bar normal", "", "dark gray", ""),
    ("bar done", "black", "light green", "standout"),
    *colours.PALETTE,
]


class Window(urwid.WidgetWrap[urwid.Widget]):
    """Keeps the stack of views; Esc pops one, ``?`` shows help for the focused item."""

    def __init__(self, title: Callable[[], str], on_exit: Callable[[], None]) -> None:
        self._title = title
        self._on_exit = on_exit
        self.stack: list[View] = []
        self.overlay: urwid.Widget | None = None
        self.header = urwid.Text("")
        self.status = urwid.Text("")
        self.keys = urwid.Text("")
        self.frame: urwid.Frame[urwid.Widget, urwid.Pile, urwid.Pile] = urwid.Frame(
            urwid.SolidFill(" "),
            header=urwid.Pile([urwid.AttrMap(self.header, "header"), urwid.Text("")]),
            footer=urwid.Pile([urwid.AttrMap(self.status, "status"), urwid.AttrMap(self.keys, "keys")]),
        )
        super().__init__(self.frame)

    @property
    def top(self) -> View:
        return self.stack[-1]

    def push(self, view: View) -> None:
        self.stack.append(view)
        view.on_push()
        self.refresh()

    def pop(self) -> None:
        if len(self.stack) > 1:
            self.stack.pop().on_pop()
            self.refresh()

    def pop_to(self, depth: int) -> None:
        """Pop views until ``depth`` remain (back to the menu a flow started from)."""
        while len(self.stack) > max(depth, 1):
            self.stack.pop().on_pop()
        self.refresh()

    def replace_top(self, view: View) -> None:
        self.stack.pop().on_pop()
        self.push(view)

    def set_status(self, text: str) -> None:
        self.status.set_text(text)

    def refresh(self) -> None:
        view = self.top
        self.header.set_text(self._title())
        body: urwid.Widget = urwid.Frame(view, header=urwid.Pile([
            urwid.AttrMap(urwid.Text(" " + view.title), "heading"), urwid.Divider("─")]))
        if self.overlay is not None:
            body = urwid.Overlay(self.overlay, body, "center", ("relative", 80), "middle",
                                 ("relative", 80))
        self.frame.body = body
        self.keys.set_text(keymap.key_line(view.keyctx))

    def show_help(self) -> None:
        keys = [f"{b.label:6} {b.help}" for b in keymap.bindings_for(self.top.keyctx)]
        self.overlay = HelpBox(self.top.help_text() or self.top.title, keys)
        self.refresh()

    def keypress(self, size: Size, key: str) -> str | None:
        if self.overlay is not None:
            self.overlay = None
            self.refresh()
            return None
        self.set_status("")
        unhandled = super().keypress(size, key)
        if unhandled is None:
            return None
        command = keymap.command_for(self.top.keyctx, unhandled)
        if command == "back":
            if not self.top.on_back():
                if len(self.stack) > 1:
                    self.pop()
                else:
                    self.set_status("This is the main menu: choose Exit to leave.")
            return None
        if command == "help":
            self.show_help()
            return None
        if command == "exit":
            self._on_exit()
            return None
        return unhandled
