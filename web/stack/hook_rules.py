"""The pair hook's rules, pure and standard library only: the synchronous-replication
watcher's step, the partition and takeover rules, and what keepalived's notify does.

Installed beside the hook (:mod:`mxone_web.stack.hook`) as ``mxone_web_hook_rules.py``;
tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds the standby may be away before the primary stops waiting for it.
SYNC_GRACE = 2.0
#: A standby whose last reply is older than this is away (it replies every second:
#: ``wal_receiver_status_interval``), whether or not its connection has timed out yet.
REPLY_FRESH = 2.0
#: Added to two heartbeat intervals: how recently a witness must have heard the peer.
WITNESS_MARGIN = 0.5


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


@dataclass(frozen=True)
class WitnessView:
    """What the cluster's other servers last heard of the peer: ``heard_by`` maps a
    witness to the seconds since it last heard the peer; ``window`` is how recent that must
    be for the peer to count as alive (two heartbeat intervals + :data:`WITNESS_MARGIN`)."""

    heard_by: dict[str, float]
    window: float


def partition_rule(peer: str, *, peer_reached: bool, view: WitnessView | None) -> str:
    """The sentence naming a partition from ``peer`` alone ('' when there is none): this
    server cannot reach the peer while a witness heard it within the window. No view (no
    agent answers) is no evidence either way: ''."""
    if peer_reached or view is None:
        return ""
    recent = sorted((age, w) for w, age in view.heard_by.items() if age <= view.window)
    if not recent:
        return ""
    age, witness = recent[0]
    return (f"{peer} is alive ({witness} heard it {age:.1f} s ago) but this server cannot "
            f"reach it: a partition between the two")


@dataclass(frozen=True)
class PeerDatabase:
    """The peer's database as this server reads it over the network: ``role`` (``primary``
    or ``standby``), the ``timeline`` a primary writes on (0 for a standby) and how it
    replicates to this server (``sync_state`` of its ``pg_stat_replication`` row, '' for
    none)."""

    role: str
    timeline: int
    sync_state: str


def takeover_rule(peer: str, *, db_role: str, timeline: int,
                  peer_db: PeerDatabase | None) -> str:
    """The sentence naming why this server must not take writes now although keepalived
    made it MASTER ('' when nothing holds it back); ``peer_db`` None: the peer's database
    cannot be reached (dead, down or cut off: nothing to compare with).

    - A primary here on an older timeline than the peer's primary is an old primary: the
      peer was promoted over it, and the rows written there since are not here.
    - A standby here while the peer's primary runs, not yet its synchronous standby: its
      commits are not all applied here, and promoting now could lose some.
    """
    if peer_db is None or peer_db.role != "primary":
        return ""
    if db_role == "primary" and peer_db.timeline > timeline:
        return (f"the database here is an old primary (timeline {timeline}) and {peer}'s "
                f"primary is on timeline {peer_db.timeline}: Fallback brings it back as a "
                f"standby of {peer}'s")
    if db_role == "standby" and peer_db.sync_state != "sync":
        return (f"{peer}'s primary runs and the database here is not its synchronous "
                f"standby yet ({peer_db.sync_state or 'not streaming'}): promoting it now "
                "could lose commits")
    return ""


def conflict_rule(peer: str, *, db_role: str, timeline: int,
                  peer_db: PeerDatabase | None) -> str:
    """The sentence reporting a split brain that healed the wrong way round ('' when
    there is none): this server's primary is on a newer timeline than the primary the peer
    serves - both took writes while apart (only when keepalived alone decided: no cluster
    agent answered). Rows written here since are not on the peer's; nothing here is
    dropped until an operator's rejoin, and that keeps this database as it was."""
    if db_role != "primary" or peer_db is None or peer_db.role != "primary":
        return ""
    if peer_db.timeline >= timeline:
        return ""
    return (f"conflict: {peer}'s primary (timeline {peer_db.timeline}) serves the VIP while "
            f"the database here is a primary on timeline {timeline}; both took writes while "
            f"apart, and rows written here since are not on {peer}'s. They stay here (fenced); "
            "a rejoin keeps this database as it was in main.previous")


def notify_actions(state: str, db_role: str, cut_off: bool = False,
                   held: str = "") -> tuple[list[str], str]:
    """keepalived's new ``state``, the local database's role, whether this server is cut
    off and why it is held back (:func:`partition_rule`, :func:`takeover_rule`; '' for
    nothing) -> the actions (``promote``, ``async``, ``unfence``, ``fence``, ``hold``) and
    the sentence to log. A server cut off never promotes nor accepts writes: it took the
    VIP only because it hears nobody, and the peer may be serving. A server held back
    neither promotes nor lifts its fence, and gives the VIP up (``hold``: its check fails
    while the reason lasts)."""
    if state == "MASTER" and held and db_role in ("standby", "primary"):
        verb = "is not promoted" if db_role == "standby" else "stays fenced"
        return (["hold"] if db_role == "standby" else ["fence", "hold"]), (
            f"became MASTER but {held}; the {db_role} database here {verb} and this server "
            "gives the VIP up until that changes")
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
