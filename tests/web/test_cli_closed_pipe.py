"""The edges of ``webserver_config`` an administrator hits, as for ``mxone_maintenance``:
``... | head`` - a reader that went away - ends the tool quietly (exit 141 and nothing on
stderr, or the command's own exit code and its reason on stderr when it failed anyway; in
this process, against tests/web/fakes); the menus without a terminal say so (a real
process without one)."""

from __future__ import annotations

import io
import subprocess
import sys

from mxone_web import cli

from tests.web import fakes
from tests.web.test_tool_commands import GOOD, MASTER, REPL


class ClosedPipe(io.StringIO):
    """A stdout whose reader went away."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def run_into_closed_pipe(monkeypatch, capsys, web, argv, *stdin: str):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in stdin)))
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = cli.main(argv, web=web)
    monkeypatch.undo()
    return code, capsys.readouterr().err


def test_output_to_a_reader_that_went_away_ends_quietly(tmp_path, monkeypatch, capsys):
    w = fakes.web(tmp_path)
    code, err = run_into_closed_pipe(monkeypatch, capsys, w, [*MASTER, "--dry-run"],
                                     GOOD, "Adm1n-Pass", REPL)
    assert code == 141
    assert err == ""  # no "internal error: BrokenPipeError", no traceback


def test_a_refusal_keeps_its_exit_code_and_its_reason_with_the_reader_gone(
        tmp_path, monkeypatch, capsys):
    w = fakes.web(tmp_path)
    code, err = run_into_closed_pipe(monkeypatch, capsys, w, [*MASTER, "--dry-run", "--json"])
    assert code == 1, err  # stdin ended before the passwords: refused
    assert err.startswith("webserver_config: refused: ")
    assert "BrokenPipe" not in err


def test_the_menus_without_a_terminal_say_what_to_do(tmp_path):  # type: ignore[no-untyped-def]
    """As from cron, or `ssh host webserver_config` without -t: no tty at all, and no
    internal error (urwid's PermissionError) - the way out named instead."""
    r = subprocess.run([sys.executable, "-m", "mxone_web.entry", "--settings",
                        str(tmp_path / "settings.json")], capture_output=True, text=True,
                       timeout=60, start_new_session=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the menus need a terminal" in r.stderr and "ssh -t" in r.stderr
    assert "redundancy status" in r.stderr and "internal error" not in r.stderr
    assert r.stdout == ""
