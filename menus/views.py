"""The views: each one urwid widget with a ``title``, a ``keyctx`` and push/pop hooks.

Views render step data and report the operator's choices through callbacks; they hold no
rules, do no I/O and know nothing of Maintenance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import urwid
from urwid.widget.widget import AbstractFlowWidget

from mxone_menus import colours, steps, tree

Size = tuple[()] | tuple[int] | tuple[int, int]
"""What urwid hands a widget's keypress and render: (), (columns,) or (columns, rows)."""
Walker = urwid.SimpleFocusListWalker[AbstractFlowWidget]
Markup = str | tuple[str, str]
"""A line of text, or (palette attribute, text)."""


def _line(line: Markup) -> urwid.Text:
    """A line to read; the words of state in a plain one coloured (:mod:`colours`)."""
    return urwid.Text(colours.markup(line) if isinstance(line, str) else line)


class View(urwid.WidgetWrap[urwid.Widget]):
    """The contract the window relies on."""

    title: str = ""
    keyctx: str = "global"

    def on_push(self) -> None:
        """Called when the view becomes the top of the stack."""

    def on_pop(self) -> None:
        """Called when the view leaves the stack."""

    def on_back(self) -> bool:
        """Esc pressed: return True when the view handled it (else the window pops it)."""
        return False

    def help_text(self) -> str:
        return ""


class _Row(urwid.WidgetWrap[urwid.Widget]):
    """A selectable line that calls back on Enter."""

    def __init__(self, label: str, on_enter: Callable[[], None], help: str = "") -> None:
        self.help = help
        self._on_enter = on_enter
        super().__init__(urwid.AttrMap(urwid.SelectableIcon(label, 0), None, focus_map="focus"))

    def selectable(self) -> bool:
        return True

    def keypress(self, size: Size, key: str) -> str | None:
        if key == "enter":
            self._on_enter()
            return None
        return key


def _heading(text: str) -> urwid.Widget:
    return urwid.AttrMap(urwid.Text(text), "heading")


class MenuView(View):
    """The numbered items of one menu. A digit moves the focus to the item with that number
    and opens it; where a longer number starts with that digit (1 in a menu of 12 items)
    the view waits for the next key: a digit completing an item's number opens that item,
    Enter opens the focused one, any other key works as usual."""

    keyctx = "menu"

    def __init__(self, menu: tree.SubMenu, on_choose: Callable[[tree.Item], None]) -> None:
        self.menu = menu
        self.title = menu.label
        self._on_choose = on_choose
        self.typed = ""  # the first digit of a number still being typed
        width = len(str(len(menu.items)))  # numbers right-aligned, as dialog aligns its tags
        self.menu_rows = [_Row(f"{i:>{width}}. {item.label}"
                               + ("  >" if isinstance(item, tree.SubMenu) else ""),
                               functools.partial(on_choose, item), item.help)
                          for i, item in enumerate(menu.items, start=1)]
        self.listbox = urwid.ListBox(Walker(list(self.menu_rows)))
        super().__init__(urwid.Padding(self.listbox, left=2, right=2))

    def focused_item(self) -> tree.Item:
        return self.menu.items[self.listbox.focus_position]

    def keypress(self, size: Size, key: str) -> str | None:
        if len(key) == 1 and key.isdigit():
            return self._digit(key)
        self.typed = ""
        return super().keypress(size, key)

    def _digit(self, digit: str) -> str | None:
        count = len(self.menu.items)
        number = int(self.typed + digit)
        if not (self.typed and number <= count):  # not the end of a number: a number of its own
            number = int(digit)
        self.typed = ""
        if not 1 <= number <= count:
            return digit  # no such item: left to the window, which ignores it
        self.listbox.focus_position = number - 1
        if number * 10 <= count:
            self.typed = digit  # 1 of 10..12: wait for the next key
        else:
            self._on_choose(self.menu.items[number - 1])
        return None

    def help_text(self) -> str:
        item = self.focused_item()
        return f"{item.label}\n\n{item.help}"


