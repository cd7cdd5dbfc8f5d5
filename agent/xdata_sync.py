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

The answering side trusts the asking one with nothing (every cluster node holds the sync
key): it serves only the LIMs its own node config gives it (:class:`Scope`: the standby
every LIM of its cluster, a regular server its own LIM), reads every name, number and size
through the strict grammar of :mod:`xdata`, keeps as many versions as its own role says
(the request carries no such number), checks its free space before the first byte, and
writes nothing outside its versions root. Each refusal is one line naming the field and
the rule, and leaves the versions as they were.

Standard library only; SSH is the system's ``ssh`` client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from mxone_agent import control_client, xdata, xdata_wire
from mxone_agent.config import ConfigError, NodeConfig, load_node_config
from mxone_agent.model import Role

DEFAULT_ROOT = Path("/var/opt/mxone/xdata")
DEFAULT_CONFIG = "/etc/mxone/agent/node.json"
MAX_MANIFEST_LINE = 1 << 24
DEFAULT_CONTROL = control_client.DEFAULT_CONTROL
CLOCK_BOUND_S = 2.0
COMMAND_TIMEOUT_S = 30.0
NOTIFY_TIMEOUT_S = 2.0


def notify_agent(request: dict[str, object], control: str = DEFAULT_CONTROL,
                 timeout: float = NOTIFY_TIMEOUT_S) -> dict[str, object] | None:
    """Tell the local agent something happened (a backup, data received); best-effort.

    Returns the agent's JSON answer, or None when no agent listens or it did not answer
    in ``timeout`` seconds: the agent's periodic scan notices new versions anyway.
    """
    try:
        answer = control_client.ctl_request(control, dict(request), timeout=timeout)
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


@dataclass(frozen=True)
class Peer:
    """How to reach the other side: ``ssh`` arguments up to (not including) the command."""

    name: str
    ssh: tuple[str, ...]
    agent: str = "/opt/mxone/agent/current/bin/mxone-agent"
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
    manifest: xdata.Manifest | None

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


# ---- the answering side ----------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """What this node serves a peer, from its own node config: the LIMs it may be asked
    about, how many versions of each it keeps when it receives one, and where its versions
    are (``sync.xdata_root``).

    The standby serves every LIM of its cluster and keeps :data:`xdata.KEEP_ON_STANDBY`;
    a regular server serves its own LIM only and keeps :data:`xdata.KEEP_ON_REGULAR`.
    :meth:`none` is a node that cannot tell (no readable node config): it answers
    ``clock`` and ``df`` and refuses every request that names a LIM.
    """

    node: str
    cluster: str
    lims: frozenset[int]
    keep: int
    root: Path = DEFAULT_ROOT
    why_none: str = ""

    @classmethod
    def of(cls, cfg: NodeConfig) -> Scope:
        root = Path(cfg.sync_settings.xdata_root)
        if cfg.role is Role.STANDBY:
            return cls(cfg.node, cfg.cluster, frozenset(x.lim for x in cfg.lims),
                       xdata.KEEP_ON_STANDBY, root)
        own = cfg.lim_of(cfg.node)
        return cls(cfg.node, cfg.cluster, frozenset({own.lim} if own else ()),
                   xdata.KEEP_ON_REGULAR, root)

    @classmethod
    def none(cls, why: str) -> Scope:
        return cls("", "", frozenset(), 0, DEFAULT_ROOT, why)

    def lim(self, word: str, where: str = "request") -> int:
        """The LIM ``word`` names, once it is a LIM number this node serves; XdataError
        naming the value and the rule otherwise."""
        lim = xdata.parse_lim(word, where)
        if self.why_none:
            raise xdata.XdataError(f"{where}: LIM {lim} refused: {self.why_none}")
        if lim not in self.lims:
            served = ", ".join(str(n) for n in sorted(self.lims)) or "none"
            raise xdata.XdataError(f"{where}: LIM {lim} is not a LIM {self.node} serves in "
                                   f"cluster {self.cluster} (LIMs served: {served})")
        return lim


def read_scope(path: str | os.PathLike[str]) -> Scope:
    """The :class:`Scope` of the node config at ``path``; :meth:`Scope.none` naming the file
    and the reason when it cannot be read or is not valid."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read(1 << 22))
    except OSError as exc:
        return Scope.none(f"this node's config {path} cannot be read ({exc.strerror or exc}), "
                          "so it cannot tell which LIMs are its cluster's")
    except (ValueError, RecursionError):
        return Scope.none(f"this node's config {path} is not JSON, so it cannot tell which "
                          "LIMs are its cluster's")
    try:
        return Scope.of(load_node_config(data))
    except ConfigError as exc:
        return Scope.none(f"this node's config {path} is not valid ({len(exc.problems)} "
                          "problem(s)), so it cannot tell which LIMs are its cluster's")


