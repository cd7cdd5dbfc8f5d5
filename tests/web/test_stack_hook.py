"""The pair's hook: keepalived's notify decisions and the synchronous-mode watcher, as
tables of states in and actions + sentences out."""

from __future__ import annotations

import pytest
from mxone_web.stack.hook import notify_actions, quote_name, sync_step, unquote

PEER = "standby1"
SYNC = '"standby1"'


@pytest.mark.parametrize(
    ("state", "role", "actions", "words"),
    [
        ("MASTER", "standby", ["promote", "async", "unfence"], "promoting the standby"),
        ("MASTER", "primary", ["unfence"], "accepts writes"),
        ("MASTER", "down", [], "nothing to promote"),
        ("BACKUP", "primary", ["fence"], "refuses writes (fenced)"),
        ("FAULT", "primary", ["fence"], "became FAULT"),
        ("STOP", "primary", ["fence"], "became STOP"),
        ("BACKUP", "standby", [], "nothing to fence"),
        ("FAULT", "down", [], "nothing to fence"),
    ],
)
def test_notify(state: str, role: str, actions: list[str], words: str) -> None:
    got, sentence = notify_actions(state, role)
    assert got == actions
    assert words in sentence


@pytest.mark.parametrize(("role", "actions"), [("standby", []), ("primary", ["fence"])])
def test_a_server_cut_off_never_promotes_nor_accepts_writes(role: str, actions: list[str]) -> None:
    got, sentence = notify_actions("MASTER", role, cut_off=True)
    assert got == actions
    assert "reaches neither its peer nor any witness" in sentence


def test_a_streaming_standby_turns_synchronous_mode_on_once() -> None:
    on = sync_step(primary=True, vip_here=True, streaming=True, names="", peer=PEER,
                   away_since=None, now=10.0)
    assert on.names == SYNC and "synchronous replication on" in on.sentence
    again = sync_step(primary=True, vip_here=True, streaming=True, names=SYNC, peer=PEER,
                      away_since=None, now=10.5)
    assert (again.names, again.sentence) == (None, "")


def test_a_standby_away_for_the_grace_period_degrades_to_asynchronous() -> None:
    kw = {"primary": True, "vip_here": True, "streaming": False, "names": SYNC, "peer": PEER,
          "grace": 3.0}
    first = sync_step(**kw, away_since=None, now=100.0)  # type: ignore[arg-type]
    assert (first.names, first.away_since, first.sentence) == (None, 100.0, "")
    waiting = sync_step(**kw, away_since=100.0, now=102.9)  # type: ignore[arg-type]
    assert waiting.names is None
    degraded = sync_step(**kw, away_since=100.0, now=103.0)  # type: ignore[arg-type]
    assert degraded.names == ""
    assert "degraded to asynchronous" in degraded.sentence and "3.0 s" in degraded.sentence
    back = sync_step(primary=True, vip_here=True, streaming=True, names="", peer=PEER,
                     away_since=100.0, now=110.0)
    assert back.names == SYNC and back.away_since is None


def test_no_degradation_without_the_vip_nor_on_a_standby() -> None:
    no_vip = sync_step(primary=True, vip_here=False, streaming=False, names=SYNC, peer=PEER,
                       away_since=0.0, now=60.0)
    assert no_vip.names is None
    standby = sync_step(primary=False, vip_here=True, streaming=False, names=SYNC, peer=PEER,
                        away_since=0.0, now=60.0)
    assert (standby.names, standby.away_since) == (None, None)


@pytest.mark.parametrize("name", ["standby1", "lim-1", 'odd"name'])
def test_names_are_quoted_for_synchronous_standby_names(name: str) -> None:
    assert unquote(quote_name(name)) == name
