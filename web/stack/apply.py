"""What ``webserver_config`` > Redundancy does on *this* server, run as root here.

- :func:`configure` sets up this server's half of the pair from :class:`PairSettings`: the
  master first (its database becomes the primary), then the standby (its database is
  replaced by a base backup of the master's and follows it as a hot standby);
- :func:`status` is what CheckStatus shows of this server;
- :func:`fallback` (on the master, after a failover) returns PM/SNM to the master with no
  committed row lost; :func:`rejoin` then makes the standby's database follow it again;
- :func:`reconfigure_fallback` makes keepalived follow the cluster's fallback type;
- :func:`remove` leaves this server stand-alone (master first, then standby).

``say(line)`` gets one line per step for the operator; a failed step raises
:class:`~mxone_web.stack.host.StackError` naming it. What each component does, and the
rows a failover may lose, is told in :mod:`~mxone_web.stack.postgres`,
:mod:`~mxone_web.stack.keepalived`, :mod:`~mxone_web.stack.webserver` and the hook
(:mod:`~mxone_web.stack.hook`).
"""

from __future__ import annotations

from mxone_web.stack import follow, hook, hook_rules, hooks, host, keepalived, postgres, webserver
from mxone_web.stack.api import PairRole, PairSettings, StackStatus
from mxone_web.stack.host import Say


def configure(settings: PairSettings, say: Say) -> None:
    """Set up (or set up again: Reconfigure) this server's half of the pair."""
    say(f"{settings.local.name}: configuring PM/SNM redundancy as {settings.role.value} "
        f"(peer {settings.peer.name} {settings.peer.base_ip}, VIP {settings.vip})")
    hooks.install(settings, say)
    webserver.install_app(say)
    postgres.install_files(settings, say)
    if settings.role is PairRole.MASTER:
        postgres.restart(say)
        if hook.db_role() == "standby":  # a Reconfigure after a failover: refuse
            raise host.StackError(
                f"the database on {settings.local.name} is a standby: the peer holds the "
                "primary; run Fallback before reconfiguring the master")
        # Commits wait for the standby only once it streams (the watcher turns it on).
        postgres.set_sync_names("")
        postgres.ensure_replication_role(settings, say)
        postgres.ensure_app_database(webserver.APP_USER, webserver.schema(), say)
    else:
        follow.base_backup(settings, settings.master, say)
    webserver.start(say)
    hooks.start_watcher(say)
    keepalived.install_and_start(settings, say)
    say(f"{settings.local.name}: PM/SNM redundancy configured as {settings.role.value}")


def install_app(say: Say) -> None:
    """The management application (the reference ``mxone_snm``) installed on this server,
    not started: what the master's configuration offers when the standby lacks it."""
    webserver.install_app(say)


def rejoin(settings: PairSettings, say: Say) -> None:
    """The database here (an old primary, fenced) becomes a hot standby of the peer's:
    after a failover on the master (the first half of Fallback), after Fallback on the
    standby. See :mod:`~mxone_web.stack.follow`."""
    follow.rejoin(settings, say)


def fallback(settings: PairSettings, say: Say) -> None:
    """On the master after a failover: PM/SNM back to the master with no committed row
    lost. The master's database rejoins as the standby's standby and streams (the
    standby's watcher makes commits wait for it again); then the master preempts the VIP
    once: the standby's hook fences its primary (refuses writes, sessions ended) and the
    master's hook promotes. Every commit acknowledged before the switch was applied here
    (synchronous, remote_apply); a commit on the standby after the promotion waits for a
    synchronous standby that is gone and is never acknowledged. Then run :func:`rejoin`
    on the standby so it follows the master again."""
    if settings.role is not PairRole.MASTER:
        raise host.StackError("Fallback runs on the master")
    vip = str(settings.vip)
    if hook.holds_vip(vip, settings.interface) and hook.db_role() == "primary":
        say(f"{settings.local.name} already holds the VIP with the primary database")
        return
    follow.rejoin(settings, say)
    seen: list[str] = []
    try:
        host.wait_until("sync", lambda: _synchronous_with_peer(settings, seen), 30)
    except host.StackError:
        raise host.StackError(
            f"commits on {settings.peer.name} not synchronous with {settings.local.name} "
            f"within 30 s (its replication state: {seen[-1] if seen else 'unknown'})") from None
    keepalived.preempt_once(settings, say)
    host.wait_until(f"{settings.local.name} holding the VIP with the primary database",
                    lambda: hook.holds_vip(vip, settings.interface)
                    and hook.db_role() == "primary", 30)
    keepalived.install_and_start(settings, say, restart=False)
    say(f"{settings.local.name}: PM/SNM active again; run Fallback's rejoin on "
        f"{settings.peer.name} so its database follows this one")


def _synchronous_with_peer(settings: PairSettings, seen: list[str]) -> bool:
    """The peer's primary lists this server as its synchronous standby."""
    sql = ("SELECT sync_state FROM pg_stat_replication "
           f"WHERE application_name = {hook_rules.sql_literal(settings.local.name)}")
    conninfo = follow.source_conninfo(settings, settings.peer, "check", "postgres")
    r = host.run(host.as_user("postgres", ["psql", "-X", "-A", "-t", "-d", conninfo, "-c", sql]),
                 check=False)
    seen.append(r.stdout.strip() or r.stderr.strip())
    return r.stdout.strip() == "sync"


def reconfigure_fallback(settings: PairSettings, say: Say) -> None:
    """Follow the cluster's fallback type (``settings.fallback``): keepalived's
    configuration rewritten and reloaded, the VIP left where it is. AUTOMATIC: the master
    takes the VIP back by itself once healthy; MANUAL: it stays until Fallback."""
    hooks.install(settings, say)
    keepalived.install_and_start(settings, say, restart=False)


def remove(settings: PairSettings, say: Say) -> None:
    """Remove redundancy here: keepalived stopped and disabled (the VIP leaves this
    server), the watcher and hook gone, the database stand-alone and writable (a standby
    is promoted), the page still served."""
    say(f"{settings.local.name}: removing PM/SNM redundancy")
    keepalived.remove(say)
    hooks.remove(say)
    postgres.remove_files(say)
    say(f"{settings.local.name}: stand-alone; its page is served at "
        f"http://{settings.local.base_ip}/mp")


def status() -> StackStatus:
    """This server as CheckStatus shows it (never raises for a component that is down)."""
    rep = postgres.replication()
    try:
        pair: hook.Pair | None = hook.load_pair()
    except (OSError, ValueError):  # not configured here (or removed)
        pair = None
    return StackStatus(
        server=host.hostname(),
        keepalived_running=keepalived.running(),
        package=webserver.installed_package(),
        db_role=rep.role,
        replication=rep.state,
        # a standby's stream names its sender by address: the peer's name where it is
        replication_peer=(pair.peer if pair and rep.peer == pair.peer_ip else rep.peer),
        lag_bytes=rep.lag_bytes,
        lag_seconds=rep.lag_seconds,
        vip=pair.vip if pair else "",
        holds_vip=pair is not None and hook.holds_vip(pair.vip, pair.interface),
    )

