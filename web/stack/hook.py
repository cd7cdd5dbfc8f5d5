#!/usr/bin/python3
"""The PM/SNM pair's hook on each server: keepalived's notify and health check, the
synchronous-replication watcher and the boot-time fence of the database.

Standard library only, and nothing of the project: the stack installs this file as
``/opt/mxone/web/bin/mxone-web-hook`` and the server's own ``/usr/bin/python3`` runs it
(keepalived as root, systemd for the watcher and the fence). What it knows of the pair
comes from ``/etc/mxone/web/pair.json`` (no secret in it). Every transition it acts on is
one line in the journal with the tag ``mxone-web`` (``journalctl -t mxone-web``).

Subcommands:

- ``notify TYPE NAME STATE [PRIORITY]`` (keepalived's ``notify``): on MASTER - unless this
  server is cut off (it reaches neither its peer nor a witness) - the local database is
  promoted if it is a standby, replication is set asynchronous until the peer
  streams again (the watcher restores it), then the database accepts writes; on BACKUP,
  FAULT or STOP a primary here is fenced: it refuses writes (``default_transaction_read_only``
  in :data:`FENCE_FILE`, reloaded) and its client sessions are ended. A standby is left
  alone (it cannot be written).
- ``check`` (keepalived's ``track_script``): exit 0 when the database accepts connections,
  the web page answers through the web server and this server is not cut off (it reaches
  its peer or one of the witnesses): a server cut off goes to FAULT, so it neither takes
  the VIP nor keeps a writable primary while the peer may be serving.
- ``syncwatch``: on the primary, the loop of :func:`sync_step` every half second.
- ``fence``: the database's unit runs it before every start (a drop-in), so a database that
  just started refuses writes until keepalived makes this server master.

The rules are pure functions (:func:`sync_step`, :func:`notify_actions`), tested alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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

#: Seconds the standby may be away before the primary stops waiting for it.
SYNC_GRACE = 2.0
#: A standby whose last reply is older than this is away (it replies every second:
#: ``wal_receiver_status_interval``), whether or not its connection has timed out yet.
REPLY_FRESH = 2.0
WATCH_INTERVAL = 0.5


# ------------------------------------------------------------------- pure rules


@dataclass(frozen=True)
class SyncStep:
    """What the watcher does this round: the new ``synchronous_standby_names`` (None: keep
    it), since when the standby is away (None: it streams), and the sentence to log ('')."""

    names: str | None
    away_since: float | None
    sentence: str


def sync_step(
    *,
    primary: bool,
    vip_here: bool,
    streaming: bool,
    names: str,
    peer: str,
    away_since: float | None,
    now: float,
    grace: float = SYNC_GRACE,
) -> SyncStep:
    """One round of the synchronous-replication watcher (Patroni's synchronous mode).

    While ``peer`` streams, commits wait for it (``names`` = the peer). Once it has been
    away ``grace`` seconds and this primary holds the virtual IP, commits stop waiting
    (``names`` = ''), said in one sentence; when it streams again, they wait again.
    """
    if not primary:
        return SyncStep(None, None, "")
    wanted = quote_name(peer)
    if streaming:
        if unquote(names) != peer:
            return SyncStep(
                wanted,
                None,
                f"standby {peer} streams: synchronous replication on "
                "(a commit returns once the standby has applied it)",
            )
        return SyncStep(None, None, "")
    since = away_since if away_since is not None else now
    if names and vip_here and now - since >= grace:
        return SyncStep(
            "",
            since,
            f"standby {peer} not streaming for {now - since:.1f} s: degraded to asynchronous "
            "replication (commits no longer wait for it; a failover now may lose them)",
        )
    return SyncStep(None, since, "")


def notify_actions(state: str, db_role: str, cut_off: bool = False) -> tuple[list[str], str]:
    """keepalived's new ``state``, the local database's role and whether this server is cut
    off (:func:`cut_off`) -> the actions (``promote``, ``async``, ``unfence``, ``fence``)
    and the sentence to log. A server cut off never promotes nor accepts writes: it took
    the VIP only because it hears nobody, and the peer may be serving."""
    if state == "MASTER" and cut_off:
        return (["fence"] if db_role == "primary" else []), (
            f"became MASTER but reaches neither its peer nor any witness: the {db_role} "
            "database here is not promoted and refuses writes"
        )
    if state == "MASTER":
        if db_role == "standby":
            return ["promote", "async", "unfence"], (
                "became MASTER: promoting the standby database to primary"
            )
        if db_role == "primary":
            return ["unfence"], "became MASTER: the primary database accepts writes"
        return [], f"became MASTER but the database is {db_role}: nothing to promote"
    if db_role == "primary":
        return ["fence"], f"became {state}: the primary database here refuses writes (fenced)"
    return [], f"became {state}: the database here is {db_role}, nothing to fence"


def quote_name(name: str) -> str:
    """A server name as one entry of ``synchronous_standby_names``."""
    return '"' + name.replace('"', '""') + '"'


def unquote(names: str) -> str:
    names = names.strip()
    if len(names) >= 2 and names[0] == names[-1] == '"':
        return names[1:-1].replace('""', '"')
    return names


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------- the server


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
    ready = subprocess.run(
        ["pg_isready", "-q", "-h", PG_SOCKET_DIR, "-p", str(PG_PORT)], check=False, timeout=5
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
        f"WHERE datname = {sql_literal(APP_DATABASE)} AND pid <> pg_backend_pid()"
    )


def unfence() -> None:
    write_fence(False)
    psql("SELECT pg_reload_conf()")


def set_sync_names(names: str) -> None:
    """On a primary: commits wait for ``names`` ('' - for nobody) from now on."""
    psql(f"ALTER SYSTEM SET synchronous_standby_names = {sql_literal(names)}", writable=True)
    psql("SELECT pg_reload_conf()")


def peer_streaming(peer: str) -> bool:
    """The peer streams from this primary and replied within :data:`REPLY_FRESH` s."""
    rows = psql(
        "SELECT count(*) FROM pg_stat_replication "
        f"WHERE application_name = {sql_literal(peer)} AND state = 'streaming' "
        f"AND reply_time > now() - interval '{REPLY_FRESH:g} seconds'"
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


def load_pair() -> Pair:
    """``pair.json``; OSError or ValueError when missing or malformed."""
    data = json.loads(PAIR_FILE.read_text())
    try:
        return Pair(str(data["local"]), str(data["peer"]), str(data["peer_ip"]),
                    str(data["vip"]), str(data["interface"]),
                    tuple(str(w) for w in data.get("witnesses", ())))
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


def cmd_notify(args: list[str]) -> int:
    """``args``: keepalived's TYPE NAME STATE [PRIORITY]."""
    state = args[2] if len(args) >= 3 else "?"
    pair = load_pair()
    role = db_role()
    actions, sentence = notify_actions(state, role, state == "MASTER" and cut_off(pair))
    log(f"keepalived {sentence}")
    for action in actions:
        try:
            if action == "promote":
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
    if db_role() == "down" or cut_off(load_pair()):
        return 1
    try:
        with urllib.request.urlopen(HEALTH_URL, timeout=2) as r:
            return 0 if r.status == 200 else 1
    except OSError:
        return 1


def cmd_syncwatch() -> int:
    pair = load_pair()
    peer, vip, interface = pair.peer, pair.vip, pair.interface
    log(f"synchronous-replication watcher started (standby {peer}, grace {SYNC_GRACE:g} s)")
    away: float | None = None
    while True:
        try:
            primary = db_role() == "primary"
            names = psql("SHOW synchronous_standby_names") if primary else ""
            step = sync_step(
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
