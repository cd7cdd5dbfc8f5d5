"""The keys a change deploys: each cluster's secret and sync key pair, kept on LIM 1 in
the secrets directory (0600), and what a node gets of them - cluster.key, sync.key, the
peers' host keys (known_hosts) and the sync key's line in root's authorized_keys."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mxone_agent import config as agent_config
from mxone_maintenance import ssh, store, synckeys
from mxone_maintenance.actions import Change
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.model import System


class OrchestrationError(MxoneError):
    pass


class ClusterKeys:
    """The cluster keys on LIM 1, in ``secrets_dir``."""

    def __init__(self, secrets_dir: Path) -> None:
        self.secrets_dir = secrets_dir

    def key_path(self, cluster: str) -> Path:
        return self.secrets_dir / f"{cluster}.key"

    def cluster_keys(self, system: System, created: list[Path]) -> dict[str, str]:
        """Each cluster's secret, generated (and kept on LIM 1, 0600) for a new cluster."""
        keys = {}
        for c in system.clusters:
            path = self.key_path(c.name)
            if path.exists():
                keys[c.name] = path.read_text().strip()
                continue
            key = secrets.token_hex(32)
            self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            store.atomic_write(path, key.encode() + b"\n", mode=0o600)
            created.append(path)
            keys[c.name] = key
        return keys

    def sync_key_path(self, cluster: str) -> Path:
        return self.secrets_dir / f"{cluster}.sync"

    def sync_keys(self, system: System, created: list[Path]) -> dict[str, synckeys.SyncKey]:
        """Each cluster's sync key pair, generated (and kept on LIM 1, 0600) when missing."""
        keys = {}
        for c in system.clusters:
            path = self.sync_key_path(c.name)
            if path.exists():
                try:
                    keys[c.name] = synckeys.SyncKey.from_private(path.read_text())
                    continue
                except ValueError as exc:
                    raise OrchestrationError(f"{path}: not a usable sync key ({exc}); remove it "
                                             "and apply again to generate a new one") from None
            key = synckeys.SyncKey.generate()
            self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            store.atomic_write(path, key.private.encode(), mode=0o600)
            created.append(path)
            keys[c.name] = key
        return keys

    def forget(self, created: list[Path]) -> None:
        for path in created:
            path.unlink(missing_ok=True)
        if created and self.secrets_dir.exists() and not any(self.secrets_dir.iterdir()):
            self.secrets_dir.rmdir()

    def drop_unused(self, change: Change) -> None:
        live = {c.name for c in change.after.clusters}
        for c in change.before.clusters:
            if c.name not in live:
                self.key_path(c.name).unlink(missing_ok=True)
                self.sync_key_path(c.name).unlink(missing_ok=True)


def peer_host_keys(known_hosts: ssh.KnownHosts, config: agent_config.NodeConfig) -> str:
    """known_hosts for a node's agent: every cluster server's pinned key by base address."""
    entries = []
    for s in config.servers:
        key = known_hosts.pinned(s.name)
        if key is not None:
            entries.append((str(s.base_ip), key.get_name(), key.get_base64()))
    return synckeys.known_hosts_text(entries)


def authorized_keys(snapshot: Mapping[str, Any], line: str | None) -> dict[str, Any] | None:
    """The node's root authorized_keys with the sync line set to ``line`` (None removes
    it), from its snapshot (``snapshot``); None when there is nothing to write (no file, no line)."""
    snap = (snapshot.get("files") or {}).get("auth")
    if snap is None and line is None:
        return None
    current = bytes.fromhex(snap["data"]).decode(errors="surrogateescape") if snap else ""
    merged = synckeys.merged_authorized_keys(current, line)
    return {"data": merged.encode(errors="surrogateescape").hex(), "mode": snap["mode"] if snap else 0o600}
