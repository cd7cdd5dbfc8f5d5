"""Syncing a LIM's exchange data between its regular server and the standby, over SSH.

The regular server's agent always initiates (after a data backup, once a day, before it
takes its LIM back, or when the operator orders a sync); the peer answers through
``mxone-agent xdata serve``, which the peer's authorized_keys can force for the sync key.
Direction follows the reload data's modification times (:func:`xdata.sync_direction`): data
changed while the LIM ran on the standby goes back to the regular server.

Before any transfer both clocks are compared (direction depends on them) and, towards the
standby, its free space. Every refusal is a sentence naming the servers and the numbers.
Only files that changed since the receiver's newest valid version travel, over one SSH
channel; the receiver checks the result against the manifest before it gets its name.

The answering side, which trusts the asking one with nothing, is
:mod:`mxone_agent.xdata_serve`; this module keeps its names (``serve``, ``read_scope``,
``main``, ``notify_agent``) for its callers, and ``python -m mxone_agent.xdata_sync`` runs
its ``main``.

Standard library only; SSH is the system's ``ssh`` client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from mxone_agent import paths, xdata, xdata_wire
from mxone_agent.xdata import Manifest
from mxone_agent.xdata_serve import (
    DEFAULT_CONFIG,
    DEFAULT_ROOT,
    MAX_MANIFEST_LINE,
    Scope,
    main,
    notify_agent,
    read_scope,
    serve,
)

__all__ = ["DEFAULT_CONFIG", "DEFAULT_ROOT", "MAX_MANIFEST_LINE", "Peer", "Scope",
           "SyncRefused", "SyncResult", "main", "notify_agent", "read_scope", "serve",
           "ssh_args", "sync_lim"]

CLOCK_BOUND_S = 2.0
COMMAND_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Peer:
    """How to reach the other side: ``ssh`` arguments up to (not including) the command."""

    name: str
    ssh: tuple[str, ...]
    agent: str = paths.AGENT_BIN
    root: Path = DEFAULT_ROOT

    def argv(self, *words: str) -> list[str]:
        return [*self.ssh, self.agent, "xdata", "serve", "--root", str(self.root), *words]


@dataclass(frozen=True)
class SyncResult:
    lim: int
    direction: str  # to-standby | to-regular | none
    version: str | None
    fetched_files: int = 0
    fetched_bytes: int = 0
    reused_files: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())
    push_left: bool = False  # pull_only: this side's data is newer; the push was not done

    def to_dict(self) -> dict[str, object]:
        return {"lim": self.lim, "direction": self.direction, "version": self.version,
                "fetched_files": self.fetched_files, "fetched_bytes": self.fetched_bytes,
                "reused_files": self.reused_files, "seconds": round(self.seconds, 3),
                "notes": list(self.notes)}


class SyncRefused(xdata.XdataError):
    """The sync was not started: clocks, disk, or nothing valid to send. Nothing changed."""


# ---- the peer's answers, checked where they are read ------------------------------------------

def parse_answer(raw: bytes, where: str) -> object:
    """The JSON value a peer printed; XdataError naming ``where`` when it is none."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        raise xdata.XdataError(f"{where}: not a JSON answer: {xdata.shown(raw[:200], 60)}"
                               ) from None


def _fields(answer: object, where: str, keys: Sequence[str]) -> dict[str, object]:
    if not isinstance(answer, dict):
        raise xdata.XdataError(f"{where}: {xdata.shown(answer)} is not a JSON object")
    missing = [k for k in keys if k not in answer]
    if missing:
        raise xdata.XdataError(f"{where}: {', '.join(missing)} missing")
    return answer


