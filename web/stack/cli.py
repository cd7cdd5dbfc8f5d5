"""``python3 -m mxone_web.stack ACTION``: the stack's functions (:mod:`.apply`) as a
command on this server (root), for the tool run over SSH on the other server and for the
lab. ``configure``, ``remove``, ``fallback``, ``rejoin`` and ``reconfigure-fallback`` read
the :class:`PairSettings` as JSON on stdin (the replication password is never an
argument) and print the progress lines; ``status`` prints :class:`StackStatus` as JSON.
Exit 1 with the failed step on stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Mapping
from typing import Any

from mxone_web.stack import apply
from mxone_web.stack.api import PairRole, PairServer, PairSettings, WebFallback
from mxone_web.stack.host import StackError


def settings_to_mapping(s: PairSettings) -> dict[str, Any]:
    def server(p: PairServer) -> dict[str, str]:
        return {"name": p.name, "base_ip": str(p.base_ip)}

    return {
        "role": s.role.value, "master": server(s.master), "standby": server(s.standby),
        "cluster": s.cluster, "network": str(s.network), "interface": s.interface,
        "vip": str(s.vip), "replication_user": s.replication_user,
        "replication_password": s.replication_password, "fallback": s.fallback.value,
        "witnesses": [str(w) for w in s.witnesses],
    }


def settings_from_mapping(d: Mapping[str, Any]) -> PairSettings:
    """The inverse of :func:`settings_to_mapping`; ValueError/KeyError on bad data."""
    def server(p: Mapping[str, str]) -> PairServer:
        return PairServer(str(p["name"]), ipaddress.IPv4Address(p["base_ip"]))

    return PairSettings(
        role=PairRole(d["role"]), master=server(d["master"]), standby=server(d["standby"]),
        cluster=str(d["cluster"]), network=ipaddress.IPv4Network(d["network"]),
        interface=str(d["interface"]), vip=ipaddress.IPv4Address(d["vip"]),
        replication_user=str(d["replication_user"]),
        replication_password=str(d["replication_password"]),
        fallback=WebFallback(d["fallback"]),
        witnesses=tuple(ipaddress.IPv4Address(w) for w in d.get("witnesses", ())),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m mxone_web.stack", description=__doc__)
    parser.add_argument("action", choices=("configure", "remove", "status", "fallback", "rejoin",
                                           "reconfigure-fallback"))
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        if args.action == "status":
            print(json.dumps(apply.status().to_mapping()))
            return 0
        settings = settings_from_mapping(json.loads(sys.stdin.read()))
        {"configure": apply.configure, "remove": apply.remove, "fallback": apply.fallback,
         "rejoin": apply.rejoin, "reconfigure-fallback": apply.reconfigure_fallback,
         }[args.action](settings, say)
    except (KeyError, ValueError) as exc:
        print(f"bad settings on stdin: {exc}", file=sys.stderr)
        return 1
    except StackError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    return 0
