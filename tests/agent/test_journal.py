"""The agent's log in the journal (native protocol, bytes on the wire) and where the log goes."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxone_agent import agent_log, journal, paths


def decode(datagram: bytes) -> list[tuple[str, str]]:
    """The fields of one native-protocol datagram, as journald reads them."""
    fields = []
    rest = datagram
    while rest:
        head, sep, tail = rest.partition(b"\n")
        assert sep, "every field ends with a newline"
        if b"=" in head:
            name, _, value = head.partition(b"=")
            rest = tail
        else:
            name = head
            (size,) = struct.unpack("<Q", tail[:8])
            value, end = tail[8:8 + size], tail[8 + size:8 + size + 1]
            assert end == b"\n"
            rest = tail[8 + size + 1:]
        fields.append((name.decode(), value.decode()))
    return fields


# ---- the encoder ---------------------------------------------------------------------------


def test_plain_fields_are_key_equals_value_lines() -> None:
    assert journal.encode([("MESSAGE", "LIM 2 runs on standby1"), ("PRIORITY", "6"),
                           ("MXONE_LIM", "2")]) == \
        b"MESSAGE=LIM 2 runs on standby1\nPRIORITY=6\nMXONE_LIM=2\n"


def test_a_value_with_a_newline_goes_in_the_binary_form() -> None:
    wire = journal.encode([("MESSAGE", "first\nsecond"), ("PRIORITY", "3")])
    assert wire == b"MESSAGE\n\x0c\x00\x00\x00\x00\x00\x00\x00first\nsecond\nPRIORITY=3\n"
    assert decode(wire) == [("MESSAGE", "first\nsecond"), ("PRIORITY", "3")]


def test_utf8_lengths_are_counted_in_bytes() -> None:
    wire = journal.encode([("MESSAGE", "Ü\n")])
    assert wire == b"MESSAGE\n" + struct.pack("<Q", 3) + "Ü\n".encode() + b"\n"


@pytest.mark.parametrize("name", ["", "_PID", "mxone_lim", "MX-ONE", "9LIM", "A" * 65, "LIMÄ"])
def test_a_field_name_journald_would_drop_is_refused(name: str) -> None:
    assert not journal.valid_name(name)
    with pytest.raises(ValueError, match="journal field name"):
        journal.encode([(name, "x")])


@pytest.mark.parametrize(("level", "prio"), [
    (logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6),
    (logging.DEBUG, 7), (logging.INFO + 5, 6), (logging.WARNING + 1, 4), (0, 7)])
def test_syslog_priority_of_each_level(level: int, prio: int) -> None:
    assert journal.priority(level) == prio


# ---- a record's fields ----------------------------------------------------------------------


def record(msg: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("mxone_agent", level, "/x/decision_cycle.py", 86, msg, (), None,
                          func="take")
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_a_record_carries_priority_identifier_code_context_and_its_lims() -> None:
    r = record("standby1 takes over LIM 2", logging.WARNING, **journal.about([2, 1, 2]))
    fields = journal.record_fields(r, r.getMessage(), {"MXONE_CLUSTER": "c1",
                                                       "MXONE_NODE": "standby1"})
    assert fields == [
        ("MESSAGE", "standby1 takes over LIM 2"), ("PRIORITY", "4"),
        ("SYSLOG_IDENTIFIER", "mxone-agent"), ("CODE_FILE", "/x/decision_cycle.py"),
        ("CODE_LINE", "86"), ("CODE_FUNC", "take"), ("LOGGER", "mxone_agent"),
        ("MXONE_CLUSTER", "c1"), ("MXONE_NODE", "standby1"),
        ("MXONE_LIM", "1"), ("MXONE_LIM", "2")]


def test_a_record_naming_its_cluster_overrides_the_context() -> None:
    r = record("x", **journal.about(3, cluster="c2"))
    fields = dict(journal.record_fields(r, "x", {"MXONE_CLUSTER": "c1"}))
    assert fields["MXONE_CLUSTER"] == "c2" and fields["MXONE_LIM"] == "3"
    assert "MXONE_LIM" not in dict(journal.record_fields(record("y"), "y", {}))
    assert journal.about() == {} and journal.about(None) == {}


def test_a_huge_message_is_cut_and_says_so() -> None:
    r = record("x")
    text = "é" * journal.MAX_MESSAGE  # two bytes each
    message = dict(journal.record_fields(r, text, {}))["MESSAGE"]
    assert len(message.encode()) < journal.MAX_MESSAGE + 100
    assert message.endswith(f"[cut: the whole entry was {2 * journal.MAX_MESSAGE} bytes]")


# ---- the handler, against a socket standing in for journald ----------------------------------


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "journal.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield s, path
    s.close()


def test_the_handler_sends_one_datagram_per_record(journald: tuple[socket.socket, str]) -> None:
    sock, path = journald
    handler = journal.JournalHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.set_context(cluster="c1", node="standby1")
    log = logging.getLogger("test_journal.handler")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("%s takes over LIM %d", "standby1", 2, extra=journal.about(2))
        fields = decode(sock.recv(65536))
        assert ("MESSAGE", "standby1 takes over LIM 2") in fields
        assert {("PRIORITY", "4"), ("SYSLOG_IDENTIFIER", "mxone-agent"), ("MXONE_LIM", "2"),
                ("MXONE_CLUSTER", "c1"), ("MXONE_NODE", "standby1")} <= set(fields)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("a call posted to the loop failed")
        fields = dict(decode(sock.recv(65536)))
        assert fields["PRIORITY"] == "3"
        assert fields["MESSAGE"].startswith("a call posted to the loop failed\nTraceback")
        assert "RuntimeError: boom" in fields["MESSAGE"]
    finally:
        log.removeHandler(handler)
        handler.close()


def test_entries_journald_cannot_take_are_counted_not_waited_for(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.sock")
    handler = journal.JournalHandler(path)  # nobody listens yet: the entries are lost
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(record("one"))
    handler.handle(record("two"))
    assert handler.dropped == 2
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)  # journald is back (a new socket at the same path)
        s.settimeout(2)
        handler.handle(record("three"))
        assert dict(decode(s.recv(65536)))["MESSAGE"] == \
            "three (2 earlier log entries were lost: journald did not take them)"
    assert handler.dropped == 0
    handler.close()


# ---- where the log goes -----------------------------------------------------------------------


@pytest.mark.parametrize(("log", "daemon", "env", "socket_there", "want"), [
    (None, False, {"JOURNAL_STREAM": "8:123"}, True, agent_log.Destination("journal")),
    (None, False, {"NOTIFY_SOCKET": "/run/systemd/notify"}, True, agent_log.Destination("journal")),
    (None, True, {"INVOCATION_ID": "ab"}, True, agent_log.Destination("journal")),
    (None, False, {"JOURNAL_STREAM": "8:123"}, False, agent_log.Destination("stderr")),
    (None, False, {}, True, agent_log.Destination("stderr")),
    (None, True, {}, True, agent_log.Destination("file", paths.LOG)),
    ("/var/log/x.log", False, {"JOURNAL_STREAM": "8:1"}, True,
     agent_log.Destination("file", "/var/log/x.log")),
    ("journal", False, {}, False, agent_log.Destination("journal")),
    ("stderr", True, {"JOURNAL_STREAM": "8:1"}, True, agent_log.Destination("stderr")),
])
def test_where_the_log_goes(tmp_path: Path, log: str | None, daemon: bool, env: dict[str, str],
                            socket_there: bool, want: agent_log.Destination) -> None:
    sock = tmp_path / "socket"
    if socket_there:
        sock.touch()
    assert agent_log.destination(log, daemon, env, str(sock)) == want


def test_a_log_file_is_reopened_after_logrotate_moved_it(tmp_path: Path) -> None:
    path = tmp_path / "log" / "agent.log"
    log = logging.getLogger("mxone_agent")
    saved = log.handlers[:], log.propagate, log.level
    handler = agent_log.set_up(agent_log.Destination("file", str(path)), {})
    try:
        log.info("before the rotation")
        path.rename(path.with_name("agent.log.1"))  # what logrotate does
        log.info("after the rotation")
        assert "before the rotation" in path.with_name("agent.log.1").read_text()
        assert "after the rotation" in path.read_text()
        assert "before" not in path.read_text()
    finally:
        handler.close()
        log.handlers[:], log.propagate, log.level = saved


def test_the_shipped_logrotate_config_names_the_agents_files() -> None:
    import mxone_agent

    shipped = Path(mxone_agent.__file__).parent / "logrotate" / "mxone-agent"
    assert shipped.name == Path(paths.LOGROTATE).name
    text = shipped.read_text()
    assert f"{paths.LOG} {paths.ALARMS_LOG} {{" in text
    assert "copytruncate" not in text.replace("no copytruncate", "")