@dataclass(frozen=True)
class PeerStatus:
    """A peer's answer to ``status LIM``: its clock, free space, the space its exchange
    data takes, and its newest valid version of the LIM (None: it holds none)."""

    time: float
    free: int
    xdata: int
    manifest: Manifest | None

    @classmethod
    def parse(cls, answer: object, lim: int, where: str = "peer status") -> PeerStatus:
        """XdataError naming the field, its value and the rule for anything unexpected."""
        d = _fields(answer, where, ("time", "free", "xdata", "manifest"))
        manifest = None
        if d["manifest"] is not None:
            manifest = xdata.Manifest.from_dict(d["manifest"], f"{where}: manifest")
            if manifest.lim != lim:
                raise xdata.XdataError(f"{where}: manifest is of LIM {manifest.lim}, not {lim}")
        return cls(xdata.seconds_since_epoch(d["time"], where, "time"),
                   xdata.whole_number(d["free"], where, "free"),
                   xdata.whole_number(d["xdata"], where, "xdata"), manifest)


@dataclass(frozen=True)
class Receipt:
    """A peer's answer to ``receive``: what it fetched from the stream and reused."""

    fetched_files: int
    fetched_bytes: int
    reused_files: int

    @classmethod
    def parse(cls, answer: object, version: str,
              where: str = "peer receive answer") -> Receipt:
        """XdataError naming the field, its value and the rule for anything unexpected; the
        version received must be ``version``, the one sent."""
        d = _fields(answer, where, ("version", "fetched_files", "fetched_bytes", "reused_files"))
        if d["version"] != version:
            raise xdata.XdataError(f"{where}: version is {xdata.shown(d['version'])}, not "
                                   f"{version} (the version sent)")
        count = "a count of files"
        return cls(xdata.whole_number(d["fetched_files"], where, "fetched_files", count),
                   xdata.whole_number(d["fetched_bytes"], where, "fetched_bytes"),
                   xdata.whole_number(d["reused_files"], where, "reused_files", count))


# ---- the initiating side (the regular server) -------------------------------------------------

