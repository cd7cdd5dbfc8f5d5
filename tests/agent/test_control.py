"""The control server: real unix sockets, a real selector loop on a thread, echo handler.

The loop thread records how long each ``handle``/``expire`` call took and the longest gap
between two of its iterations: the agent's loop also sends heartbeats, so "the loop never
waits on a client" is asserted as numbers, not assumed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mxone_agent import control
from mxone_agent.control import ControlError, ControlServer, Deferred, lim_number

SHORT = 0.3  # the deadline in most tests
PROMPT = 0.2  # "served at once": under SHORT, far over a healthy loop's latency
STEP = 0.1  # the longest one handle()/expire() call may take (a wait would be >= SHORT)


# ---- the loop, the handler, the client --------------------------------------------------------

class Echo:
    """Echoes the request; ``later`` defers, ``big`` answers a large reply, ``boom`` raises."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.tickets: queue.Queue[Deferred] = queue.Queue()

    def __call__(self, request: dict[str, Any], ticket: Deferred) -> dict[str, Any] | Deferred:
        assert isinstance(request, dict) and isinstance(request["cmd"], str)
        self.seen.append(request)
        cmd = request["cmd"]
        if cmd == "later":
            self.tickets.put(ticket)
            return ticket
        if cmd == "big":
            return {"ok": True, "blob": "x" * 1_000_000}
        if cmd == "boom":
            raise RuntimeError("boom")
        return {"ok": True, "echo": request}


class Loop:
    """The agent's loop in miniature, on a thread; ``call`` runs a function on it."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.sel = selectors.DefaultSelector()
        self.calls: queue.Queue[tuple[Callable[[], Any], queue.Queue]] = queue.Queue()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.stop = False
        self.errors: list[BaseException] = []
        self.longest_step = 0.0
        self.longest_gap = 0.0
        self.thread = threading.Thread(target=self._run, name="control-loop", daemon=True)
        ready: queue.Queue = queue.Queue()
        self._ready = ready
        self.thread.start()
        err = ready.get(timeout=5)
        if err is not None:
            raise err

    def _run(self) -> None:
        try:
            self.server.register(self.sel)
            self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        except BaseException as e:  # noqa: BLE001 - reported to the test thread
            self._ready.put(e)
            return
        self._ready.put(None)
        last = time.monotonic()
        try:
            while not self.stop:
                wake = self.server.next_deadline()
                timeout = 0.02 if wake is None else min(0.02, max(0.0, wake - time.monotonic()))
                events = self.sel.select(timeout)
                start = time.monotonic()
                self.longest_gap = max(self.longest_gap, start - last)
                last = start
                for key, mask in events:
                    t0 = time.monotonic()
                    if not self.server.handle(key, mask):
                        assert key.data == "wake", key
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_r, 4096)
                        self._run_calls()
                    self.longest_step = max(self.longest_step, time.monotonic() - t0)
                t0 = time.monotonic()
                self.server.expire(time.monotonic())
                self.longest_step = max(self.longest_step, time.monotonic() - t0)
        except BaseException as e:  # noqa: BLE001 - reported at teardown
            self.errors.append(e)

    def _run_calls(self) -> None:
        while True:
            try:
                fn, answer = self.calls.get_nowait()
            except queue.Empty:
                return
            try:
                answer.put((True, fn()))
            except BaseException as e:  # noqa: BLE001
                answer.put((False, e))

    def call(self, fn: Callable[[], Any]) -> Any:
        answer: queue.Queue = queue.Queue()
        self.calls.put((fn, answer))
        os.write(self.wake_w, b"x")
        ok, value = answer.get(timeout=5)
        if not ok:
            raise value
        return value

    def connections(self) -> int:
        return self.call(lambda: self.server.open_connections)

    def wait_connections(self, n: int, within: float = 2.0) -> None:
        end = time.monotonic() + within
        while self.connections() != n:
            assert time.monotonic() < end, f"{self.connections()} connections, not {n}"
            time.sleep(0.01)

    def finish(self) -> None:
        self.stop = True
        os.write(self.wake_w, b"x")
        self.thread.join(timeout=5)
        self.server.close()
        self.sel.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        assert not self.thread.is_alive(), "the loop did not stop"
        assert not self.errors, f"the loop raised: {self.errors!r}"


@contextlib.contextmanager
def serving(tmp_path: Path, **kw: Any) -> Iterator[tuple[ControlServer, Loop, Echo]]:
    echo = Echo()
    kw.setdefault("deadline", SHORT)
    server = ControlServer(str(tmp_path / "run" / "agent.sock"), echo, **kw)
    server.open()
    loop = Loop(server)
    try:
        yield server, loop, echo
    finally:
        loop.finish()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ControlServer, Loop, Echo]]:
    with serving(tmp_path) as s:
        yield s


def connect(path: str, timeout: float = 3.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def read_reply(s: socket.socket) -> dict[str, Any] | None:
    """The one reply line, or None when the server closed without one."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    if not data:
        return None
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data[:200]
    reply = json.loads(data)
    assert isinstance(reply, dict)
    return reply


