#!/usr/bin/python3
"""The PM/SNM pair's hook on each server: keepalived's notify and health check, the
synchronous-replication watcher and the boot-time fence of the database.

Standard library only, and nothing of the project but its own rules
(:mod:`mxone_web.stack.hook_rules`, installed beside it as ``mxone_web_hook_rules.py``):
the stack installs this file as ``/opt/mxone/web/bin/mxone-web-hook`` and the server's own
``/usr/bin/python3`` runs it (keepalived as root, systemd for the watcher and the fence).
What it knows of the pair comes from ``/etc/mxone/web/pair.json`` (no secret in it). Every
transition it acts on is one line in the journal with the tag ``mxone-web``
(``journalctl -t mxone-web``).

Subcommands:

- ``notify TYPE NAME STATE [PRIORITY]`` (keepalived's ``notify``): on MASTER - unless this
  server is cut off (it reaches neither its peer nor a witness) or held back (below) - the
  local database is promoted if it is a standby, replication is set asynchronous until
  the peer streams again (the watcher restores it), then the database accepts writes; on
  BACKUP, FAULT or STOP a primary here is fenced: it refuses writes
  (``default_transaction_read_only`` in :data:`FENCE_FILE`, reloaded) and its client
  sessions are ended. A standby is left alone (it cannot be written).
- ``check`` (keepalived's ``track_script``): exit 0 when the database accepts connections,
  the web page answers through the web server, this server is not cut off (it reaches
  its peer or one of the witnesses) and nothing holds it back: otherwise it goes to FAULT,
  so it neither takes the VIP nor keeps a writable primary while the peer may be serving.
- ``syncwatch``: on the primary, the loop of ``sync_step`` every half second.
- ``fence``: the database's unit runs it before every start (a drop-in), so a database that
  just started refuses writes until keepalived makes this server master.

Held back (:data:`HOLD_FILE` while it lasts; the rules are ``partition_rule`` and
``takeover_rule``):

- *A partition from the peer alone* (two writable primaries are never made): a standby
  database is promoted only when its peer is gone - reachable from here (its keepalived
  gave the VIP up: the peer's own hook fenced it) or heard by none of the witnesses
  lately. The witnesses are the cluster's other servers; what they hear of the peer comes
  from this server's own cluster agent (its heartbeats carry each sender's witness view:
  ``mxone-agent ctl status``, peers' ``heard_by_s_ago``). "Lately" is two of the cluster's
  heartbeat intervals plus ``WITNESS_MARGIN``: the most a witness's word can be old while
  the peer lives. So a dead master is promoted over as soon as keepalived says so (its
  detection is longer than that at the ``fast``, ``fastest`` and ``bfd`` presets; at
  ``mxone``'s 5 s heartbeats the promotion waits up to 10.5 s), and a master alive behind
  a partition from the standby alone is not. Without an agent to ask, keepalived's word
  alone decides (logged); a split brain that then heals the other way round is reported
  (``conflict_rule``, once, in :data:`CONFLICT_FILE` and the journal).
- *An old primary*: a primary on an older timeline than the peer's primary stays fenced.
- *The master's standby not yet synchronous*: the master's keepalived may take the VIP
  from a running peer (automatic fallback, Fallback); its database is promoted only once
  it is the peer's synchronous standby.
"""

from __future__ import annotations

import json
import pwd
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

if __package__:  # imported: the stack, the tests
    from mxone_web.stack import hook_rules as rules
else:  # run as the installed script: its rules are the file beside it
    sys.dont_write_bytecode = True  # nothing written beside the script
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under -I or -P
    import mxone_web_hook_rules as rules  # type: ignore[import-not-found,no-redef]

PAIR_FILE = Path("/etc/mxone/web/pair.json")
PG_CONF_DIR = Path("/etc/postgresql/15/main/conf.d")
#: The fence: the last file of conf.d, so it wins over every other file there.
FENCE_FILE = PG_CONF_DIR / "zz-mxone-web-fence.conf"
PG_SOCKET_DIR = "/var/run/postgresql"
PG_PORT = 5432
#: The management application's database (its client sessions end at a fence).
APP_DATABASE = "mxone_snm"
HEALTH_URL = "http://127.0.0.1/health"
LOG_TAG = "mxone-web"
#: The cluster agent's control socket (``mxone_agent.paths.CONTROL``).
AGENT_SOCKET = "/run/mxone/agent.sock"
#: Present while this server is held back (a partition, an old primary, a standby not
#: yet synchronous): its check fails until the reason is gone.
HOLD_FILE = Path("/run/mxone-web/held")
#: The split brain reported (once per boot): what ``rules.conflict_rule`` said.
CONFLICT_FILE = Path("/run/mxone-web/conflict")
WATCH_INTERVAL = 0.5


