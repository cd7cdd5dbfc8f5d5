"""Helpers for orchestration tests: run mxone_maintenance on lim1 as the admin does.

The test process is in the root namespace and cannot reach lab addresses, so every
command runs INSIDE lim1 (``lab.exec("lim1", [python, "-m", "mxone_maintenance", ...])``)
with the lab's user key and a known-hosts file pinned from the lab's host keys.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxone_maintenance import artefact

FAKE_AGENT = Path(__file__).resolve().parent / "fake_agent" / "mxone_agent"
# The fake agent takes these real ones (the node operations, and the unit they install).
NODE_SIDE = ("node", "netconfig", "paths.py", "files.py", "sdnotify.py", "systemd", "contract.py")
KNOWN_HOSTS = "/etc/mxone/known_hosts"  # on lim1: the tool's default place
SERVERS = ("lim1", "lim2", "lim3", "standby1")


def fake_agent_sources(work: Path) -> dict[str, Path]:
    """The fake agent's package with the real node operations in it (the tool runs every
    node operation from the release it deploys), and pyroute2 they use."""
    real = artefact.package_dir("mxone_agent")
    package = work / "mxone_agent"
    shutil.copytree(FAKE_AGENT, package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in NODE_SIDE:
        if (real / name).is_dir():
            shutil.copytree(real / name, package / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(real / name, package / name)
    return {"mxone_agent": package, "pyroute2": artefact.package_dir("pyroute2")}


@pytest.fixture(scope="session")
def fake_artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployable tarball whose agent is the fake (the contract, no failover logic)."""
    path = tmp_path_factory.mktemp("artefact") / "fake-agent.tar.gz"
    path.write_bytes(artefact.build_bytes(fake_agent_sources(tmp_path_factory.mktemp("fake"))))
    path.parent.chmod(0o755)
    path.chmod(0o644)
    return path


def real_agent_missing() -> str | None:
    """Why the real agent daemon cannot be deployed yet (None when it can)."""
    r = subprocess.run([sys.executable, "-m", "mxone_agent.main", "run", "--help"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return ("the real agent daemon is not built yet: `mxone-agent run --help` exits "
                f"{r.returncode}: {(r.stderr or r.stdout).strip()[:200]}")
    return None


class Admin:
    """mxone_maintenance on lim1, with the lab's keys."""

    def __init__(self, lab, artefact_path: Path | None, servers: tuple[str, ...] = SERVERS
                 ) -> None:
        self.lab = lab
        self.artefact = artefact_path
        lines = "".join(lab.hosts[n].known_hosts_line + "\n" for n in servers)
        lab.exec("lim1", f"mkdir -p /etc/mxone && cat > {KNOWN_HOSTS}", input=lines)

    def run(self, *args: str, check: bool = False, timeout: float = 180.0,
            ssh: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "mxone_maintenance", *args]
        if ssh:
            argv += ["--ssh-key", str(self.lab.user_key_path)]
            if self.artefact is not None:
                argv += ["--agent-artefact", str(self.artefact)]
        r = self.lab.exec("lim1", argv, check=False, timeout=timeout)
        assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
        if check:
            assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def json(self, *args: str, **kw) -> dict:
        r = self.run(*args, "--json", **kw)
        return json.loads(r.stdout)

    def settled_status(self, timeout: float = 30.0) -> dict:
        """``cluster status --json`` once every LIM has an owner (agents that were just
        started pass a short boot wait before a regular server starts its LIM); the last
        answer when ``timeout`` passes first, so the caller's assertion shows it."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.json("cluster", "status", timeout=120)
            owners = [x["owner"] for c in data["clusters"] for x in c["lims"]]
            if all(o in ("regular", "standby") for o in owners) or time.monotonic() > deadline:
                return data
            time.sleep(0.5)

    def build_system(self, clusters: bool = True) -> None:
        """lim1..lim3 as LIMs 1..3, standby1 a standby, and cluster c1 of LIMs 2 and 3."""
        lab = self.lab
        for i, n in enumerate(("lim1", "lim2", "lim3"), start=1):
            new = ("--new",) if i == 1 else ()  # the first server starts the system
            self.run("server", "add", n, lab.hosts[n].cidr, "--lim", str(i), *new, check=True)
        self.run("server", "add", "standby1", lab.hosts["standby1"].cidr, check=True)
        self.run("standby", "convert", "standby1", check=True)
        # The new base addresses of LIMs 2 and 3 are entered here only: the tool configures
        # them on the servers (the old base addresses become the aliases).
        if clusters:
            self.run("cluster", "create", "c1", "--standby", "standby1",
                     "--lim", "2:10.77.0.52", "--lim", "3:10.77.0.53:2", "--timers", "fast",
                     check=True)


def tree_digest(lab, host: str, root: str = "/etc/mxone") -> dict[str, str]:
    """Path -> sha256 (or 'dir' / 'link:TARGET') of everything under ``root`` on a host."""
    code = (
        "import hashlib, json, os, sys\n"
        "root = sys.argv[1]\n"
        "out = {}\n"
        "for d, dirs, files in os.walk(root):\n"
        "    out[d] = 'dir %o' % (os.stat(d).st_mode & 0o7777)\n"
        "    for f in files:\n"
        "        p = os.path.join(d, f)\n"
        "        st = os.lstat(p)\n"
        "        out[p] = ('link:' + os.readlink(p)) if os.path.islink(p) else "
        "hashlib.sha256(open(p, 'rb').read()).hexdigest() + ' %o' % (st.st_mode & 0o7777)\n"
        "print(json.dumps(out))\n"
    )
    return json.loads(lab.run_python(host, code, args=[root]).stdout)


def agent_home(lab, host: str) -> dict[str, str]:
    """/opt/mxone and below down to the agent's releases (each by name, not by content),
    and the ``current`` link."""
    code = (
        "import json, os\n"
        "out = {}\n"
        "for d in ('/opt/mxone', '/opt/mxone/agent', '/opt/mxone/agent/releases'):\n"
        "    if os.path.isdir(d):\n"
        "        out[d] = ' '.join(sorted(os.listdir(d)))\n"
        "c = '/opt/mxone/agent/current'\n"
        "if os.path.islink(c):\n"
        "    out[c] = 'link:' + os.readlink(c)\n"
        "print(json.dumps(out))\n"
    )
    return json.loads(lab.run_python(host, code).stdout)


def all_trees(lab) -> dict[str, dict[str, str]]:
    """Every file the tool writes on each server: /etc/mxone, root's ~/.ssh (where the
    cluster's sync key is authorized) and the agent's releases under /opt/mxone."""
    return {h: {**tree_digest(lab, h), **tree_digest(lab, h, "/root/.ssh"),
                **agent_home(lab, h)} for h in SERVERS}


@pytest.fixture(scope="session")
def real_artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real agent's tarball, as `mxone_maintenance` deploys it."""
    cache = tmp_path_factory.mktemp("real-artefact")
    cache.chmod(0o755)
    art = artefact.build(cache)
    art.path.chmod(0o644)
    return art.path


@pytest.fixture
def admin(lab, real_artefact: Path) -> Iterator[Admin]:
    """mxone_maintenance on lim1 deploying the real agent."""
    yield Admin(lab, real_artefact)


@pytest.fixture
def fault_admin(lab, fake_artefact: Path) -> Iterator[Admin]:
    """mxone_maintenance deploying the stand-in agent, for the two faults a real agent
    cannot be made to show on demand: refusing a reload, and losing its network in the
    middle of one. Everything else runs against the real agent."""
    yield Admin(lab, fake_artefact)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