def ask(path: str, payload: bytes, timeout: float = 3.0) -> dict[str, Any] | None:
    with connect(path, timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
        return read_reply(s)


def timed_ask(path: str, payload: bytes = b'{"cmd": "ping"}\n') -> tuple[dict | None, float]:
    t0 = time.monotonic()
    reply = ask(path, payload)
    return reply, time.monotonic() - t0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---- the protocol -----------------------------------------------------------------------------

def test_a_request_gets_its_reply(served: tuple[ControlServer, Loop, Echo]) -> None:
    server, loop, _ = served
    assert ask(server.path, b'{"cmd": "ping", "n": 1}\n') == {
        "ok": True, "echo": {"cmd": "ping", "n": 1}}
    loop.wait_connections(0)


def test_a_request_may_end_with_a_half_close_instead_of_a_newline(
        served: tuple[ControlServer, Loop, Echo]) -> None:
    server, _, _ = served
    with connect(server.path) as s:
        s.sendall(b'{"cmd": "ping"}')
        s.shutdown(socket.SHUT_WR)
        assert read_reply(s) == {"ok": True, "echo": {"cmd": "ping"}}


def test_a_deferred_reply_comes_later_and_has_no_deadline(
        served: tuple[ControlServer, Loop, Echo]) -> None:
    server, loop, echo = served
    with connect(server.path) as waiting:
        waiting.sendall(b'{"cmd": "later"}\n')
        ticket = echo.tickets.get(timeout=2)
        # meanwhile others are served, and the waiting one outlives the deadline
        assert ask(server.path, b'{"cmd": "ping"}\n') == {"ok": True, "echo": {"cmd": "ping"}}
        time.sleep(SHORT * 1.5)
        assert loop.connections() == 1
        loop.call(lambda: server.reply(ticket, {"ok": True, "results": [1, 2]}))
        assert read_reply(waiting) == {"ok": True, "results": [1, 2]}
    loop.wait_connections(0)
    loop.call(lambda: server.reply(ticket, {"ok": True}))  # answered already: a no-op


def test_a_deferred_reply_reaches_a_half_closed_client(
        served: tuple[ControlServer, Loop, Echo]) -> None:
    server, loop, echo = served
    with connect(server.path) as s:
        s.sendall(b'{"cmd": "later"}\n')
        s.shutdown(socket.SHUT_WR)
        ticket = echo.tickets.get(timeout=2)
        time.sleep(0.1)
        assert loop.connections() == 1
        loop.call(lambda: server.reply(ticket, {"ok": True}))
        assert read_reply(s) == {"ok": True}


@pytest.mark.parametrize("half_close_first", [False, True])
def test_a_deferred_client_that_hangs_up_is_dropped(
        served: tuple[ControlServer, Loop, Echo], half_close_first: bool) -> None:
    server, loop, echo = served
    s = connect(server.path)
    s.sendall(b'{"cmd": "later"}\n')
    ticket = echo.tickets.get(timeout=2)
    if half_close_first:
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.1)
    s.close()
    loop.wait_connections(0, within=control.HANGUP_POLL + 1.0)
    loop.call(lambda: server.reply(ticket, {"ok": True}))  # gone: a no-op


def test_reply_off_the_loop_thread_is_refused(served: tuple[ControlServer, Loop, Echo]) -> None:
    server, _, echo = served
    with connect(server.path) as s:
        s.sendall(b'{"cmd": "later"}\n')
        ticket = echo.tickets.get(timeout=2)
        with pytest.raises(RuntimeError, match="off the loop thread"):
            server.reply(ticket, {"ok": True})


