"""Number keys: a digit opens the menu item with that number (two digits from 10 on)."""

from __future__ import annotations

import pytest
import urwid

from tests.menus.conftest import SIZE


def focused_rows(d) -> list[str]:
    """The screen rows drawn with the focus attribute (the highlighted item)."""
    canvas = d.app.window.render(SIZE, focus=True)
    rows = []
    for row in canvas.content():
        text = "".join(t.decode() for attr, _cs, t in row if attr == "focus")
        if text.strip():
            rows.append(text.strip())
    return rows


def test_a_digit_opens_the_item_with_that_number(drive) -> None:
    d = drive().keys("3")
    assert d.top.title == "Cluster handling"
    assert "\n   9. Move LIM from standby to regular server" in d.text  # numbers right-aligned
    assert "\n  12. Sync exchange data within cluster" in d.text
    d.keys("esc", "1")
    assert d.top.title == "Server in system"
    d.keys("3")
    assert d.top.title == "List servers"


def test_two_digits_open_items_ten_and_up(drive) -> None:
    d = drive().keys("3")
    d.keys("1")  # 1 of 10, 11 or 12: the focus moves, nothing opens yet
    assert d.top.title == "Cluster handling"
    assert focused_rows(d) == ["1. List all clusters"]
    d.keys("1")
    assert d.top.title == "Unlock LIM from server"


def test_one_then_enter_opens_item_one(drive) -> None:
    d = drive().keys("3", "1", "enter")
    assert d.top.title == "List all clusters"


def test_a_digit_that_ends_no_number_starts_a_new_one(drive) -> None:
    d = drive().keys("3", "1", "5")  # there is no item 15: 5 is item 5
    assert d.top.title == "Change failover behavior to preloaded"


def test_another_key_after_the_first_digit_works_as_usual(drive) -> None:
    d = drive().keys("3", "1", "down")
    assert focused_rows(d) == ["2. Show status"]
    d.keys("2")  # a number of its own again: item 2 (the 1 was given up)
    assert d.top.title == "Show status"


def test_digits_without_an_item_change_nothing(drive) -> None:
    d = drive().keys("down", "0", "9", "5")
    assert d.top.title == "MX-ONE Maintenance Utility"
    assert focused_rows(d) == ["2. Standby server in system  >"]


def test_the_exit_item_by_its_number(drive) -> None:
    d = drive()
    with pytest.raises(urwid.ExitMainLoop):
        d.keys("4")
    assert d.app.exit_code == 0


def test_the_key_line_and_the_help_name_the_number_keys(drive) -> None:
    d = drive()
    assert d.app.screen(SIZE)[-1].strip() == (
        "↑↓ move  1-9 choose  Enter select  Esc back  ? help  F1 help  ^X exit")
    d.keys("?")
    assert "1 then 2 opens item 12" in d.flat
