"""The agent as a service on its node: started, stopped, restarted, reloaded, asked.

Under systemd (``/run/systemd/system`` exists) through ``systemctl`` and the unit file
:data:`~mxone_agent.paths.UNIT` (the installed release's own unit text, rewritten only
when it differs); elsewhere as a daemon with a pidfile. The agent that runs, and its
``ctl``, ``leave`` and ``fence`` commands, are always those of the release in ``current``:
they belong to the state that release keeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from typing import Any

from mxone_agent import paths
from mxone_agent.node import files

DEFAULT_UNIT = f"""[Unit]
Description=MX-ONE server redundancy agent
After=network-online.target

[Service]
ExecStart={paths.AGENT_BIN} run --log {paths.LOG}
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""
"""The unit written when the release carries none (an old release)."""
UNIT_SOURCES = (f"{paths.CURRENT}/lib/mxone_agent/systemd/mxone-agent.service",
                f"{paths.CURRENT}/lib/mxone_agent/mxone-agent.service")
REFUSED = "agent refused the reload"
"""How a clean refusal of ``reload`` begins (the tool then knows the agent kept its config)."""


def systemd() -> bool:
    return os.path.isdir("/run/systemd/system")


def agent_pid() -> int | None:
    try:
        with open(paths.PIDFILE) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except (OSError, ValueError):
        return None
    return pid if b"mxone-agent" in cmd else None


def running() -> bool:
    if systemd():
        return subprocess.run(["systemctl", "is-active", "--quiet", "mxone-agent"],
                              check=False).returncode == 0
    return agent_pid() is not None


def stop() -> None:
    if systemd():
        subprocess.run(["systemctl", "stop", "mxone-agent"], capture_output=True, timeout=30,
                       check=False)
        return
    pid = agent_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.05)
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
    try:
        os.unlink(paths.PIDFILE)
    except FileNotFoundError:
        pass


def _unit_text() -> str:
    for source in UNIT_SOURCES:
        if os.path.exists(source):
            with open(source) as f:
                return f.read()
    return DEFAULT_UNIT


def start() -> tuple[bool, str]:
    """Start the agent of ``current``; (started, why not)."""
    if systemd():
        unit = _unit_text()
        old = files.read("", paths.UNIT)
        if old is None or bytes.fromhex(old["data"]) != unit.encode():
            files.write_atomic(paths.UNIT, unit.encode(), 0o644)
            subprocess.run(["systemctl", "daemon-reload"], capture_output=True, timeout=30,
                           check=False)
        subprocess.run(["systemctl", "enable", "--now", "mxone-agent"], capture_output=True,
                       text=True, timeout=30, check=False)
        r = subprocess.run(["systemctl", "restart", "mxone-agent"], capture_output=True,
                           text=True, timeout=30, check=False)
        return r.returncode == 0, r.stderr.strip()
    os.makedirs(paths.RUN_DIR, exist_ok=True)
    os.makedirs(paths.LOG_DIR, exist_ok=True)
    try:
        os.unlink(paths.PIDFILE)
    except FileNotFoundError:
        pass
    # Output to a file, not a pipe: the daemon's children may keep a pipe open for ever.
    with tempfile.TemporaryFile() as err:
        try:
            ran = subprocess.run([paths.AGENT_BIN, "run", "--daemon", "--pidfile", paths.PIDFILE,
                                  "--log", paths.LOG], stdout=err, stderr=err, timeout=30,
                                 stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"mxone-agent run: {e}"
        err.seek(0)
        said = err.read().decode(errors="replace").strip()
    if ran.returncode != 0:
        return False, f"mxone-agent run exited {ran.returncode}: {said[-300:]}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if agent_pid() is not None:
            return True, ""
        time.sleep(0.05)
    return False, f"mxone-agent run: no pidfile {paths.PIDFILE} within 15 s (see {paths.LOG})"


def ctl(*args: str) -> dict[str, Any]:
    """``mxone-agent ctl ARGS`` of ``current``: {"rc" (None: it did not run), "stdout",
    "stderr"}."""
    try:
        r = subprocess.run([paths.AGENT_BIN, "ctl", *args], capture_output=True, text=True,
                           timeout=20, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"rc": None, "stdout": "", "stderr": str(e)}
    return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


def ctl_json(*args: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """:func:`ctl` and its answer as a JSON object (None when it printed none)."""
    r = ctl(*args)
    try:
        data = json.loads(r["stdout"])
    except ValueError:
        data = None
    return r, data if isinstance(data, dict) else None


def said(r: dict[str, Any], last: int = 300) -> str:
    """The end of what a command printed, for a message."""
    return str(r["stdout"] + r["stderr"]).strip()[-last:]


def release_fence() -> str:
    """Remove the fence of ``current``'s agent; a line saying what happened.

    The agent's self-fencing leases silence this node's aliases once no agent renews them;
    a node leaving its cluster (or one that ran no agent before a rolled-back change) gets
    its addresses back as plain addresses."""
    if not os.path.exists(paths.AGENT_BIN):
        return "no agent installed here: no fence to remove"
    try:
        r = subprocess.run([paths.AGENT_BIN, "fence", "release"], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"fence not removed: {e}"
    return (r.stdout + r.stderr).strip()


def leave_cluster() -> list[str]:
    """The node leaves its cluster, its agent stopped (``mxone-agent leave``): its own LIM
    keeps running on the LIM's alias as a plain address, any other LIM here is stopped and
    its alias removed, the fence removed. Lines saying what was done."""
    if not os.path.exists(paths.AGENT_BIN):
        return ["no agent installed here: no LIM to keep or stop, no fence"]
    try:
        r = subprocess.run([paths.AGENT_BIN, "leave"], capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [f"LEAVE FAILED: {e}", release_fence()]
    try:
        answer = json.loads(r.stdout)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("ok"):
        return [str(x) for x in answer.get("done") or []]
    if "invalid choice" in r.stderr:  # an agent release older than `leave`
        return [release_fence()]
    why = answer.get("error") if isinstance(answer, dict) else (r.stdout + r.stderr).strip()[-300:]
    return [f"LEAVE FAILED: {why}", release_fence()]


def reload() -> dict[str, Any]:
    """Tell the agent to reload its config; started instead when it does not run."""
    if not os.path.exists(paths.AGENT_BIN):
        return {"ok": False, "error": f"no agent installed ({paths.AGENT_BIN} missing)"}
    r = ctl("reload")
    if r["rc"] == 2 or (r["rc"] == 0 and not running()):
        ok, why = start()
        return {"ok": ok, "error": why, "started": True}
    if r["rc"] != 0:
        return {"ok": False, "error": f"{REFUSED} (exit {r['rc']}): {said(r)}"}
    return {"ok": True}