def _version(root: Path, lim: int, word: str) -> Path:
    """The directory of version ``word`` of ``lim`` under ``root``: a version name of that
    LIM, a real directory (no symbolic link) that resolves under ``root``."""
    parsed = xdata.parse_version_name(word)
    if parsed is None or parsed[0] != lim:
        raise xdata.XdataError(f"request: version {xdata.shown(word)} is not lim{lim}-<UTC "
                               "time stamp>")
    vdir = xdata.inside(root, root / word)
    if vdir not in xdata.versions(root, lim):
        raise xdata.XdataError(f"no version {word} of LIM {lim} here")
    return vdir


def serve(words: Sequence[str], root: Path, stdin: BinaryIO, stdout: BinaryIO,
          scope: Scope) -> int:
    """Answer one request from the initiating side; returns the exit status.

    ``clock`` | ``df`` | ``manifest LIM`` | ``status LIM`` (the three at once, one round
    trip) | ``send LIM VERSION PATH...`` (files listed in that version's manifest only) |
    ``receive LIM`` (reads a manifest line, then a :mod:`xdata_wire` stream; the versions
    kept are ``scope.keep``). A LIM must be one ``scope`` serves. Every refusal is one
    line on stderr, ``xdata serve: <field>: <value> <rule>``, exit status 1, versions as
    they were.
    """
    def reply(obj: object) -> int:
        stdout.write(json.dumps(obj).encode() + b"\n")
        stdout.flush()
        return 0

    try:
        match list(words):
            case ["clock"]:
                return reply({"time": time.time()})
            case ["df"]:
                xdata.ensure_root(root)
                return reply({"free": shutil.disk_usage(root).free,
                              "xdata": xdata.disk_use(root)})
            case ["status", word]:
                lim = scope.lim(word)
                xdata.ensure_root(root)
                found = xdata.newest_valid(root, lim, quick=True)
                return reply({"time": time.time(), "free": shutil.disk_usage(root).free,
                              "xdata": xdata.disk_use(root),
                              "manifest": json.loads(found[1].to_json()) if found else None})
            case ["manifest", word]:
                found = xdata.newest_valid(root, scope.lim(word), quick=True)
                return reply(json.loads(found[1].to_json()) if found else {"none": True})
            case ["send", word, version, *paths]:
                lim = scope.lim(word)
                vdir = _version(root, lim, version)
                listed = {f.path for f in xdata.read_manifest(vdir).files}
                for i, path in enumerate(paths):
                    if path not in listed:
                        raise xdata.XdataError(f"request: path {xdata.shown(path)} (word "
                                               f"{i + 4}) is not a file of version {version}")
                xdata_wire.send_files(vdir, paths, stdout)
                return 0
            case ["receive", word]:
                lim = scope.lim(word)
                line = stdin.readline(MAX_MANIFEST_LINE)
                if not line.endswith(b"\n"):
                    raise xdata.XdataError(f"sent manifest: not one line of at most "
                                           f"{MAX_MANIFEST_LINE} bytes")
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    raise xdata.XdataError("sent manifest: not UTF-8 text") from None
                manifest = xdata.Manifest.from_json(text, "sent manifest")
                if manifest.lim != lim:
                    raise xdata.XdataError(f"sent manifest: lim is {manifest.lim}, not {lim} "
                                           "(the LIM of the request)")
                xdata.sweep_temporaries(root)
                fetcher = xdata_wire.StreamFetcher(stdin, "the sending server")
                got = xdata.receive(root, manifest, fetcher, keep=scope.keep)
                fetcher.finish()
                if not got.already_had:
                    notify_agent({"cmd": "received", "lim": manifest.lim, "version": got.version})
                return reply({"version": got.version, "fetched_files": got.fetched_files,
                              "fetched_bytes": got.fetched_bytes, "reused_files": got.reused_files,
                              "already_had": got.already_had})
            case ["receive", _, *more]:
                raise xdata.XdataError(
                    f"request: receive takes the LIM only, not {xdata.shown(' '.join(more))}: "
                    "how many versions are kept is the receiver's own rule, never the sender's")
            case _:
                raise xdata.XdataError(f"unknown request {xdata.shown(' '.join(words), 80)}")
    except (xdata.XdataError, OSError, ValueError) as exc:
        sys.stderr.write(f"xdata serve: {_one_line(str(exc))}\n")
        return 1


