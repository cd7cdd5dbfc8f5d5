"""Bring every node of the system to a new generation over SSH, or leave all at the old one.

:class:`SshApplier` implements the :class:`~mxone_maintenance.service.Applier` protocol.
Applying a change runs in phases, each in parallel over the servers it touches:

1. connect: every touched server is reached and its host key checked before anything is
   changed; a server that cannot be reached stops the change with nothing changed anywhere;
2. snapshot: each node's agent files (node.json, node.json.prev, cluster.key), the
   ``current`` release link and whether the agent runs are read, for the rollback; so are
   the network configuration files of a server whose base address changes or that leaves
   its cluster (:mod:`~mxone_maintenance.netconfig`) - one the tool cannot change stops the
   change here, naming the file; then every LIM that leaves its cluster is let go by the
   standby's agent (``ctl retire``, waited for: stopped there for good) - if it is not, the
   change stops here with nothing changed and the retire order is taken back;
3. change: a new base address is added at run time and written into the server's network
   configuration (the old one, now the alias, no longer comes up at boot); ensure the agent
   release (upload skipped when the node has it, checksum verified on the node before
   extracting), write cluster.key and node.json atomically
   (old node.json kept as node.json.prev), switch ``current``, start or reload the agent,
   and wait until ``ctl status`` reports the new generation; a server leaving every cluster
   gets its agent stopped, keeps running its own LIM on the LIM's alias (``mxone-agent
   leave``: any other LIM there is stopped, the fence removed), its node.json and key
   removed and its network configuration put back as before the cluster;
4. if any server failed (or the operator pressed Ctrl-C): every server already changed is
   put back to its snapshot, byte for byte, and its agent to its previous state;
   system.toml is not written. A server that cannot be reached for its rollback keeps its
   rollback in a journal on LIM 1 (``pending-rollback/<server>.json`` beside the config),
   finished before any later change touches it, or by ``cluster repair``;
5. on full success only: system.toml is written on LIM 1 (store.save), and the
   node.json.prev files are removed.

All remote work is done by one small python3 program (:data:`NODE_HELPER`) run on the
node, so a node needs nothing but python3 and sshd.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mxone_agent import config as agent_config
from mxone_maintenance import netconfig, nodeconfig, ssh, store, synckeys
from mxone_maintenance.actions import Change
from mxone_maintenance.artefact import Artefact
from mxone_maintenance.errors import MxoneError
from mxone_maintenance.model import Cluster, ClusterLim, Server, System
from mxone_maintenance.service import ApplyResult, Outcome, PlanStep, Progress

AGENT_DIR = "/etc/mxone/agent"
NODE_JSON = f"{AGENT_DIR}/node.json"
CLUSTER_KEY = f"{AGENT_DIR}/cluster.key"
RELEASES = "/opt/mxone/agent/releases"
CURRENT = "/opt/mxone/agent/current"
AGENT_BIN = f"{CURRENT}/bin/mxone-agent"
DEFAULT_SECRETS = Path("/etc/mxone/secrets")
DEFAULT_LOCK = Path("/run/lock/mxone_maintenance.lock")  # one change at a time on LIM 1
VERIFY_TIMEOUT = 20.0
HAND_BACK_TIMEOUT = 30.0  # a LIM leaving its cluster must be stopped on the standby by then
REFUSED = "agent refused the reload"  # the helper's words for a clean refusal (exit 1)

# Runs on the node as `python3 -c NODE_HELPER OP` with a JSON request on stdin; prints one
# JSON answer. Only the standard library: a node needs nothing but python3.
NODE_HELPER = r'''
import hashlib, json, os, shutil, signal, subprocess, sys, tarfile, time
AGENT_DIR = "/etc/mxone/agent"
FILES = {"node": AGENT_DIR + "/node.json", "prev": AGENT_DIR + "/node.json.prev",
         "key": AGENT_DIR + "/cluster.key", "sync": AGENT_DIR + "/sync.key",
         "hosts": AGENT_DIR + "/known_hosts", "auth": "/root/.ssh/authorized_keys"}
RELEASES = "/opt/mxone/agent/releases"
CURRENT = "/opt/mxone/agent/current"
AGENT = CURRENT + "/bin/mxone-agent"
PIDFILE = "/run/mxone/agent.pid"
LOG = "/var/log/mxone/agent.log"
UNIT = "/etc/systemd/system/mxone-agent.service"
DEFAULT_UNIT = """[Unit]
Description=MX-ONE server redundancy agent
After=network-online.target

[Service]
ExecStart=/opt/mxone/agent/current/bin/mxone-agent run --log /var/log/mxone/agent.log
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""
req = json.load(sys.stdin)
op = sys.argv[1]

def fsync_dir(d):
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

def systemd():
    return os.path.isdir("/run/systemd/system")

def agent_pid():
    try:
        pid = int(open(PIDFILE).read().strip())
        cmd = open("/proc/%d/cmdline" % pid, "rb").read()
    except (OSError, ValueError):
        return None
    return pid if b"mxone-agent" in cmd else None

def running():
    if systemd():
        return subprocess.run(["systemctl", "is-active", "--quiet", "mxone-agent"]).returncode == 0
    return agent_pid() is not None

def stop():
    if systemd():
        subprocess.run(["systemctl", "stop", "mxone-agent"], capture_output=True, timeout=30)
        return
    pid = agent_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid):
            time.sleep(0.05)
        if os.path.exists("/proc/%d" % pid):
            os.kill(pid, signal.SIGKILL)
    try:
        os.unlink(PIDFILE)
    except FileNotFoundError:
        pass

