"""A change the rules allow with a warning: the menus show the warning, in the yellow of
:mod:`mxone_menus.colours`, on the change's confirmation screen before the operator applies;
Yes applies it. Rendered headless at 100x30."""

from __future__ import annotations

from mxone_maintenance import actions
from mxone_maintenance.model import Timers
from mxone_menus import colours
from tests.menus.conftest import SIZE, apply, build_lims

WARNING = ("[WARNING] cluster[north].timers = bfd: preset bfd detects a failed server in 0.15 s "
           "(3 missed heartbeats 0.05 s apart); it demands a dedicated, low-loss LAN between the "
           "cluster's servers, servers that are not overloaded and that let the agent run its "
           "loop real-time (SCHED_FIFO), or a late or lost heartbeat causes a false failover "
           "(rule short-detection: a failure detection time under 0.3 s raises the risk of false "
           "failover; allowed, with this warning)")


def yellow_text(d) -> str:
    """The screen's text drawn in the warning colour, runs joined and spaces made one."""
    canvas = d.app.window.render(SIZE, focus=True)
    runs = [text.decode() for row in canvas.content() for attr, _cs, text in row
            if attr == colours.ATTENTION]
    return " ".join(" ".join(runs).split())


def create_north(drive, maint, timers: str):
    build_lims(maint, 2)
    d = drive().open("Cluster handling", "Create new cluster in system")
    return d.fill(name="north", use_1=True, ip_1="10.0.2.111", timers=timers).submit()


def test_the_form_offers_every_preset_with_its_detection(drive, maint) -> None:
    build_lims(maint, 1)
    flat = drive().open("Cluster handling", "Create new cluster in system").flat
    for label in ("mxone: detection in 60 s regular, 30 s preloaded", "fast: detection in 3 s",
                  "fastest: detection in 0.3 s", "bfd: detection in 0.15 s; allowed with a warning"):
        assert label in flat, flat


def test_bfd_warning_is_shown_in_yellow_before_apply_and_yes_applies(drive, maint) -> None:
    d = create_north(drive, maint, "bfd")
    flat = d.flat
    assert "Apply this change?" in flat
    assert WARNING in flat
    assert flat.index(WARNING) < flat.index("Apply this change?")
    assert yellow_text(d) == WARNING  # the whole warning, and nothing else, in yellow
    assert maint.system().clusters == ()  # nothing applied before Yes
    d.yes()
    assert "Applied: system generation 5." in d.flat
    assert maint.system().cluster("north").timers.preset == "bfd"


def test_other_presets_show_no_warning(drive, maint) -> None:
    d = create_north(drive, maint, "fastest")
    assert "Apply this change?" in d.flat
    assert "[WARNING]" not in d.flat and yellow_text(d) == ""


def test_a_later_change_of_a_bfd_cluster_does_not_repeat_it(drive, maint) -> None:
    build_lims(maint, 2)
    apply(maint, actions.create_cluster, "north", "sb1", [actions.NewLim(1, "10.0.2.111")],
          timers=Timers("bfd"))
    d = drive().open("Cluster handling", "Add a LIM to existing cluster").pick("north")
    d.fill(ip_new="10.0.2.112").submit()
    assert "Apply this change?" in d.flat and "[WARNING]" not in d.flat
