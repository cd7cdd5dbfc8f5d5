"""The utilities while redundancy is set: CheckStatus, Reconfigure, Fallback, Reconfigure
Fallback and Remove Redundancy, each on the server the seed names.

The order across the pair is enforced, not only written: the standby's Reconfigure must
repeat the master's current answers (so the master goes first), its Reconfigure Fallback
needs the master to follow the cluster's fallback type already, and its Remove Redundancy
needs the master's removed - each refused with the reason and the server to go to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import paramiko  # type: ignore[import-untyped]
from mxone_web import manager, settings, setup
from mxone_web.context import Say, Web
from mxone_web.discover import Pair
from mxone_web.errors import Refused, WebError
from mxone_web.stack.api import PairRole, PairSettings



# ---- CheckStatus -------------------------------------------------------------------------

def status_lines(s: Mapping[str, Any]) -> list[str]:
    """One server's status as the seed's CheckStatus screen shows it, with the database."""
    lines = [str(s.get("server", "?"))]
    lines.append("  Keepalived (Redundancy) is " + ("running" if s.get("keepalived_running")
                                                    else "NOT running"))
    lines.append(f"  {s['package']}" if s.get("package") else
                 f"  {manager.PACKAGE} is NOT installed")
    lag = s.get("lag_bytes")
    peer = f" with {s['replication_peer']}" if s.get("replication_peer") else ""
    lines.append(f"  database {s.get('db_role', '?')}: {s.get('replication', '?')}{peer}"
                 + (f", lag {lag} bytes" if lag is not None else ""))
    if s.get("vip"):
        lines.append(f"  virtual IP {s['vip']}: " + ("held here" if s.get("holds_vip")
                                                      else "not here"))
    return lines


def peer_status(web: Web, pair: Pair) -> Mapping[str, Any]:
    """The peer's status, asked over the silent login (never raises: unknown instead)."""
    try:
        host_key = web.peer_host_key(pair, None)
        with web.session(pair, manager.MANAGER, host_key, key=web.manager_key()) as s:
            ran = s.run(manager.peer_command(setup.STATUS_WORDS))
        if not ran.ok:
            raise WebError(ran.why())
        found = json.loads(ran.out)
        if not isinstance(found, dict):
            raise WebError("not a status")
        return {k: v for k, v in found.items() if k != "schema"}  # the peer's --json version
    except (WebError, Refused, ValueError) as e:
        return {"server": pair.peer.name, "unknown": str(e)}


def check_status(web: Web, here_only: bool) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The status of this server (and of the peer unless ``here_only``), and its lines."""
    if here_only:
        mine = dict(web.stack.status())
        return [mine], status_lines(mine)
    pair = web.pair()  # refused first when LIM 1 is in no cluster
    mine = dict(web.stack.status())
    found: list[Mapping[str, Any]] = [mine]
    if web.saved() is not None:
        found.append(peer_status(web, pair))
    order = sorted(found, key=lambda s: s.get("server") != pair.master.name)
    lines = ["Checking servers in system, please wait ...", ""]
    for s in order:
        if "unknown" in s:
            lines += [str(s["server"]), f"  status unknown: {s['unknown']}"]
        else:
            lines += status_lines(s)
        lines.append("")
    return order, lines


def peer_rejoin(web: Web, pair: Pair) -> list[str]:
    """Have the peer's database follow this server's again (the last step of the master's
    Fallback), over the silent login; WebError naming the peer when it cannot."""
    host_key = web.peer_host_key(pair, None)
    with web.session(pair, manager.MANAGER, host_key, key=web.manager_key()) as s:
        ran = s.run(manager.peer_command(setup.REJOIN_WORDS))
    if not ran.ok:
        raise WebError(f"{pair.peer.name}: rejoin failed: {ran.why()}; run `webserver_config "
                       f"redundancy rejoin --here` there")
    try:
        found = json.loads(ran.out)
    except json.JSONDecodeError:
        found = {}
    lines = found.get("lines", []) if isinstance(found, dict) else []
    return [f"{pair.peer.name}: {line}" for line in lines if isinstance(line, str)]


# ---- order across the pair ---------------------------------------------------------------

def _master_answers(web: Web, pair: Pair, host_key: paramiko.PKey) -> Mapping[str, Any] | None:
    """The master's answers (None once its redundancy is removed)."""
    with web.session(pair, manager.MANAGER, host_key, key=web.manager_key()) as s:
        if not s.run(f"test -e {settings.MASTER_ANSWERS}").ok:
            return None
        text = manager.fetch_master_answers(s, str(settings.MASTER_ANSWERS))
    try:
        found = json.loads(text)
    except json.JSONDecodeError as e:
        raise WebError(f"{pair.master.name}: the master's answers are not JSON: {e.msg}") from e
    return found if isinstance(found, dict) else None