def test_a_handler_exception_is_an_internal_error_with_a_traceback_in_the_log(
        served: tuple[ControlServer, Loop, Echo], caplog: pytest.LogCaptureFixture) -> None:
    server, _, _ = served
    with caplog.at_level(logging.ERROR, logger="mxone_agent.control"):
        assert ask(server.path, b'{"cmd": "boom"}\n') == {
            "ok": False, "error": "internal error: RuntimeError: boom"}
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)
    assert ask(server.path, b'{"cmd": "ping"}\n') == {"ok": True, "echo": {"cmd": "ping"}}


def test_an_unserializable_reply_is_an_internal_error(tmp_path: Path) -> None:
    def handler(request: dict[str, Any], ticket: Deferred) -> dict[str, Any]:
        return {"ok": True, "value": object()}

    server = ControlServer(str(tmp_path / "a.sock"), handler, deadline=SHORT)
    server.open()
    loop = Loop(server)
    try:
        reply = ask(server.path, b'{"cmd": "x"}\n')
        assert reply is not None and reply["error"].startswith("internal error: TypeError")
    finally:
        loop.finish()


# ---- clients that would stall a blocking loop -------------------------------------------------

def test_silent_clients_do_not_delay_others_and_are_cut_at_the_deadline(tmp_path: Path) -> None:
    deadline = 1.0
    with serving(tmp_path, deadline=deadline) as (server, loop, _):
        t0 = time.monotonic()
        silent = [connect(server.path) for _ in range(5)]
        loop.wait_connections(5)
        for _ in range(3):  # all while the five say nothing
            reply, took = timed_ask(server.path)
            assert reply == {"ok": True, "echo": {"cmd": "ping"}}
            assert took < PROMPT, f"a client waited {took:.3f} s behind silent ones"
        for s in silent:
            assert read_reply(s) == {"ok": False,
                                     "error": f"request not complete within {deadline} s"}
            s.close()
        took = time.monotonic() - t0
        assert deadline <= took < deadline + 0.5
        loop.wait_connections(0)
        assert loop.longest_step < STEP
        assert loop.longest_gap < 0.1


def test_a_slowloris_is_cut_at_the_deadline_and_never_served(
        served: tuple[ControlServer, Loop, Echo]) -> None:
    server, loop, echo = served
    request = b'{"cmd": "slow", "pad": "' + b"x" * 100 + b'"}\n'
    # t0 before connecting: the server counts the deadline from its accept, which may come
    # before connect() has returned to this thread on a loaded machine
    t0 = time.monotonic()
    s = connect(server.path)
    reply = None
    for byte in request:
        try:
            s.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            # the server wrote its verdict and closed between two bytes: the verdict
            # still waits in this socket's receive buffer
            s.settimeout(1.0)
            reply = read_reply(s)
            break
        s.settimeout(0.1)  # one byte every 0.1 s, listening for a verdict meanwhile
        with contextlib.suppress(TimeoutError):
            reply = read_reply(s)
            break
    cut_after = time.monotonic() - t0
    s.close()
    assert reply == {"ok": False, "error": f"request not complete within {SHORT} s"}
    assert SHORT <= cut_after < SHORT + 0.3
    assert not any(r["cmd"] == "slow" for r in echo.seen)
    assert loop.longest_step < STEP


def test_a_client_that_never_reads_its_big_reply_stalls_nothing(
        served: tuple[ControlServer, Loop, Echo]) -> None:
    server, loop, _ = served
    with connect(server.path) as greedy:
        greedy.sendall(b'{"cmd": "big"}\n')
        time.sleep(0.05)
        assert loop.connections() == 1  # 1 MB does not fit in the socket: still writing
        reply, took = timed_ask(server.path)
        assert reply is not None and reply["ok"] and took < PROMPT
        loop.wait_connections(0, within=SHORT + 0.5)  # dropped at its write deadline
    assert loop.longest_step < STEP