def release_fence():
    # The agent's self-fencing leases silence this node's aliases once no agent renews them;
    # a node leaving its cluster (or one that ran no agent before a rolled-back change)
    # gets its addresses back as plain addresses.
    if not os.path.exists(AGENT):
        return "no agent installed here: no fence to remove"
    try:
        r = subprocess.run([AGENT, "fence", "release"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "fence not removed: %s" % e
    return (r.stdout + r.stderr).strip()

def leave_cluster():
    # The node leaves its cluster, its agent stopped: its own LIM keeps running (started if
    # need be) on the LIM's alias as a plain address, any other LIM here is stopped and its
    # alias removed, the fence removed (`mxone-agent leave`). Lines saying what was done.
    if not os.path.exists(AGENT):
        return ["no agent installed here: no LIM to keep or stop, no fence"]
    try:
        r = subprocess.run([AGENT, "leave"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return ["LEAVE FAILED: %s" % e, release_fence()]
    try:
        said = json.loads(r.stdout)
    except ValueError:
        said = None
    if isinstance(said, dict) and said.get("ok"):
        return [str(x) for x in said.get("done") or []]
    if "invalid choice" in r.stderr:  # an agent release older than `leave`
        return [release_fence()]
    why = said.get("error") if isinstance(said, dict) else (r.stdout + r.stderr).strip()[-300:]
    return ["LEAVE FAILED: %s" % why, release_fence()]

def ctl_json(*args):
    r = ctl(*args)
    try:
        data = json.loads(r["stdout"])
    except ValueError:
        data = None
    return r, data if isinstance(data, dict) else None

def start():
    if systemd():
        unit = DEFAULT_UNIT  # the agent package's own unit text wins
        for unit_src in (CURRENT + "/lib/mxone_agent/systemd/mxone-agent.service",
                         CURRENT + "/lib/mxone_agent/mxone-agent.service"):
            if os.path.exists(unit_src):
                unit = open(unit_src).read()
                break
        old = open(UNIT).read() if os.path.exists(UNIT) else None
        if unit != old:
            tmp = UNIT + ".tmp"
            with open(tmp, "w") as f:
                f.write(unit); f.flush(); os.fsync(f.fileno())
            os.replace(tmp, UNIT)
            subprocess.run(["systemctl", "daemon-reload"], capture_output=True, timeout=30)
        r = subprocess.run(["systemctl", "enable", "--now", "mxone-agent"], capture_output=True, text=True, timeout=30)
        r = subprocess.run(["systemctl", "restart", "mxone-agent"], capture_output=True, text=True, timeout=30)
        return r.returncode == 0, r.stderr.strip()
    os.makedirs("/run/mxone", exist_ok=True)
    os.makedirs("/var/log/mxone", exist_ok=True)
    try:
        os.unlink(PIDFILE)
    except FileNotFoundError:
        pass
    # Output to a file, not a pipe: the daemon's children may keep a pipe open for ever.
    import tempfile
    with tempfile.TemporaryFile() as err:
        try:
            r = subprocess.run([AGENT, "run", "--daemon", "--pidfile", PIDFILE, "--log", LOG],
                               stdout=err, stderr=err, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, "mxone-agent run: %s" % e
        err.seek(0)
        said = err.read().decode(errors="replace").strip()
    if r.returncode != 0:
        return False, "mxone-agent run exited %d: %s" % (r.returncode, said[-300:])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if agent_pid() is not None:
            return True, ""
        time.sleep(0.05)
    return False, "mxone-agent run: no pidfile %s within 15 s (see %s)" % (PIDFILE, LOG)

def ctl(*args):
    try:
        r = subprocess.run([AGENT, "ctl", *args], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"rc": None, "stdout": "", "stderr": str(e)}
    return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}

XDATA = "/var/opt/mxone/xdata"

def xdata_facts():
    # Disk facts for the standby-disk rule: free space where exchange data lives (the
    # nearest existing parent of the data dir), what exchange data already uses there, and
    # the size of each LIM's newest version.
    d = XDATA
    while not os.path.isdir(d):
        d = os.path.dirname(d)
    st = os.statvfs(d)
    used, newest = 0, {}
    if os.path.isdir(XDATA):
        for name in sorted(os.listdir(XDATA)):
            p = os.path.join(XDATA, name)
            size = 0
            for top, _, files in os.walk(p):
                for f in files:
                    try:
                        size += os.lstat(os.path.join(top, f)).st_size
                    except OSError:
                        pass
            used += size
            if name.startswith("lim") and "-" in name and os.path.exists(os.path.join(p, "MANIFEST.json")):
                newest[name[3:name.index("-")]] = size  # sorted names: the last is the newest
    return {"free": st.f_bavail * st.f_frsize, "used": used, "newest": newest}

def read(path):
    try:
        st = os.lstat(path)
        return {"data": open(path, "rb").read().hex(), "mode": st.st_mode & 0o7777}
    except FileNotFoundError:
        return None

def put(path, data_hex, mode):
    d = os.path.dirname(path)
    tmp = "%s/.%s.tmp-%d" % (d, os.path.basename(path), os.getpid())
    try:
        os.unlink(tmp)  # a leftover keeps its own mode: the secret goes into a new file only
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, bytes.fromhex(data_hex)); os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(d)

def commit_tmp(tmp, path, mode):
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))

def remove(path):
    try:
        os.unlink(path)
        fsync_dir(os.path.dirname(path))
    except FileNotFoundError:
        pass

out = {"ok": True}
if op == "snapshot":
    out["files"] = {k: read(p) for k, p in FILES.items()}
    out["dirs"] = {d: os.path.isdir(d) for d in ("/etc/mxone", AGENT_DIR, "/root/.ssh")}
    out["current"] = os.readlink(CURRENT) if os.path.islink(CURRENT) else None
    out["running"] = running()
    out["systemd"] = systemd()
    rel = req.get("release")
    marker = "%s/%s/ARTEFACT.sha256" % (RELEASES, rel)
    try:
        ip = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
        out["addresses"] = [(l.split()[1], l.split()[3].split("/")[0]) for l in ip.splitlines() if len(l.split()) > 3]
    except (OSError, subprocess.TimeoutExpired):
        out["addresses"] = None
    out["has_release"] = bool(rel) and os.path.exists(marker) and open(marker).read().strip() == req.get("sha256")
    out["xdata"] = xdata_facts()
elif op == "prepare-dirs":
    os.makedirs(AGENT_DIR, mode=0o755, exist_ok=True)
    os.makedirs(RELEASES, mode=0o755, exist_ok=True)
    os.makedirs("/root/.ssh", mode=0o700, exist_ok=True)
elif op == "install":
    up, sha, rel = req["upload"], req["sha256"], req["release"]
    h = hashlib.sha256()
    with open(up, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != sha:
        os.unlink(up)
        out = {"ok": False, "error": "uploaded artefact has sha256 %s, expected %s (upload damaged; try again)" % (h.hexdigest(), sha)}
    else:
        tmpdir = "%s/.tmp-%s-%d" % (RELEASES, rel, os.getpid())
        shutil.rmtree(tmpdir, ignore_errors=True)
        os.makedirs(tmpdir)
        with tarfile.open(up, "r:gz") as tar:
            tar.extractall(tmpdir, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(tmpdir)
        with open(tmpdir + "/ARTEFACT.sha256", "w") as f:
            f.write(sha + "\n")
        final = "%s/%s" % (RELEASES, rel)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmpdir, final)
        fsync_dir(RELEASES)
        os.unlink(up)
elif op == "switch":
    target = req["target"]
    tmp = "%s.tmp-%d" % (CURRENT, os.getpid())
    if target is None:
        remove(CURRENT)
    else:
        os.symlink(target, tmp)
        os.replace(tmp, CURRENT)
        fsync_dir(os.path.dirname(CURRENT))
elif op == "write":
    # req: {"keep_prev": bool, "files": [{"name", "tmp", "mode"}]}
    if req.get("keep_prev"):
        cur = read(FILES["node"])
        if cur is not None:
            put(FILES["prev"], cur["data"], cur["mode"])
        else:
            remove(FILES["prev"])
    for f in req["files"]:
        commit_tmp(f["tmp"], FILES[f["name"]], f["mode"])
elif op == "retire":
    cur = read(FILES["node"])
    if cur is not None:
        put(FILES["prev"], cur["data"], cur["mode"])
    stop()
    out["leave"] = leave_cluster()
    for name in ("node", "key", "sync", "hosts"):
        remove(FILES[name])
    if req.get("auth") is not None:  # authorized_keys without the sync key's line
        put(FILES["auth"], req["auth"]["data"], req["auth"]["mode"])
elif op == "retire-lims":
    # LIMs leaving the cluster (remove LIM, delete cluster): the agent here stops each one
    # that runs here for good and takes it over no more; wait until none runs here.
    lims, said = [int(n) for n in req["lims"]], []
    for n in lims:
        r, data = ctl_json("retire", str(n))
        if r["rc"] != 0 or data is None or not data.get("ok"):
            why = (data or {}).get("error") or (r["stdout"] + r["stderr"]).strip()[-300:]
            if "invalid choice" in r["stderr"]:
                why = "its agent is a release without `ctl retire`"
            out = {"ok": False, "error": "LIM %d: %s" % (n, why), "said": said}
            break
        said.append(data.get("text") or "LIM %d retired" % n)
    else:
        deadline = time.monotonic() + float(req.get("timeout", 30))
        while True:
            r, data = ctl_json("status")
            rows = (data or {}).get("lims", []) + (data or {}).get("retiring", [])
            still = sorted({x.get("lim") for x in rows if x.get("lim") in lims and x.get("here")})
            if data is not None and not still:
                break
            if time.monotonic() > deadline:
                out = {"ok": False, "said": said, "still": still, "error": "LIM %s still runs here after %s s" % (", ".join(map(str, still)) or "?", req.get("timeout", 30))}
                break
            time.sleep(0.2)
        out["said"] = said
elif op == "unretire":
    # The change that was to remove these LIMs did not happen: the agent may take them over again.
    said = []
    for n in req["lims"]:
        r, data = ctl_json("retire", str(n), "--cancel")
        said.append((data or {}).get("text") or (data or {}).get("error") or (r["stdout"] + r["stderr"]).strip()[-200:])
    out["said"] = said
elif op == "restore":
    # Leftovers of an interrupted change: uploads not yet renamed into place.
    for d in (AGENT_DIR, RELEASES, "/root/.ssh"):
        if os.path.isdir(d):
            for n in os.listdir(d):
                if n.startswith(".") and (".upload-" in n or ".tmp-" in n):
                    p = os.path.join(d, n)
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    for name, snap in req["files"].items():
        if name not in FILES:
            continue
        if read(FILES[name]) == snap:
            continue  # already as it was: nothing to write (the disk may be read-only)
        if snap is None:
            remove(FILES[name])
        else:
            put(FILES[name], snap["data"], snap["mode"])
    for d, existed in sorted(req["dirs"].items(), reverse=True):
        if not existed:
            try:
                os.rmdir(d)
            except OSError:
                pass
elif op == "add-base":
    # A LIM joining a cluster gets a new base address; its old one stays as the LIM's alias.
    # promote_secondaries: when the agent later removes that alias (the interface's first
    # address), the kernel must keep the other addresses instead of dropping them with it.
    dev, addr, plen = req["interface"], req["address"], req["prefix"]
    subprocess.run(["sysctl", "-qw", "net.ipv4.conf.%s.promote_secondaries=1" % dev],
                   capture_output=True, timeout=10)
    have = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", dev], capture_output=True,
                          text=True, timeout=10).stdout
    if (" %s/" % addr) in have:
        out["added"] = False
    else:
        r = subprocess.run(["ip", "addr", "add", "%s/%d" % (addr, plen), "dev", dev],
                           capture_output=True, text=True, timeout=10)
        out = {"ok": r.returncode == 0, "added": r.returncode == 0,
               "error": "ip addr add %s/%d dev %s: %s" % (addr, plen, dev, r.stderr.strip())}
elif op == "del-base":
    dev, addr, plen = req["interface"], req["address"], req["prefix"]
    have = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", dev], capture_output=True,
                          text=True, timeout=10).stdout
    if (" %s/" % addr) in have:
        r = subprocess.run(["ip", "addr", "del", "%s/%d" % (addr, plen), "dev", dev],
                           capture_output=True, text=True, timeout=10)
        out = {"ok": r.returncode == 0, "error": r.stderr.strip()}
