"""Fake ``mxone-agent``: ``run --daemon``, ``ctl status|reload|fallback|lock|unlock``; its
``node`` operations are the real agent's (the fake artefact carries those modules).

It keeps the generation it "runs" in /run/mxone/fake-agent.json and logs every ctl call to
/run/mxone/fake-ctl.log, so tests can see what the orchestrator asked. Standard library only.
"""

import json
import os
import signal
import sys
import time

NODE = "/etc/mxone/agent/node.json"
STATE = "/run/mxone/fake-agent.json"
CTL_LOG = "/run/mxone/fake-ctl.log"
PIDFILE = "/run/mxone/agent.pid"


def _pid():
    try:
        pid = int(open(PIDFILE).read())
        if b"mxone-agent" in open(f"/proc/{pid}/cmdline", "rb").read():
            return pid
    except (OSError, ValueError):
        pass
    return None


def _load():
    with open(NODE) as f:
        cfg = json.load(f)
    with open(STATE, "w") as f:
        json.dump({"generation": cfg["generation"], "started": time.time()}, f)
    return cfg


def _run(args):
    if "--help" in args:
        print("usage: mxone-agent run [--daemon] --pidfile P --log L")
        return 0
    pidfile = args[args.index("--pidfile") + 1] if "--pidfile" in args else PIDFILE
    if os.fork():
        return 0
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open("/dev/null", os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(fd, n)
    _load()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)
    while True:
        time.sleep(1)


def _ctl(args):
    with open(CTL_LOG, "a") as f:
        f.write(" ".join(args) + "\n")
    if _pid() is None:
        print(json.dumps({"ok": False, "error": "agent not running"}))
        return 2
    if args[0] == "status":
        cfg = json.load(open(NODE))
        st = json.load(open(STATE))
        node = next(s for s in cfg["servers"] if s["name"] == cfg["node"])
        print(json.dumps({
            "node": cfg["node"], "cluster": cfg["cluster"], "role": node["role"],
            "generation": st["generation"], "readiness": "ready",
            "lims": [{"lim": x["lim"], "server": x["server"], "alias_ip": x["alias_ip"],
                      "owner": "regular", "here": x["server"] == cfg["node"], "lock": x["lock"],
                      "priority": x["priority"], "hold_down_s": 0} for x in cfg["lims"]],
            "peers": [{"name": s["name"], "role": s["role"], "liveness": "alive"}
                      for s in cfg["servers"] if s["name"] != cfg["node"]],
            "alarms": [], "transitions": [], "last_decision": "all regular servers alive",
        }))
        return 0
    if args[0] == "reload" and os.path.exists("/run/mxone/fake-cut-on-reload"):
        # The test's "network cut midway": this node drops off the net while reloading.
        os.unlink("/run/mxone/fake-cut-on-reload")
        _load()
        os.system("ip link set eth0 down")
        time.sleep(60)
    if args[0] == "reload":
        if os.path.exists("/run/mxone/fake-refuse-reload"):
            print(json.dumps({"ok": False, "error": "fake agent refuses the reload (test)"}))
            return 1
        cfg = _load()
        print(json.dumps({"ok": True, "generation": cfg["generation"]}))
        return 0
    print(json.dumps({"ok": True, "text": f"fake agent did {' '.join(args)}"}))
    return 0


def main():
    args = sys.argv[1:]
    if args and args[0] == "node":  # the maintenance tool's node operations: the real ones
        from mxone_agent.node import cli
        return cli.main(args[1:])
    if args and args[0] == "run":
        return _run(args[1:])
    if args and args[0] == "ctl" and len(args) > 1:
        return _ctl(args[1:])
    print("fake mxone-agent: run | ctl ...", file=sys.stderr)
    return 2
