"""Every key binding of the utility, in one table with its help text.

Keys a widget handles itself (arrows, Enter, Tab) are listed too, with no command, so the
key line and the help screen show them; keys with a command reach the window only when the
focused widget did not use them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Binding:
    key: str  # urwid key name
    label: str  # how the key line shows it
    short: str  # the word beside it on the key line
    command: str | None  # window command, or None when the widget handles the key
    help: str
    contexts: tuple[str, ...]  # view keyctx values; "global" means every view


BINDINGS: tuple[Binding, ...] = (
    Binding("up", "↑↓", "move", None, "move between items", ("menu", "form", "table", "pick", "message",
                                                   "plan", "status")),
    Binding("1", "1-9", "choose", None, "open the item with that number at once; in a menu of "
            "ten or more items, 1 waits for a second digit (1 then 2 opens item 12) and Enter "
            "then opens item 1", ("menu",)),
    Binding("tab", "Tab", "next field", None, "next field", ("form",)),
    Binding("enter", "Enter", "select", None, "open the item / press the button", ("menu", "pick", "form",
                                                                      "plan")),
    Binding(" ", "Space", "tick", None, "tick a box or choose a radio button", ("form",)),
    Binding("enter", "Enter", "back to menu", None, "back to the menu", ("result", "message", "table",
                                                                         "status")),
    Binding("r", "r", "refresh now", None, "refresh the status now", ("status",)),
    Binding("left", "←→", "Accept/Refuse", None, "choose Accept or Refuse", ("hostkey",)),
    Binding("enter", "Enter", "answer", None, "give the chosen answer", ("hostkey",)),
    Binding("esc", "Esc", "back", "back", "back one level (on a host key: Refuse)", ("global",)),
    Binding("?", "?", "help", "help", "help for the focused item", ("menu", "pick", "table",
                                                                   "plan", "result", "message",
                                                                   "status", "hostkey")),
    Binding("f1", "F1", "help", "help", "help for the focused field or item", ("global",)),
    Binding("ctrl x", "^X", "exit", "exit", "leave the utility", ("global",)),
)


def bindings_for(ctx: str) -> list[Binding]:
    return [b for b in BINDINGS if ctx in b.contexts or "global" in b.contexts]


def command_for(ctx: str, key: str) -> str | None:
    for b in bindings_for(ctx):
        if b.key == key and b.command:
            return b.command
    return None


def key_line(ctx: str) -> str:
    """The bottom line: every key of this context once, with a short word."""
    if ctx == "progress":
        return "Applying the change - please wait"
    parts = [f"{b.label} {b.short}" for b in bindings_for(ctx)]
    return "  ".join(dict.fromkeys(parts))