elif op == "commit":
    remove(FILES["prev"])
elif op == "stop":
    stop()
    if req.get("release"):
        out["fence"] = release_fence()
elif op == "start":
    ok, why = start()
    out = {"ok": ok, "error": why}
elif op == "restart":
    stop()
    ok, why = start()
    out = {"ok": ok, "error": why}
elif op == "reload":
    if not os.path.exists(AGENT):
        out = {"ok": False, "error": "no agent installed (%s missing)" % AGENT}
    else:
        r = ctl("reload")
        if r["rc"] == 2 or (r["rc"] == 0 and not running()):
            ok, why = start()
            out = {"ok": ok, "error": why, "started": True}
        elif r["rc"] != 0:
            out = {"ok": False, "error": "agent refused the reload (exit %s): %s" % (r["rc"], (r["stdout"] + r["stderr"]).strip()[-300:])}
elif op == "status":
    out = ctl("status")
    out["ok"] = out["rc"] == 0
else:
    out = {"ok": False, "error": "unknown op " + op}
print(json.dumps(out))
'''


class OrchestrationError(MxoneError):
    pass


def helper_command(op: str) -> str:
    import shlex

    return f"python3 -c {shlex.quote(NODE_HELPER)} {op}"


def targets(system: System, *others: System) -> dict[str, ssh.Target]:
    """Server name -> how to reach it: its base address in each system, then its aliases.

    A server's base address changes when it joins or leaves a cluster (the old base becomes
    the LIM's alias), so every system's base address is tried, the first given first; the
    alias comes last since it may be held by the standby.
    """
    bases: dict[str, list[str]] = {}
    aliases: dict[str, list[str]] = {}
    for sysm in (system, *others):
        lim_alias = {cl.lim: cl.alias_ip for c in sysm.clusters for cl in c.lims}
        for s in sysm.servers:
            addrs = bases.setdefault(s.name, [])
            al = aliases.setdefault(s.name, [])
            try:
                ip = s.address
            except ValueError:
                continue
            if ip not in addrs:
                addrs.append(ip)
            if s.role == "lim" and s.lim in lim_alias and lim_alias[s.lim] not in al:
                al.append(lim_alias[s.lim])
    return {name: ssh.Target(name, tuple(addrs), aliases=tuple(aliases[name]))
            for name, addrs in bases.items()}


def summarize(before: agent_config.NodeConfig | None, after: agent_config.NodeConfig) -> str:
    """What changes in one node's config, in a few words."""
    def lims(c: agent_config.NodeConfig) -> str:
        return ", ".join(f"LIM {x.lim}@{x.server}" for x in c.lims)

    if before is None:
        return (f"joins cluster {after.cluster} as {after.role}; LIMs {lims(after)}; fallback "
                f"{after.fallback}; {after.failover} failover; detection "
                f"{after.timers.misses} x {after.timers.interval:g} s")
    diffs = []
    if before.cluster != after.cluster:
        diffs.append(f"cluster {before.cluster} -> {after.cluster}")
    if before.role != after.role:
        diffs.append(f"role {before.role} -> {after.role}")
    if lims(before) != lims(after):
        diffs.append(f"LIMs {lims(before)} -> {lims(after)}")
    for x in after.lims:
        old = next((y for y in before.lims if y.lim == x.lim), None)
        if old is not None and old.lock != x.lock:
            diffs.append(f"LIM {x.lim} lock {old.lock} -> {x.lock}")
        if old is not None and old.priority != x.priority:
            diffs.append(f"LIM {x.lim} priority {old.priority} -> {x.priority}")
        if old is not None and old.alias_ip != x.alias_ip:
            diffs.append(f"LIM {x.lim} alias {old.alias_ip} -> {x.alias_ip}")
    if before.fallback != after.fallback:
        diffs.append(f"fallback {before.fallback} -> {after.fallback}")
    if before.failover != after.failover:
        diffs.append(f"failover {before.failover} -> {after.failover}")
    if before.timers != after.timers:
        diffs.append(f"timers {before.timers.misses} x {before.timers.interval:g} s -> "
                     f"{after.timers.misses} x {after.timers.interval:g} s")
    if [dataclasses.astuple(s) for s in before.servers] != [dataclasses.astuple(s) for s in after.servers]:
        if not any(d.startswith("LIMs") for d in diffs):
            diffs.append("server addresses change")
    return "; ".join(diffs) or "no change but the generation"


@dataclass
class _Node:
    """One server's part in an apply: its snapshot, what was done, how it ended."""

    target: ssh.Target
    config: agent_config.NodeConfig | None  # None: the server leaves every cluster
    key: str | None
    sync: synckeys.SyncKey | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    switched: bool = False
    agent_changed: bool = False  # the agent (re)loaded the new config
    add_base: dict[str, Any] | None = None  # the new base address to configure, if missing
    added_base: bool = False
    net_request: dict[str, Any] | None = None  # netconfig request: base address persisted/undone
    net: dict[str, Any] = field(default_factory=dict)  # netconfig's inspect answer
    net_touched: bool = False  # its network config files may have been written
    step: str = "not started"
    error: str = ""
    rolled_back: str = ""
    retired_lims: list[int] = field(default_factory=list)  # its agent let these go (ctl retire)
    said: list[str] = field(default_factory=list)  # what leaving its cluster did here


class SshApplier:
    """Applies changes to every node over SSH, then writes system.toml on LIM 1.

    ``artefact``: a callable returning the agent artefact to deploy (built lazily, once).
    ``secrets_dir``: the cluster keys on LIM 1 (default: ``secrets/`` beside the config).
    ``local_name``: this server's name, for the plan line about system.toml.

    Every server in a cluster gets each new generation (also when its own config did not
    change), so that every agent reports the system's generation and a node that missed a
    change shows in the status.
    """

    def __init__(self, pool: ssh.Pool, config_path: Path, artefact: Callable[[], Artefact],
                 *, secrets_dir: Path | None = None, local_name: str | None = None,
                 verify_timeout: float = VERIFY_TIMEOUT, lock_path: Path = DEFAULT_LOCK) -> None:
        self.pool = pool
        self.config_path = config_path
        self._artefact_source = artefact
        self._artefact: Artefact | None = None
        # Beside the config: /etc/mxone/secrets for the default /etc/mxone/system.toml.
        self.secrets_dir = secrets_dir or config_path.parent / DEFAULT_SECRETS.name
        self.local_name = local_name or socket.gethostname()
        self.verify_timeout = verify_timeout
        self.lock_path = lock_path

    def artefact(self) -> Artefact:
        if self._artefact is None:
            self._artefact = self._artefact_source()
        return self._artefact

    # ---- plan ---------------------------------------------------------------------------

    def plan(self, change: Change) -> list[PlanStep]:
        before, after = _node_configs(change.before), _node_configs(change.after)
        gen0, gen1 = change.before.generation, change.after.generation
        steps = [PlanStep(name, "reached over SSH first, its host key checked (a key never "
                          "seen before is shown for you to accept)")
                 for name in sorted({s.name for s in change.after.servers}
                                    - {s.name for s in change.before.servers} - set(after))]
        for name, cfg in after.items():
            steps.append(PlanStep(name, f"node config generation {gen0} -> {gen1}: "
                                  f"{summarize(before.get(name), cfg)}"))
            if name not in before:
                steps.append(PlanStep(name, f"cluster key of {cfg.cluster} written; sync key "
                                      "written and authorized for exchange-data sync only; "
                                      "agent installed (if missing) and started"))
            else:
                steps.append(PlanStep(name, "agent reloads; it must report generation "
                                      f"{gen1}"))
        for name in before:
            if name not in after:
                steps.append(PlanStep(name, f"leaves cluster {before[name].cluster}: agent "
                                      "stopped, node config, cluster key and sync key removed"))
        steps[:0] = _leaving_plan(change)
        steps.extend(network_plan(change))
        steps.append(PlanStep(self.local_name, f"system config generation {gen1} written to "
                              f"{self.config_path}" + (" once every server above succeeded"
                                                       if steps else "")))
        return steps

    # ---- apply --------------------------------------------------------------------------

    def apply(self, change: Change, progress: Progress) -> ApplyResult:
        """Bring every node to ``change.after`` or leave all at ``change.before`` (see module)."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return ApplyResult(change.before.generation, (Outcome(
                    self.local_name, False, f"another mxone_maintenance is applying a change "
                    f"(it holds {self.lock_path}); nothing was changed: wait for it to finish "
                    f"and start the action again"),))
            on_disk = store.load(self.config_path).generation if self.config_path.exists() else 0
            if on_disk != change.before.generation:
                return ApplyResult(on_disk, (Outcome(
                    self.local_name, False, f"{self.config_path} is at generation {on_disk}, this "
                    f"change was made from {change.before.generation}; nothing was changed: "
                    f"start the action again"),))
            return self._apply_locked(change, progress)

    def _apply_locked(self, change: Change, progress: Progress) -> ApplyResult:
        before_cfg = _node_configs(change.before)
        after_cfg = _node_configs(change.after)
        gen0, gen1 = change.before.generation, change.after.generation
        reach = targets(change.before, change.after)
        new_keys: list[Path] = []
        keys = self._cluster_keys(change.after, new_keys)
        sync_keys = self._sync_keys(change.after, new_keys)
        nodes = {name: _Node(reach[name], cfg, keys[cfg.cluster], sync_keys[cfg.cluster])
                 for name, cfg in after_cfg.items()}
        for name in before_cfg:
            if name not in nodes:
                nodes[name] = _Node(reach[name], None, None)
        tracker = _Tracker(progress, total=max(1, len(nodes)) * 7 + 1)
        missed: dict[str, str] = {}  # server -> what it misses (a confirmed degraded change)
        # A server joining the system is reached (and its host key checked) before it is
        # written into the system: what cannot be reached is not added.
        joining = sorted({s.name for s in change.after.servers}
                         - {s.name for s in change.before.servers} - set(nodes))

        def fail_all_untouched(why: Mapping[str, str]) -> ApplyResult:
            self._forget_keys(new_keys)
            outcomes = []
            for name in [*nodes, *(n for n in joining if n in why)]:
                if name in why:
                    outcomes.append(Outcome(name, False, f"{why[name]}; nothing was changed"))
                else:
                    outcomes.append(Outcome(name, True, f"not changed (stays at generation {gen0})"))
            outcomes.append(Outcome(self.local_name, False, f"{self.config_path} not written: "
                                    f"the system stays at generation {gen0}"))
            tracker("stopped before any change", 1.0)
            return ApplyResult(gen0, tuple(outcomes))

        if joining:
            tracker("reaching the new server " + ", ".join(joining), 0)
            errors = self.pool.connect_all(reach[n] for n in joining)
            if errors:
                return fail_all_untouched({k: f"{v} (a server joins the system only once this "
                                           "server can reach it over SSH)" for k, v in errors.items()})
        if nodes:
            tracker("connecting to " + ", ".join(nodes), 0)
            errors = self.pool.connect_all(n.target for n in nodes.values())
            tracker.add(len(nodes))
            if errors:
                why = {k: str(v) for k, v in errors.items()}
                problem = degraded_problem(change, why)
                if problem is not None or not set(why) <= set(change.accept_behind):
                    hint = "" if problem is not None else (
                        " (this change can be made without it: it then misses this change, "
                        "is marked behind and is brought current the next time the tool "
                        f"reaches it; confirm that with {DEGRADED_FLAG} on the command line, "
                        "or the second confirmation in the menus)")
                    if problem is not None and change.degradable:
                        hint = f" ({problem})"
                    return fail_all_untouched({k: v + hint for k, v in why.items()})
                # A degraded change, confirmed: the unreachable servers miss it.
                for name in why:
                    missed[name] = (f"{summarize(before_cfg.get(name), after_cfg[name])} "
                                    f"(unreachable: {why[name]})")
                    del nodes[name]
                tracker(f"{', '.join(sorted(why))} unreachable: marked behind", None)
            finished = self.finish_rollbacks(reach, set(nodes))
            if finished:
                tracker("finished an earlier rollback on " + ", ".join(finished.succeeded)
                        if finished.succeeded else "earlier rollbacks unfinished", None)
            if not finished.ok:
                return fail_all_untouched({
                    k: f"an earlier rollback is unfinished here and still fails: {r.describe()}"
                    for k, r in finished.failed.items()})
            needs_agent = any(n.config is not None for n in nodes.values())
            try:
                art = self.artefact() if needs_agent else None
            except MxoneError as exc:
                return fail_all_untouched({k: f"no agent to deploy: {exc}" for k, n in nodes.items()
                                           if n.config is not None})
            snaps = self.pool.each([n.target for n in nodes.values()],
                                   lambda t: self._call(t, "snapshot", {
                                       "release": art.release if art else None,
                                       "sha256": art.sha256 if art else None}))
            tracker.add(len(nodes))
            bad = {k: f"cannot read its agent files: {r.describe()}" for k, r in snaps.items()
                   if not r.ok}
            if bad:
                return fail_all_untouched(bad)
            for name, r in snaps.items():
                nodes[name].snapshot = json.loads(r.stdout)
            if problem := _disk_problems(change, nodes):
                return fail_all_untouched(problem)
            for name, base in self._missing_base_addresses(nodes).items():
                nodes[name].add_base = base
            if refused := self._inspect_network_configs(change, nodes):
                return fail_all_untouched(refused)

            if refused := self._hand_back_leaving_lims(change, nodes, tracker):
                return fail_all_untouched(refused)
            try:
                results = self.pool.each([n.target for n in nodes.values()],
                                         lambda t: self._change_node(nodes[t.name], art, gen1,
                                                                     tracker))
            except KeyboardInterrupt:
                # Ctrl-C: the servers' steps in flight have finished (the pool waits for
                # them); put everything back rather than leave a half-applied change.
                return self._roll_back(nodes, gen0, gen1, new_keys, tracker,
                                       local_error="interrupted by the operator; "
                                       f"{self.config_path} not written")
            if not results.ok:
                return self._with_missed(self._roll_back(nodes, gen0, gen1, new_keys, tracker),
                                         missed, gen0)

        old_marks = self.behind()
        marks = mark_behind(old_marks, change, missed, set(nodes))
        try:
            tracker(f"{self.local_name}: writing {self.config_path}", None)
            if marks != old_marks:  # first: a server is never behind unmarked
                self._save_behind(marks)
            store.save(self.config_path, change.after)
        except (OSError, MxoneError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            if marks != old_marks:
                try:
                    self._save_behind(old_marks)
                except OSError:
                    pass
            result = self._roll_back(nodes, gen0, gen1, new_keys, tracker,
                                     local_error=f"cannot write {self.config_path}: {why}")
            return self._with_missed(result, missed, gen0)
        self._drop_unused_keys(change)
        if nodes:
            self.pool.each([n.target for n in nodes.values()],
                           lambda t: self._call(t, "commit", {}))
        xdata_outcomes: list[Outcome] = []
        if change.removes_old_xdata:
            tracker("removing older exchange-data versions that no longer fit", None)
            xdata_outcomes = self._keep_newest_xdata(change, reach)
        tracker("done", 1.0)
        outcomes = []
        for name, n in nodes.items():
            if n.config is None:
                outcomes.append(Outcome(name, True, "left its cluster: agent stopped, node config "
                                        "and cluster key removed" + "".join(
                                            f"; {line}" for line in n.said)))
            else:
                outcomes.append(Outcome(name, True, f"agent runs generation {gen1} "
                                        f"({n.config.role} in cluster {n.config.cluster})"))
        for name in joining:
            outcomes.append(Outcome(name, True, "reached over SSH, host key pinned"))
        for name, what in sorted(missed.items()):
            outcomes.append(Outcome(name, True, f"BEHIND: missed generation {gen1} ({what}); "
                                    "brought current the next time the tool reaches it"))
        outcomes.append(Outcome(self.local_name, True,
                                f"system config generation {gen1} written to {self.config_path}"))
        return ApplyResult(gen1, tuple(outcomes + xdata_outcomes))

    def _hand_back_leaving_lims(self, change: Change, nodes: Mapping[str, _Node],
                                tracker: _Tracker) -> dict[str, str]:
        """Before any config changes: every LIM that leaves its cluster is stopped for good
        wherever it runs but on its own server - on the standby, whose agent is told to let
        it go (``ctl retire``) and is waited for - so no config that no longer names a LIM
        is ever deployed beside a running copy of it. Its regular server then takes it (the
        fallback handshake) or, at the latest, runs it when it leaves (``mxone-agent
        leave``). Server -> refusal when a LIM could not be let go; what was let go is then
        taken back (nothing was changed)."""
        work: dict[str, list[int]] = {}
        cut_off: dict[str, str] = {}
        for cluster, cl, home in leaving_lims(change):
            sb = cluster.standby_name
            work.setdefault(sb, []).append(cl.lim)
            if sb not in nodes:  # unreachable: a degraded change would leave it behind
                cut_off[home.name] = (
                    f"LIM {cl.lim} leaves cluster {cluster.name}, but {sb}, its standby, cannot "
                    f"be told to let it go: once {home.name}'s agent stops, {sb} would take "
                    f"LIM {cl.lim} over while {home.name} runs it outside the cluster (two "
                    f"servers on {cl.alias_ip}); remove the LIM once {sb} can be reached")
        if cut_off:
            return cut_off
        work = {k: v for k, v in work.items() if k in nodes and nodes[k].snapshot.get("running")}
        if not work:
            return {}
        tracker("stopping the LIMs that leave their cluster where they run on the standby: "
                + ", ".join(f"LIM {', '.join(map(str, v))} on {k}" for k, v in work.items()), None)
        done = self.pool.each([nodes[k].target for k in work], lambda t: self._call(
            t, "retire-lims", {"lims": work[t.name], "timeout": HAND_BACK_TIMEOUT},
            timeout=HAND_BACK_TIMEOUT + 30))
        for name in work:
            nodes[name].retired_lims = list(work[name])
            r = done.get(name)
            if r is not None and r.ok:
                for line in json.loads(r.stdout).get("said") or []:
                    tracker(f"{name}: {line}", None)
        if done.ok:
            return {}
        self.pool.each([nodes[k].target for k in work],
                       lambda t: self._call(t, "unretire", {"lims": work[t.name]}))
        for name in work:
            nodes[name].retired_lims = []
        return {name: (f"{r.describe()}: move the LIM back to its regular server first "
                       "(`mxone_maintenance cluster fallback LIM`), then try again")
                for name, r in done.failed.items()}

    def _keep_newest_xdata(self, change: Change, reach: Mapping[str, ssh.Target]) -> list[Outcome]:
        """After a change whose older exchange-data versions no longer fit: every server of
        the clusters it touched keeps only the newest valid version of each of their LIMs.

        Runs once the new generation is in place, so a failed change never loses data; a
        server that cannot do it is reported (its versions stay until the next such change).
        """
        work: dict[str, set[int]] = {}
        before = {c.name: c for c in change.before.clusters}
        after = {c.name: c for c in change.after.clusters}
        for name in sorted(set(before) | set(after)):
            if before.get(name) == after.get(name):
                continue
            lims = {cl.lim for sysm in (change.before, change.after)
                    for c in sysm.clusters if c.name == name for cl in c.lims}
            for sysm in (change.before, change.after):
                if name in {c.name for c in sysm.clusters}:
                    for srv in sysm.cluster_servers(sysm.cluster(name)):
                        work.setdefault(srv.name, set()).update(lims)
        argv = {n: [AGENT_BIN, "xdata", "keep-newest", *map(str, sorted(lims))]
                for n, lims in work.items()}
        results = self.pool.each([reach[n] for n in work],
                                 lambda t: self.pool.run(t, argv[t.name], timeout=120))
        outcomes = []
        for name, r in results.items():
            removed: list[str] = []
            if r.ok:
                try:
                    removed = [v for vs in json.loads(r.stdout)["removed"].values() for v in vs]
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                    r = dataclasses.replace(r, ok=False, error=f"unexpected answer {r.stdout[-200:]!r}")
            if not r.ok:
                outcomes.append(Outcome(name, True, "older exchange-data versions NOT removed ("
                                        f"{r.describe()}); they are removed at the next change "
                                        "that needs it"))
            elif removed:
                outcomes.append(Outcome(name, True, "older exchange-data versions removed (the "
                                        "newest valid one of each LIM kept): " + ", ".join(removed)))
            else:
                outcomes.append(Outcome(name, True, "no older exchange-data version to remove"))
        return outcomes

    @staticmethod
    def _missing_base_addresses(nodes: Mapping[str, _Node]) -> dict[str, dict[str, Any]]:
        """Servers whose (new) base address is not on their interface yet, and that address.

        Joining a cluster gives a LIM server a new base address (the one the operator
        entered); its old base address becomes the LIM's alias. The tool configures the new
        address itself at run time, so nothing needs a restart (the agent sends its
        heartbeats from it), and writes it into the server's network configuration
        (:meth:`_write_network_config`).
        """
        missing = {}
        for name, n in nodes.items():
            have = n.snapshot.get("addresses")
            if n.config is None or have is None:
                continue
            me = n.config.local
            if [me.interface, str(me.base_ip)] not in [list(x) for x in have]:
                missing[name] = {"interface": me.interface, "address": str(me.base_ip),
                                 "prefix": me.prefix}
        return missing

    def _inspect_network_configs(self, change: Change, nodes: Mapping[str, _Node]
                                 ) -> dict[str, str]:
        """Read, on every server whose base address changes or that leaves its cluster,
        the network configuration files the change will write (for the rollback), before
        anything changes; server -> refusal for each whose configuration the tool cannot
        change (the message names the file to change by hand)."""
        for name, n in nodes.items():
            n.net_request = network_request(change, name, leaves=n.config is None)
        asked = {name: n for name, n in nodes.items() if n.net_request is not None}
        results = self.pool.each(
            [n.target for n in asked.values()],
            lambda t: self._call(t, "inspect", asked[t.name].net_request or {},
                                 command=netconfig.node_command("inspect")))
        refused = {}
        for name, r in results.items():
            if r.ok:
                asked[name].net = json.loads(r.stdout)
            else:
                refused[name] = f"its network configuration cannot follow: {r.describe()}"
        return refused

    def _write_network_config(self, node: _Node, tracker: _Tracker) -> None:
        """Write what :meth:`_inspect_network_configs` found into the node's network config
        (the new base address, or the tool's earlier change undone); the old files are kept
        for the rollback."""
        req, edits = node.net_request, node.net.get("edits") or []
        if req is None or not edits:
            return
        node.net_touched = True
        r = self._call(node.target, "apply", {**req, "expect": node.net.get("expect", {})},
                       command=netconfig.node_command("apply"))
        paths = ", ".join(e["path"] for e in edits)
        if req.get("revert"):
            what = f"network configuration put back as before the cluster ({paths})"
        else:
            what = (f"new base address {req['new']} written to {paths}: it comes back after a "
                    f"reboot, and {req['old']} (the alias) comes up only by the agent")
        self._step(node, what, tracker, r)

    # ---- one node -----------------------------------------------------------------------

    def _call(self, target: ssh.Target, op: str, request: Mapping[str, Any],
              timeout: float | None = None, command: str | None = None) -> ssh.Result:
        r = self.pool.run(target, command or helper_command(op), input=json.dumps(request),
                          timeout=timeout)
        if r.ok:
            try:
                answer = json.loads(r.stdout)
            except json.JSONDecodeError:
                return dataclasses.replace(r, ok=False, error=f"server {target.name}: {op}: "
                                           f"unexpected answer {r.stdout[-200:]!r}")
            if not answer.get("ok", False):
                return dataclasses.replace(r, ok=False, error=answer.get("error") or
                                           f"{op} failed: {answer}")
        elif not r.error:
            tail = (r.stderr.strip().splitlines() or [f"exit status {r.exit_status}"])[-1]
            r = dataclasses.replace(r, error=f"{op}: {tail}")
        return r

    def _step(self, node: _Node, what: str, tracker: _Tracker, r: ssh.Result) -> None:
        tracker.add(1, f"{node.target.name}: {what}" + ("" if r.ok else " FAILED"))
        if not r.ok:
            node.error = f"{what}: {r.describe()}"
            raise _NodeFailed(node.error)

    def _change_node(self, node: _Node, art: Artefact | None, gen1: int,
                     tracker: _Tracker) -> ssh.Result:
        t = node.target
        started = time.monotonic()
        try:
            if node.config is None:
                node.step, node.changed = "retire", True
                r = self._call(t, "retire", {"auth": _authorized_keys(node, None)})
                node.said = _leave_lines(r)
                self._step(node, "agent stopped, node config and keys removed", tracker, r)
                self._write_network_config(node, tracker)
                tracker.add(4)
                return ssh.Result(t.name, True, seconds=time.monotonic() - started)
            assert art is not None
            node.changed = True  # directories may be created from here on
            self._step(node, "prepare directories", tracker, self._call(t, "prepare-dirs", {}))
            if node.add_base is not None:
                r = self._call(t, "add-base", node.add_base)
                node.added_base = r.ok
                b = node.add_base
                self._step(node, f"new base address {b['address']}/{b['prefix']} configured on "
                           f"{b['interface']} (at run time)", tracker, r)
            self._write_network_config(node, tracker)
            if node.snapshot.get("has_release"):
                tracker.add(1, f"{t.name}: agent release {art.release} already there (upload skipped)")
            else:
                upload = f"{RELEASES}/.upload-{art.release}-{secrets.token_hex(4)}"
                r = self.pool.put(t, upload, art.path.read_bytes(), 0o600)
                if r.ok:
                    r = self._call(t, "install", {"upload": upload, "sha256": art.sha256,
                                                  "release": art.release},
                                   timeout=max(120.0, self.pool.command_timeout))
                self._step(node, f"agent release {art.release} uploaded and verified", tracker, r)
            files = []
            assert node.config is not None and node.key is not None and node.sync is not None
            auth = _authorized_keys(node, synckeys.authorized_line(node.sync, node.config.cluster))
            for name, data, mode in (
                    ("key", node.key.encode() + b"\n", 0o600),
                    ("sync", node.sync.private.encode(), 0o600),
                    ("hosts", self._peer_host_keys(node.config).encode(), 0o644),
                    ("auth", bytes.fromhex(auth["data"]), auth["mode"]),
                    ("node", (json.dumps(node.config.to_dict(), indent=2) + "\n").encode(), 0o644)):
                folder = "/root/.ssh" if name == "auth" else AGENT_DIR
                tmp = f"{folder}/.{name}.upload-{secrets.token_hex(4)}"
                r = self.pool.put(t, tmp, data, 0o600)
                if not r.ok:
                    self._step(node, "upload node config", tracker, r)
                files.append({"name": name, "tmp": tmp, "mode": mode})
            self._step(node, f"node config generation {gen1}, cluster key and sync key written",
                       tracker, self._call(t, "write", {"keep_prev": True, "files": files}))
            release_changed = node.snapshot.get("current") != f"releases/{art.release}"
            if release_changed:
                node.switched = True
                self._call(t, "switch", {"target": f"releases/{art.release}"})
            if node.snapshot.get("running") and not release_changed:
                op, what = "reload", "agent reloaded"
            elif node.snapshot.get("running"):
                op, what = "restart", f"agent restarted on release {art.release}"
            else:
                op, what = "start", "agent started"
            # Whether the agent took the new config is unknown once the order went out (a
            # lost connection says nothing); only a clean refusal means it kept the old one.
            node.agent_changed = True
            r = self._call(t, op, {})
            if not r.ok and r.error.startswith(REFUSED):
                node.agent_changed = False
            self._step(node, what, tracker, r)
            self._step(node, f"agent reports generation {gen1}", tracker,
                       self._verify(t, gen1))
        except _NodeFailed:
            return ssh.Result(t.name, False, error=node.error, seconds=time.monotonic() - started)
        return ssh.Result(t.name, True, seconds=time.monotonic() - started)

    def _verify(self, target: ssh.Target, generation: int) -> ssh.Result:
        deadline = time.monotonic() + self.verify_timeout
        last = "no answer"
        while True:
            r = self.pool.run(target, [AGENT_BIN, "ctl", "status"],
                              timeout=min(20.0, self.pool.command_timeout))
            if r.ok:
                try:
                    got = json.loads(r.stdout).get("generation")
                except (json.JSONDecodeError, AttributeError):
                    got, last = None, f"ctl status printed no JSON: {r.stdout[-200:]!r}"
                if got == generation:
                    return r
                if got is not None:
                    last = f"agent runs generation {got}, not {generation}"
            else:
                last = r.describe()
            if time.monotonic() > deadline:
                return ssh.Result(target.name, False, error=f"{last} after {self.verify_timeout:g} s")
            time.sleep(0.2)

    # ---- rollback -----------------------------------------------------------------------

    def _roll_back(self, nodes: dict[str, _Node], gen0: int, gen1: int, new_keys: list[Path],
                   tracker: _Tracker, local_error: str = "") -> ApplyResult:
        tracker("rolling back to generation %d" % gen0, None)
        changed = [n for n in nodes.values() if n.changed]
        plans = {n.target.name: _undo_plan(n, gen0) for n in changed}
        undone = self.pool.each([n.target for n in changed], lambda t: self._undo(t, plans[t.name]))
        untouched = [n for n in nodes.values() if n.retired_lims and not n.changed]
        self.pool.each([n.target for n in untouched], lambda t: self._call(
            t, "unretire", {"lims": nodes[t.name].retired_lims}))
        self._forget_keys(new_keys)
        outcomes = []
        for name, n in nodes.items():
            r = undone.get(name)
            if r is not None and not r.ok:
                self._journal(name, plans[name])
                back = (f"ROLLBACK NOT FINISHED ({r.describe()}); it is kept in "
                        f"{self.journal_dir / (name + '.json')} and finished as soon as {name} "
                        f"answers again (next change, or `mxone_maintenance cluster repair`)")
            else:
                back = f"rolled back to generation {gen0}"
            if n.error:
                outcomes.append(Outcome(name, False, f"failed at {n.error}; {back}"))
            elif r is None:
                outcomes.append(Outcome(name, True, f"not changed (stays at generation {gen0})"))
            else:
                outcomes.append(Outcome(name, r.ok, f"changed, then {back} (another server failed)"))
        outcomes.append(Outcome(self.local_name, False, local_error or
                                f"{self.config_path} not written: the system stays at generation {gen0}"))
        tracker("rolled back", 1.0)
        return ApplyResult(gen0, tuple(outcomes))

    def _undo(self, t: ssh.Target, plan: Mapping[str, Any]) -> ssh.Result:
        """Put one node back to its snapshot: files byte for byte, release link, agent."""
        snap = plan["snapshot"]
        if not snap.get("running"):
            # It ran no agent before: stop the one started now, and remove its fence while
            # that agent's release is still installed (its aliases answer freely again).
            r = self._call(t, "stop", {"release": True})
            if not r.ok:
                return r
        if plan.get("network"):  # before the agent files: /etc/mxone may go with them
            r = self._call(t, "restore", plan["network"],
                           command=netconfig.node_command("restore"))
            if not r.ok:
                return r
        r = self._call(t, "restore", {"files": snap["files"], "dirs": snap["dirs"]})
        if not r.ok:
            return r
        if plan.get("remove_base"):
            r = self._call(t, "del-base", plan["remove_base"])
            if not r.ok:
                return r
        if plan.get("unretire") and snap.get("running") and not plan["retired"]:
            # The LIMs that were to leave stay: the agent may take them over again (best
            # effort: its retire order ends on its own after a while in any case).
            self._call(t, "unretire", {"lims": plan["unretire"]})
        if plan["switched"]:
            r = self._call(t, "switch", {"target": snap.get("current")})
            if not r.ok:
                return r
        if not snap.get("running"):
            return r
        if plan["switched"] or plan["retired"]:
            return self._call(t, "restart", {})
        if plan["agent_changed"]:
            return self._call(t, "reload", {})
        return r  # the agent never took the new config: nothing to undo there

    # ---- servers behind: they missed a confirmed degraded change ------------------------

    @staticmethod
    def _with_missed(result: ApplyResult, missed: Mapping[str, str], gen0: int) -> ApplyResult:
        return ApplyResult(result.generation, (*result.outcomes[:-1], *(
            Outcome(name, True, f"unreachable, not changed (stays at generation {gen0})")
            for name in sorted(missed)), *result.outcomes[-1:]))

    @property
    def behind_path(self) -> Path:
        return behind_file(self.config_path)

    def behind(self) -> dict[str, dict[str, Any]]:
        """Server -> its behind mark (``has``: the generation it last got, ``cluster``,
        ``missed``: what it missed), kept on LIM 1 beside the config."""
        return load_behind(self.behind_path)

    def _save_behind(self, marks: Mapping[str, Any]) -> None:
        if not marks:
            self.behind_path.unlink(missing_ok=True)
            return
        self.behind_path.parent.mkdir(parents=True, exist_ok=True)
        store.atomic_write(self.behind_path, (json.dumps(marks, indent=1, sort_keys=True)
                                              + "\n").encode(), mode=0o600)

    def unreachable(self, change: Change) -> dict[str, str]:
        """The servers the change touches that cannot be reached now (name -> why).

        A server that answers with a host key other than the pinned one is not "down": it
        is refused by the change itself (HOST KEY CHANGED, or asked about when unknown),
        never left behind as if it were unreachable."""
        nodes = set(_node_configs(change.before)) | set(_node_configs(change.after))
        reach = targets(change.before, change.after)
        errors = self.pool.connect_all(reach[n] for n in sorted(nodes))
        return {k: str(v) for k, v in errors.items() if not isinstance(v, ssh.HostKeyError)}

    def catch_up(self, system: System, progress: Progress | None = None) -> list[Outcome]:
        """Bring every server marked behind that answers now to the system's generation
        (its node config, keys and agent as in any change, all or nothing on that server);
        one that does not answer stays behind, one that cannot be brought current safely is
        refused with the reason and stays behind. Skipped (empty answer) while another
        change runs or when the config moved on meanwhile."""
        marks = self.behind()
        if not marks:
            return []
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []
            on_disk = store.load(self.config_path).generation if self.config_path.exists() else 0
            if on_disk != system.generation:
                return []
            return self._catch_up_locked(system, self.behind(), progress)

    def _catch_up_locked(self, system: System, marks: dict[str, dict[str, Any]],
                         progress: Progress | None) -> list[Outcome]:
        gen = system.generation
        cfgs = _node_configs(system)
        reach = targets(system)
        outcomes: list[Outcome] = []
        refused = {}
        for name, m in marks.items():
            cfg = cfgs.get(name)
            if cfg is None:
                refused[name] = (f"{name} is behind but in no cluster now: the tool cannot "
                                 "bring it current; remove its line from "
                                 f"{self.behind_path} once its agent is stopped by hand")
            elif m.get("cluster") not in (None, cfg.cluster):
                refused[name] = (f"{name} fell behind in cluster {m.get('cluster')} and is in "
                                 f"cluster {cfg.cluster} now: not brought current; remove it "
                                 "from its cluster and add it again")
        for name, why in refused.items():
            outcomes.append(Outcome(name, False, f"BEHIND, refused: {why}"))
        wanted = [n for n in marks if n not in refused and n in reach]
        if not wanted:
            return outcomes
        tracker = _Tracker(progress or (lambda _l, _f: None), total=len(wanted) * 7 + 1)
        tracker("reaching the servers behind: " + ", ".join(wanted), 0)
        errors = self.pool.connect_all(reach[n] for n in wanted)
        for name in wanted:
            if name in errors:
                outcomes.append(Outcome(name, False, f"BEHIND: still unreachable ({errors[name]}); "
                                        f"stays at generation {marks[name].get('has')}"))
        ready = [n for n in wanted if n not in errors]
        if not ready:
            return outcomes
        created: list[Path] = []
        keys, syncs = self._cluster_keys(system, created), self._sync_keys(system, created)
        if created:  # a new key would differ from the one its peers hold: never deployed
            self._forget_keys(created)
            return outcomes + [Outcome(n, False, "BEHIND, refused: the cluster keys of its "
                                       f"cluster are missing in {self.secrets_dir} (they were "
                                       "created with the cluster); stays behind")
                               for n in ready]
        finished = self.finish_rollbacks(reach, set(ready))
        for name, r in finished.failed.items():
            outcomes.append(Outcome(name, False, "BEHIND: an earlier rollback is unfinished here "
                                    f"and still fails: {r.describe()}; stays behind"))
        ready = [n for n in ready if n not in finished.failed]
        nodes = {n: _Node(reach[n], cfgs[n], keys[cfgs[n].cluster], syncs[cfgs[n].cluster])
                 for n in ready}
        try:
            art = self.artefact()
        except MxoneError as exc:
            return outcomes + [Outcome(n, False, f"BEHIND: no agent to deploy: {exc}")
                               for n in ready]

        def one(t: ssh.Target) -> ssh.Result:
            node = nodes[t.name]
            r = self._call(t, "snapshot", {"release": art.release, "sha256": art.sha256})
            if not r.ok:
                return dataclasses.replace(r, error=f"cannot read its agent files: {r.describe()}")
            node.snapshot = json.loads(r.stdout)
            done = self._change_node(node, art, gen, tracker)
            if done.ok:
                self.pool.each([t], lambda t2: self._call(t2, "commit", {}))
                return done
            plan = _undo_plan(node, int(marks[t.name].get("has") or 0))
            undone = self._undo(t, plan) if node.changed else None
            if undone is not None and not undone.ok:
                self._journal(t.name, plan)
                return dataclasses.replace(done, error=f"{done.describe()}; ROLLBACK NOT "
                                           f"FINISHED ({undone.describe()}), kept in "
                                           f"{self.journal_dir / (t.name + '.json')}")
            return dataclasses.replace(done, error=f"{done.describe()}; put back as it was")

        results = self.pool.each([nodes[n].target for n in ready], one)
        current = {n for n, r in results.items() if r.ok}
        if current:
            left = {k: v for k, v in self.behind().items() if k not in current}
            self._save_behind(left)
        for name, r in results.items():
            if r.ok:
                outcomes.append(Outcome(name, True, f"was behind: brought to generation {gen} "
                                        f"(it had {marks[name].get('has')})"))
            else:
                outcomes.append(Outcome(name, False, f"BEHIND: not brought current: "
                                        f"{r.describe()}; stays behind"))
        tracker("done", 1.0)
        return outcomes

    # ---- rollbacks that could not reach a server ----------------------------------------

    @property
    def journal_dir(self) -> Path:
        return self.config_path.parent / "pending-rollback"

    def _journal(self, server: str, plan: Mapping[str, Any]) -> None:
        self.journal_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store.atomic_write(self.journal_dir / f"{server}.json",
                           json.dumps(plan, indent=1).encode(), mode=0o600)

    def pending_rollbacks(self) -> dict[str, dict[str, Any]]:
        """Server -> the rollback that could not reach it (kept on LIM 1 until finished)."""
        out = {}
        if self.journal_dir.is_dir():
            for f in sorted(self.journal_dir.glob("*.json")):
                try:
                    out[f.stem] = json.loads(f.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
        return out

    def finish_rollbacks(self, reach: Mapping[str, ssh.Target],
                         only: set[str] | None = None) -> ssh.GroupResult:
        """Finish every pending rollback (of the servers in ``only``); journal removed on success."""
        pending = {k: v for k, v in self.pending_rollbacks().items()
                   if (only is None or k in only) and k in reach}

        def work(t: ssh.Target) -> ssh.Result:
            r = self._undo(t, pending[t.name])
            if r.ok:
                (self.journal_dir / f"{t.name}.json").unlink(missing_ok=True)
            return r

        result = self.pool.each([reach[n] for n in pending], work)
        if self.journal_dir.is_dir() and not any(self.journal_dir.iterdir()):
            self.journal_dir.rmdir()
        return result

    # ---- cluster keys on LIM 1 ----------------------------------------------------------

    def key_path(self, cluster: str) -> Path:
        return self.secrets_dir / f"{cluster}.key"

    def _cluster_keys(self, system: System, created: list[Path]) -> dict[str, str]:
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

    def _sync_keys(self, system: System, created: list[Path]) -> dict[str, synckeys.SyncKey]:
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

    def _peer_host_keys(self, config: agent_config.NodeConfig) -> str:
        """known_hosts for a node's agent: every cluster server's pinned key by base address."""
        entries = []
        for s in config.servers:
            key = self.pool.known_hosts.pinned(s.name)
            if key is not None:
                entries.append((str(s.base_ip), key.get_name(), key.get_base64()))
        return synckeys.known_hosts_text(entries)

    def _forget_keys(self, created: list[Path]) -> None:
        for path in created:
            path.unlink(missing_ok=True)
        if created and self.secrets_dir.exists() and not any(self.secrets_dir.iterdir()):
            self.secrets_dir.rmdir()

    def _drop_unused_keys(self, change: Change) -> None:
        live = {c.name for c in change.after.clusters}
        for c in change.before.clusters:
            if c.name not in live:
                self.key_path(c.name).unlink(missing_ok=True)
                self.sync_key_path(c.name).unlink(missing_ok=True)


def leaving_lims(change: Change) -> list[tuple[Cluster, ClusterLim, Server]]:
    """The LIMs that leave their cluster in ``change`` (remove LIM, delete cluster): each
    with its cluster and its regular server as they are before the change."""
    after = {c.name: c for c in change.after.clusters}
    out = []
    for c in change.before.clusters:
        kept = after.get(c.name)
        for cl in c.lims:
            if kept is None or cl.lim not in kept.lim_numbers():
                out.append((c, cl, change.before.server_for_lim(cl.lim)))
    return out


def _leaving_plan(change: Change) -> list[PlanStep]:
    """What becomes of each LIM that leaves its cluster, and of its server's addresses."""
    steps = []
    gone = {c.name for c in change.before.clusters} - {c.name for c in change.after.clusters}
    for c, cl, home in leaving_lims(change):
        n, sb = cl.lim, c.standby_name
        steps.append(PlanStep(sb, f"first, before any config changes: LIM {n} leaves cluster "
                              f"{c.name}; if it runs on {sb} now, {sb} stops it and removes its "
                              f"alias {cl.alias_ip} (calls to LIM {n} drop until {home.name} runs "
                              f"it, a few seconds) and takes it over no more; the change stops "
                              f"with nothing changed if {sb} still runs it after "
                              f"{HAND_BACK_TIMEOUT:.0f} s"))
        steps.append(PlanStep(home.name, f"LIM {n} then runs on {home.name} outside any "
                              f"cluster (started there if it does not run), reachable at "
                              f"{cl.alias_ip}, the address its phones and gateways use, which "
                              f"is its base address again; {home.address}, its base address in "
                              f"the cluster, is no longer used (it stays up on {home.name} until "
                              "its network is restarted)"))
    for name in sorted(gone):
        sb = change.before.cluster(name).standby_name
        steps.append(PlanStep(sb, f"holds no LIM once cluster {name} is deleted (any LIM still "
                              "on it is stopped and its alias removed); its own base address "
                              "stays"))
    return steps


def _leave_lines(r: ssh.Result) -> list[str]:
    """What leaving its cluster did on a node (the helper's ``retire`` answer)."""
    try:
        said = json.loads(r.stdout).get("leave") if r.ok else None
    except (json.JSONDecodeError, AttributeError):
        return []
    return [str(x) for x in said] if isinstance(said, list) else []


def _authorized_keys(node: _Node, line: str | None) -> dict[str, Any] | None:
    """The node's root authorized_keys with the sync line set to ``line`` (None removes
    it), from its snapshot; None when there is nothing to write (no file, no line)."""
    snap = (node.snapshot.get("files") or {}).get("auth")
    if snap is None and line is None:
        return None
    current = bytes.fromhex(snap["data"]).decode(errors="surrogateescape") if snap else ""
    merged = synckeys.merged_authorized_keys(current, line)
    return {"data": merged.encode(errors="surrogateescape").hex(), "mode": snap["mode"] if snap else 0o600}


def _disk_problems(change: Change, nodes: Mapping[str, _Node]) -> dict[str, str]:
    """The standby-disk rule for the clusters of ``change.after``, on the disk facts the
    nodes reported in their snapshots: the standby needs room for two backups of each of
    its regular servers (what exchange data already uses on the standby counts as room,
    since the cluster's backups replace it). Server -> refusal, for each standby short of it.
    """
    from mxone_maintenance import rules
    from mxone_maintenance.model import NodeFacts

    facts = {}
    for name, n in nodes.items():
        x = n.snapshot.get("xdata")
        if n.config is None or not isinstance(x, dict):
            continue
        own = n.config.lim_of(name)
        backup = int((x.get("newest") or {}).get(str(own.lim), 0)) if own else 0
        facts[name] = NodeFacts(int(x.get("free", 0)) + int(x.get("used", 0)), backup)
    return {str(v.value): f"refused by the standby-disk rule: {v.detail} (exchange-data "
            "versions of the regular servers, as they report them)"
            for v in rules.check(change.after, facts) if v.rule == "standby-disk"}


def network_request(change: Change, name: str, leaves: bool) -> dict[str, Any] | None:
    """What server ``name``'s own network configuration needs in ``change`` (a
    :mod:`~mxone_maintenance.netconfig` request), or None.

    A server that stays in (or joins) a cluster with a new base address gets it written in
    place of its old one, which is now its LIM's alias; a server leaving its cluster
    (``leaves``) gets the tool's earlier change undone.
    """
    old, new = _server(change.before, name), _server(change.after, name)
    if leaves:
        server = old or new
        return {"interface": server.interface, "revert": True} if server else None
    if old is None or new is None or old.address == new.address:
        return None
    cluster = change.after.cluster_of_server(name)
    why = (f"base address {new.address} replaces {old.address}, now the alias of LIM {new.lim}"
           + (f" in cluster {cluster.name}" if cluster else "") + ", which only the agent "
           "brings up; undone when the LIM leaves the cluster")
    return {"interface": new.interface, "old": old.address, "new": new.address, "why": why}


def network_plan(change: Change) -> list[PlanStep]:
    """The plan's lines about the servers' own network configuration."""
    before, after = _node_configs(change.before), _node_configs(change.after)
    steps = []
    for name in after:
        req = network_request(change, name, leaves=False)
        if req is not None:
            steps.append(PlanStep(name, f"base address {req['old']} -> {req['new']}: "
                                  f"{req['new']} added on {req['interface']} and written into the "
                                  f"server's network configuration in place of {req['old']}, so "
                                  f"that it comes back after a reboot and {req['old']} (the alias) "
                                  "comes up only by the agent; refused before any change if that "
                                  "configuration is in a form the tool cannot change"))
    for name in before:
        old = _server(change.before, name)
        if name not in after and old is not None and old.role == "lim":
            steps.append(PlanStep(name, "network configuration put back as it was before the "
                                  "cluster (the tool's change for its base address undone)"))
    return steps


def _server(system: System, name: str) -> Server | None:
    return next((s for s in system.servers if s.name == name), None)


def _undo_plan(node: _Node, generation: int) -> dict[str, Any]:
    return {"generation": generation, "snapshot": node.snapshot, "switched": node.switched,
            "retired": node.config is None, "agent_changed": node.agent_changed,
            "unretire": list(node.retired_lims),
            "remove_base": node.add_base if node.added_base else None,
            "network": ({"files": node.net.get("files") or {}, "dirs": node.net.get("dirs") or {}}
                        if node.net_touched else None)}


class _NodeFailed(Exception):
    pass


class _Tracker:
    """Turns step counts into (line, fraction) progress calls, from many threads."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        self.lock = threading.Lock()

    def add(self, steps: int, line: str | None = None) -> None:
        with self.lock:
            self.done = min(self.total, self.done + steps)
            if line:
                self.progress(line, self.done / self.total)

    def __call__(self, line: str, fraction: float | None) -> None:
        with self.lock:
            self.progress(line, self.done / self.total if fraction is None else fraction)


def _node_configs(system: System) -> dict[str, agent_config.NodeConfig]:
    if not system.clusters:
        return {}
    return nodeconfig.all_nodes(system)


# ---- degraded changes: servers that miss a change ---------------------------------------

DEGRADED_FLAG = "--degraded"


def behind_file(config_path: Path) -> Path:
    return config_path.parent / "behind.json"


def load_behind(path: Path) -> dict[str, dict[str, Any]]:
    """The behind marks in ``path`` (see :meth:`SshApplier.behind`); none when no file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MxoneError(f"{path}: unreadable ({exc}); it names the servers that missed a "
                         "change: repair or remove it by hand") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise MxoneError(f"{path}: not an object of server marks; repair or remove it by hand")
    return data


def degraded_problem(change: Change, unreachable: Mapping[str, str]) -> str | None:
    """Why this change cannot be made without the ``unreachable`` servers (None: it can,
    once the operator confirms it). Only a change that makes the system safer or is needed
    to recover may leave a server behind; a server that leaves its cluster with the change,
    or joins the system, must be reached; at least one server must get it."""
    if not unreachable:
        return None
    names = ", ".join(sorted(unreachable))
    if not change.degradable:
        return (f"{names} unreachable; this change needs every server of the system "
                "reachable (only lock, unlock, fallback type or priority, remove LIM, delete "
                "cluster and remove server can be made while a server is down)")
    before, after = _node_configs(change.before), _node_configs(change.after)
    leaving = sorted(n for n in unreachable if n in before and n not in after)
    if leaving:
        return (f"{', '.join(leaving)} unreachable and leaves its cluster with this change: "
                "a server is let go only when it can be reached (its LIM and alias are "
                "handed to it)")
    for cluster, cl, home in leaving_lims(change):
        if cluster.standby_name in unreachable:
            return (f"{cluster.standby_name} unreachable: LIM {cl.lim} leaves cluster "
                    f"{cluster.name} and its standby must be told to let it go (else it "
                    f"takes LIM {cl.lim} over while {home.name} runs it outside the cluster); "
                    f"remove the LIM once {cluster.standby_name} can be reached")
    joining = sorted(n for n in unreachable if n not in before and n not in after)
    if joining:
        return f"{', '.join(joining)} unreachable: a server joins the system only when reached"
    if after and not set(after) - set(unreachable):
        return f"{names} unreachable: no server of the change can be reached"
    return None


def degraded_plan(change: Change, unreachable: Mapping[str, str]) -> list[PlanStep]:
    """What each unreachable server misses (for the plan shown before the confirmation)."""
    before, after = _node_configs(change.before), _node_configs(change.after)
    gen1 = change.after.generation
    steps = []
    for name in sorted(unreachable):
        cfg = after.get(name)
        missed = summarize(before.get(name), cfg) if cfg is not None else "its leaving"
        steps.append(PlanStep(name, f"UNREACHABLE ({unreachable[name]}): misses generation "
                              f"{gen1} ({missed}); marked behind, brought to the current "
                              "generation the next time the tool reaches it"))
    return steps


def mark_behind(marks: Mapping[str, Mapping[str, Any]], change: Change,
                missed: Mapping[str, str], current: set[str]) -> dict[str, dict[str, Any]]:
    """The behind marks after a change: each server in ``missed`` (name -> what it missed)
    keeps the generation it last had and adds what it missed; each in ``current`` (it got
    the change, or left its cluster) is no longer behind."""
    after = _node_configs(change.after)
    names = {s.name for s in change.after.servers}
    out = {k: dict(v) for k, v in marks.items() if k not in current and k in names}
    for name, what in missed.items():
        old = out.get(name, {})
        out[name] = {"has": old.get("has", change.before.generation),
                     "cluster": after[name].cluster if name in after else old.get("cluster"),
                     "missed": [*old.get("missed", []), f"generation {change.after.generation}: {what}"]}
    return out


def behind_lines(marks: Mapping[str, Mapping[str, Any]], generation: int) -> list[str]:
    """Show status / list clusters: one line per server that missed changes."""
    return [f"BEHIND: {name} has generation {m.get('has')}, the system is at {generation} "
            f"(missed: {'; '.join(m.get('missed', []))}); brought current the next time the "
            "tool reaches it (any action or status refresh)"
            for name, m in sorted(marks.items())]
