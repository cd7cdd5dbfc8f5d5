"""The agent's metrics in the Prometheus text exposition format (version 0.0.4): from
``mxone-agent ctl metrics``, and in a file for node_exporter's textfile collector.

The file (:data:`~mxone_agent.paths.METRICS_TEXTFILE`,
``/var/lib/node_exporter/textfile_collector/mxone_agent.prom``) is written every
:data:`METRICS_FILE_EVERY` seconds, and only while its directory exists: create the
directory (node_exporter's ``--collector.textfile.directory``) to have it. The text is
rendered on the agent's loop (cheap), written atomically (temp file, rename) by a thread of
its own, so a slow disk never delays a heartbeat; removed when the agent stops. An absent
file means no agent runs; node_exporter's ``node_textfile_mtime_seconds`` shows its age (an
agent that hangs stops rewriting it).

The metrics (labels in braces; ``peer=""``: a datagram from an address that is no peer's):

* ``mxone_agent_up``, ``mxone_agent_info{version,server,cluster,role}``,
  ``mxone_agent_incarnation``, ``mxone_agent_start_time_seconds``,
  ``mxone_agent_config_generation``, ``mxone_agent_tick_late_max_seconds``,
  ``mxone_lease_lapses_total``
* heartbeats, per peer: ``mxone_heartbeats_received_total{peer}``,
  ``mxone_heartbeats_lost_total{peer}`` (gaps in the peer's sequence numbers),
  ``mxone_heartbeats_refused_total{peer,reason}`` (forged, replayed, stale, malformed),
  ``mxone_peer_alive{peer}``, ``mxone_peer_last_heard_seconds{peer}``,
  ``mxone_peer_deaths_total{peer}``, ``mxone_peer_detection_seconds{peer}`` (how long the
  peer was silent when last declared dead), ``mxone_detection_period_seconds``
* LIMs, as this server sees them: ``mxone_lim_location{lim,server}`` (1 where the LIM runs
  active, 0 on its other server), ``mxone_lim_owner{lim,owner}`` (owner: regular, standby,
  both, none, unknown)
* transitions made here, the last one of each LIM and kind:
  ``mxone_transition_timestamp_seconds{lim,kind}`` (when decided),
  ``mxone_transition_ok{lim,kind}``, ``mxone_transition_step_seconds{lim,kind,step}``
  (seconds from detection to each step: decided, probed, alias_up, first_garp,
  service_up) and
  ``mxone_transition_takeover_seconds{lim,kind}`` (detection to the last step: the service
  up, else the first gratuitous ARP, else the alias up, else the decision)
* ``mxone_alarms_active{code,severity}`` (every alarm code, 0 when none),
  ``mxone_alarm_active{code,severity,lim}`` (one per active alarm)
* exchange-data sync: ``mxone_sync_enabled``; per LIM ``mxone_sync_last_success_timestamp_seconds``,
  ``mxone_sync_age_seconds`` (since the last success), ``mxone_sync_last_ok`` (1: the last
  attempt succeeded), ``mxone_sync_failures`` (failures in a row)
* notify hooks: ``mxone_notify_hook_runs_total{result}`` (ok, failed, timeout),
  ``mxone_notify_hooks_refused_total``, ``mxone_notify_events_dropped_total``
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mxone_agent import files
from mxone_agent.actions import ALARM_SEVERITY, AlarmCode
from mxone_agent.config import NodeConfig
from mxone_agent.heartbeat import DropReason
from mxone_agent.heartbeat_link import HeartbeatLink
from mxone_agent.notify_hooks import TIMELINE_STEPS, HookCounts, Notifier
from mxone_agent.version import VERSION

log = logging.getLogger("mxone_agent")

METRICS_FILE_EVERY = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


@dataclass
class Family:
    """One metric family: its name, type (counter, gauge), help and samples."""

    name: str
    type: str
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        self.samples.append((labels, value))
        return self


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value as the format writes it (integers without a point; NaN, +Inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The text of ``families``: HELP and TYPE, then every sample; one newline at the end."""
    lines = []
    for f in families:
        lines.append(f"# HELP {f.name} {escape_help(f.help)}")
        lines.append(f"# TYPE {f.name} {f.type}")
        for labels, value in f.samples:
            inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{f.name}{{{inner}}} {number(value)}" if inner
                         else f"{f.name} {number(value)}")
    return "\n".join(lines) + "\n"


