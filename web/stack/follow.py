"""The local database made a hot standby of the peer's primary: from a fresh base backup
(the standby's first configuration) or, for an old primary coming back, by ``pg_rewind``
(only the blocks that changed since the timelines parted), a fresh base backup when
rewind cannot. Either way the database then streams from the peer as this server's name,
so the peer's watcher makes its commits synchronous again.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil

from mxone_web.stack import hook, host, postgres
from mxone_web.stack.api import PairServer, PairSettings
from mxone_web.stack.host import Say, StackError

PG_BIN = "/usr/lib/postgresql/15/bin"
#: The local database as it was before the last base backup or rewind replaced it: what a
#: replaced database held (rows of a split brain, a stand-alone server's own rows) is kept
#: here until the next replacement, never silently dropped.
PREVIOUS = postgres.DATA.with_name(postgres.DATA.name + ".previous")


def source_conninfo(settings: PairSettings, source: PairServer, purpose: str,
                    database: str = "") -> str:
    values = {
        "host": str(source.base_ip),
        "port": str(hook.PG_PORT),
        "user": settings.replication_user,
        "passfile": str(postgres.pgpass_path()),
        "application_name": f"{settings.local.name}-{purpose}",
        "connect_timeout": "5",
        **({"dbname": database} if database else {}),
    }
    return " ".join(f"{k}={postgres.conninfo_value(v)}" for k, v in values.items())


def base_backup(settings: PairSettings, source: PairServer, say: Say,
                kept: bool = False) -> None:
    """Replace the local database by a base backup of ``source``'s; start it as a hot
    standby following the peer. The database replaced is kept as :data:`PREVIOUS` (or,
    with ``kept``, is already there: a rewind that failed copied it first)."""
    refuse_while_active(settings, "replaced by a base backup")
    say(f"PostgreSQL: the local database is replaced by {source.name}'s (pg_basebackup)")
    host.systemctl("stop", postgres.UNIT)
    pw = pwd.getpwnam("postgres")
    if postgres.DATA.exists() and kept:
        shutil.rmtree(postgres.DATA)
    elif postgres.DATA.exists():
        keep_previous(say, move=True)
    postgres.DATA.mkdir(mode=0o700)
    os.chown(postgres.DATA, pw.pw_uid, pw.pw_gid)
    host.run(host.as_user("postgres", [
        "pg_basebackup", "-d", source_conninfo(settings, source, "basebackup"),
        "-D", str(postgres.DATA), "-X", "stream", "-c", "fast", "-w",
    ]), timeout=600)
    start_as_standby(say)


class RewindFailed(StackError):
    """pg_rewind could not: the database it was given is kept as :data:`PREVIOUS`."""


def rewind(settings: PairSettings, source: PairServer, say: Say) -> None:
    """Bring the local (old primary's) database back onto ``source``'s timeline with
    pg_rewind and start it as a hot standby; :class:`RewindFailed` when rewind cannot, or
    when what it made does not start (the database as it was is kept first)."""
    refuse_while_active(settings, "rewound")
    host.systemctl("stop", postgres.UNIT)
    keep_previous(say, move=False)
    conninfo = source_conninfo(settings, source, "rewind", "postgres")
    try:
        # A primary promoted moments ago still has its old timeline in its control file
        # until its first checkpoint, and pg_rewind reads the timeline there: without this
        # it computes the wrong point of divergence and the result cannot start.
        host.run(host.as_user("postgres", [
            "psql", "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-d", conninfo,
            "-c", "CHECKPOINT",
        ]), timeout=600)
        host.run(host.as_user("postgres", [
            f"{PG_BIN}/pg_rewind", "-D", str(postgres.DATA), f"--source-server={conninfo}",
        ]), timeout=600)
    except StackError as exc:
        raise RewindFailed(str(exc)) from exc
    say(f"PostgreSQL: the local database rewound onto {source.name}'s timeline (pg_rewind)")
    try:
        start_as_standby(say)
    except StackError as exc:
        raise RewindFailed(f"the rewound database did not start as a standby: {exc}") from exc


def refuse_while_active(settings: PairSettings, what: str) -> None:
    """:class:`StackError` while this server holds the virtual IP: its database is the one
    clients write to, and is never replaced."""
    if hook.holds_vip(str(settings.vip), settings.interface):
        raise StackError(f"{settings.local.name} holds the virtual IP {settings.vip}: its "
                         f"database is the active one and is not {what} (run Fallback on "
                         "the master first)")


def keep_previous(say: Say, *, move: bool) -> None:
    """The stopped local database kept as :data:`PREVIOUS` (moved away before a base
    backup, copied before a rewind changes it in place); the one kept before is dropped."""
    if PREVIOUS.exists():
        shutil.rmtree(PREVIOUS)
    moved = False
    if move:
        try:
            postgres.DATA.rename(PREVIOUS)
            moved = True
        except OSError as exc:  # EXDEV: e.g. a directory of an overlay's lower layer
            if exc.errno != errno.EXDEV:
                raise
    if not moved:
        shutil.copytree(postgres.DATA, PREVIOUS, symlinks=True)
        if move:
            shutil.rmtree(postgres.DATA)
    say(f"PostgreSQL: the database as it was kept in {PREVIOUS}")


def start_as_standby(say: Say) -> None:
    auto = postgres.AUTO_CONF
    text = auto.read_text() if auto.exists() else ""
    host.write(auto, postgres.without_primary_settings(text), 0o600, owner="postgres")
    host.write(postgres.DATA / "standby.signal", "", 0o600, owner="postgres")
    postgres.restart(say)
    if hook.db_role() != "standby":
        raise StackError("PostgreSQL: the database did not start as a hot standby")


def streaming() -> bool:
    return hook.psql("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'") == "1"


def rejoin(settings: PairSettings, say: Say) -> None:
    """Make the local database a hot standby of the peer, streaming (pg_rewind, a fresh
    base backup when rewind cannot). Refused while this server holds the VIP."""
    refuse_while_active(settings, "made a standby")
    if hook.db_role() != "standby":
        try:
            rewind(settings, settings.peer, say)
        except RewindFailed as exc:
            say(f"PostgreSQL: pg_rewind could not ({exc}); a fresh base backup instead")
            base_backup(settings, settings.peer, say, kept=True)
    host.wait_until(f"the database streaming from {settings.peer.name}", streaming, 60)
    say(f"PostgreSQL: hot standby of {settings.peer.name}, streaming")
