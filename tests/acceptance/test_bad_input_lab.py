"""Bad input in every form of the real menus: a message naming the field and the rule, and
nothing changes anywhere (every node's /etc/mxone byte for byte, LIM 1's system.toml, the
generation).

The system: lim1..lim3 (LIMs 1-3), standby1 in cluster c1 with LIM 2 (locked to its
regular server), and client as a second, free standby, so that every form has something to
offer. More than ten LIMs in one cluster cannot be reached with three LIM servers (the
rule itself is covered in tests/test_rules.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.acceptance.conftest import ESC, Tui, node_state

pytestmark = pytest.mark.lab


@dataclass(frozen=True)
class Case:
    what: str
    moves: tuple[tuple[str, ...], ...]  # ("field", label, text) / ("tick"|"untick"|"choose", label)
    expect: tuple[str, ...]


@dataclass(frozen=True)
class FormCases:
    path: tuple[str, ...]  # menu labels, then pick-list rows
    cases: tuple[Case, ...]


def F(label: str, text: str) -> tuple[str, ...]:
    return ("field", label, text)


ADD_SERVER = FormCases(("Server in system", "Add a server to the system"), (
    Case("malformed IP", (F("Server name", "x9"), F("Base IP/prefix", "10.77.0.300/24"),
                          F("LIM number", "")),
         ("server[x9].base_ip = 10.77.0.300/24: not an IPv4 address", "(rule base-ip-syntax:")),
    Case("no prefix", (F("Base IP/prefix", "10.77.0.40"),),
         ("server[x9].base_ip = 10.77.0.40: not an IPv4 address with a prefix length",)),
    Case("network address", (F("Base IP/prefix", "10.77.0.0/24"),),
         ("server[x9].base_ip = 10.77.0.0/24: is the network address of 10.77.0.0/24",
          "(rule host-address:")),
    Case("broadcast address", (F("Base IP/prefix", "10.77.0.255/24"),),
         ("server[x9].base_ip = 10.77.0.255/24: is the broadcast address of 10.77.0.0/24",
          "(rule host-address:")),
    Case("duplicate name", (F("Server name", "lim2"), F("Base IP/prefix", "10.77.0.40/24")),
         ("name = lim2: a server with this name is already in the system",)),
    Case("duplicate address", (F("Server name", "x9"), F("Base IP/prefix", "10.77.0.13/24")),
         ("address 10.77.0.13 is also used by server[lim3].base_ip", "(rule unique-address:")),
    Case("address of an alias", (F("Base IP/prefix", "10.77.0.12/24"),),
         ("address 10.77.0.12 is also used by cluster[c1].lim[2].alias_ip",
          "(rule unique-address:")),
    Case("bad server name", (F("Server name", "bad name!"), F("Base IP/prefix", "10.77.0.40/24")),
         ('server[bad name!].name = bad name!: not a valid host name', "(rule server-name:")),
    Case("empty interface", (F("Server name", "x9"), F("Interface", "")),
         ('server[x9].interface = "": not a network interface name', "(rule interface-name:")),
    Case("LIM number not a number", (F("Interface", "eth0"), F("LIM number", "two")),
         ("LIM number = two: a whole number from 1 to 124",)),
    Case("LIM number out of range", (F("LIM number", "125"),),
         ("server[x9].lim = 125: a LIM server needs a LIM number from 1 to 124",
          "(rule lim-number:")),
    Case("LIM number taken", (F("LIM number", "2"),),
         ("server[x9].lim = 2: 2 servers have LIM number 2", "(rule lim-number:")),
))

CREATE_CLUSTER = FormCases(("Cluster handling", "Create new cluster in system"), (
    Case("no LIM ticked", (F("Cluster name", "c2"), ("untick", "LIM 1 on lim1"),
                           ("untick", "LIM 3 on lim3")),
         ("LIMs = none: a cluster needs at least one regular LIM",)),
    Case("new IP outside the subnet", (("tick", "LIM 3 on lim3"), F("new base IP of LIM 3", "10.77.1.53")),
         ("server lim3 on 10.77.1.0/24 (rule same-subnet:",
          "cluster[c2].lim[3].alias_ip = 10.77.0.13: not in base subnet 10.77.1.0/24",
          "(rule alias-subnet:")),
    Case("new IP used by another server", (F("new base IP of LIM 3", "10.77.0.52"),),
         ("address 10.77.0.52 is also used by server[lim2].base_ip", "(rule unique-address:")),
    Case("new IP a broadcast address", (F("new base IP of LIM 3", "10.77.0.255"),),
         ("server[lim3].base_ip = 10.77.0.255/24: is the broadcast address", "(rule host-address:")),
    Case("new IP malformed", (F("new base IP of LIM 3", "10.77.0"),),
         ("new base IP of LIM 3 = 10.77.0: not an IPv4 address (dotted quad, no prefix)",)),
    Case("priority not a number", (F("new base IP of LIM 3", "10.77.0.53"),
                                   F("priority of LIM 3", "high")),
         ("priority of LIM 3 = high: a whole number from 0 to 99",)),
    Case("priority out of range", (F("priority of LIM 3", "100"),),
         ("cluster[c2].lim[3].priority = 100: must be a whole number from 0 to 99",
          "(rule priority:")),
    Case("duplicate cluster name", (F("priority of LIM 3", "1"), F("Cluster name", "c1")),
         ("cluster name = c1: a cluster with this name already exists",)),
    Case("bad cluster name", (F("Cluster name", "c 2!"),),
         ("cluster[c 2!].name = c 2!: not a valid cluster name", "(rule cluster-name:")),
))

CHANGE_FALLBACK = FormCases(("Cluster handling", "Change fallback type or priority", "c1 (LIMs 2"), (
    Case("priority not a number", (F("Priority of LIM 2", "x"),),
         ("priority of LIM 2 = x: a whole number from 0 to 99",)),
    Case("priority out of range", (F("Priority of LIM 2", "100"),),
         ("cluster[c1].lim[2].priority = 100: must be a whole number from 0 to 99",
          "(rule priority:")),
    Case("nothing changed", (F("Priority of LIM 2", "1"),),
         ("cluster = c1: nothing to change: the values are the current ones",)),
))

ADD_LIM = FormCases(("Cluster handling", "Add a LIM to existing cluster", "c1 (LIMs 2"), (
    Case("new IP outside the subnet", (("choose", "lim3 (10.77.0.13/24, LIM 3)"),
                                       F("New base IP", "10.77.1.53")),
         ("server lim3 of cluster c1 is on 10.77.1.0/24, server lim2 on 10.77.0.0/24 "
          "(rule same-subnet:",)),
    Case("new IP used by another server", (F("New base IP", "10.77.0.52"),),
         ("address 10.77.0.52 is also used by server[lim2].base_ip", "(rule unique-address:")),
    Case("new IP empty", (F("New base IP", ""),),
         ('new base IP of LIM 3 = "": not an IPv4 address (dotted quad, no prefix)',)),
    Case("new IP the network address", (F("New base IP", "10.77.0.0"),),
         ("is the network address of 10.77.0.0/24", "(rule host-address:")),
    Case("priority negative", (F("New base IP", "10.77.0.53"), F("Priority", "-1")),
         ("cluster[c1].lim[3].priority = -1: must be a whole number from 0 to 99",
          "(rule priority:")),
    Case("priority not a number", (F("Priority", "1.5"),),
         ("priority = 1.5: a whole number from 0 to 99",)),
))

LOCK = FormCases(("Cluster handling", "Lock LIM to server", "c1 (LIMs 2"), (
    Case("the lock it already has", (("choose", "LIM 2 on lim2"), ("choose", "its regular server")),
         ("lock = regular: LIM 2 already has this lock",)),
))

FORMS = (ADD_SERVER, CREATE_CLUSTER, CHANGE_FALLBACK, ADD_LIM, LOCK)


def _move(t: Tui, move: tuple[str, ...]) -> None:
    kind = move[0]
    if kind == "field":
        t.field(move[1], move[2])
    elif kind == "choose":
        t.choose(move[1])
    elif kind == "tick":
        t.tick(move[1])
    elif kind == "untick":
        t.focus(move[1], row=True)
        if "[X]" in t.focused():
            t.send(" ")
        assert "[ ]" in t.focused(), t.dump()


def _open(t: Tui, path: tuple[str, ...]) -> None:
    t.back_to_main()
    menus = [p for p in path if not p.startswith("c1 (")]
    t.open(*menus)
    for row in path[len(menus):]:
        t.pick(row)
    t.wait_for("< Continue")


def test_bad_input_in_every_form_is_named_and_changes_nothing(lab, admin, tui_factory) -> None:
    admin.build_system(clusters=False)
    lab.exec("lim1", "cat >> /etc/mxone/known_hosts", input=lab.hosts["client"].known_hosts_line + "\n")
    admin.run("server", "add", "client", lab.hosts["client"].cidr, check=True)
    admin.run("standby", "convert", "client", check=True)
    admin.run("cluster", "create", "c1", "--standby", "standby1", "--lim", "2:10.77.0.52",
              "--timers", "fast", check=True)
    admin.run("cluster", "lock", "2", "--to", "regular", check=True)
    before = node_state(lab)
    known_hosts = lab.exec("lim1", ["cat", "/etc/mxone/known_hosts"]).stdout
    generation = int(re.search(r"generation = (\d+)", before[1]).group(1))

    t = tui_factory()
    t.wait_for("1. Server in system")
    problems: list[str] = []
    for form in FORMS:
        _open(t, form.path)
        for case in form.cases:
            for move in case.moves:
                _move(t, move)
            t.submit()
            t.wait_for(lambda s: "Not accepted:" in s.text or "Apply this change?" in s.text)
            flat = t.flat
            name = f"{form.path[-1]}: {case.what}"
            if "Apply this change?" in flat:
                problems.append(f"{name}: ACCEPTED\n{t.dump()}")
                t.send(ESC)
                continue
            missing = [e for e in case.expect if e not in flat]
            if missing:
                problems.append(f"{name}: missing {missing}\n{t.dump()}")
            if t.generation() != generation:
                problems.append(f"{name}: generation moved to {t.generation()}")
            if "Traceback" in t.text:
                problems.append(f"{name}: traceback\n{t.dump()}")
    assert t.exit() == 0
    assert not problems, "\n\n".join(problems)
    assert node_state(lab) == before
    assert lab.exec("lim1", ["cat", "/etc/mxone/known_hosts"]).stdout == known_hosts