def epoch(iso: object) -> float | None:
    """Seconds since the epoch of an ISO time as the agent writes it (None if not one)."""
    if not isinstance(iso, str):
        return None
    try:
        return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC).timestamp()
    except ValueError:
        return None


# ---- the agent's families -----------------------------------------------------------------

def agent_families(cfg: NodeConfig, status: Mapping[str, Any], *, version: str,
                   started: float) -> list[Family]:
    """The agent itself (``started``: its start, wall clock)."""
    return [
        Family("mxone_agent_up", "gauge", "1 while the agent runs").add(1),
        Family("mxone_agent_info", "gauge", "The agent's version, server, cluster and role")
        .add(1, version=version, server=cfg.node, cluster=cfg.cluster, role=str(cfg.role)),
        Family("mxone_agent_incarnation", "gauge", "The agent's incarnation (rises at each "
               "start)").add(float(status.get("incarnation") or 0)),
        Family("mxone_agent_start_time_seconds", "gauge", "When the agent started, "
               "seconds since the epoch").add(round(started, 3)),
        Family("mxone_agent_config_generation", "gauge", "The generation of the node config "
               "in force").add(cfg.generation),
        Family("mxone_agent_tick_late_max_seconds", "gauge", "The longest the loop came late "
               "to a heartbeat tick since start").add(float(status.get("tick_late_max_s", 0))),
        Family("mxone_lease_lapses_total", "counter", "Leases of this node's aliases found "
               "lapsed").add(float(status.get("lease_lapses", 0))),
    ]


def heartbeat_families(cfg: NodeConfig, link: HeartbeatLink,
                       peers: Iterable[Mapping[str, Any]]) -> list[Family]:
    """Heartbeats per peer, liveness and detection."""
    names = list(dict.fromkeys([*link.peers, *link.received, *link.lost, *link.deaths]))
    received = Family("mxone_heartbeats_received_total", "counter",
                      "Heartbeats accepted from the peer")
    lost = Family("mxone_heartbeats_lost_total", "counter", "Heartbeats of the peer that never "
                  "arrived (gaps in its sequence numbers)")
    refused = Family("mxone_heartbeats_refused_total", "counter", "Datagrams refused, by "
                     "reason (peer \"\": from an address that is no peer's)")
    deaths = Family("mxone_peer_deaths_total", "counter", "Times the peer was declared dead")
    detection = Family("mxone_peer_detection_seconds", "gauge", "How long the peer had been "
                       "silent when it was last declared dead")
    for n in names:
        received.add(link.received.get(n, 0), peer=n)
        lost.add(link.lost.get(n, 0), peer=n)
        deaths.add(link.deaths.get(n, 0), peer=n)
        if n in link.silent_at_death:
            detection.add(round(link.silent_at_death[n], 3), peer=n)
    for n in list(dict.fromkeys(["", *names, *link.refused])):
        counts = link.refused.get(n, {})
        for r in DropReason:
            refused.add(counts.get(r, 0), peer=n, reason=str(r))
    alive = Family("mxone_peer_alive", "gauge", "1 while the peer is alive (heard within "
                   "the detection period)")
    heard = Family("mxone_peer_last_heard_seconds", "gauge", "Seconds since the peer was "
                   "last heard")
    for p in peers:
        alive.add(1 if p.get("liveness") == "alive" else 0, peer=str(p.get("name")))
        if isinstance(p.get("last_heard_s_ago"), (int, float)):
            heard.add(p["last_heard_s_ago"], peer=str(p.get("name")))
    period = Family("mxone_detection_period_seconds", "gauge", "Silence after which a peer "
                    "is declared dead").add(round(cfg.detection, 3))
    return [received, lost, refused, alive, heard, deaths, detection, period]


