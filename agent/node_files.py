"""The agent's files on the node: the node config and the cluster secret it reads, and what
it keeps in its state dir across restarts - its incarnation, the cluster whose fence it
keeps, and every LIM it may hold (:class:`HeldLims`, ``held-lims.json``).

Each reader names the file and the problem in its error (:class:`StartupError`); a state
file that cannot be written is logged, except the incarnation, without which the agent
does not start.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

from mxone_agent import files
from mxone_agent import heartbeat as hbmod
from mxone_agent.config import ConfigError, LimConfig, NodeConfig, load_node_config
from mxone_agent.errors import AgentError
from mxone_agent.executor import Executor

log = logging.getLogger("mxone_agent")

INCARNATION_FILE = "incarnation"
FENCE_RECORD = "fence-cluster"
"""Names the cluster whose fence this node keeps (removed by ``mxone-agent fence release``
when the node leaves): a fence missing at start is then a reboot, not a first join."""
HELD_LIMS = "held-lims.json"
"""Every LIM this node may hold, with the config it came from (format 1): the current
config's and the retired ones still to stop. Read at start, so that a LIM a new config
no longer names is stopped also when the agent restarted in between."""
MIN_SECRET_HEX_BYTES = 32


class StartupError(AgentError):
    """The agent cannot start (bad config, secret, socket); the message says why."""


def read_config(path: str) -> NodeConfig:
    """Load the node config file; StartupError (or ConfigError) naming every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise StartupError(f"{path}: cannot read the node config: {e.strerror or e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StartupError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column "
                           f"{e.colno}") from e
    return load_node_config(data)


def read_secret(path: str) -> bytes:
    """The cluster secret: hex text of at least 32 bytes in a file of mode 0600."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise StartupError(f"{path}: cannot read the cluster secret: {e.strerror}") from e
    mode = stat.S_IMODE(st.st_mode)
    if mode != 0o600:
        raise StartupError(f"{path}: the cluster secret has mode {mode:04o}; it must be 0600 "
                           f"(chmod 600 {path})")
    try:
        text = Path(path).read_text(encoding="ascii").strip()
        secret = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise StartupError(f"{path}: the cluster secret must be hex text ({e})") from e
    if len(secret) < MIN_SECRET_HEX_BYTES:
        raise StartupError(f"{path}: the cluster secret has {len(secret)} bytes; at least "
                           f"{MIN_SECRET_HEX_BYTES} are needed")
    return secret


def read_held(path: Path) -> tuple[dict[int, tuple[LimConfig, dict[str, Any]]], list[str]]:
    """HELD_LIMS: LIM -> (its LimConfig, the config document it came from), and the problems
    met (each a sentence). A missing file holds nothing; a damaged entry is skipped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError) as e:
        return {}, [(f"cannot read {path} ({e}); LIMs an earlier config gave this node are "
                     "not looked for")]
    out: dict[int, tuple[LimConfig, dict[str, Any]]] = {}
    problems = []
    entries = data.get("held") if isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        try:
            doc = entry["config"]
            old = load_node_config(doc)
            for n in entry["lims"]:
                out[int(n)] = (old.lim(int(n)), doc)
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            problems.append(f"{path}: an entry is not usable ({e}); skipped")
    return out, problems


