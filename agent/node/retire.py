"""A node letting LIMs go: the whole node leaving its cluster, or single LIMs leaving it.

``retire`` (the node leaves every cluster): its agent stopped, ``mxone-agent leave`` run,
its node config and keys removed and the sync key's line taken out of root's
authorized_keys. ``retire-lims`` (remove LIM, delete cluster; on the standby): its agent
stops each LIM for good and takes it over no more, waited for. ``unretire``: the change
did not happen, the agent may take them over again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mxone_agent.node import files, service


def retire(root: str, auth: Mapping[str, Any] | None) -> dict[str, Any]:
    """``auth``: root's authorized_keys without the sync key's line (None: leave it)."""
    cur = files.read(root, files.FILES["node"])
    if cur is not None:
        files.put(root, files.FILES["prev"], cur)
    service.stop()
    done = service.leave_cluster()
    for name in ("node", "key", "sync", "hosts"):
        files.remove(root, files.FILES[name])
    if auth is not None:
        files.put(root, files.FILES["auth"], auth)
    return {"ok": True, "leave": done}


def retire_lims(lims: list[int], timeout: float) -> dict[str, Any]:
    """Each LIM of ``lims`` let go here (``ctl retire``); waits until none runs here."""
    said: list[str] = []
    for n in lims:
        r, data = service.ctl_json("retire", str(n))
        if r["rc"] != 0 or data is None or not data.get("ok"):
            why = (data or {}).get("error") or service.said(r)
            if "invalid choice" in r["stderr"]:
                why = "its agent is a release without `ctl retire`"
            return {"ok": False, "error": f"LIM {n}: {why}", "said": said}
        said.append(data.get("text") or f"LIM {n} retired")
    deadline = time.monotonic() + timeout
    while True:
        r, data = service.ctl_json("status")
        rows = (data or {}).get("lims", []) + (data or {}).get("retiring", [])
        still = sorted({x.get("lim") for x in rows if x.get("lim") in lims and x.get("here")})
        if data is not None and not still:
            return {"ok": True, "said": said}
        if time.monotonic() > deadline:
            return {"ok": False, "said": said, "still": still,
                    "error": f"LIM {', '.join(map(str, still)) or '?'} still runs here after "
                    f"{timeout} s"}
        time.sleep(0.2)


def unretire(lims: list[int]) -> dict[str, Any]:
    said = []
    for n in lims:
        r, data = service.ctl_json("retire", str(n), "--cancel")
        said.append((data or {}).get("text") or (data or {}).get("error") or service.said(r, 200))
    return {"ok": True, "said": said}