def lim_families(cfg: NodeConfig, rows: Iterable[Mapping[str, Any]]) -> list[Family]:
    """Where each LIM runs, as this server sees it."""
    location = Family("mxone_lim_location", "gauge", "1 on the server where the LIM runs "
                      "active, as this server sees it")
    owner = Family("mxone_lim_owner", "gauge", "Who runs the LIM (regular, standby, both, "
                   "none, unknown), as this server sees it")
    sb = cfg.standby.name
    for row in rows:
        lim, who = str(row.get("lim")), str(row.get("owner"))
        location.add(1 if who in ("regular", "both") else 0, lim=lim,
                     server=str(row.get("server")))
        location.add(1 if who in ("standby", "both") else 0, lim=lim, server=sb)
        owner.add(1, lim=lim, owner=who)
    return [location, owner]


def transition_families(transitions: Iterable[Mapping[str, Any]]) -> list[Family]:
    """The last transition of each LIM and kind made here, with its timeline."""
    last: dict[tuple[str, str], Mapping[str, Any]] = {}
    for t in transitions:
        last[(str(t.get("lim")), str(t.get("kind")))] = t
    when = Family("mxone_transition_timestamp_seconds", "gauge", "When the last transition "
                  "of the LIM and kind was decided, seconds since the epoch")
    ok = Family("mxone_transition_ok", "gauge", "1 when the last transition of the LIM and "
                "kind succeeded")
    steps = Family("mxone_transition_step_seconds", "gauge", "Seconds from detection to each "
                   "step of the last transition of the LIM and kind")
    takeover = Family("mxone_transition_takeover_seconds", "gauge", "Seconds from detection "
                      "to the last step of the last transition of the LIM and kind")
    for (lim, kind), t in sorted(last.items()):
        detected, decided = epoch(t.get("detected")), epoch(t.get("decided"))
        if decided is not None:
            when.add(round(decided, 3), lim=lim, kind=kind)
        ok.add(1 if t.get("ok") else 0, lim=lim, kind=kind)
        if detected is None:
            continue
        done = None
        for step in TIMELINE_STEPS[1:]:
            at = epoch(t.get(step))
            if at is not None:
                steps.add(round(at - detected, 3), lim=lim, kind=kind, step=step)
                done = at
        if done is not None:
            takeover.add(round(done - detected, 3), lim=lim, kind=kind)
    return [when, ok, steps, takeover]


def alarm_families(active: Iterable[Mapping[str, Any]]) -> list[Family]:
    counts = dict.fromkeys((str(c) for c in AlarmCode), 0)
    each = Family("mxone_alarm_active", "gauge", "1 for each active alarm")
    for a in active:
        code = str(a.get("code"))
        counts[code] = counts.get(code, 0) + 1
        lim = a.get("lim")
        each.add(1, code=code, severity=str(a.get("severity")),
                 lim="" if lim is None else str(lim))
    by_code = Family("mxone_alarms_active", "gauge", "Active alarms by code and severity")
    for code, n in counts.items():
        severity = ALARM_SEVERITY.get(AlarmCode(code)) if code in set(AlarmCode) else None
        by_code.add(n, code=code, severity=str(severity) if severity is not None else "")
    return [by_code, each]


def sync_families(sync: Mapping[str, Any], now_wall: float) -> list[Family]:
    enabled = Family("mxone_sync_enabled", "gauge", "1 while exchange-data sync is on").add(
        1 if sync.get("enabled") else 0)
    success = Family("mxone_sync_last_success_timestamp_seconds", "gauge", "When the LIM's "
                     "data last synced, seconds since the epoch")
    age = Family("mxone_sync_age_seconds", "gauge", "Seconds since the LIM's data last synced")
    last_ok = Family("mxone_sync_last_ok", "gauge", "1 when the LIM's last sync attempt "
                     "succeeded")
    failures = Family("mxone_sync_failures", "gauge", "The LIM's sync failures in a row")
    for row in sync.get("lims", []):
        lim = str(row.get("lim"))
        ok_at = epoch(row.get("last_success"))
        if ok_at is not None:
            success.add(round(ok_at, 3), lim=lim)
            age.add(round(max(0.0, now_wall - ok_at), 3), lim=lim)
        n = int(row.get("failures") or 0)
        if ok_at is not None or n:
            last_ok.add(1 if n == 0 else 0, lim=lim)
        failures.add(n, lim=lim)
    return [enabled, success, age, last_ok, failures]


