"""Saving over a file an administrator wrote: only what changed changes.

Comments (at the top, between tables, at the end of a key's line), blank lines, key order
and left-out defaults stay; the file always reads back as the system saved.
"""

from __future__ import annotations

import difflib
import stat
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from mxone_maintenance import actions, configfile, store
from mxone_maintenance.model import System

from tests.test_configfile import valid_systems
from tests.test_rules import valid_system

# valid_system(), as an administrator might keep it: comments everywhere, "interface"
# left out (its default), "priority" before "alias_ip", one key line without spaces.
ADMIN_FILE = """\
# Site Kista, LIM 1 keeps this file.  Owner: telecom team (ext. 4711)
# Last reviewed 2026-11-02.

generation = 3  # bumped by the tool on every change

# --- the servers -------------------------------------------------------
[[server]]
name = "lim1"
base_ip = "10.0.2.11/24"   # rack A1
role = "lim"
lim = 1

[[server]]
name = "lim2"
base_ip = "10.0.2.32/24"
role = "lim"
lim = 2

# lim3 is the old hardware in rack B4; replace in Q1
[[server]]
name = "lim3"
base_ip = "10.0.2.33/24"
role = "lim"
lim = 3

[[server]]
name = "lim4"
base_ip = "10.0.2.34/24"
role = "lim"
lim = 4

[[server]]
name = "standby1"
base_ip = "10.0.2.20/24"
role = "standby"

[[server]]
name = "standby2"
base_ip = "10.0.2.21/24"
role = "standby"

[[server]]
name="spare"
base_ip = "10.0.2.40/24"
role = "free"

# --- the clusters ------------------------------------------------------
[[cluster]]
name = "north"  # the switch room
standby = "standby1"
fallback = "automatic"   # agreed with operations, ticket 1234
timers = "fast"

[[cluster.lim]]
lim = 2
priority = 1
alias_ip = "10.0.2.12"

[[cluster.lim]]
lim = 3
priority = 2    # lower value: first on the standby
alias_ip = "10.0.2.13"
lock = "regular"

# end of file
"""


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "#" in line]


def saved(tmp_path: Path, text: str, change: actions.Change) -> str:
    path = tmp_path / "system.toml"
    path.write_text(text)
    store.save(path, change.after)
    return path.read_text()


def test_the_admin_file_reads_as_the_reference_system() -> None:
    assert configfile.parse(ADMIN_FILE) == valid_system()


def test_saving_an_unchanged_system_changes_no_byte() -> None:
    assert configfile.update(ADMIN_FILE, valid_system()) == ADMIN_FILE


def test_a_changed_cluster_changes_only_its_lines(tmp_path: Path) -> None:
    system = configfile.parse(ADMIN_FILE)
    change = actions.change_fallback_or_priority(system, "north", fallback="manual",
                                                 priorities={3: 5})
    text = saved(tmp_path, ADMIN_FILE, change)
    assert configfile.parse(text) == change.after
    assert comment_lines(text) == [
        line.replace("automatic", "manual").replace("priority = 2 ", "priority = 5 ")
        .replace("generation = 3", "generation = 4") for line in comment_lines(ADMIN_FILE)]
    diff = [line for line in difflib.unified_diff(ADMIN_FILE.splitlines(), text.splitlines(),
                                                  lineterm="", n=0) if line[:1] in "+-"]
    assert diff[2:] == [
        "-generation = 3  # bumped by the tool on every change",
        "+generation = 4  # bumped by the tool on every change",
        '-fallback = "automatic"   # agreed with operations, ticket 1234',
        '+fallback = "manual"   # agreed with operations, ticket 1234',
        "-priority = 2    # lower value: first on the standby",
        "+priority = 5    # lower value: first on the standby",
    ]
    # the file as it was is kept beside it, byte for byte; the new one has the usual mode
    assert (tmp_path / "system.toml.prev").read_text() == ADMIN_FILE
    assert stat.S_IMODE((tmp_path / "system.toml").stat().st_mode) == 0o644


def test_servers_and_lims_added_and_removed_keep_the_other_comments(tmp_path: Path) -> None:
    system = configfile.parse(ADMIN_FILE)
    # lim3 leaves the cluster (it gets its alias back as base address), then the system;
    # a new LIM server joins.
    s = actions.remove_lim(system, "north", 3).after
    s = actions.remove_server(s, "lim3").after
    s = actions.add_server(s, "lim5", "10.0.2.35/24", "eth0", 5).after
    s = actions.add_lim(s, "north", actions.NewLim(5, "10.0.2.15", 3)).after
    text = configfile.update(ADMIN_FILE, s)
    assert configfile.parse(text) == s
    gone = "# lim3 is the old hardware in rack B4; replace in Q1"
    assert comment_lines(text) == [
        line.replace("generation = 3", f"generation = {s.generation}")
        for line in comment_lines(ADMIN_FILE) if line != gone and "first on the standby" not in line]
    # the new tables come after the others of their kind, in the canonical layout, and
    # the section comments stay where they were
    assert text.index('name = "lim5"') < text.index("# --- the clusters")
    assert text.endswith('[[cluster.lim]]\nlim = 5\nalias_ip = "10.0.2.35"\npriority = 3\n'
                         'lock = "none"\n\n# end of file\n')


def test_deleting_the_last_cluster_keeps_the_end_of_the_file() -> None:
    system = configfile.parse(ADMIN_FILE)
    s = actions.delete_cluster(system, "north").after
    text = configfile.update(ADMIN_FILE, s)
    assert configfile.parse(text) == s
    assert "[[cluster" not in text and "the switch room" not in text
    assert text.endswith("# --- the clusters ------------------------------------------------------\n"
                         "\n# end of file\n")


def test_a_new_file_is_written_in_the_canonical_layout(tmp_path: Path) -> None:
    path = tmp_path / "new" / "system.toml"
    store.save(path, valid_system())
    assert path.read_text() == configfile.dump(valid_system())
    assert path.read_text().startswith(configfile.HEADER)
    assert not path.with_name("system.toml.prev").exists()


def test_a_layout_the_writer_does_not_edit_is_written_canonically() -> None:
    # servers as an array of inline tables: valid TOML, read the same, not edited in place
    system = valid_system()
    inline = "generation = 3\nserver = [\n" + "".join(
        f'  {{ name = "{s.name}", base_ip = "{s.base_ip}", role = "{s.role}"'
        + (f", lim = {s.lim}" if s.lim is not None else "") + " },\n" for s in system.servers
    ) + "]\n" + configfile.dump(system).split("[[cluster]]", 1)[1].join(["[[cluster]]", ""])
    assert configfile.parse(inline) == system
    after = actions.remove_server(system, "spare").after
    assert configfile.update(inline, after) == configfile.dump(after)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_systems(), valid_systems())
def test_any_file_changed_to_any_system_reads_back_as_that_system(old: System, new: System) -> None:
    text = configfile.update("# kept\n" + configfile.dump(old), new)
    assert text.startswith("# kept\n")  # edited, not written anew
    assert configfile.parse(text) == new
    assert configfile.update(text, new) == text
