"""The client side of the agent's control socket (:mod:`mxone_agent.control` serves it).

``mxone-agent ctl``, ``leave``/``fence`` (to see whether an agent runs) and the exchange-data
commands (to tell the agent of a backup or a received version) talk to the running agent
through :func:`ctl_request`. Standard library only, and nothing else of the agent: any
module may import it without pulling in the daemon.
"""

from __future__ import annotations

import json
from typing import Any

from mxone_agent import paths

DEFAULT_CONTROL = paths.CONTROL
"""Where the agent listens for control requests (``mxone-agent run --control``)."""


def ctl_request(path: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the agent's control socket; its JSON answer.

    Raises ConnectionError when no agent listens there.
    """
    import socket  # here: importing ``mxone-agent``'s command opens no socket module

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ConnectionError(f"the agent is not running (no one listens on {path})") from e
        s.sendall(json.dumps(request).encode("utf-8") + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    answer: dict[str, Any] = json.loads(data.decode("utf-8"))
    return answer
