"""Lab-only SSH keys: one user key per lab, one host key per lab host.

Keys are generated in-process with ``cryptography`` (a paramiko dependency): an ed25519
key costs well under a millisecond, where ``ssh-keygen`` costs a process start each. They
live only in the lab's temp dir and die with it; nothing here reads or writes the machine's
own ``~/.ssh`` or ``/etc/ssh``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


@dataclass(frozen=True)
class KeyPair:
    """An ed25519 key pair in OpenSSH formats.

    ``private_openssh`` is the private key file content; ``public_line`` is
    ``"ssh-ed25519 AAAA... comment"`` as in authorized_keys.
    """

    private_openssh: bytes
    public_line: str

    @property
    def public_key(self) -> str:
        """``"ssh-ed25519 AAAA..."`` without the comment (as in known_hosts)."""
        kind, blob = self.public_line.split()[:2]
        return f"{kind} {blob}"


def generate(comment: str) -> KeyPair:
    """A fresh ed25519 key pair, the public line ending with ``comment``."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private, f"{public.decode('ascii')} {comment}")


def write_private(path: Path, pair: KeyPair) -> None:
    """Write the private key (mode 0600, as ssh and sshd demand) and ``<path>.pub``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.private_openssh)
    Path(f"{path}.pub").write_text(pair.public_line + "\n", encoding="ascii")
