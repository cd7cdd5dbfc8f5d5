"""The management database of one server of the pair: PostgreSQL 15 (Debian's cluster
``15/main``, unit ``postgresql@15-main``) as primary or as hot standby.

**How many committed rows a failover may lose.** While the standby streams, the primary
runs with ``synchronous_standby_names`` naming it and ``synchronous_commit = remote_apply``:
a commit returns to the application only once the standby has written *and applied* it,
so a failover (the standby promoted by keepalived's hook) loses **no committed row**. When
the standby has been away for :data:`~mxone_web.stack.hook_rules.SYNC_GRACE` seconds and the
primary holds the virtual IP (the standby replies every second; silent for
:data:`~mxone_web.stack.hook_rules.REPLY_FRESH` s counts as away), the watcher (``mxone-web-hook syncwatch``) degrades to
asynchronous replication and logs it: from then on a commit returns once it is on the
primary's disk only, and the rows committed until the standby streams again (the
watcher then restores synchronous mode, logged too) are lost if the primary fails in that
window. A commit issued while the standby vanishes waits at most about REPLY_FRESH +
SYNC_GRACE (4 s), then returns.

The two servers get the same settings (:func:`render_conf`): ``primary_conninfo`` names the
peer (used only while the database is a standby), ``pg_hba`` accepts replication from the
peer's base address only (and, for pg_rewind, a connection to the ``postgres`` database
with the few functions it reads granted), with SCRAM. The replication role's password never reaches the
server in clear (:func:`scram_verifier`); the standby's copy lives in postgres's
``.pgpass``, 0600 from its first byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mxone_web.stack import hook, hook_rules, hooks, host
from mxone_web.stack.api import PairSettings
from mxone_web.stack.host import Say

UNIT = "postgresql@15-main"
ETC = Path("/etc/postgresql/15/main")
DATA = Path("/var/lib/postgresql/15/main")
CONF_FILE = ETC / "conf.d" / "mxone-web.conf"
HBA_FILE = ETC / "pg_hba.conf"
AUTO_CONF = DATA / "postgresql.auto.conf"
FENCE_DROPIN = Path(f"/etc/systemd/system/{UNIT}.service.d/mxone-web-fence.conf")
HBA_BEGIN = "# mxone-web: replication from the PM/SNM peer (begin)"
HBA_END = "# mxone-web (end)"
#: Settings a base backup copies from the primary that the standby must not keep.
_PRIMARY_ONLY = ("synchronous_standby_names", "default_transaction_read_only",
                 "primary_conninfo", "primary_slot_name")


def pgpass_path() -> Path:
    return host.home_of("postgres") / ".pgpass"


# ------------------------------------------------------------------ rendering


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677), so
    ``CREATE ROLE ... PASSWORD`` never carries the password itself. (PostgreSQL SASLprep-
    normalises non-ASCII passwords; the tool's password rules keep them printable ASCII.)"""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def conninfo_value(text: str) -> str:
    """A value inside a libpq connection string."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def primary_conninfo(settings: PairSettings, passfile: Path) -> str:
    """How this server's database follows the peer while it is a standby."""
    parts = {
        "host": str(settings.peer.base_ip),
        "port": str(hook.PG_PORT),
        "user": settings.replication_user,
        "passfile": str(passfile),
        "application_name": settings.local.name,
        "connect_timeout": "2",
    }
    return " ".join(f"{k}={conninfo_value(v)}" for k, v in parts.items())


def render_conf(settings: PairSettings, passfile: Path) -> str:
    """``conf.d/mxone-web.conf``: the same on both servers (see the module docstring)."""
    conninfo = primary_conninfo(settings, passfile)
    return (
        "# Written by mxone_web (webserver_config > Redundancy); rewritten at every\n"
        "# Reconfigure. The pair: "
        f"{settings.master.name} {settings.master.base_ip} (master), "
        f"{settings.standby.name} {settings.standby.base_ip} (standby), VIP {settings.vip}\n"
        "listen_addresses = '*'\n"
        "wal_level = replica\n"
        "max_wal_senders = 10\n"
        "wal_keep_size = '512MB'\n"
        "wal_log_hints = on                 # pg_rewind can bring an old primary back\n"
        "hot_standby = on\n"
        "hot_standby_feedback = on\n"
        "wal_receiver_timeout = '5s'\n"
        "wal_receiver_status_interval = '1s'  # the primary's watcher sees a silent standby\n"
        "wal_sender_timeout = '5s'\n"
        "password_encryption = 'scram-sha-256'\n"
        "# The watcher sets synchronous_standby_names (ALTER SYSTEM) while the peer streams.\n"
        "synchronous_commit = remote_apply\n"
        f"primary_conninfo = {hook_rules.sql_literal(conninfo)}\n"
    )


