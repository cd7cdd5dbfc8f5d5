"""What the tool reads of a node before a change: the rollback's snapshot and the facts
the change is checked against (the node's addresses, exchange-data disk use)."""

from __future__ import annotations

import os
from typing import Any

from mxone_agent import paths
from mxone_agent.node import address, files, service


def xdata_facts(root: str = "", xdata: str = paths.XDATA) -> dict[str, Any]:
    """Disk facts for the standby-disk rule: free space where exchange data lives (the
    nearest existing parent of the data dir), what exchange data already uses there, and
    the size of each LIM's newest version (``newest``: LIM number as text -> bytes)."""
    d = root + xdata
    while not os.path.isdir(d):
        d = os.path.dirname(d)
    st = os.statvfs(d)
    used, newest = 0, {}
    top_dir = root + xdata
    if os.path.isdir(top_dir):
        for name in sorted(os.listdir(top_dir)):
            p = os.path.join(top_dir, name)
            size = 0
            for top, _, names in os.walk(p):
                for f in names:
                    try:
                        size += os.lstat(os.path.join(top, f)).st_size
                    except OSError:
                        pass
            used += size
            if (name.startswith("lim") and "-" in name
                    and os.path.exists(os.path.join(p, "MANIFEST.json"))):
                newest[name[3:name.index("-")]] = size  # sorted names: the last is the newest
    return {"free": st.f_bavail * st.f_frsize, "used": used, "newest": newest}


def snapshot(root: str) -> dict[str, Any]:
    """The node as the rollback puts it back (files, directories, ``current``, whether the
    agent runs, under systemd or not), its addresses and its exchange-data facts."""
    try:
        addrs: list[tuple[str, str]] | None = address.addresses()
    except Exception:  # noqa: BLE001 - no netlink here: the tool adds no base address then
        addrs = None
    return {"ok": True, **files.snapshot(root), "current": files.current(root),
            "running": service.running(), "systemd": service.systemd(), "addresses": addrs,
            "xdata": xdata_facts(root)}
