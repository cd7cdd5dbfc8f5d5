"""A node that could not set promote_secondaries says so in its add-base answer, and the
tool shows it as a WARNING line of the change (it used to be silent)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from mxone_maintenance import nodechange, ssh


class Stop(Exception):
    """Ends the change after the steps under test."""


@pytest.mark.parametrize("answer, warned", [
    ({"ok": True, "added": True, "warning": "promote_secondaries not set on eth0.100: [Errno "
      "30] Read-only file system"}, True),
    ({"ok": True, "added": True}, False),
])
def test_the_add_base_warning_is_shown(answer: dict[str, Any], warned: bool) -> None:
    target = ssh.Target("lim2", ("10.77.0.12",))

    def call(t: ssh.Target, op: str, request: Mapping[str, Any],
             timeout: float | None = None) -> ssh.Result:
        return ssh.Result(t.name, True, json.dumps(answer if op == "add-base" else {"ok": True}),
                          "", 0)

    def uploaded(t: ssh.Target) -> bool:
        raise Stop

    lines: list[str] = []
    tracker = nodechange.Tracker(lambda line, fraction: lines.append(line), 10)
    node = nodechange.Node(target, config=object(), key="k",  # type: ignore[arg-type]
                           add_base={"interface": "eth0.100", "address": "10.77.0.52",
                                     "prefix": 24})
    changer = nodechange.NodeChanger(None, call, uploaded, 1.0)  # type: ignore[arg-type]
    with pytest.raises(Stop):
        changer.change(node, object(), 2, tracker)  # type: ignore[arg-type]
    assert node.added_base
    assert ("lim2: WARNING promote_secondaries not set on eth0.100: [Errno 30] Read-only file "
            "system" in lines) is warned
