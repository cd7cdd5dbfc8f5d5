"""States in colour: the rendered screen carries the state's attribute on its words.

The status lines are the core's own (:func:`mxone_maintenance.status.render`), shown by
Show status as an operator opens it; the attributes are read from the rendered canvas.
"""

from __future__ import annotations

import urwid

from mxone_maintenance import status
from mxone_menus import colours, window
from tests.menus.conftest import SIZE


def attributes(d) -> list[tuple[str, str]]:
    """Every (attribute, text) run of the screen with a state attribute."""
    states = {name for name, *_ in colours.PALETTE}
    canvas = d.app.window.render(SIZE, focus=True)
    return [(attr, text.decode().strip()) for row in canvas.content()
            for attr, _cs, text in row if attr in states]


def a_status() -> status.SystemStatus:
    servers = (
        status.ServerHealth("lim1", "lim", "running", 7, "ready", {"sb1": "alive"}),
        status.ServerHealth("lim2", "lim", "unreachable", error="ssh: timed out"),
        status.ServerHealth("lim3", "lim", "not running", error="no agent"),
        status.ServerHealth("lim4", "lim", "error", error="exit status 1"),
        status.ServerHealth("sb1", "standby", "running", 7, "ready", {"lim1": "alive"}),
    )
    lims = (status.LimStatus(1, "lim1", "10.0.2.111", "regular", "none", 1),
            status.LimStatus(2, "lim2", "10.0.2.112", "standby", "none", 2))
    alarms = (
        {"code": "lim-running-on-standby", "severity": 3, "name": "LIM is running on standby "
         "server", "lim": 2, "text": "lim2 is dead", "raised_at": "10:00:01"},
        {"code": "standby-sync-failed", "severity": 2, "name": "Standby cluster has failed to "
         "synchronize data", "lim": 1, "text": "rsync failed", "raised_at": "10:00:02"},
        {"code": "lim-running-on-standby", "severity": 0, "name": "LIM is running on standby "
         "server", "lim": 1, "text": "cleared", "raised_at": "09:00:00"},
    )
    cluster = status.ClusterStatus("north", "sb1", "manual", "regular", 7, lims, servers, alarms)
    return status.SystemStatus(7, (cluster,))


class Answers:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def status(self) -> list[str]:
        return self.lines


def test_show_status_colours_the_states(drive) -> None:
    d = drive(Answers(status.render(a_status())), status_refresh=0)
    d.open("Cluster handling", "Show status")
    runs = attributes(d)
    assert ("state attention", "[ATTENTION]") in runs
    assert ("state bad", "unreachable") in runs
    assert ("state bad", "not running") in runs
    assert ("state bad", "error") in runs
    major = next(text for attr, text in runs if attr == "alarm major")
    minor = next(text for attr, text in runs if attr == "alarm minor")
    assert major.startswith("lim-running-on-standby 3 LIM is running on standby server LIM 2")
    assert minor.startswith("standby-sync-failed 2 Standby cluster has failed")
    # a cleared alarm and everything that is well is drawn as any text
    assert not [text for _attr, text in runs if "cleared" in text or "lim1" in text or "sb1" in text]
    assert [text for _a, text in runs if text == "error"] == ["error"]  # not the word in a sentence


def test_the_words_keep_every_character() -> None:
    for line in status.render(a_status()):
        marked = colours.markup(line)
        text = marked if isinstance(marked, str) else "".join(
            run if isinstance(run, str) else run[1] for run in marked)
        assert text == line


def test_each_word_of_state_and_each_severity() -> None:
    assert colours.markup("  lim2         lim      unreachable     -  -          unknown") == [
        "  lim2         lim      ", ("state bad", "unreachable"),
        "     -  -          unknown"]
    assert colours.markup("Cluster north: standby sb1  [ATTENTION]")[-1] == (
        "state attention", "[ATTENTION]")
    assert colours.markup("BEHIND: lim2 has generation 3")[0] == ("state attention", "BEHIND")
    warning = "    [WARNING] lim2: network redundancy degraded: bond0: slave eth0 is down"
    assert ("state attention", "[WARNING]") in colours.markup(warning)
    assert colours.markup("  Exchange data LIM 2: LAST SYNC FAILED (10:00): rsync")[1] == (
        "state bad", "LAST SYNC FAILED")
    for severity, attr in [("4", "alarm critical"), ("critical", "alarm critical"),
                           ("3", "alarm major"), ("major", "alarm major"),
                           ("2", "alarm minor"), ("minor", "alarm minor"),
                           ("1", "alarm warning"), ("warning", "alarm warning")]:
        line = f"    some-alarm {severity} Some alarm: text (since 10:00)"
        assert colours.markup(line) == [(attr, line)]
    for severity in ("0", "cleared", "normal"):
        assert colours.markup(f"    some-alarm {severity} Some alarm: x") == (
            f"    some-alarm {severity} Some alarm: x")
    assert colours.markup("ssh: error reading the banner") == "ssh: error reading the banner"
    assert colours.markup("1 server(s), system generation 3") == "1 server(s), system generation 3"


def test_a_list_shows_a_server_behind_in_colour(drive) -> None:
    from mxone_menus import views

    view = views.TextView("List all clusters", ["north  sb1", "", "BEHIND: lim2 has generation 3"],
                          lambda: None, "table")
    canvas = view.render((80, 5))
    runs = [(attr, text.decode()) for row in canvas.content() for attr, _cs, text in row if attr]
    assert ("state attention", "BEHIND") in runs


def test_every_state_stands_out_on_a_monochrome_terminal() -> None:
    class Screen(urwid.BaseScreen):
        def draw_screen(self, size: tuple[int, int], canvas: urwid.Canvas) -> None:
            pass

    screen = Screen()
    screen.register_palette(window.PALETTE)
    for name in [*(n for n, *_ in colours.PALETTE), "focus", "edit focus", "header", "keys",
                 "heading", "error", "bar done"]:
        mono = screen._palette[name][1]  # (16 colours, mono, 88, 256, true colour)
        assert mono.bold or mono.underline or mono.standout, name
