"""A VLAN interface (``d0.100``) gets promote_secondaries from ``mxone-agent node add-base``,
so removing its first address (the LIM's alias) keeps the new base address.

Run in a network namespace of its own (a unique name, deleted afterwards); nothing touches
the root namespace. This kernel has no 802.1Q driver (CONFIG_VLAN_8021Q unset): where
``type vlan`` is refused, the test makes the same dotted name as a macvlan on the same
parent - what is under test is the name's dot on its way to /proc, which does not depend
on the device type.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.lab

VLAN = "d0.100"
ALIAS = "10.99.0.10"  # the interface's first address: the one the agent removes one day
BASE = "10.99.0.20"  # the new base address add-base puts on beside it


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"mxone-vlan-{secrets.token_hex(4)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        try:
            ip("-n", name, "link", "add", "link", "d0", "name", VLAN, "type", "vlan", "id", "100")
        except RuntimeError:  # no 802.1Q in this kernel: the same name, another stacked type
            ip("-n", name, "link", "add", "link", "d0", "name", VLAN, "type", "macvlan",
               "mode", "bridge")
        for dev in ("d1", "d0", VLAN):
            ip("-n", name, "link", "set", dev, "up")
        ip("-n", name, "addr", "add", f"{ALIAS}/24", "dev", VLAN)
        yield name
    finally:
        ip("netns", "del", name)


def in_netns(name: str, *cmd: str, stdin: str | None = None) -> str:
    done = subprocess.run(["ip", "netns", "exec", name, *cmd], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def addresses(name: str) -> list[str]:
    return [a["local"] for link in json.loads(ip("-n", name, "-j", "addr", "show", "dev", VLAN))
            for a in link.get("addr_info", []) if a.get("family") == "inet"]


def test_add_base_on_a_vlan_interface_sets_promote_secondaries(netns: str) -> None:
    setting = f"/proc/sys/net/ipv4/conf/{VLAN}/promote_secondaries"
    assert in_netns(netns, "cat", setting).strip() == "0"
    answer = json.loads(in_netns(netns, sys.executable, "-m", "mxone_agent.main", "node",
                                 "add-base", stdin=json.dumps(
                                     {"interface": VLAN, "address": BASE, "prefix": 24})))
    assert answer == {"ok": True, "added": True}, answer  # no warning: the setting took
    assert in_netns(netns, "cat", setting).strip() == "1"
    assert addresses(netns) == [ALIAS, BASE]
    # What the setting is for: the alias goes, the base address stays (promoted).
    ip("-n", netns, "addr", "del", f"{ALIAS}/24", "dev", VLAN)
    assert addresses(netns) == [BASE]
