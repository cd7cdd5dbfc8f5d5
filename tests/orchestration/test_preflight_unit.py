"""Before the first change: each node's Python, nft and ssh, asked in one round trip; a
node that lacks any refuses the whole change with what to install, and nothing changes
anywhere. Without a network: the probe's answers are made up here, and the probe itself
runs on this machine's sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mxone_maintenance import preflight, ssh, store
from tests.orchestration.test_network_config_unit import create
from tests.orchestration.test_orchestrate_unit import applier
from tests.orchestration.test_release_cleanup_unit import SNAPSHOT, ReleasePool

SLES = "os=sles suse\nos_name=SUSE Linux Enterprise Server 15 SP5\n"
DEBIAN = "os=debian \nos_name=Debian GNU/Linux 12 (bookworm)\n"


def probe(python3: str = "3.11.2", others: str = "", nft: bool = True, ssh_: bool = True,
          os: str = DEBIAN) -> str:
    return (f"python3={python3}\n{others}" + ("nft=/usr/sbin/nft\n" if nft else "")
            + ("ssh=/usr/bin/ssh\n" if ssh_ else "") + os + "end=ok\n")


def ok(name: str, stdout: str) -> ssh.Result:
    return ssh.Result(name, True, stdout, "", 0)


def test_the_probe_runs_on_sh_and_reads_this_machine() -> None:
    r = subprocess.run(["sh", "-c", preflight.PROBE], capture_output=True, text=True, timeout=30)
    facts = preflight.parse(r.stdout)
    assert facts is not None, r.stdout + r.stderr
    assert facts.python3 is not None and facts.python3[:2] >= (3, 11)
    assert facts.python == ("/usr/bin/python3", facts.python3)
    assert facts.nft and facts.ssh and facts.os
    assert preflight.missing(facts) == []


@pytest.mark.parametrize(("stdout", "want"), [
    (probe(), []),
    (probe(python3="3.6.15", os=SLES),
     ["Python 3.11 or later needed, /usr/bin/python3 is 3.6.15: install `zypper install "
      "python311` (SUSE Linux Enterprise 15 SP4 and later ship it; it installs "
      "/usr/bin/python3.11, which the agent then runs on)"]),
    (probe(python3="3.9.2"),
     ["Python 3.11 or later needed, /usr/bin/python3 is 3.9.2: install `apt-get install "
      "python3` in a version of at least 3.11"]),
    (probe(python3="", nft=False, ssh_=False, os=SLES),
     ["Python 3.11 or later needed, no /usr/bin/python3 runs: install `zypper install "
      "python311` (SUSE Linux Enterprise 15 SP4 and later ship it; it installs "
      "/usr/bin/python3.11, which the agent then runs on)",
      "no nft (the agent's fencing and address guard need it): install `zypper install "
      "nftables`",
      "no ssh client (the cluster's servers sync exchange data over SSH): install `zypper "
      "install openssh`"]),
    (probe(nft=False, ssh_=False),
     ["no nft (the agent's fencing and address guard need it): install `apt-get install "
      "nftables`",
      "no ssh client (the cluster's servers sync exchange data over SSH): install `apt-get "
      "install openssh-client`"]),
    (probe(python3="3.6.15", os=""),
     ["Python 3.11 or later needed, /usr/bin/python3 is 3.6.15: install Python 3.11 or later "
      "as /usr/bin/python3 or /usr/bin/python3.X"]),
])
def test_what_a_node_lacks_names_the_package(stdout: str, want: list[str]) -> None:
    facts = preflight.parse(stdout)
    assert facts is not None
    assert preflight.missing(facts) == want


def test_a_newer_python_beside_an_old_python3_is_enough() -> None:
    """SUSE: python3 stays 3.6, python311 adds /usr/bin/python3.11; the launcher runs that."""
    facts = preflight.parse(probe(python3="3.6.15", os=SLES, others=(
        "alt=/usr/bin/python3.10 3.10.9\nalt=/usr/bin/python3.11 3.11.10\n")))
    assert facts is not None
    assert facts.python == ("/usr/bin/python3.11", (3, 11, 10))
    assert preflight.missing(facts) == []


def test_refusals_name_each_node_and_an_unreadable_answer() -> None:
    got = preflight.refusals({
        "lim1": ok("lim1", probe()),
        "lim2": ok("lim2", probe(python3="3.6.15", os=SLES)),
        "lim3": ok("lim3", "python3=3.11.2\n"),  # cut short
        "standby1": ssh.Result("standby1", False, "", "sh: 1: Syntax error", 2),
    })
    assert sorted(got) == ["lim2", "lim3", "standby1"]
    assert got["lim2"].startswith("this server (SUSE Linux Enterprise Server 15 SP5) lacks what "
                                  "the agent needs: Python 3.11 or later needed, "
                                  "/usr/bin/python3 is 3.6.15: install `zypper install python311`")
    assert got["lim3"] == "cannot check what this server has (sh): unexpected answer " \
                          "'python3=3.11.2\\n'"
    assert got["standby1"] == "cannot check what this server has (sh): exit status 2: " \
                              "sh: 1: Syntax error"


class ProbedPool(ReleasePool):
    """ReleasePool whose servers answer the preflight probe with ``facts[name]``."""

    def __init__(self, tmp_path: Path, facts: dict[str, str]) -> None:
        super().__init__(tmp_path, has=set(), answers={"snapshot": SNAPSHOT})
        self.facts = facts
        self.probed: list[str] = []
        self.puts: list[str] = []

    def run(self, target, command, *, input=None, timeout=None):  # type: ignore[no-untyped-def]
        if command == preflight.COMMAND:
            self.probed.append(target.name)
            return ok(target.name, self.facts.get(target.name, probe()))
        return super().run(target, command, input=input, timeout=timeout)

    def put(self, target, path, data, mode=0o644):  # type: ignore[no-untyped-def]
        self.puts.append(target.name)
        return super().put(target, path, data, mode)


def test_one_node_too_old_refuses_the_change_with_nothing_changed_anywhere(
        tmp_path: Path) -> None:
    change = create()
    pool = ProbedPool(tmp_path, {"standby1": probe(python3="3.6.15", os=SLES)})
    a = applier(tmp_path, pool)
    a.checks = preflight.check
    store.save(tmp_path / "system.toml", change.before)
    before = (tmp_path / "system.toml").read_bytes()
    result = a.apply(change, lambda line, f: None)
    assert sorted(pool.probed) == ["lim2", "standby1"]  # the servers the change touches
    assert pool.bootstrap == [] and pool.ops == [] and pool.puts == []  # nothing reached a node
    why = {o.server: (o.ok, o.message) for o in result.outcomes}
    assert why["standby1"] == (False, "this server (SUSE Linux Enterprise Server 15 SP5) lacks what "
                           "the agent needs: Python 3.11 or later needed, /usr/bin/python3 is "
                           "3.6.15: install `zypper install python311` (SUSE Linux Enterprise "
                           "15 SP4 and later ship it; it installs /usr/bin/python3.11, which "
                           "the agent then runs on); nothing was changed")
    assert why["lim2"] == (True, "not changed (stays at generation 2)")
    assert (tmp_path / "system.toml").read_bytes() == before
    assert result.generation == change.before.generation


def test_every_node_fit_the_change_goes_on(tmp_path: Path) -> None:
    change = create()
    pool = ProbedPool(tmp_path, {})
    a = applier(tmp_path, pool)
    a.checks = preflight.check
    store.save(tmp_path / "system.toml", change.before)
    a.apply(change, lambda line, f: None)
    assert sorted(pool.probed) == ["lim2", "standby1"]
    assert sorted({name for name, _ in pool.bootstrap}) == ["lim2", "standby1"]