def log(sentence: str) -> None:
    """One line in the journal (tag ``mxone-web``) and on stderr."""
    print(f"{LOG_TAG}: {sentence}", file=sys.stderr, flush=True)
    subprocess.run(["logger", "-t", LOG_TAG, "--", sentence], check=False)


def psql(sql: str, database: str = "postgres", timeout: float = 10.0,
         writable: bool = False) -> str:
    """Run ``sql`` as the postgres superuser over the local socket; its output (-At).

    ``writable`` (on a primary only): the session writes even while the fence makes the
    database refuse the application's writes - the stack's own changes (roles, the
    synchronous standby) must go through on a fenced master before keepalived elects it.
    """
    if writable:
        sql = "SET default_transaction_read_only = off;\n" + sql
    r = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q",
         "-v", "ON_ERROR_STOP=1", "-h", PG_SOCKET_DIR, "-p", str(PG_PORT), "-d", database],
        input=sql, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"psql failed: {r.stderr.strip()}")
    return r.stdout.strip()


def db_role() -> str:
    """``primary``, ``standby`` or ``down`` for the local database."""
    # As postgres, whose role exists: as root every probe left a FATAL line in the log.
    ready = subprocess.run(
        ["runuser", "-u", "postgres", "--", "pg_isready", "-q", "-h", PG_SOCKET_DIR,
         "-p", str(PG_PORT)], check=False, timeout=5
    )
    if ready.returncode != 0:
        return "down"
    try:
        return "standby" if psql("SELECT pg_is_in_recovery()") == "t" else "primary"
    except (RuntimeError, subprocess.TimeoutExpired):
        return "down"


def holds_vip(vip: str, interface: str) -> bool:
    r = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", interface],
        capture_output=True, text=True, check=False,
    )
    return any(f" {vip}/" in line for line in r.stdout.splitlines())


def write_fence(on: bool) -> None:
    """Write the fence file (``on``: the database refuses writes) as postgres reads it."""
    text = (
        "# mxone-web fence: written by the keepalived hook; 'on' while this server is not\n"
        "# the active one of the PM/SNM pair.\n"
        f"default_transaction_read_only = {'on' if on else 'off'}\n"
    )
    tmp = FENCE_FILE.with_name(FENCE_FILE.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(FENCE_FILE)


def fence() -> None:
    write_fence(True)
    psql("SELECT pg_reload_conf()")
    # Sessions opened before the fence keep their writable transactions: end them.
    psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = {rules.sql_literal(APP_DATABASE)} AND pid <> pg_backend_pid()"
    )


def unfence() -> None:
    write_fence(False)
    psql("SELECT pg_reload_conf()")


def set_sync_names(names: str) -> None:
    """On a primary: commits wait for ``names`` ('' - for nobody) from now on."""
    psql(f"ALTER SYSTEM SET synchronous_standby_names = {rules.sql_literal(names)}", writable=True)
    psql("SELECT pg_reload_conf()")


def peer_streaming(peer: str) -> bool:
    """The peer streams from this primary and replied within ``rules.REPLY_FRESH`` s."""
    rows = psql(
        "SELECT count(*) FROM pg_stat_replication "
        f"WHERE application_name = {rules.sql_literal(peer)} AND state = 'streaming' "
        f"AND reply_time > now() - interval '{rules.REPLY_FRESH:g} seconds'"
    )
    return rows not in ("", "0")


@dataclass(frozen=True)
class Pair:
    """What the hook knows of the pair (``pair.json``, written by the stack)."""

    local: str
    peer: str
    peer_ip: str
    vip: str
    interface: str
    witnesses: tuple[str, ...]
    replication_user: str = ""
    role: str = ""  # master or standby: which server of the pair this is


def load_pair() -> Pair:
    """``pair.json``; OSError or ValueError when missing or malformed."""
    data = json.loads(PAIR_FILE.read_text())
    try:
        return Pair(str(data["local"]), str(data["peer"]), str(data["peer_ip"]),
                    str(data["vip"]), str(data["interface"]),
                    tuple(str(w) for w in data.get("witnesses", ())),
                    str(data.get("replication_user", "")), str(data.get("role", "")))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{PAIR_FILE}: {exc!r}") from None