def _ask(peer: Peer, *words: str) -> object:
    """The JSON value the peer answered ``words`` with (unchecked: the caller parses it)."""
    try:
        done = subprocess.run(peer.argv(*words), capture_output=True, timeout=COMMAND_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise xdata.XdataError(f"{peer.name} did not answer `{words[0]}` within "
                               f"{COMMAND_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise xdata.XdataError(f"{peer.name} refused `{words[0]}`: {why[-1] if why else done.returncode}")
    return parse_answer(done.stdout, f"peer {words[0]}")


def _finish(proc: subprocess.Popen[bytes], peer: Peer, what: str, timeout: float) -> bytes:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise xdata.XdataError(f"{what} with {peer.name} did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0:
        why = err.decode(errors="replace").strip().splitlines()
        raise xdata.XdataError(f"{what} with {peer.name} failed: {why[-1] if why else proc.returncode}")
    return out


def sync_lim(lim: int, root: Path, local_name: str, peer: Peer,
             clock_bound_s: float = CLOCK_BOUND_S, keep_here: int = xdata.KEEP_ON_REGULAR,
             timeout_s: float = 3600.0, peer_is_standby: bool = True,
             pull_only: bool = False) -> SyncResult:
    """Bring the newer side's newest valid version of ``lim`` to the other side.

    Raises SyncRefused (nothing was sent) or XdataError (the transfer failed; the receiver
    kept its previous versions). ``root`` is this server's exchange-data directory;
    ``keep_here`` how many versions this server keeps when it receives (the peer keeps
    what its own role says: a request never tells it).
    ``peer_is_standby`` False: this server is the standby and the peer the LIM's regular
    server (directions then follow: ``to-regular`` is a push from here).
    ``pull_only``: bring newer data here only; when this side's is newer, nothing is sent
    and the result says ``push_left`` (a start that waits for the pull is not delayed by
    a push).
    """
    result = _sync_lim(lim, root, local_name, peer, clock_bound_s, keep_here, timeout_s,
                       pull_only)
    if peer_is_standby or result.direction == "none":
        return result
    flipped = "to-regular" if result.direction == "to-standby" else "to-standby"
    return dataclasses.replace(result, direction=flipped)


def _sync_lim(lim: int, root: Path, local_name: str, peer: Peer, clock_bound_s: float,
              keep_here: int, timeout_s: float, pull_only: bool = False) -> SyncResult:
    """:func:`sync_lim` with directions named as seen from a regular server: ``to-standby``
    is a push to the peer, ``to-regular`` a pull from it."""
    started = time.monotonic()
    t_local = time.time()
    status = PeerStatus.parse(_ask(peer, "status", str(lim)), lim)
    # The peer read its clock at some point of the round trip: compare with its middle.
    t_local = (t_local + time.time()) / 2
    if problem := xdata.clock_skew_problem(t_local, status.time, clock_bound_s, local_name,
                                           peer.name):
        raise SyncRefused(problem)
    xdata.sweep_temporaries(root)
    here = xdata.newest_valid(root, lim, quick=True)
    there = status.manifest
    direction = xdata.sync_direction(here[1] if here else None, there)
    if direction == "none":
        version = here[1].version if here else None
        return SyncResult(lim, "none", version, seconds=time.monotonic() - started,
                          notes=("both sides hold the same data",) if here else ("no data on either side",))
    if direction == "to-standby" and pull_only:
        assert here is not None
        return SyncResult(lim, "none", here[1].version, seconds=time.monotonic() - started,
                          notes=(f"{peer.name} holds no newer data; the push to it comes later",),
                          push_left=True)
    if direction == "to-standby":
        assert here is not None
        source_dir, manifest = here
        # Space for two backups counts what the standby already holds for exchange data.
        room = status.free + status.xdata
        if problem := xdata.disk_problem(room, [manifest.total_bytes]):
            raise SyncRefused(f"{peer.name}: {problem}")
        plan = xdata.plan_transfer(manifest, there)
        proc = subprocess.Popen(peer.argv("receive", str(lim)),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            proc.stdin.write(manifest.to_json().replace("\n", " ").encode() + b"\n")
            xdata_wire.send_files(source_dir, [f.path for f in plan.fetch],
                                  cast(BinaryIO, proc.stdin))
        except BrokenPipeError:
            pass  # the receiver's own error says why, below
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            proc.stdin = None  # so that communicate() does not flush it again
        out = _finish(proc, peer, "sending LIM data", timeout_s)
        got = Receipt.parse(parse_answer(out, "peer receive answer"), manifest.version)
        return SyncResult(lim, direction, manifest.version, got.fetched_files,
                          got.fetched_bytes, got.reused_files, time.monotonic() - started)
    assert there is not None
    plan = xdata.plan_transfer(there, here[1] if here else None)
    proc = subprocess.Popen(peer.argv("send", str(lim), there.version, *[f.path for f in plan.fetch]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        # planned against what we held a moment ago: should a concurrent push have brought
        # more since, files asked for that receive() no longer wants are read and dropped
        asked = dataclasses.replace(there, files=plan.fetch)
        fetcher = xdata_wire.StreamFetcher(cast(BinaryIO, proc.stdout), peer.name, asked)
        got_here = xdata.receive(root, there, fetcher, keep=keep_here)
        fetcher.finish()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    _finish(proc, peer, "fetching LIM data", timeout_s)
    return SyncResult(lim, direction, there.version, got_here.fetched_files, got_here.fetched_bytes,
                      got_here.reused_files, time.monotonic() - started)


def ssh_args(address: str, key: Path, known_hosts: Path, user: str = "root",
             connect_timeout_s: int = 5, alive_interval_s: int = 5) -> tuple[str, ...]:
    """``ssh`` arguments for a non-interactive, host-key-pinned connection to a peer.

    A peer that stops answering is given up after three missed keep-alives.
    """
    return ("ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={connect_timeout_s}", "-o", f"ServerAliveInterval={alive_interval_s}",
            "-o", "ServerAliveCountMax=3", "-T", f"{user}@{address}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