def _one_line(text: str) -> str:
    """``text`` as one line of printable characters (a peer's words may hold others)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
        fetcher = xdata_wire.StreamFetcher(cast(BinaryIO, proc.stdout), peer.name)
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


USAGE = ("usage: mxone-agent xdata serve [--root DIR] [--config FILE] REQUEST...\n"
         "       mxone-agent xdata keep-newest [--root DIR] LIM...\n")
SERVE_OPTIONS = ("--root", "--config")


def keep_newest(root: Path, lims: Sequence[int]) -> dict[str, list[str]]:
    """Remove every version but the newest valid one of each LIM (after a cluster change
    made older versions unfit); returns the removed version names by LIM."""
    return {str(lim): [p.name for p in xdata.keep_only_newest(root, lim)] for lim in lims}


def _keep_newest_main(args: list[str]) -> int:
    root = DEFAULT_ROOT
    if len(args) >= 2 and args[0] == "--root":
        root, args = Path(args[1]), args[2:]
    try:
        lims = [int(a) for a in args]
    except ValueError:
        sys.stderr.write(f"xdata keep-newest: LIM numbers are whole numbers, not {args}\n")
        return 2
    if not lims:
        sys.stderr.write("xdata keep-newest: name at least one LIM\n" + USAGE)
        return 2
    try:
        removed = keep_newest(root, lims)
    except (xdata.XdataError, OSError) as exc:
        sys.stderr.write(f"xdata keep-newest: {root}: {exc}\n")
        return 1
    print(json.dumps({"removed": removed}))
    return 0


def _options(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """The leading ``--root DIR`` / ``--config FILE`` options of ``words``, and the rest."""
    options: dict[str, str] = {}
    while len(words) >= 2 and words[0] in SERVE_OPTIONS:
        options[words[0]] = words[1]
        words = words[2:]
    return options, words


def main(argv: Sequence[str]) -> int:
    """``xdata serve [--root DIR] [--config FILE] WORDS...`` (the peer side) and ``xdata
    keep-newest [--root DIR] LIM...`` for the agent's command line.

    Under a forced command, the words of ``serve`` come from SSH_ORIGINAL_COMMAND instead,
    and the options a client put there are dropped: the serving node decides where its
    versions are and which config says what it serves (the forced command's own options,
    else its node config, :data:`DEFAULT_CONFIG`, whose ``sync.xdata_root`` is the root).
    A peer can never order ``keep-newest``.
    """
    args = list(argv)
    if args[:1] == ["xdata"]:
        args = args[1:]
    if args[:1] == ["keep-newest"]:
        return _keep_newest_main(args[1:])
    if not args or args[0] != "serve":
        sys.stderr.write(USAGE)
        return 2
    options, args = _options(args[1:])
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    if original is not None and not args:
        words = original.split()
        # a forced command sees the client's whole command line: keep only the request
        if "serve" in words:
            words = words[words.index("serve") + 1:]
            _, words = _options(words)  # the client's options: never honoured
        args = words
    scope = read_scope(options.get("--config", DEFAULT_CONFIG))
    root = Path(options["--root"]) if "--root" in options else scope.root
    return serve(args, root, sys.stdin.buffer, sys.stdout.buffer, scope)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
