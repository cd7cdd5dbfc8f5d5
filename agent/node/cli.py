"""``mxone-agent node OP``: the maintenance tool's operations on a node.

The tool runs each as ``<releases>/<release>/bin/mxone-agent node OP`` over SSH - the
program of the release it deploys, unpacked beforehand (:mod:`mxone_agent.node.release`),
so the node side is always the tool's own version - with a JSON request on stdin; the
answer is one JSON object on stdout with ``ok`` (and ``error`` when false). Exit 0 when
an answer was printed, whatever it says; anything else (a crash) is the tool's to report.

=================  ==============================================================
snapshot           files, dirs, ``current``, agent running (under systemd or not),
                   addresses, exchange-data facts
prepare-dirs       the agent's directories made where missing
switch             {target}: ``current`` -> target (None: removed)
write              {keep_prev, files: [{name, tmp, mode}]}: uploads put in place
restore            {files, dirs}: the snapshot put back byte for byte
commit             node.json.prev removed (the change holds)
add-base           {interface, address, prefix}: the new base address on at run time
del-base           the same, taken off again (rollback)
retire             {auth}: the node leaves its cluster (:mod:`~mxone_agent.node.retire`)
retire-lims        {lims, timeout}: the agent lets these LIMs go, waited for
unretire           {lims}: it may take them over again
stop               {release}: the agent stopped (and its fence removed)
start, restart     the agent (re)started
reload             the agent reloads its config (started when it does not run)
status             ``ctl status``: {rc, stdout, stderr}
net-inspect        the network configuration: :mod:`mxone_agent.netconfig.request`
net-apply, net-restore
=================  ==============================================================
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mxone_agent.node import address, files, retire, service, snapshot

Request = dict[str, Any]
Answer = dict[str, Any]
ROOT = ""  # the node's own file system (the unit tests call the ops with a temp dir)


def _prepare_dirs(req: Request) -> Answer:
    files.prepare_dirs(ROOT)
    return {"ok": True}


def _switch(req: Request) -> Answer:
    files.switch(ROOT, req["target"])
    return {"ok": True}


def _write(req: Request) -> Answer:
    files.write(ROOT, req["files"], keep=bool(req.get("keep_prev")))
    return {"ok": True}


def _restore(req: Request) -> Answer:
    files.restore(ROOT, req["files"], req["dirs"])
    return {"ok": True}


def _commit(req: Request) -> Answer:
    files.remove(ROOT, files.FILES["prev"])
    return {"ok": True}


def _stop(req: Request) -> Answer:
    service.stop()
    return {"ok": True, **({"fence": service.release_fence()} if req.get("release") else {})}


def _start(req: Request) -> Answer:
    ok, why, warnings = service.start()
    return {"ok": ok, "error": why, "warnings": warnings}


def _restart(req: Request) -> Answer:
    ok, why, warnings = service.restart()
    return {"ok": ok, "error": why, "warnings": warnings}


def _status(req: Request) -> Answer:
    out = service.ctl("status")
    return {**out, "ok": out["rc"] == 0}


def _net(op: str) -> Callable[[Request], Answer]:
    def run(req: Request) -> Answer:
        from mxone_agent.netconfig import request

        return request.answer(op, req, ROOT)
    return run


OPS: dict[str, Callable[[Request], Answer]] = {
    "snapshot": lambda req: snapshot.snapshot(ROOT),
    "prepare-dirs": _prepare_dirs,
    "switch": _switch,
    "write": _write,
    "restore": _restore,
    "commit": _commit,
    "add-base": lambda req: address.add_base(req["interface"], req["address"], req["prefix"]),
    "del-base": lambda req: address.del_base(req["interface"], req["address"], req["prefix"]),
    "retire": lambda req: retire.retire(ROOT, req.get("auth")),
    "retire-lims": lambda req: retire.retire_lims([int(n) for n in req["lims"]],
                                                  req.get("timeout", 30)),
    "unretire": lambda req: retire.unretire(req["lims"]),
    "stop": _stop,
    "start": _start,
    "restart": _restart,
    "reload": lambda req: service.reload(),
    "status": _status,
    "net-inspect": _net("inspect"),
    "net-apply": _net("apply"),
    "net-restore": _net("restore"),
}


def answer(op: str, req: Request) -> Answer:
    """The answer to one request (an unknown op is answered, not raised)."""
    if op not in OPS:
        return {"ok": False, "error": f"unknown op {op}"}
    return OPS[op](req)


def main(argv: Sequence[str]) -> int:
    """``OP`` in ``argv``, the JSON request on stdin; prints the answer. Exit 0."""
    op = argv[0] if argv else ""
    try:
        out = answer(op, json.load(sys.stdin))
    except ValueError as exc:
        if not op.startswith("net-"):
            raise
        # The network configuration answers even a request it cannot read.
        out = {"ok": False, "error": f"network configuration: {type(exc).__name__}: {exc}"}
    print(json.dumps(out))
    return 0


def add_parser(sub: Any) -> None:
    """``node`` among ``mxone-agent``'s subcommands (for its help; :func:`main` runs it)."""
    p = sub.add_parser("node", help="the maintenance tool's operations on this node (JSON "
                       "request on stdin, JSON answer on stdout)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("op", choices=sorted(OPS), help="the operation (its request on stdin)")