def render_hba_block(settings: PairSettings) -> str:
    user = settings.replication_user
    return (
        f"{HBA_BEGIN}\n"
        f"host    replication     {user:<15} {settings.peer.base_ip}/32  scram-sha-256\n"
        f"host    postgres        {user:<15} {settings.peer.base_ip}/32  scram-sha-256\n"
        f"{HBA_END}\n"
    )


def with_hba_block(hba: str, block: str) -> str:
    """``hba`` with the stack's block replaced by ``block`` ('' removes it)."""
    pattern = re.compile(re.escape(HBA_BEGIN) + r".*?" + re.escape(HBA_END) + r"\n?", re.DOTALL)
    kept = pattern.sub("", hba)
    if block and not kept.endswith("\n"):
        kept += "\n"
    return kept + block


def pgpass_text(settings: PairSettings) -> str:
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace(":", "\\:")

    tail = f"{esc(settings.replication_user)}:{esc(settings.replication_password)}\n"
    # replication: the stream and base backups; postgres: pg_rewind's source connection
    return "".join(f"*:{hook.PG_PORT}:{db}:{tail}" for db in ("replication", "postgres"))


def without_primary_settings(auto_conf: str) -> str:
    """A copied ``postgresql.auto.conf`` less the settings only the primary may hold."""
    return "".join(
        line for line in auto_conf.splitlines(keepends=True)
        if line.split("=", 1)[0].strip() not in _PRIMARY_ONLY
    )


# ------------------------------------------------------------------ on the server


def install_files(settings: PairSettings, say: Say) -> None:
    """The settings, pg_hba's block, the .pgpass and the fence drop-in (both roles)."""
    passfile = pgpass_path()
    # The secret's file is the owner's only before its first byte is written.
    host.write(passfile, pgpass_text(settings), 0o600, owner="postgres")
    host.write(CONF_FILE, render_conf(settings, passfile), 0o644, owner="postgres")
    hba = HBA_FILE.read_text()
    host.write(HBA_FILE, with_hba_block(hba, render_hba_block(settings)), 0o640,
               owner="postgres")
    host.write(FENCE_DROPIN, "[Service]\n"
               "# A database that starts refuses writes until keepalived makes this server\n"
               "# the active one (mxone-web-hook notify MASTER lifts the fence).\n"
               f"ExecStartPre=/usr/bin/python3 {hooks.HOOK_PATH} fence\n")
    host.systemctl("daemon-reload")
    say(f"PostgreSQL: replication from {settings.peer.name} ({settings.peer.base_ip}) "
        f"allowed for role {settings.replication_user}")


def restart(say: Say) -> None:
    host.systemctl("enable", UNIT)
    host.systemctl("restart", UNIT)
    host.wait_until("PostgreSQL accepting connections", lambda: hook.db_role() != "down", 60)
    say(f"PostgreSQL ({UNIT}) running as {hook.db_role()}")


def ensure_replication_role(settings: PairSettings, say: Say) -> None:
    user = settings.replication_user
    ident = '"' + user.replace('"', '""') + '"'
    verifier = hook_rules.sql_literal(scram_verifier(settings.replication_password))
    exists = hook.psql(f"SELECT 1 FROM pg_roles WHERE rolname = {hook_rules.sql_literal(user)}")
    verb = "ALTER" if exists == "1" else "CREATE"
    hook.psql(f"{verb} ROLE {ident} WITH REPLICATION LOGIN PASSWORD {verifier}", writable=True)
    # What pg_rewind reads of the source (PostgreSQL's documented minimum), so an old
    # primary can come back as a standby without a full base backup.
    hook.psql(
        f"GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO {ident};\n"
        f"GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO {ident};\n"
        f"GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO {ident};\n"
        "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, "
        f"boolean) TO {ident};\n"
        # Fallback on the master reads the peer's pg_stat_replication (sync_state).
        f"GRANT pg_read_all_stats TO {ident};\n"
        # A rewind first makes its source checkpoint (a fresh primary's timeline).
        f"GRANT pg_checkpoint TO {ident};\n",
        writable=True,
    )
    say(f"PostgreSQL: replication role {user} {'updated' if exists else 'created'} (SCRAM)")


