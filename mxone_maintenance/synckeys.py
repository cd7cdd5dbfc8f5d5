"""The SSH key a cluster's agents use to sync exchange data with each other.

Every cluster has one ed25519 key pair, generated on LIM 1 when the cluster is created and
kept there beside the cluster's heartbeat secret (``secrets/<cluster>.sync``, 0600). Each
server of the cluster gets:

* the private key, ``/etc/mxone/agent/sync.key`` (0600; the node's paths are
  :mod:`mxone_agent.paths`);
* the cluster's host keys by base address, ``/etc/mxone/agent/known_hosts``, taken from
  the host keys the tool itself pinned, so a peer's key is never accepted blindly;
* one line in ``/root/.ssh/authorized_keys`` that lets the key run nothing but
  ``mxone-agent xdata serve`` (a forced command with every other SSH feature refused).
  The line ends with the marker ``mxone-sync-<cluster>``; the tool only ever adds, replaces
  or removes lines with that marker and leaves the administrator's own lines as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mxone_agent import paths

FORCED_COMMAND = f"{paths.AGENT_BIN} xdata serve"
MARKER_PREFIX = "mxone-sync-"


@dataclass(frozen=True)
class SyncKey:
    """One cluster's key pair: the OpenSSH private key text and the public key line."""

    private: str
    public: str  # "ssh-ed25519 AAAA..."

    @classmethod
    def generate(cls) -> SyncKey:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        return cls(private, public)

    @classmethod
    def from_private(cls, text: str) -> SyncKey:
        """The pair from the private key as kept on LIM 1 (ValueError if it is not one)."""
        key = serialization.load_ssh_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an ed25519 private key")
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        return cls(text, public)


def marker(cluster: str) -> str:
    return MARKER_PREFIX + cluster


def authorized_line(key: SyncKey, cluster: str) -> str:
    """The authorized_keys line: the key may run ``xdata serve`` and nothing else."""
    return f'command="{FORCED_COMMAND}",restrict {key.public} {marker(cluster)}'


def is_sync_line(line: str) -> bool:
    """A line the tool manages (any cluster's sync key)."""
    words = line.split()
    return bool(words) and words[-1].startswith(MARKER_PREFIX) and "restrict" in line


def merged_authorized_keys(current: str, line: str | None) -> str:
    """``current`` with every sync line replaced by ``line`` (removed when None).

    The administrator's own lines, comments and blank lines stay, in their order.
    """
    kept = [x for x in current.splitlines() if not is_sync_line(x)]
    if line is not None:
        kept.append(line)
    return "".join(x + "\n" for x in kept)


def known_hosts_text(entries: Iterable[tuple[str, str, str]]) -> str:
    """``address keytype base64`` lines for (address, keytype, base64) triples."""
    return "".join(f"{address} {kind} {b64}\n" for address, kind, b64 in entries)