def test_the_connection_cap_answers_busy_at_once_and_leaks_nothing(tmp_path: Path) -> None:
    before = open_fds()
    with serving(tmp_path, deadline=2.0) as (server, loop, _):
        held = [connect(server.path) for _ in range(control.MAX_CONNECTIONS)]
        loop.wait_connections(control.MAX_CONNECTIONS)
        t0 = time.monotonic()
        for _ in range(50 - control.MAX_CONNECTIONS):  # no request needed: not read at all
            with connect(server.path) as s:
                assert read_reply(s) == {"ok": False, "error": "busy: 16 control connections "
                                         "are open; try again"}
        assert time.monotonic() - t0 < 1.0
        for i, s in enumerate(held):  # those within the cap are served
            s.sendall(json.dumps({"cmd": "ping", "i": i}).encode() + b"\n")
        for i, s in enumerate(held):
            assert read_reply(s) == {"ok": True, "echo": {"cmd": "ping", "i": i}}
            s.close()
        loop.wait_connections(0)
        assert loop.longest_step < STEP
    assert open_fds() == before


def test_fifty_concurrent_clients_are_served_or_told_busy_and_nothing_hangs(
        tmp_path: Path) -> None:
    with serving(tmp_path, deadline=2.0) as (server, loop, _):
        before = open_fds()
        replies: list[tuple[int, dict | None, float]] = []
        go = threading.Event()

        def client(i: int) -> None:
            go.wait()
            t0 = time.monotonic()
            r = ask(server.path, json.dumps({"cmd": "ping", "i": i}).encode() + b"\n")
            replies.append((i, r, time.monotonic() - t0))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join(timeout=5)
        assert not any(t.is_alive() for t in threads), "a client hangs"
        assert len(replies) == 50
        busy = {"ok": False, "error": "busy: 16 control connections are open; try again"}
        for i, r, took in replies:
            assert r in ({"ok": True, "echo": {"cmd": "ping", "i": i}}, busy)
            assert took < 1.0
        assert sum(r != busy for _, r, _ in replies) >= control.MAX_CONNECTIONS
        loop.wait_connections(0)
        assert open_fds() == before


# ---- requests that used to end the process ----------------------------------------------------

DEEP_BUT_SMALL = b"[" * 60000 + b"\n"

@pytest.mark.parametrize("payload, error", [
    (b"[]\n", "bad request: a request is a JSON object, not an array"),
    (b"1\n", "bad request: a request is a JSON object, not a number"),
    (b'"x"\n', "bad request: a request is a JSON object, not a string"),
    (b"null\n", "bad request: a request is a JSON object, not null"),
    (b"{}\n", 'bad request: the request has no "cmd"'),
    (b'{"cmd": 5}\n', 'bad request: "cmd" must be a string, not a number'),
    (b'{"cmd": null}\n', 'bad request: "cmd" must be a string, not null'),
    (b'{"cmd": "sync", "lim": Infinity}\n', "bad request: Infinity is not a JSON number"),
    (b'{"lim": -Infinity}\n', "bad request: -Infinity is not a JSON number"),
    (b"NaN\n", "bad request: NaN is not a JSON number"),
    (b'{"cmd": "x", "lim": 1e400}\n', "bad request: number 1e400 is out of range"),
    (b'{"cmd": "x", "lim": ' + b"9" * 5000 + b"}\n", "bad request: not JSON: Exceeds the limit"),
    (DEEP_BUT_SMALL, "bad request: nested too deeply"),
    (b"[" * 100000 + b"\n", "request larger than 65536 bytes"),
    (b"x" * 70000, "request larger than 65536 bytes"),
    (b'{"cmd": "\xff"}\n', "bad request: not UTF-8: byte 0xff at offset 9"),
    (b"\n", "bad request: empty request"),
    (b"{\n", "bad request: not JSON: Expecting property name"),
    (b'{"cmd": "ping"', "bad request: not JSON"),  # then a half-close: the end of it
])
def test_a_malformed_request_is_answered_and_the_server_goes_on(
        served: tuple[ControlServer, Loop, Echo], payload: bytes, error: str) -> None:
    server, loop, echo = served
    with connect(server.path) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        reply = read_reply(s)
    assert reply is not None and reply["ok"] is False
    assert reply["error"].startswith(error), reply["error"][:200]
    assert echo.seen == []
    assert ask(server.path, b'{"cmd": "ping"}\n') == {"ok": True, "echo": {"cmd": "ping"}}
    loop.wait_connections(0)


