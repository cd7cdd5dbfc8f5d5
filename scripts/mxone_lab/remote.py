"""SSH from inside a lab host: paramiko, the lab user key, host keys pinned.

The test process lives in the machine's own namespace and cannot reach lab addresses, so
SSH "from the client host" means running this module *on* that host::

    lab.ssh_exec("client", "hostname")      # runs `python -m mxone_lab.remote` on client

The module reads one JSON request on stdin and prints one JSON answer on stdout. Each
target is tried independently (one host's failure never stops the others) and reported
as ``{"ok", "exit_status", "stdout", "stderr", "error"}``. Host keys are verified against
the lab's known keys (RejectPolicy); no key or agent of the machine is ever consulted.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SshResult:
    """The outcome of one command on one host over SSH.

    ``ok`` is True when the session was established and the command exited 0.
    ``error`` names what went wrong before the command could run ('' otherwise).
    ``seconds`` is connect + auth + command time.
    """

    host: str
    ok: bool
    exit_status: int | None
    stdout: str
    stderr: str
    error: str
    seconds: float


def run(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run ``request["command"]`` on every target; the per-host result map (as dicts).

    Request keys: ``targets`` (list of {name, ip, port, host_key}), ``command``,
    ``key_path`` (the lab user's private key), ``timeout`` (seconds, per step).
    """
    import paramiko  # type: ignore[import-untyped]

    pkey = paramiko.Ed25519Key.from_private_key_file(request["key_path"])
    timeout = float(request.get("timeout", 10.0))
    results: dict[str, dict[str, Any]] = {}
    for t in request["targets"]:
        started = time.monotonic()
        client = paramiko.SSHClient()
        kind, blob = t["host_key"].split()[:2]
        key = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
        addr = t["ip"] if int(t["port"]) == 22 else f"[{t['ip']}]:{t['port']}"
        client.get_host_keys().add(addr, kind, key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                t["ip"],
                port=int(t["port"]),
                username="root",
                pkey=pkey,
                look_for_keys=False,
                allow_agent=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
            _, out, err = client.exec_command(request["command"], timeout=timeout)
            stdout = out.read().decode("utf-8", "replace")
            stderr = err.read().decode("utf-8", "replace")
            status = out.channel.recv_exit_status()
            res = SshResult(t["name"], status == 0, status, stdout, stderr, "", 0.0)
        except Exception as exc:  # noqa: BLE001 - every failure is reported for this host only
            res = SshResult(t["name"], False, None, "", "", f"{type(exc).__name__}: {exc}", 0.0)
        finally:
            client.close()
        results[t["name"]] = asdict(res) | {"seconds": round(time.monotonic() - started, 4)}
    return results


def main() -> None:
    json.dump(run(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