class PickView(View):
    keyctx = "pick"

    def __init__(self, pick: steps.Pick, on_pick: Callable[[object], None]) -> None:
        self.title = pick.title
        self.intro = pick.intro
        rows = [_Row(label, functools.partial(on_pick, value)) for label, value in pick.options]
        self.listbox = urwid.ListBox(Walker([urwid.Text(pick.intro), urwid.Divider(), *rows]))
        self.listbox.focus_position = 2
        super().__init__(urwid.Padding(self.listbox, left=2, right=2))

    def help_text(self) -> str:
        return f"{self.title}\n\n{self.intro}"


class _FieldWidget:
    """One form field's widget and how to read its value."""

    def __init__(self, field: steps.Field) -> None:
        self.field = field
        if isinstance(field, steps.TextField):
            self.edit = urwid.Edit("", field.default, mask="*" if field.secret else None)
            widget: urwid.Widget = urwid.AttrMap(self.edit, "edit", focus_map="edit focus")
        elif isinstance(field, steps.CheckField):
            self.box = urwid.CheckBox("", field.default)
            widget = urwid.AttrMap(self.box, None, focus_map="focus")
        else:
            self.group: list[urwid.RadioButton] = []
            default = field.default if field.default is not None else field.options[0][1]
            buttons = [urwid.AttrMap(urwid.RadioButton(self.group, label, value == default),
                                     None, focus_map="focus") for label, value in field.options]
            widget = urwid.Pile(buttons)
        self.row = urwid.Columns([(30, urwid.Text(field.label)), widget], dividechars=1)

    def value(self) -> object:
        if isinstance(self.field, steps.TextField):
            return self.edit.edit_text
        if isinstance(self.field, steps.CheckField):
            return self.box.get_state()
        for button, (_label, value) in zip(self.group, self.field.options, strict=True):
            if button.get_state():
                return value
        return None


class FormView(View):
    """Fields, then Continue; errors from the core are shown below and the form stays."""

    keyctx = "form"

    def __init__(self, form: steps.Form, on_submit: Callable[[dict[str, object]], None],
                 on_cancel: Callable[[], None]) -> None:
        self.form = form
        self.title = form.title
        self.fields = [_FieldWidget(f) for f in form.fields]
        # One button per row: Down from the last field always lands on Continue.
        continue_button = urwid.Padding(urwid.AttrMap(
            urwid.Button("Continue", lambda _b: on_submit(self.values())), "button",
            focus_map="focus"), width=14)
        cancel_button = urwid.Padding(urwid.AttrMap(
            urwid.Button("Cancel", lambda _b: on_cancel()), "button", focus_map="focus"), width=14)
        self.walker = Walker([urwid.Text(form.intro), urwid.Divider(), *(f.row for f in self.fields),
                              urwid.Divider(), continue_button, cancel_button])
        self.body = urwid.ListBox(self.walker)
        self.continue_position = len(self.walker) - 2
        self.body.focus_position = 2 if self.fields else self.continue_position
        self.errors = urwid.Text("")
        super().__init__(urwid.Padding(urwid.Pile([
            self.body, ("pack", urwid.AttrMap(self.errors, "error"))]), left=2, right=2))

    def values(self) -> dict[str, object]:
        return {fw.field.key: fw.value() for fw in self.fields}

    def field_widget(self, key: str) -> _FieldWidget:
        return next(fw for fw in self.fields if fw.field.key == key)

    def show_errors(self, lines: Sequence[str]) -> None:
        self.errors.set_text(("error", "Not accepted:\n" + "\n".join(f"- {line}" for line in lines))
                             if lines else "")

    def keypress(self, size: Size, key: str) -> str | None:
        focused = self._focused_field()
        if key == "enter" and focused is not None and isinstance(focused.field, steps.TextField):
            key = "tab"  # Enter in an edit goes to the next field, like Tab
        if key in ("tab", "shift tab"):
            # Tab moves by whole fields (past the other buttons of a radio group);
            # Up and Down move line by line.
            self._next_field(1 if key == "tab" else -1)
            return None
        return super().keypress(size, key)

    def _next_field(self, step: int) -> None:
        position = self.body.focus_position + step
        while 0 <= position < len(self.walker):
            if self.walker[position].selectable():
                self.body.set_focus(position, "below" if step > 0 else "above")
                return
            position += step

    def _focused_field(self) -> _FieldWidget | None:
        pos = self.body.focus_position - 2
        return self.fields[pos] if 0 <= pos < len(self.fields) else None

    def help_text(self) -> str:
        fw = self._focused_field()
        if fw is not None and fw.field.help:
            return f"{fw.field.label.strip()}\n\n{fw.field.help}"
        return f"{self.title}\n\n{self.form.intro}"