def answers_ping(address: str) -> bool:
    r = subprocess.run(["ping", "-n", "-q", "-c", "1", "-W", "1", address],
                       capture_output=True, check=False, timeout=5)
    return r.returncode == 0


def cut_off(pair: Pair) -> bool:
    """True when this server reaches neither its peer nor any witness: it is the one cut
    off, and must not hold the VIP nor a writable primary (no witnesses: never)."""
    if not pair.witnesses or any(answers_ping(w) for w in pair.witnesses):
        return False
    return not answers_ping(pair.peer_ip)


def witness_view(peer: str, path: str = AGENT_SOCKET,
                 timeout: float = 2.0) -> rules.WitnessView | None:
    """What the cluster agent here says the witnesses last heard of ``peer``; None when
    no agent answers or its answer has no row for the peer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b'{"cmd": "status"}\n')
            data = b""
            while not data.endswith(b"\n") and len(data) < 1 << 22:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        status = json.loads(data)
        row = next(r for r in status["peers"] if r["name"] == peer)
        heard = {str(w): float(age) for w, age in row.get("heard_by_s_ago", {}).items()}
        return rules.WitnessView(heard, 2 * float(status["interval_s"]) + rules.WITNESS_MARGIN)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return None


def partition_now(pair: Pair, view: rules.WitnessView | None = None) -> str:
    """``rules.partition_rule`` for the pair's peer, as things stand (``view``: the
    witnesses' word if already asked). The peer is pinged only when a witness heard it
    lately: a dead peer costs no ping timeout."""
    view = view if view is not None else witness_view(pair.peer)
    if not rules.partition_rule(pair.peer, peer_reached=False, view=view):
        return ""
    return rules.partition_rule(pair.peer, peer_reached=answers_ping(pair.peer_ip), view=view)


def settle_partition(pair: Pair) -> str:
    """The partition this server is held back by, once the witnesses' word has had time to
    settle: a peer that just died is still heard by them for up to the window, so the rule
    is asked again until it clears or the window has passed ('' - no partition)."""
    view = witness_view(pair.peer)
    if view is None:
        log(f"no cluster agent answers on {AGENT_SOCKET}: the witnesses cannot be asked "
            f"whether {pair.peer} is alive; keepalived's word alone decides")
        return ""
    deadline = time.monotonic() + view.window
    while True:
        partition = partition_now(pair, view)
        if not partition or time.monotonic() >= deadline:
            return partition
        time.sleep(0.2)
        view = witness_view(pair.peer)


def peer_database(pair: Pair) -> rules.PeerDatabase | None:
    """The peer's database as the replication role reads it over the network (the
    ``.pgpass`` of postgres); None when it cannot be reached."""
    if not pair.replication_user:
        return None
    conninfo = (f"host={pair.peer_ip} port={PG_PORT} dbname=postgres connect_timeout=2 "
                f"user={pair.replication_user} application_name={pair.local}-hook "
                f"passfile={pwd.getpwnam('postgres').pw_dir}/.pgpass")
    sql = (f"SELECT {TIMELINE_SQL}, coalesce((SELECT sync_state FROM pg_stat_replication "
           f"WHERE application_name = {rules.sql_literal(pair.local)} LIMIT 1), '')")
    try:
        r = subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-w",
             "-F", " ", "-d", conninfo, "-c", sql],
            capture_output=True, text=True, timeout=5, check=False)
        timeline, *state = r.stdout.split()
        return rules.PeerDatabase("standby" if timeline == "0" else "primary", int(timeline),
                            state[0] if state else "")
    except (subprocess.TimeoutExpired, ValueError):
        return None


#: The timeline a primary writes on (0 on a standby), in SQL.
TIMELINE_SQL = ("CASE WHEN pg_is_in_recovery() THEN 0 ELSE ('x' || substr(pg_walfile_name("
                "pg_current_wal_lsn()), 1, 8))::bit(32)::int END")


def held_now(pair: Pair, role: str) -> str:
    """Why this server, its database in ``role``, must not take writes now ('' - nothing
    holds it back): a partition from the peer (a standby), an old primary, or - on the
    master, whose keepalived takes the VIP from a running peer (automatic fallback,
    Fallback) - a standby not yet synchronous with the peer's primary. The standby's
    keepalived takes the VIP only from a peer that gave it up or died, so its database is
    not compared then (a dead peer would cost a connection timeout)."""
    if role not in ("primary", "standby"):
        return ""
    if role == "standby":
        partition = partition_now(pair)
        if partition or pair.role != "master":
            return partition
    try:
        timeline = int(psql(f"SELECT {TIMELINE_SQL}"))
    except (RuntimeError, subprocess.TimeoutExpired, ValueError):
        return ""
    peer_db = peer_database(pair)
    conflict = rules.conflict_rule(pair.peer, db_role=role, timeline=timeline, peer_db=peer_db)
    if conflict and not CONFLICT_FILE.exists():
        CONFLICT_FILE.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        CONFLICT_FILE.write_text(conflict + "\n")
        log(conflict)
    return rules.takeover_rule(pair.peer, db_role=role, timeline=timeline, peer_db=peer_db)


def mark_held(on: bool) -> None:
    if on:
        HOLD_FILE.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        HOLD_FILE.write_text(f"{time.time():.3f}\n")
    else:
        HOLD_FILE.unlink(missing_ok=True)


def cmd_notify(args: list[str]) -> int:
    """``args``: keepalived's TYPE NAME STATE [PRIORITY]."""
    state = args[2] if len(args) >= 3 else "?"
    pair = load_pair()
    role = db_role()
    cut = state == "MASTER" and cut_off(pair)
    held = ""
    if state == "MASTER" and not cut:
        held = (settle_partition(pair) if role == "standby" else "") or held_now(pair, role)
    if held and not holds_vip(pair.vip, pair.interface):
        log(f"keepalived became MASTER, but the VIP is gone again: {held}")
        return 0
    actions, sentence = rules.notify_actions(state, role, cut, held)
    log(f"keepalived {sentence}")
    for action in actions:
        try:
            if action == "hold":
                mark_held(True)
            elif action == "promote":
                psql("SELECT pg_promote(true, 60)", timeout=70)
                log("the database here is now the primary")
            elif action == "async":
                set_sync_names("")
                log(f"asynchronous replication until {pair.peer} streams again")
            elif action == "unfence":
                unfence()
            elif action == "fence":
                fence()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"{action} failed: {exc}")
            return 1
    return 0


