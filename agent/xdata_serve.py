"""The answering side of an exchange-data sync: ``mxone-agent xdata serve``, which a peer's
authorized_keys can force for the sync key, and ``mxone-agent xdata keep-newest``.

The answering side trusts the asking one with nothing (every cluster node holds the sync
key): it serves only the LIMs its own node config gives it (:class:`Scope`: the standby
every LIM of its cluster, a regular server its own LIM), reads every name, number and size
through the strict grammar of :mod:`xdata`, keeps as many versions as its own role says
(the request carries no such number), checks its free space before the first byte, and
writes nothing outside its versions root. Each refusal is one line naming the field and
the rule, and leaves the versions as they were. A version received is told to the local
agent (:func:`notify_agent`), whose preloaded service of the LIM then reloads it.

The initiating side is :mod:`mxone_agent.xdata_sync`. Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mxone_agent import control_client, paths, xdata, xdata_wire
from mxone_agent.config import ConfigError, NodeConfig, load_node_config
from mxone_agent.model import Role

DEFAULT_ROOT = Path(paths.XDATA)
DEFAULT_CONFIG = paths.NODE_JSON
MAX_MANIFEST_LINE = 1 << 24
DEFAULT_CONTROL = control_client.DEFAULT_CONTROL
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
                # the sender planned against what we held when it asked: we may want less
                fetcher = xdata_wire.StreamFetcher(stdin, "the sending server", manifest)
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