class ConfirmView(View):
    """Lines to read, then a Yes/No question (No has the focus)."""

    keyctx = "plan"

    def __init__(self, title: str, lines: Sequence[Markup], question: str,
                 on_yes: Callable[[], None], on_no: Callable[[], None],
                 yes: str = "Yes", no: str = "No") -> None:
        self.title = title
        self.yes_no = urwid.Columns([
            (len(yes) + 4, urwid.AttrMap(urwid.Button(yes, lambda _b: on_yes()), "button",
                                         focus_map="focus")),
            (len(no) + 4, urwid.AttrMap(urwid.Button(no, lambda _b: on_no()), "button",
                                        focus_map="focus")),
        ], dividechars=2)
        self.yes_no.focus_position = 1
        walker = Walker([*(_line(line) for line in lines), urwid.Divider(),
                         urwid.Text(question), self.yes_no])
        body = urwid.ListBox(walker)
        body.focus_position = len(walker) - 1
        super().__init__(urwid.Padding(body, left=2, right=2))

    def help_text(self) -> str:
        return f"{self.title}\n\nYes applies the change shown; No goes back to the form."


class HostKeyView(ConfirmView):
    """A server's host key the tool has never seen: Accept pins it, Refuse (the focus) or
    Esc cancels the action. The facts come from the SSH layer; the view only shows them."""

    keyctx = "hostkey"

    def __init__(self, server: str, address: str, key_type: str, fingerprint: str,
                 known_hosts: str, on_answer: Callable[[bool], None]) -> None:
        self._on_answer = on_answer
        self._answered = False
        lines: list[Markup] = [
            ("heading", f"The host key of server {server} is not known yet."), "",
            f"  server:       {server}",
            f"  address:      {address}",
            f"  key type:     {key_type}",
            f"  fingerprint:  {fingerprint}", "",
            "Compare the fingerprint with the server's own, on its console:",
            "  ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub", "",
            f"Accept pins the key in {known_hosts} and the action goes on.",
            "Refuse (or Esc) cancels the action; nothing is changed.",
        ]
        super().__init__(f"Unknown host key: {server}", lines, "Accept this host key?",
                         lambda: self._answer(True), lambda: self._answer(False),
                         yes="Accept", no="Refuse")

    def _answer(self, accepted: bool) -> None:
        if not self._answered:
            self._answered = True
            self._on_answer(accepted)

    def on_back(self) -> bool:
        self._answer(False)
        return True

    def help_text(self) -> str:
        return (f"{self.title}\n\nThe tool pins every server's SSH host key in its own "
                "known-hosts file. Accept only a key whose fingerprint you have compared with "
                "the server's. A key that CHANGED is always refused, never offered here.")


