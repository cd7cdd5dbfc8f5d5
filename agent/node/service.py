"""The agent as a service on its node: started, stopped, restarted, reloaded, asked.

Under systemd (``/run/systemd/system`` exists) through ``systemctl`` and the unit file
:data:`~mxone_agent.paths.UNIT` (the installed release's own unit text, rewritten only
when it differs); elsewhere as a daemon with a pidfile. The agent that runs, and its
``ctl``, ``leave`` and ``fence`` commands, are always those of the release in ``current``:
they belong to the state that release keeps.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
from typing import Any

from mxone_agent import paths, sdnotify
from mxone_agent.node import files

UNIT_SOURCE = "lib/mxone_agent/systemd/mxone-agent.service"
"""A release's unit, under its directory (the file :data:`mxone_agent.sdnotify.UNIT_FILE`)."""
SHIPPED_UNITS = frozenset({
    # The texts earlier deployers wrote to OLD_UNIT (sha256): the first fallback, and the
    # first two versions of the shipped unit file.
    "aec3fb8ec0e9a6d8b319761344cd6f640f3f7873daba409d584f4782c0c3ea7c",
    "3f15c5375a98755a00a9c77d5efeae795de79d61c4f1d403a12e59587669c0a4",
    "adab58c266d914cfc4b35e159610fd5578f81bc033590dee5c8990defc0766d3",
})
"""Units this project shipped before any release on a node carried one of its own."""
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
    """The unit of the release in ``current`` (the one that will run); this release's own
    when that one carries none."""
    try:
        with open(os.path.join(paths.CURRENT, UNIT_SOURCE), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return sdnotify.unit_text()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shipped_units(root: str = "") -> set[str]:
    """The sha256 of every unit this project shipped that may sit on this node: the known
    old ones and those of the releases unpacked here."""
    found = set(SHIPPED_UNITS)
    for release in glob.glob(os.path.join(root + paths.RELEASES, "*", UNIT_SOURCE)):
        try:
            with open(release, "rb") as f:
                found.add(_sha256(f.read()))
        except OSError:
            continue
    try:
        found.add(_sha256(sdnotify.unit_text().encode()))
    except OSError:
        pass
    return found


def install_unit(unit: str, root: str = "") -> tuple[bool, list[str]]:
    """Put ``unit`` at :data:`~mxone_agent.paths.UNIT` (rewritten only when it differs) and
    remove a copy an earlier deployer left at :data:`~mxone_agent.paths.OLD_UNIT`, which
    would shadow it - only when it is byte for byte one this project shipped; an
    administrator's own file there is left in place, with a warning. (changed, warnings)."""
    changed, warnings = False, []
    target = root + paths.UNIT
    old = files.read(root, paths.UNIT)
    if old is None or bytes.fromhex(old["data"]) != unit.encode():
        os.makedirs(os.path.dirname(target), exist_ok=True)
        files.write_atomic(target, unit.encode(), 0o644)
        changed = True
    stale = root + paths.OLD_UNIT
    if os.path.islink(stale):
        warnings.append(f"{paths.OLD_UNIT} is a link to {os.readlink(stale)}: left in place; "
                        f"it shadows {paths.UNIT} (remove it, or `systemctl unmask "
                        "mxone-agent` when it masks the unit)")
    elif os.path.exists(stale):
        with open(stale, "rb") as f:
            data = f.read()
        if _sha256(data) in shipped_units(root):
            os.unlink(stale)
            files.fsync_dir(os.path.dirname(stale))
            changed = True
        else:
            warnings.append(f"{paths.OLD_UNIT} is not a unit this tool wrote: left in place; "
                            f"it shadows {paths.UNIT}, so the agent runs as that file says "
                            "(remove it and keep your settings in a drop-in: `systemctl edit "
                            "mxone-agent`)")
    return changed, warnings


LOGROTATE_SOURCE = "lib/mxone_agent/logrotate/mxone-agent"
"""A release's logrotate config, under its directory (installed at :data:`paths.LOGROTATE`)."""


def install_logrotate(release: str, root: str = "") -> list[str]:
    """The logrotate config of ``release`` (a release directory) at
    :data:`~mxone_agent.paths.LOGROTATE`, rewritten only when it differs, when logrotate's
    directory is there (the agent's log files and alarms.log rotate by it). Warnings."""
    if not os.path.isdir(root + os.path.dirname(paths.LOGROTATE)):
        return []
    try:
        with open(os.path.join(release, LOGROTATE_SOURCE), "rb") as f:
            text = f.read()
    except OSError as e:
        return [f"{paths.LOGROTATE} not installed: the release's config: {e.strerror}"]
    old = files.read(root, paths.LOGROTATE)
    if old is None or bytes.fromhex(old["data"]) != text:
        try:
            files.write_atomic(root + paths.LOGROTATE, text, 0o644)
        except OSError as e:
            return [f"{paths.LOGROTATE} not installed: {e.strerror}"]
    return []


def _systemctl(*args: str) -> tuple[bool, str]:
    """``systemctl ARGS``: (succeeded, what it said when it did not)."""
    try:
        r = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"systemctl {' '.join(args)}: {e}"
    if r.returncode == 0:
        return True, ""
    words = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}")[-300:]
    return False, f"systemctl {' '.join(args)} failed: {words}"


def start_unit(unit: str) -> tuple[bool, str, list[str]]:
    """The unit installed, enabled, and then restarted when it ran or started when it did
    not; every systemctl result checked. (ok, why not: systemctl's words, warnings)."""
    changed, warnings = install_unit(unit)
    steps: list[tuple[str, ...]] = [("daemon-reload",)] if changed else []
    was_running = subprocess.run(["systemctl", "is-active", "--quiet", "mxone-agent"],
                                 stdin=subprocess.DEVNULL, check=False).returncode == 0
    steps += [("enable", "--quiet", "mxone-agent"),
              ("restart" if was_running else "start", "mxone-agent")]
    for args in steps:
        ok, why = _systemctl(*args)
        if not ok:
            return False, why, warnings
    return True, "", warnings


def start() -> tuple[bool, str, list[str]]:
    """Start the agent of ``current`` (restart it when it runs under systemd); (started,
    why not, warnings)."""
    rotate = install_logrotate(paths.CURRENT)
    if systemd():
        ok, why, warnings = start_unit(_unit_text())
        return ok, why, rotate + warnings
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
            return False, f"mxone-agent run: {e}", []
        err.seek(0)
        said = err.read().decode(errors="replace").strip()
    if ran.returncode != 0:
        return False, f"mxone-agent run exited {ran.returncode}: {said[-300:]}", rotate
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if agent_pid() is not None:
            return True, "", rotate
        time.sleep(0.05)
    return False, f"mxone-agent run: no pidfile {paths.PIDFILE} within 15 s (see {paths.LOG})", []


def restart() -> tuple[bool, str, list[str]]:
    """The agent of ``current`` restarted (``systemctl restart`` under systemd); as
    :func:`start`."""
    if not systemd():
        stop()
    return start()


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
        ok, why, warnings = start()
        return {"ok": ok, "error": why, "started": True, "warnings": warnings}
    if r["rc"] != 0:
        return {"ok": False, "error": f"{REFUSED} (exit {r['rc']}): {said(r)}"}
    return {"ok": True}