def set_sync_names(names: str) -> None:
    hook.set_sync_names(names)


def ensure_app_database(owner: str, table_sql: str, say: Say) -> None:
    """The management application's role and database (peer login over the socket)."""
    ident = '"' + owner + '"'
    if hook.psql(f"SELECT 1 FROM pg_roles WHERE rolname = {hook_rules.sql_literal(owner)}") != "1":
        hook.psql(f"CREATE ROLE {ident} LOGIN", writable=True)
    if hook.psql(f"SELECT 1 FROM pg_database WHERE datname = {hook_rules.sql_literal(owner)}") != "1":
        hook.psql(f"CREATE DATABASE {ident} OWNER {ident}", writable=True)
    hook.psql(f"SET ROLE {ident};\n{table_sql}", database=owner, writable=True)
    say(f"PostgreSQL: database {owner} ready")


def promote_if_standby(say: Say) -> None:
    if hook.db_role() == "standby":
        hook.psql("SELECT pg_promote(true, 60)", timeout=70)
        say("PostgreSQL: the standby database promoted to a stand-alone primary")


def remove_files(say: Say) -> None:
    """Back to a stand-alone database: the stack's settings, pg_hba block, fence and
    .pgpass removed, synchronous replication off, writes accepted; restarted."""
    if hook.db_role() == "primary":
        hook.set_sync_names("")
    promote_if_standby(say)
    if hook.db_role() == "primary":
        hook.psql("ALTER SYSTEM RESET synchronous_standby_names", writable=True)
    for path in (CONF_FILE, hook.FENCE_FILE, FENCE_DROPIN, pgpass_path(), DATA / "standby.signal"):
        host.remove(path)
    if HBA_FILE.exists():
        host.write(HBA_FILE, with_hba_block(HBA_FILE.read_text(), ""), 0o640, owner="postgres")
    host.systemctl("daemon-reload")
    restart(say)
    say("PostgreSQL: replication removed; the database works stand-alone")


# ------------------------------------------------------------------ status


@dataclass(frozen=True)
class Replication:
    """What the local database says of replication: its role, the state of the stream
    (``streaming``, ``sync``/``async``, ``none``...), the peer it streams to or from, the
    replay lag in bytes and seconds (None: unknown)."""

    role: str
    state: str
    peer: str
    lag_bytes: int | None
    lag_seconds: float | None


def replication() -> Replication:
    role = hook.db_role()
    try:
        if role == "primary":
            row = hook.psql(
                "SELECT application_name, state, sync_state, "
                "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint, "
                "coalesce(extract(epoch FROM replay_lag), 0) "
                "FROM pg_stat_replication ORDER BY application_name LIMIT 1"
            )
            if not row:
                return Replication(role, "no standby connected", "", None, None)
            name, state, sync, lag_b, lag_s = row.split("|")
            return Replication(role, f"{state} ({sync})", name, int(lag_b), float(lag_s))
        if role == "standby":
            row = hook.psql(
                "SELECT coalesce((SELECT status || '|' || coalesce(sender_host, '') "
                "FROM pg_stat_wal_receiver), 'not receiving|'), "
                "coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
                "pg_last_wal_replay_lsn()), 0)::bigint"
            )
            receiver, lag_b = row.rsplit("|", 1)
            state, sender = receiver.split("|", 1)
            return Replication(role, state, sender, int(lag_b), None)
    except (RuntimeError, ValueError) as exc:
        return Replication(role, f"unknown ({exc})", "", None, None)
    return Replication(role, "none", "", None, None)