class ProgressView(View):
    keyctx = "progress"

    def __init__(self, title: str) -> None:
        self.title = title
        self.bar = urwid.ProgressBar("bar normal", "bar done", 0, 100)
        self.log = Walker([])
        super().__init__(urwid.Padding(urwid.Pile([
            ("pack", urwid.Text("Working - please wait.")), ("pack", urwid.Divider()),
            ("pack", self.bar), ("pack", urwid.Divider()), urwid.ListBox(self.log)]), left=2, right=2))

    def update(self, line: str, fraction: float) -> None:
        self.bar.set_completion(int(max(0.0, min(1.0, fraction)) * 100))
        self.log.append(_line(line))

    def on_back(self) -> bool:
        return True  # the work cannot be abandoned halfway


class TextView(View):
    """Lines to read; Enter or Esc closes (result and message screens)."""

    def __init__(self, title: str, lines: Sequence[Markup], on_close: Callable[[], None],
                 keyctx: str = "message") -> None:
        self.title = title
        self.keyctx = keyctx
        self._on_close = on_close
        self.lines = lines
        self.walker = Walker([_line(line) for line in lines])
        self.listbox = urwid.ListBox(self.walker)
        super().__init__(urwid.Padding(self.listbox, left=2, right=2))

    def keypress(self, size: Size, key: str) -> str | None:
        if key == "enter":
            self._on_close()
            return None
        return super().keypress(size, key)

    def on_back(self) -> bool:
        self._on_close()
        return True

    def help_text(self) -> str:
        return f"{self.title}\n\nEnter or Esc goes back to the menu."


class StatusView(TextView):
    """Lines that refresh themselves: the app calls :meth:`show` with new lines; ``r``
    asks for a refresh now (``on_refresh``), Esc or Enter leaves (``on_close``)."""

    def __init__(self, title: str, lines: Sequence[Markup], on_close: Callable[[], None],
                 on_refresh: Callable[[], None], every: float) -> None:
        self._on_refresh = on_refresh
        self.every = every
        self.stamp = urwid.Text("")
        super().__init__(title, [], on_close, keyctx="status")
        self._w = urwid.Padding(urwid.Pile([
            ("pack", urwid.AttrMap(self.stamp, "status")), ("pack", urwid.Divider()),
            self.listbox]), left=2, right=2)
        self.show(lines, "")

    def show(self, lines: Sequence[Markup], stamp: str) -> None:
        self.lines = lines
        self.walker[:] = [_line(line) for line in lines]
        self.set_stamp(stamp)

    def set_stamp(self, stamp: str) -> None:
        every = f"every {self.every:g} s" if self.every > 0 else "automatic refresh off"
        self.stamp.set_text(f"{stamp}  ({every}; r refreshes now)" if stamp else f"({every})")

    def keypress(self, size: Size, key: str) -> str | None:
        if key == "r":
            self._on_refresh()
            return None
        return super().keypress(size, key)

    def help_text(self) -> str:
        return (f"{self.title}\n\nThe status refreshes itself; r refreshes now. Enter or Esc "
                "goes back to the menu and stops the refresh.")


class TableView(TextView):
    def __init__(self, table: steps.Table, on_close: Callable[[], None]) -> None:
        rows = [table.headers, *table.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(table.headers))]

        def line(r: Sequence[str]) -> str:
            return "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()

        lines: list[Markup] = [("heading", line(table.headers))]
        lines += [line(r) for r in table.rows] or ["(none)"]
        lines += ["", table.note] if table.note else []
        super().__init__(table.title, lines, on_close, keyctx="table")


class HelpBox(urwid.WidgetWrap[urwid.Widget]):
    def __init__(self, text: str, keys: Sequence[str]) -> None:
        body = urwid.Pile([urwid.Text(text), urwid.Divider(), urwid.Text("Keys:"),
                           *(urwid.Text(f"  {k}") for k in keys), urwid.Divider(),
                           urwid.Text("Press any key to close this help.")])
        super().__init__(urwid.LineBox(urwid.Filler(body, valign="top"), title="Help"))