def next_incarnation(state_dir: str) -> int:
    """This start's incarnation: above the last one (persisted in the state dir, written
    and synced before any heartbeat carries it) and at least the wall clock in us."""
    path = Path(state_dir) / INCARNATION_FILE
    try:
        previous = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        previous = 0
    value = hbmod.next_incarnation(previous, time.time_ns() // 1000)
    try:
        files.write_private(path, f"{value}\n")
    except OSError as e:
        raise StartupError(f"cannot record the incarnation in {path}: {e.strerror}") from e
    return value


class HeldLims:
    """The LIMs an earlier config gave this node and that may still run here (``retired``:
    their last LimConfig, so that a decision can stop them), recorded with the current
    config's LIMs in HELD_LIMS."""

    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / HELD_LIMS
        self.retired: dict[int, LimConfig] = {}
        self.docs: dict[int, dict[str, Any]] = {}  # LIM -> the config document it came from

    def load(self, cfg: NodeConfig) -> None:
        """Take the LIMs HELD_LIMS names that ``cfg`` does not give this node (problems are
        logged)."""
        held, problems = read_held(self.path)
        for problem in problems:
            log.warning("%s: %s", cfg.node, problem)
        mine = {x.lim for x in Executor.guarded(cfg)}
        for n, (x, doc) in held.items():
            if n not in mine:
                self.retired[n], self.docs[n] = x, doc

    def aliases(self, cfg: NodeConfig) -> list[Any]:
        """The aliases to guard: the config's LIMs this node may hold, and the retired ones
        until they are stopped (a retired alias never answers again)."""
        return [x.alias_ip for x in Executor.guarded(cfg)] + [
            x.alias_ip for x in self.retired.values()]

    def lim_config(self, cfg: NodeConfig, n: int) -> LimConfig | None:
        """LIM ``n``'s config: the current one, else its last known one (retired), else None."""
        for x in cfg.lims:
            if x.lim == n:
                return x
        return self.retired.get(n)

    def write(self, cfg: NodeConfig) -> None:
        """Record in HELD_LIMS every LIM this node may hold now (best effort: logged)."""
        held = [{"lims": [x.lim for x in Executor.guarded(cfg)], "config": cfg.to_dict()}]
        held += [{"lims": [n], "config": self.docs[n]} for n in sorted(self.retired)
                 if n in self.docs]
        try:
            files.write_private(self.path, json.dumps({"format": 1, "held": held}) + "\n")
        except OSError as e:
            log.warning("%s: cannot write %s: %s", cfg.node, self.path, e.strerror or e)

    def forget(self, cfg: NodeConfig, running: set[int], force: bool = False) -> None:
        """Drop the retired LIMs that no longer run here, and record it (``force``: record
        what this node may hold in any case)."""
        gone = [n for n in self.retired if n not in running]
        for n in gone:
            self.retired.pop(n, None)
            self.docs.pop(n, None)
        if gone or force:
            self.write(cfg)

    def reloaded(self, old: NodeConfig, new: NodeConfig,
                 present: set[int]) -> tuple[dict[int, LimConfig], dict[int, dict[str, Any]]]:
        """The retired LIMs (and their documents) once ``new`` replaces ``old``: those still
        retired, and those that run here (``present``) that ``new`` no longer gives this node
        (their last LimConfig is kept so that a decision can stop them)."""
        mine = {x.lim for x in Executor.guarded(new)}
        retired = {n: x for n, x in self.retired.items() if n not in mine}
        docs = {n: d for n, d in self.docs.items() if n in retired}
        for n in sorted(present - mine - set(retired)):
            x = next((y for y in old.lims if y.lim == n), None)
            if x is not None:
                retired[n], docs[n] = x, old.to_dict()
        return retired, docs


def reload_problems(old: NodeConfig, new: NodeConfig) -> list[str]:
    """Why the running agent cannot take ``new`` in place of ``old`` (each a clause; none:
    it can): what only a restart may change."""
    problems = []
    if new.node != old.node:
        problems.append(f"node is {new.node}, this agent runs {old.node}")
    if new.role is not old.role:
        problems.append(f"role changes to {new.role}; restart the agent for that")
    if new.local.base_ip != old.local.base_ip or new.heartbeat_port != old.heartbeat_port:
        problems.append("base IP or heartbeat port changes; restart the agent for that")
    return problems


def joined(state_dir: str, cluster: str) -> bool:
    """Whether this node kept the fence of ``cluster`` before (FENCE_RECORD names it)."""
    try:
        return (Path(state_dir) / FENCE_RECORD).read_text(encoding="utf-8").strip() == cluster
    except OSError:
        return False


def record_joined(state_dir: str, cluster: str) -> None:
    """Record that this node keeps the fence of ``cluster``; StartupError when it cannot."""
    record = Path(state_dir) / FENCE_RECORD
    try:
        record.write_text(cluster + "\n", encoding="utf-8")
    except OSError as e:
        raise StartupError(f"cannot write {record}: {e.strerror}") from e
