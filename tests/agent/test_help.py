"""Every subcommand and option of ``mxone-agent`` says what it is (and its default)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from mxone_agent import command_line
from mxone_agent.main import main
from mxone_agent.version import VERSION


def parsers(p: argparse.ArgumentParser, path: str = "mxone-agent"
            ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


def missing_help(p: argparse.ArgumentParser) -> list[str]:
    """What of the parser ``p`` goes without help (or hides its default)."""
    missing = []
    for action in p._actions:
        what = "/".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            helped = {c.dest for c in action._choices_actions if c.help}
            missing += [f"subcommand {n}" for n in action.choices if n not in helped]
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(what)
        elif action.default not in (None, False, argparse.SUPPRESS) and \
                "%(default)" not in action.help and str(action.default) not in action.help:
            missing.append(f"{what} (its default {action.default!r} is not said)")
    return missing


def test_every_subcommand_and_option_has_help() -> None:
    found = {path: missing_help(p) for path, p in parsers(command_line.parser())}
    assert {"mxone-agent run", "mxone-agent ctl", "mxone-agent fence", "mxone-agent leave",
            "mxone-agent xdata", "mxone-agent service", "mxone-agent node",
            "mxone-agent unit", "mxone-agent check-config"} <= set(found)
    assert {path: m for path, m in found.items() if m} == {}


def test_the_walk_finds_an_option_without_help() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    r = sub.add_parser("run", help="run")
    r.add_argument("--quiet", action="store_true", help="say less")
    r.add_argument("--config", default="/etc/x")
    r.add_argument("--port", default=7, help="the port")
    sub.add_parser("bare")
    found = {path: missing_help(q) for path, q in parsers(p)}
    assert found == {"mxone-agent": ["subcommand bare"],
                     "mxone-agent run": ["--config", "--port (its default 7 is not said)"],
                     "mxone-agent bare": []}


@pytest.mark.parametrize("words", [["run"], ["ctl"], ["fence"], ["leave"], ["service"],
                                   ["unit"], ["check-config"], ["xdata"], ["node"], []])
def test_help_of_every_subcommand_prints_and_exits_0(
        words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([*words, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mxone-agent {' '.join(words)}".rstrip())


def test_run_help_names_each_option_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for option, default in [("--config", "/etc/mxone/agent/node.json"),
                            ("--secret", "/etc/mxone/agent/cluster.key"),
                            ("--state-dir", "/var/opt/mxone/agent"),
                            ("--pidfile", "/run/mxone/agent.pid"),
                            ("--control", "/run/mxone/agent.sock"),
                            ("--run-dir", "/run/mxone"),
                            ("--alarm-file", "/var/log/mxone/alarms.log")]:
        assert option in out and f"default: {default}" in out
    assert ("default: the journal when systemd started the agent, else "
            "/var/log/mxone/agent.log with --daemon, else stderr") in out
    assert "--daemon" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"mxone-agent {VERSION}\n" == "mxone-agent 0.1.0\n"