def hook_families(counts: HookCounts) -> list[Family]:
    runs = Family("mxone_notify_hook_runs_total", "counter", "Notify hooks run, by result")
    for result, n in counts.runs.items():
        runs.add(n, result=result)
    return [runs,
            Family("mxone_notify_hooks_refused_total", "counter", "Files in the notify "
                   "directory refused (not a root-owned executable only root may write)")
            .add(counts.refused),
            Family("mxone_notify_events_dropped_total", "counter", "Events dropped: the "
                   "hooks were too far behind").add(counts.dropped)]


def agent_text(cfg: NodeConfig, status: Mapping[str, Any], link: HeartbeatLink,
               hooks: HookCounts, *, version: str, started: float,
               now_wall: float | None = None) -> str:
    """Every metric of the agent, from its status (``ctl status``) and its counters."""
    now_wall = time.time() if now_wall is None else now_wall
    return render([
        *agent_families(cfg, status, version=version, started=started),
        *heartbeat_families(cfg, link, status.get("peers", [])),
        *lim_families(cfg, status.get("lims", [])),
        *transition_families(status.get("transitions", [])),
        *alarm_families(status.get("alarms", [])),
        *sync_families(status.get("sync", {}), now_wall),
        *hook_families(hooks)])


# ---- the textfile --------------------------------------------------------------------------

class Source(Protocol):
    """What the metrics read of the agent (on its loop's thread)."""

    config: NodeConfig
    link: HeartbeatLink
    hooks: Notifier

    def status(self) -> dict[str, Any]: ...


class AgentMetrics:
    """The metrics of ``agent``: :meth:`text` (``ctl metrics``), and the textfile at
    ``path`` (None: none) rendered on the loop at most every ``every`` s (:meth:`publish`)
    and written by a thread of its own."""

    def __init__(self, agent: Source, path: str | None,
                 every: float = METRICS_FILE_EVERY) -> None:
        self._agent = agent
        self.started = time.time()
        self.path = Path(path) if path is not None else None
        self._every = every
        self._due = 0.0
        self._pending: str | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._error = ""
        self.written = 0  # files written, for tests

    def text(self) -> str:
        a = self._agent
        return agent_text(a.config, a.status(), a.link, a.hooks.runner.counts,
                          version=VERSION, started=self.started)

    def publish(self, now: float) -> None:
        """On the loop: hand the writer fresh text when due, only while the directory
        exists (a stat, never a write, on the loop; the writer starts with the first)."""
        if self.path is None or self._stopping or now < self._due:
            return
        self._due = now + self._every
        if not self.path.parent.is_dir():
            return
        text = self.text()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="metrics-file",
                                            daemon=True)
            self._thread.start()
        with self._wake:
            self._pending = text
            self._wake.notify()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the writer and remove the file: no agent, no metrics."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            assert self.path is not None
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                text, self._pending = self._pending, None
            self._write(text)

    def _write(self, text: str | None) -> None:
        assert self.path is not None and text is not None
        try:
            # Rewritten every few seconds: the rename is atomic, no fsync of the directory.
            files.atomic_write(self.path, text.encode("utf-8"), 0o644, sync_directory=False)
        except OSError as exc:
            if str(exc) != self._error:  # once, not every few seconds
                log.warning("cannot write the metrics file %s: %s", self.path, exc)
                self._error = str(exc)
            return
        self._error = ""
        self.written += 1
