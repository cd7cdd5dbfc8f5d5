"""The pair's hook: keepalived's notify decisions and the synchronous-mode watcher, as
tables of states in and actions + sentences out."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from mxone_agent import paths
from mxone_web.stack import hook
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


# ---- the partition rule ---------------------------------------------------------------------

WINDOW = 2.5  # fast timers: 2 x 1 s + 0.5 s


def view(**heard_by: float) -> hook.WitnessView:
    return hook.WitnessView(dict(heard_by), WINDOW)


@pytest.mark.parametrize(("reached", "witnesses", "partition"), [
    (False, view(lim2=0.4, lim3=7.0), "lim1 is alive (lim2 heard it 0.4 s ago)"),
    (False, view(lim3=2.5, lim2=2.0), "lim1 is alive (lim2 heard it 2.0 s ago)"),
    (False, view(lim2=2.6), ""),  # dead for longer than a witness's word can be old
    (False, view(), ""),  # no witness reported it at all
    (True, view(lim2=0.1), ""),  # reached from here: its keepalived gave the VIP up
    (False, None, ""),  # no agent to ask: no evidence either way
])
def test_a_standby_is_held_back_only_by_a_peer_it_cannot_reach_that_a_witness_heard(
    reached: bool, witnesses: hook.WitnessView | None, partition: str,
) -> None:
    said = hook.partition_rule("lim1", peer_reached=reached, view=witnesses)
    assert said.startswith(partition) and bool(said) == bool(partition)
    if said:
        assert said.endswith("but this server cannot reach it: a partition between the two")


def test_a_standby_held_back_by_a_partition_is_not_promoted_and_gives_the_vip_up() -> None:
    why = "lim1 is alive (lim2 heard it 0.4 s ago) but this server cannot reach it"
    got, sentence = notify_actions("MASTER", "standby", partition=why)
    assert got == ["hold"]
    assert sentence == (f"became MASTER but {why}; the standby database here is not promoted "
                        "and this server gives the VIP up until the partition ends")
    # The pair's only primary goes on: a partition never leaves it with none.
    assert notify_actions("MASTER", "primary", partition=why)[0] == ["unfence"]


def test_the_hook_asks_the_agent_where_it_listens_and_reads_the_witness_view(
    tmp_path: Path,
) -> None:
    assert hook.AGENT_SOCKET == paths.CONTROL
    where = str(tmp_path / "agent.sock")
    status = {"interval_s": 1.0, "peers": [
        {"name": "lim2", "heard_by_s_ago": {}},
        {"name": "lim1", "heard_by_s_ago": {"lim2": 0.35}}]}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(where)
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                assert json.loads(conn.makefile().readline()) == {"cmd": "status"}
                conn.sendall(json.dumps(status).encode() + b"\n")

        t = threading.Thread(target=answer)
        t.start()
        got = hook.witness_view("lim1", where)
        t.join(timeout=5)
    assert got == hook.WitnessView({"lim2": 0.35}, 2.5)
    assert hook.witness_view("lim1", str(tmp_path / "nobody.sock")) is None
