"""The pair's hook: keepalived's notify decisions and the synchronous-mode watcher, as
tables of states in and actions + sentences out."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from mxone_agent import paths
from mxone_web.stack import hook, hook_rules, hooks
from mxone_web.stack.hook_rules import (
    PeerDatabase,
    WitnessView,
    conflict_rule,
    notify_actions,
    partition_rule,
    quote_name,
    sync_step,
    takeover_rule,
    unquote,
)

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


def view(**heard_by: float) -> WitnessView:
    return WitnessView(dict(heard_by), WINDOW)


@pytest.mark.parametrize(("reached", "witnesses", "partition"), [
    (False, view(lim2=0.4, lim3=7.0), "lim1 is alive (lim2 heard it 0.4 s ago)"),
    (False, view(lim3=2.5, lim2=2.0), "lim1 is alive (lim2 heard it 2.0 s ago)"),
    (False, view(lim2=2.6), ""),  # dead for longer than a witness's word can be old
    (False, view(), ""),  # no witness reported it at all
    (True, view(lim2=0.1), ""),  # reached from here: its keepalived gave the VIP up
    (False, None, ""),  # no agent to ask: no evidence either way
])
def test_a_standby_is_held_back_only_by_a_peer_it_cannot_reach_that_a_witness_heard(
    reached: bool, witnesses: WitnessView | None, partition: str,
) -> None:
    said = partition_rule("lim1", peer_reached=reached, view=witnesses)
    assert said.startswith(partition) and bool(said) == bool(partition)
    if said:
        assert said.endswith("but this server cannot reach it: a partition between the two")


def test_a_standby_held_back_by_a_partition_is_not_promoted_and_gives_the_vip_up() -> None:
    why = "lim1 is alive (lim2 heard it 0.4 s ago) but this server cannot reach it"
    got, sentence = notify_actions("MASTER", "standby", held=why)
    assert got == ["hold"]
    assert sentence == (f"became MASTER but {why}; the standby database here is not promoted "
                        "and this server gives the VIP up until that changes")


def test_an_old_primary_made_master_stays_fenced_and_gives_the_vip_up() -> None:
    why = takeover_rule("standby1", db_role="primary", timeline=1,
                        peer_db=PeerDatabase("primary", 2, ""))
    assert why == ("the database here is an old primary (timeline 1) and standby1's primary "
                   "is on timeline 2: Fallback brings it back as a standby of standby1's")
    got, sentence = notify_actions("MASTER", "primary", held=why)
    assert got == ["fence", "hold"]
    assert sentence.endswith("the primary database here stays fenced and this server gives "
                             "the VIP up until that changes")


@pytest.mark.parametrize(("role", "timeline", "peer", "held"), [
    ("primary", 2, PeerDatabase("primary", 1, ""), ""),  # the peer is the old one
    ("primary", 2, PeerDatabase("primary", 2, ""), ""),
    ("primary", 1, PeerDatabase("standby", 0, ""), ""),  # the usual pair
    ("primary", 1, None, ""),  # the peer's database out of reach: nothing to compare
    ("standby", 0, PeerDatabase("primary", 2, "sync"), ""),  # every commit applied here
    ("standby", 0, PeerDatabase("primary", 2, "async"), "not its synchronous standby yet "
     "(async): promoting it now could lose commits"),
    ("standby", 0, PeerDatabase("primary", 2, ""), "(not streaming)"),
    ("standby", 0, PeerDatabase("standby", 0, ""), ""),
])
def test_the_takeover_rule(role: str, timeline: int, peer: PeerDatabase | None,
                           held: str) -> None:
    said = takeover_rule("standby1", db_role=role, timeline=timeline, peer_db=peer)
    assert (held in said) and bool(said) == bool(held)


def test_the_only_primary_goes_on_whatever_holds_a_standby_back() -> None:
    # A partition is asked of a standby only: the pair's only primary is never held by it.
    assert notify_actions("MASTER", "primary")[0] == ["unfence"]
    assert notify_actions("MASTER", "down", held="x")[0] == []


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
    assert got == WitnessView({"lim2": 0.35}, 2.5)
    assert hook.witness_view("lim1", str(tmp_path / "nobody.sock")) is None


def test_the_installed_hook_runs_from_its_own_directory_with_its_rules_beside_it(
    tmp_path: Path,
) -> None:
    script = tmp_path / hooks.HOOK_PATH.name
    script.write_text(Path(hook.__file__).read_text())
    (tmp_path / hooks.RULES_PATH.name).write_text(Path(hook_rules.__file__).read_text())
    r = subprocess.run(["/usr/bin/python3", "-I", str(script), "nonsense"], capture_output=True,
                       text=True, cwd="/", timeout=30, check=False)
    assert r.returncode == 2 and r.stderr.startswith("usage: mxone-web-hook notify"), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [script.name, hooks.RULES_PATH.name])  # no bytecode written beside it
    (tmp_path / hooks.RULES_PATH.name).unlink()
    r = subprocess.run(["/usr/bin/python3", "-I", str(script)], capture_output=True, text=True,
                       cwd="/", timeout=30, check=False)
    assert r.returncode == 1 and "mxone_web_hook_rules" in r.stderr


@pytest.mark.parametrize(("role", "timeline", "peer", "conflict"), [
    ("primary", 2, PeerDatabase("primary", 1, ""), True),  # both wrote while apart
    ("primary", 2, PeerDatabase("primary", 2, ""), False),
    ("primary", 1, PeerDatabase("primary", 2, ""), False),  # an old primary: held back
    ("primary", 2, PeerDatabase("standby", 0, ""), False),
    ("primary", 2, None, False),
    ("standby", 0, PeerDatabase("primary", 1, ""), False),
])
def test_a_split_brain_healed_the_wrong_way_round_is_reported(
    role: str, timeline: int, peer: PeerDatabase | None, conflict: bool,
) -> None:
    said = conflict_rule("lim1", db_role=role, timeline=timeline, peer_db=peer)
    assert bool(said) == conflict
    if said:
        assert said.startswith("conflict: lim1's primary (timeline 1) serves the VIP while the "
                               "database here is a primary on timeline 2")
        assert "kept" in said or "stay here" in said
