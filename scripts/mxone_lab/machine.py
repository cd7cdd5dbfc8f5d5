"""The labs on this machine: whether one can be built here, a fresh id for a new one,
the ones that exist (``mxone-lab list``), the current one, and finding one by id."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Protocol

import mxone_lab.procs as procs
import mxone_lab.systemd_host as systemd_host
from mxone_lab.errors import BuildError, LabNotFound, PrerequisiteError
from mxone_lab.spec import LabSpec
from mxone_lab.sshd import SSHD
from mxone_lab.state import ID_RE, LabState, netns_names

#: Where lab dirs live unless told otherwise.
DEFAULT_ROOT = Path("/tmp")
#: The ``mxone-lab up`` lab that commands use when given no id (override: $MXONE_LAB_CURRENT).
DEFAULT_CURRENT_LINK = Path("/tmp/mxone-lab.current")
TOOLS = ("ip", "nsenter", "unshare", "nft", "sh", "sleep", "mount")


class _HasDir(Protocol):
    dir: Path


def current_link() -> Path:
    """The symlink naming the current lab ($MXONE_LAB_CURRENT or /tmp/mxone-lab.current)."""
    return Path(os.environ.get("MXONE_LAB_CURRENT") or DEFAULT_CURRENT_LINK)


def set_current(lab: _HasDir) -> None:
    """Make ``lab`` the current lab (the one commands use when given no id)."""
    link = current_link()
    tmp = link.with_name(f"{link.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(lab.dir, tmp)
    os.replace(tmp, link)  # atomic: a reader sees the old lab or the new one


def clear_current(lab: _HasDir) -> None:
    """Remove the current-lab link if it names ``lab``."""
    link = current_link()
    with contextlib.suppress(OSError):
        if Path(os.readlink(link)) == lab.dir:
            link.unlink()


def list_ids(root: Path = DEFAULT_ROOT) -> list[str]:
    """Ids of the labs with a state file under ``root``, oldest first."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if ID_RE.match(entry.name) and os.path.exists(os.path.join(entry.path, "lab.json")):
                found.append((entry.stat().st_mtime, entry.name))
    return [n for _, n in sorted(found)]


def claim(spec: LabSpec, root: Path, keeper_pid: int | None) -> LabState:
    """Reserve a fresh lab id: its dir is created exclusively, so no two builds share one."""
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(50):
        lab_id = "mx" + secrets.token_hex(3)
        lab_dir = root / lab_id
        if any(n.startswith(f"{lab_id}-") for n in netns_names()):
            continue
        try:
            lab_dir.mkdir(mode=0o700)
        except FileExistsError:
            continue
        state = LabState.fresh(lab_id, lab_dir, spec, keeper_pid)
        state.write()
        return state
    raise BuildError(f"could not find a free lab id under {root}")


def load(lab_id: str | None, root: Path = DEFAULT_ROOT) -> LabState:
    """The state of lab ``lab_id``; without one: $MXONE_LAB, else the current lab.

    Raises :class:`LabNotFound` with the ids of the labs that do exist.
    """
    lab_id = lab_id or os.environ.get("MXONE_LAB") or None
    if lab_id is None:
        link = current_link()
        try:
            lab_id = Path(os.readlink(link)).name
        except OSError:
            raise LabNotFound(
                "no lab given and no current lab (start one with `mxone-lab up`)"
                + existing_hint(root)
            ) from None
    if not ID_RE.match(lab_id):
        raise LabNotFound(f"{lab_id!r} is not a lab id (like mx3fa9c1)" + existing_hint(root))
    lab_dir = root / lab_id
    try:
        data = json.loads((lab_dir / "lab.json").read_text())
    except FileNotFoundError:
        raise LabNotFound(f"lab {lab_id} does not exist" + existing_hint(root)) from None
    except (OSError, ValueError) as exc:
        raise LabNotFound(f"lab {lab_id}: cannot read {lab_dir / 'lab.json'}: {exc}") from None
    return LabState(lab_dir, data)


def existing_hint(root: Path) -> str:
    ids = list_ids(root)
    return f" (labs on this machine: {', '.join(ids)})" if ids else " (no lab is running)"


def inside_lab_host(root: Path = DEFAULT_ROOT) -> str | None:
    """Which lab host this process runs in (``"host lim1 of lab mx3fa9c1"``), or None.

    Compares this process's namespaces with every lab's holders (PID 1's are not always
    readable, even for root, so "the machine's namespace" cannot be asked directly).
    """
    mine = {procs.process_ns(os.getpid(), "net"), procs.process_ns(os.getpid(), "mnt")} - {None}
    for lab_id in list_ids(root):
        try:
            state = json.loads((root / lab_id / "lab.json").read_text())
        except (OSError, ValueError):
            continue
        holders = [("the switch", state["switch"].get("pid"), state["switch"].get("start"))]
        holders += [
            (f"host {n}", h.get("holder_pid"), h.get("holder_start"))
            for n, h in state.get("hosts", {}).items()
        ]
        for what, pid, start in holders:
            if pid and procs.same(pid, start):
                theirs = {procs.process_ns(pid, "net"), procs.process_ns(pid, "mnt")}
                if mine & theirs:
                    return f"{what} of lab {lab_id}"
    return None


def require_local(state: LabState) -> None:
    """Raise :class:`PrerequisiteError` when this runs inside a lab host: deleting
    namespaces needs the machine's /run/netns, and a lab host has its own /run."""
    where = inside_lab_host(state.dir.parent)
    if where:
        raise PrerequisiteError(
            f"lab {state.id}: this must run on the machine itself, not inside {where}"
        )


def check_prerequisites(sshd: bool = True, systemd: bool = False) -> None:
    """Raise :class:`PrerequisiteError` unless this machine can build a lab here and now
    (with ``systemd``: one with hosts that boot systemd)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (it creates network namespaces): run it with sudo")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        problems.append(
            f"missing tool(s) {', '.join(missing)}: install iproute2, util-linux and nftables "
            "(scripts/bootstrap does)"
        )
    if sshd and not os.access(SSHD, os.X_OK):
        problems.append(f"{SSHD} is missing: install openssh-server (scripts/bootstrap does)")
    if systemd and os.geteuid() == 0:
        problems += systemd_host.prerequisite_problems()
    where = inside_lab_host() if os.geteuid() == 0 else None
    if where:
        problems.append(f"this runs inside {where}: build labs on the machine itself")
    if problems:
        raise PrerequisiteError("; ".join(problems))