def test_a_request_of_exactly_the_limit_is_read(served: tuple[ControlServer, Loop, Echo]) -> None:
    server, _, _ = served
    head = b'{"cmd": "ping", "pad": "'
    line = head + b"x" * (control.MAX_REQUEST - len(head) - 2) + b'"}'
    assert len(line) == control.MAX_REQUEST
    reply = ask(server.path, line + b"\n")
    assert reply is not None and reply["ok"] is True


def test_a_connection_closed_at_once_is_closed_cleanly(
        served: tuple[ControlServer, Loop, Echo]) -> None:
    server, loop, echo = served
    for _ in range(5):
        connect(server.path).close()
    loop.wait_connections(0)
    assert echo.seen == []
    assert ask(server.path, b'{"cmd": "ping"}\n') == {"ok": True, "echo": {"cmd": "ping"}}


def test_parse_request_survives_deep_nesting_of_any_size() -> None:
    for text in (b"[" * 100000, b'{"cmd": "x", "a": ' + b"[" * 100000):
        with pytest.raises(control.BadRequest, match="nested too deeply"):
            control.parse_request(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)
requests = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"cmd": json_values}, optional={"lim": json_values})
    .map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=requests, newline=st.booleans())
def test_fuzz_any_bytes_get_one_reply_or_a_clean_close(
        served: tuple[ControlServer, Loop, Echo], payload: bytes, newline: bool) -> None:
    server, loop, _ = served
    with connect(server.path) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload + (b"\n" if newline else b""))
            s.shutdown(socket.SHUT_WR)
        reply = read_reply(s)
    if payload or newline:
        assert reply is not None and isinstance(reply["ok"], bool)
    else:
        assert reply is None  # connected and closed without a word
    assert not loop.errors
    assert ask(server.path, b'{"cmd": "ping"}\n') == {"ok": True, "echo": {"cmd": "ping"}}


# ---- the socket file --------------------------------------------------------------------------

def test_the_socket_is_0600_and_goes_with_the_server(tmp_path: Path) -> None:
    path = tmp_path / "run" / "mxone" / "agent.sock"  # parents are created
    server = ControlServer(str(path), Echo())
    server.open()
    st_ = os.stat(path)
    assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["agent.sock"]  # no private dir left behind
    server.close()
    assert not path.exists()
    server.close()  # idempotent


def test_open_refuses_while_another_server_listens(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sock")
    first = ControlServer(path, Echo())
    first.open()
    try:
        second = ControlServer(path, Echo())
        with pytest.raises(ControlError, match="another process already listens on"):
            second.open()
        assert stat.S_ISSOCK(os.stat(path).st_mode)  # the first one's socket is intact
    finally:
        first.close()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, no one listens: a crashed agent's
    server = ControlServer(str(path), Echo(), deadline=SHORT)
    server.open()
    loop = Loop(server)
    try:
        assert ask(str(path), b'{"cmd": "ping"}\n') == {"ok": True, "echo": {"cmd": "ping"}}
    finally:
        loop.finish()


def test_open_refuses_a_path_that_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    path.write_text("keep me")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        ControlServer(str(path), Echo()).open()
    assert path.read_text() == "keep me"


def test_close_leaves_a_newer_servers_socket_alone(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    old = ControlServer(str(path), Echo())
    old.open()
    path.unlink()  # e.g. removed by hand, and a new agent started
    new = ControlServer(str(path), Echo())
    new.open()
    old.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    new.close()
    assert not path.exists()


def test_a_path_too_long_for_a_unix_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120) / "agent.sock"
    with pytest.raises(ControlError, match="a unix socket path has at most 107"):
        ControlServer(str(path), Echo()).open()


# ---- lim_number -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (1, 1), (124, 124), (0, 0), (999, 999), ("2", 2), ("007", 7), ("999", 999),
    (True, None), (False, None), (-1, None), (1000, None), (10**400, None),
    (2.0, None), (float("inf"), None), (float("nan"), None),
    ("", None), ("1000", None), ("-1", None), (" 1", None), ("1 ", None), ("1\n", None),
    ("1.0", None), ("１", None), ("٣", None), ("0x1", None), ("1e2", None),
    (None, None), ([1], None), ({"lim": 1}, None), (b"1", None),
])
def test_lim_number(raw: object, expected: int | None) -> None:
    assert lim_number(raw) == expected