def reconfigure_standby(web: Web, pair: Pair, answers: setup.Answers,
                        host_key: paramiko.PKey) -> list[str]:
    """The standby's answers checked against the master's current ones: Reconfigure runs
    on the master first."""
    found = _master_answers(web, pair, host_key)
    if found is None:
        raise Refused(f"Reconfigure runs on the master first: {pair.master.name} has no PM/SNM "
                      "redundancy set")
    try:
        settings.check_same(found, answers.vip, answers.user, answers.password)
    except Refused as e:
        raise Refused(f"Reconfigure runs on the master {pair.master.name} first, then on the "
                      f"standby: {e}") from None
    return [f"{pair.standby.name}: answers equal the master's ({pair.master.name})"]


def fallback_follows(web: Web, pair: Pair, saved: PairSettings,
                     host_key: paramiko.PKey | None) -> PairSettings:
    """The settings with the cluster's fallback type; on the standby only once the master
    follows it (Reconfigure Fallback: master first)."""
    import dataclasses

    if pair.role is PairRole.STANDBY:
        assert host_key is not None
        found = _master_answers(web, pair, host_key)
        if found is None or found.get("fallback") != str(pair.fallback):
            theirs = "not set" if found is None else found.get("fallback")
            raise Refused(f"Reconfigure Fallback runs on the master {pair.master.name} first: "
                          f"its PM/SNM fallback is {theirs}, the cluster's is {pair.fallback}")
    return dataclasses.replace(saved, fallback=pair.fallback)


def remove_allowed(web: Web, pair: Pair, host_key: paramiko.PKey | None,
                   master_down: bool) -> list[str]:
    """Remove Redundancy: master first. The standby checks over the silent login that the
    master's is removed; ``master_down`` (the operator's word) skips that check."""
    if pair.role is PairRole.MASTER:
        return []
    if master_down:
        return [(f"{pair.standby.name}: the master {pair.master.name} is down (operator's "
                "word): removed here without checking it")]
    assert host_key is not None
    try:
        found = _master_answers(web, pair, host_key)
    except WebError as e:
        raise Refused(f"Remove Redundancy runs on the master first, and {pair.master.name} "
                      f"cannot be asked ({e}); if it is down for good, say so "
                      "(--master-down)") from None
    if found is not None:
        raise Refused(f"Remove Redundancy runs on the master first: {pair.master.name} still "
                      "has PM/SNM redundancy set; remove it there, then here")
    return [f"{pair.standby.name}: the master {pair.master.name} has removed its redundancy"]


def remove(web: Web, saved: PairSettings, say: Say) -> list[str]:
    """Stop redundancy here and forget its settings (the master's answers too)."""
    shown: list[str] = []

    def tell(line: str) -> None:
        shown.append(line)
        say(line)

    web.stack.remove(saved, tell)
    settings.remove(web.settings_path)
    if saved.role is PairRole.MASTER:
        settings.remove(web.answers_path)
    return [*shown, f"{saved.local.name}: pair settings removed"]
