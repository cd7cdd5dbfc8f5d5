"""Running commands: on the lab's hosts (:class:`HostCommands`, what ``lab.exec`` and
``lab.popen`` are) and, for the lab's own plumbing, on the machine (:func:`run`,
:func:`ip_json`).

Running something "on" a host means entering its holder's network, mount and UTS
namespaces (``nsenter -t HOLDER -n -m -u``); a plain ``ip netns exec`` would see the
machine's /etc, not the host's. On a systemd host a command also enters the host's IPC,
cgroup and PID namespaces, so ``systemctl``, ``journalctl`` and ``kill MAINPID`` work there.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mxone_lab.systemd_host as systemd_host
from mxone_lab.errors import HostCommandError, LabError
from mxone_lab.remote import SshResult
from mxone_lab.state import LabState, Processes, Tracked


def venv_bin() -> Path:
    """The bin dir of the Python running the lab (the project venv), for hosts' PATH."""
    return Path(sys.executable).parent


class HostCommands:
    """Commands on the hosts of one lab. Methods take a host name and raise
    :class:`~mxone_lab.errors.UnknownHost` for others, :class:`LabError` once the lab is
    torn down or the host's holder is gone."""

    def __init__(self, state: LabState, processes: Processes) -> None:
        self._state = state
        self._processes = processes

    def nsenter_argv(self, host: str, cwd: str | None = None) -> list[str]:
        """The argv prefix that runs a command on ``host`` (its net, mount and UTS ns;
        on a systemd host also its IPC and PID namespaces - then nsenter forks, so the
        PID of the process started with this prefix is nsenter's, not the command's)."""
        self._state.host(host)
        argv = self._nsenter(host, cwd)
        if self._state.records[host].get("systemd"):
            argv.insert(-1, "-p")
        return argv

    def host_env(self, host: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment commands get on ``host``: a clean one, not the caller's.

        PATH starts with the project venv's bin dir (so ``python3`` has the project's
        packages); HOME=/root; MXONE_LAB and MXONE_LAB_HOST name the lab and the host.
        No SSH agent or other variable of the caller leaks in; ``extra`` is added last.
        """
        env = {
            "PATH": f"{venv_bin()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "USER": "root",
            "LOGNAME": "root",
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "MXONE_LAB": self._state.id,
            "MXONE_LAB_HOST": host,
        }
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
        env.update(extra or {})
        return env

    def exec(
        self,
        host: str,
        argv: Sequence[str] | str,
        *,
        input: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on ``host`` and wait for it; output is captured as text.

        ``argv`` is an argument list, or a string run by ``sh -c``. With ``check`` a
        non-zero exit raises :class:`HostCommandError` (with stdout/stderr). A command
        still running after ``timeout`` s is killed and raises :class:`HostCommandError`
        (``returncode`` None) whatever ``check`` says.

        Returns once the command has exited and its output is drained; a background
        child (``"daemon &"``) that keeps the output pipes open does not hold it up, but
        loses them (use :meth:`popen` for long-running processes).
        """
        self._state.host(host)
        args = ["sh", "-c", argv] if isinstance(argv, str) else list(argv)
        p = self.host_popen(
            host,
            args,
            cwd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.host_env(host, env),
        )
        rc, out, err = _communicate(p, input.encode() if input is not None else None, timeout)
        if rc is None:
            raise HostCommandError(host, args, None, out, err, timeout)
        r = subprocess.CompletedProcess(args, rc, out, err)
        if check and rc != 0:
            raise HostCommandError(host, args, rc, out, err)
        return r

    def popen(
        self,
        host: str,
        argv: Sequence[str] | str,
        *,
        keep_on_reset: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start a command on ``host`` without waiting; returns its Popen (PID = the command).

        The process is tracked: :meth:`Lab.reset` ends it unless ``keep_on_reset``, and
        :meth:`Lab.down` always does. ``kwargs`` go to :class:`subprocess.Popen`; by
        default the process starts in its own session (a Ctrl-C meant for the caller
        misses it).
        """
        self._state.host(host)
        args = ["sh", "-c", argv] if isinstance(argv, str) else list(argv)
        kwargs.setdefault("start_new_session", True)
        p = self.host_popen(host, args, cwd, env=self.host_env(host, env), **kwargs)
        self._processes.tracked.append(Tracked(host, p, keep_on_reset))
        return p

    def run_python(
        self,
        host: str,
        code: str,
        *,
        args: Sequence[str] = (),
        input: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` on ``host`` with the project's interpreter (its packages,
        paramiko included, are importable there); like :meth:`exec` otherwise."""
        return self.exec(
            host,
            [sys.executable, "-c", code, *args],
            input=input,
            timeout=timeout,
            check=check,
            env=env,
        )

    def ssh_exec(
        self,
        from_host: str,
        command: str,
        *,
        to: Sequence[str] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, SshResult]:
        """Log in over SSH from ``from_host`` to each host in ``to`` (default: all) and run
        ``command``; the per-host result map, one host's failure never stopping the others.

        Real SSH: paramiko on ``from_host``, key auth with the lab user key, each host key
        verified against the lab's (unknown or changed keys are rejected). ``timeout``
        bounds each connect and each command.
        """
        self._state.host(from_host)
        names = to if to is not None else list(self._state.records)
        targets = [self._state.host(n) for n in names]
        request = {
            "targets": [
                {"name": h.name, "ip": str(h.ip), "port": h.ssh_port, "host_key": h.host_key}
                for h in targets
            ],
            "command": command,
            "key_path": str(self._state.user_key_path),
            "timeout": timeout,
        }
        r = self.exec(
            from_host,
            [sys.executable, "-m", "mxone_lab.remote"],
            input=json.dumps(request),
            timeout=10.0 + 2 * timeout * max(1, len(targets)),
        )
        return {name: SshResult(**res) for name, res in json.loads(r.stdout).items()}

    def addresses(self, host: str) -> list[str]:
        """The IPv4 addresses on ``host``'s eth0 right now, as ``"a.b.c.d/len"``, sorted."""
        h = self._state.host(host)
        self._state.check_pid(
            h.holder_pid, self._state.records[host].get("holder_start"), f"host {host}"
        )
        return eth0_addresses(h.netns_path)

    def host_popen(
        self, name: str, args: Sequence[str], cwd: str | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``args`` on host ``name``; the Popen's PID is the command's own.

        On a systemd host the command is born in the host's PID namespace (under its
        systemd), so it sees the host's processes and ``systemctl`` reaches PID 1.
        """
        argv = self._nsenter(name, cwd) + list(args)
        h = self._state.records[name]
        if not h.get("systemd"):
            return subprocess.Popen(argv, **kwargs)
        with systemd_host.children_in_pid_ns(int(h["holder_pid"])):
            return subprocess.Popen(argv, **kwargs)

    def _nsenter(self, name: str, cwd: str | None = None) -> list[str]:
        if self._state.torn_down:
            raise LabError(f"lab {self._state.id} has been torn down")
        h = self._state.records[name]
        self._state.check_pid(h["holder_pid"], h.get("holder_start"), f"host {name}")
        argv = ["nsenter", "-t", str(h["holder_pid"]), "-n", "-m", "-u"]
        if h.get("systemd"):
            # IPC and cgroup namespaces too (systemctl status, systemd-cgls read the host's
            # cgroup tree); the PID namespace: see host_popen.
            argv += ["-i", "-C"]
        if cwd:
            argv.append(f"--wd={cwd}")
        return argv + ["--"]


# ------------------------------------------------------------- on the machine


def run(argv: list[str], what: str = "", timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` on the machine, output captured; :class:`LabError` saying ``what``
    failed (and how) when it exits non-zero or not within ``timeout`` s."""
    lead = f"{what}: " if what else ""
    try:
        r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{lead}`{' '.join(argv)}` did not finish within {timeout:g} s") from None
    if r.returncode != 0:
        raise LabError(f"{lead}`{' '.join(argv)}` failed: {(r.stderr or r.stdout).strip()}")
    return r


def ip_json(netns_path: str, args: list[str], timeout: float = 10.0) -> list[dict[str, Any]]:
    """``ip -j ARGS`` in the network namespace at ``netns_path``, parsed."""
    r = run(["nsenter", f"--net={netns_path}", "--", "ip", "-j", *args], timeout=timeout)
    data: list[dict[str, Any]] = json.loads(r.stdout or "[]")
    return data


def eth0_addresses(netns_path: str) -> list[str]:
    """The IPv4 addresses on eth0 in the network namespace at ``netns_path``, sorted."""
    data = ip_json(netns_path, ["-4", "addr", "show", "dev", "eth0"])
    return sorted(
        f"{a['local']}/{a['prefixlen']}" for link in data for a in link.get("addr_info", [])
    )


def link_exists(ns: str, link: str) -> bool:
    r = subprocess.run(
        ["ip", "-n", ns, "link", "show", "dev", link], check=False, capture_output=True, timeout=10
    )
    return r.returncode == 0


def log_tail(path: Path, lines: int = 5) -> str:
    """``"; last lines of PATH: a | b"`` for an error message ('' when unreadable)."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    if not text:
        return f" (log {path} is empty)"
    # Blank lines say nothing (a console log ends its lines with "\r\n").
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return f"; last lines of {path}: " + " | ".join(kept[-lines:])


def _communicate(
    p: subprocess.Popen[bytes], data: bytes | None, timeout: float
) -> tuple[int | None, str, str]:
    """Feed ``data``, collect stdout/stderr until the process exits and the pipes are
    drained; (None, out, err) after killing it if ``timeout`` expires.

    Unlike ``communicate()``, EOF is not awaited forever once the process has exited:
    a background grandchild may hold the pipes open indefinitely.
    """
    assert p.stdout is not None and p.stderr is not None
    deadline = time.monotonic() + timeout
    chunks: dict[int, list[bytes]] = {p.stdout.fileno(): [], p.stderr.fileno(): []}
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    sel.register(p.stderr, selectors.EVENT_READ)
    pending = memoryview(data or b"")
    if p.stdin is not None:
        if pending:
            os.set_blocking(p.stdin.fileno(), False)
            sel.register(p.stdin, selectors.EVENT_WRITE)
        else:
            p.stdin.close()
    exited_at: float | None = None
    timed_out = False
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exited_at is None and p.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                break
            for key, _ in sel.select(min(0.05, deadline - now)):
                if key.fileobj is p.stdin:
                    try:
                        n = os.write(key.fd, pending[:65536])
                    except BrokenPipeError:
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(key.fileobj)
                        p.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if chunk:
                    chunks[key.fd].append(chunk)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
    if not timed_out:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out:
        p.kill()
        p.wait()
    out = b"".join(chunks[p.stdout.fileno()]).decode("utf-8", "replace")
    err = b"".join(chunks[p.stderr.fileno()]).decode("utf-8", "replace")
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
    return (None if timed_out else p.returncode), out, err
