"""The pair settings this server was configured with, and the master's answers the standby
must repeat.

``/etc/mxone/web/settings.json`` (:data:`SETTINGS`) holds this server's
:class:`~mxone_web.stack.api.PairSettings`, replication password included: it is written
atomically (:func:`mxone_agent.files.atomic_write`) with mode 0600 from its first byte.

The master also leaves ``/etc/mxone/web/master-answers.json`` (:data:`MASTER_ANSWERS`),
owned by ``mxone_manager`` (0600): the virtual IP, the replication user and a salted
scrypt hash of the replication password - never the password. The standby reads it over
the silent login (as ``mxone_manager``) and refuses answers that differ, naming both
values (the password by its field only).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from pathlib import Path
from typing import Any

from mxone_agent.files import atomic_write
from mxone_web.errors import Refused, WebError
from mxone_web.stack.api import PairRole, PairServer, PairSettings, WebFallback

WEB_DIR = Path("/etc/mxone/web")
SETTINGS = WEB_DIR / "settings.json"  # beside the stack's pair.json (no secret, for its hook)
MASTER_ANSWERS = WEB_DIR / "master-answers.json"
FORMAT = 1
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


# ---- this server's settings ----------------------------------------------------------------

def to_document(s: PairSettings) -> dict[str, Any]:
    """The settings as the JSON document saved (format 1)."""
    return {
        "format": FORMAT, "role": str(s.role),
        "master": {"name": s.master.name, "base_ip": str(s.master.base_ip)},
        "standby": {"name": s.standby.name, "base_ip": str(s.standby.base_ip)},
        "cluster": s.cluster, "network": str(s.network), "interface": s.interface,
        "vip": str(s.vip), "replication_user": s.replication_user,
        "replication_password": s.replication_password, "fallback": str(s.fallback),
        "witnesses": [str(w) for w in s.witnesses],
    }


def from_document(doc: Any, where: str) -> PairSettings:
    """The settings of a saved document; WebError naming ``where`` when it is not one."""
    try:
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r} is not {FORMAT}")

        def server(d: Any) -> PairServer:
            return PairServer(str(d["name"]), ipaddress.IPv4Address(d["base_ip"]))

        return PairSettings(
            role=PairRole(doc["role"]), master=server(doc["master"]),
            standby=server(doc["standby"]), cluster=str(doc["cluster"]),
            network=ipaddress.IPv4Network(doc["network"]), interface=str(doc["interface"]),
            vip=ipaddress.IPv4Address(doc["vip"]), replication_user=str(doc["replication_user"]),
            replication_password=str(doc["replication_password"]),
            fallback=WebFallback(doc["fallback"]),
            witnesses=tuple(ipaddress.IPv4Address(w) for w in doc.get("witnesses", ())))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise WebError(f"{where}: not the pair settings of webserver_config: {e}") from e


def save(s: PairSettings, path: Path = SETTINGS) -> None:
    """Write the settings atomically, mode 0600 from the first byte (they hold a password)."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    text = json.dumps(to_document(s), indent=2) + "\n"
    atomic_write(path, text.encode("utf-8"), 0o600)


def load(path: Path = SETTINGS) -> PairSettings | None:
    """The settings saved here; None when redundancy was never set up on this server."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise WebError(f"{path}: cannot read the pair settings: {e.strerror or e}") from e
    try:
        return from_document(json.loads(text), str(path))
    except json.JSONDecodeError as e:
        raise WebError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}") from e


def remove(path: Path = SETTINGS) -> bool:
    """Forget the settings (Remove Redundancy); whether there were any."""
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


# ---- the master's answers, for the standby's check -----------------------------------------

def password_hash(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex) of ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, maxmem=64 * 1024 * 1024,
                            **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        mine = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n),
                              r=int(r), p=int(p), maxmem=64 * 1024 * 1024)
    except ValueError:
        return False
    return hmac.compare_digest(mine.hex(), digest)


def master_answers(s: PairSettings) -> dict[str, Any]:
    """What the master leaves for its standby's check (no password, only its hash)."""
    return {"format": FORMAT, "master": s.master.name, "vip": str(s.vip),
            "replication_user": s.replication_user, "fallback": str(s.fallback),
            "replication_password_scrypt": password_hash(s.replication_password)}


def save_master_answers(s: PairSettings, owner: tuple[int, int] | None,
                        path: Path = MASTER_ANSWERS) -> None:
    """Leave the master's answers for the standby, readable by ``owner`` (mxone_manager)."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    text = json.dumps(master_answers(s), indent=2) + "\n"
    atomic_write(path, text.encode("utf-8"), 0o600, owner=owner)


def check_same(answers: Any, vip: ipaddress.IPv4Address, user: str, password: str) -> None:
    """Refuse the standby's answers unless they equal the master's (``answers``, the
    document the master left), naming both values of each field that differs."""
    try:
        master = str(answers["master"])
        theirs_vip = ipaddress.IPv4Address(answers["vip"])
        theirs_user = str(answers["replication_user"])
        theirs_hash = str(answers["replication_password_scrypt"])
    except (KeyError, TypeError, ValueError) as e:
        raise WebError(f"the master's answers cannot be read ({e}): run the master "
                       "configuration on the master first") from e
    problems = []
    if vip != theirs_vip:
        problems.append(f"virtual IP = {vip}: differs from the master's ({master}) {theirs_vip}")
    if user != theirs_user:
        problems.append(f"replication user = {user}: differs from the master's ({master}) "
                        f"{theirs_user}")
    if not password_matches(password, theirs_hash):
        problems.append(f"replication password: differs from the one given on the master "
                        f"({master})")
    if problems:
        raise Refused("; ".join(problems) + "; give the answers given on the master")