def cmd_check() -> int:
    """keepalived's health check (exit 0: healthy; see the module docstring). A server
    held back, or one whose keepalived could take the VIP from a running peer with a
    database that must not take writes (a fenced primary; the master's standby), fails it
    while the reason lasts: it never takes the VIP to give it up again."""
    pair = load_pair()
    role = db_role()
    if HOLD_FILE.exists() or (not holds_vip(pair.vip, pair.interface) and (
            role == "primary" or (role == "standby" and pair.role == "master"))):
        held = held_now(pair, role)
        if held:
            if not HOLD_FILE.exists():
                mark_held(True)
                log(f"held back: {held}")
            return 1
        if HOLD_FILE.exists():
            mark_held(False)
            log("no longer held back (the partition is over, or the database here caught "
                "up): this server may take the VIP again")
    if role == "down" or cut_off(pair):
        return 1
    try:
        with urllib.request.urlopen(HEALTH_URL, timeout=2) as r:
            return 0 if r.status == 200 else 1
    except OSError:
        return 1


def cmd_syncwatch() -> int:
    pair = load_pair()
    peer, vip, interface = pair.peer, pair.vip, pair.interface
    log(f"synchronous-replication watcher started (standby {peer}, grace {rules.SYNC_GRACE:g} s)")
    away: float | None = None
    while True:
        try:
            primary = db_role() == "primary"
            names = psql("SHOW synchronous_standby_names") if primary else ""
            step = rules.sync_step(
                primary=primary,
                vip_here=holds_vip(vip, interface),
                streaming=primary and peer_streaming(peer),
                names=names,
                peer=peer,
                away_since=away,
                now=time.monotonic(),
            )
            away = step.away_since
            if step.names is not None:
                set_sync_names(step.names)
            if step.sentence:
                log(step.sentence)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"watcher round failed: {exc}")
        time.sleep(WATCH_INTERVAL)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "notify":
        return cmd_notify(argv[2:])
    if cmd == "check":
        return cmd_check()
    if cmd == "syncwatch":
        return cmd_syncwatch()
    if cmd == "fence":
        write_fence(True)
        log("database starting: it refuses writes until keepalived makes this server master")
        return 0
    print("usage: mxone-web-hook notify TYPE NAME STATE [PRIORITY] | check | syncwatch | fence",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
