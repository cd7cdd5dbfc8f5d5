"""The README's "On a real system", run as written on lab hosts without the project's venv:
scripts/install on lim1 (offline, from wheels), the first cluster with `sudo -H
mxone_maintenance`, refused while standby1's python3 is too old and made once it is not,
an upgrade (the install again) and the uninstall. Prints the transcript (pytest -s).

standby1's too-old Python is a stand-in: this machine has no Python older than 3.11 to
install (Debian 12 ships 3.11 only, and no package index here carries an interpreter), so a
script that reports 3.9.18 (sys.version_info) and otherwise runs the real interpreter is
bind-mounted over /usr/bin/python3 in standby1's own mount namespace only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mxone_lab import Lab

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # no venv in it
OLD = "/run/mxone-test-old-python"
SHIM = f"""#!{OLD}/python3.11
# A stand-in for an old python3 (see tests/orchestration/test_install_lab.py).
import runpy, sys
sys.version_info = (3, 9, 18, "final", 0)
args = sys.argv[1:]
if args[:1] in (["-V"], ["--version"]):
    print("Python 3.9.18")
elif args[:1] == ["-c"]:
    sys.argv = ["-c"] + args[2:]
    exec(compile(args[1], "<string>", "exec"), {{"__name__": "__main__"}})
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
"""


class Transcript:
    """Runs shell commands on a host as an administrator types them; keeps what they said."""

    def __init__(self, lab: Lab, readme: str) -> None:
        self.lab, self.readme = lab, readme
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def run(self, host: str, command: str, expect: int = 0, timeout: float = 600,
            cwd: str = "/root", literal: bool = True) -> subprocess.CompletedProcess[str]:
        """``command`` in bash on ``host``; ``literal``: it is one of the README's."""
        if literal:
            assert command in self.readme, f"not in the README as written: {command}"
        r = self.lab.exec(host, ["bash", "-c", command],
                          env={"PATH": PATH, "HOME": "/root"}, check=False, timeout=timeout,
                          cwd=cwd)
        self.lines.append(f"root@{host}:~# {command}")
        self.lines += [line for line in (r.stdout + r.stderr).splitlines()
                       if "WARNING: Location 'file:" not in line]  # this machine's pip.conf
        assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
        assert r.returncode == expect, f"{command}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## On a real system\n")
    return text[start:text.index("\n## ", start + 1)]


@pytest.fixture
def wheels() -> Iterator[Path]:
    """The README's first step, on this machine (it reaches the package index; the lab's
    hosts do not): the wheels in /tmp/mxone-wheels, removed afterwards."""
    out = Path("/tmp/mxone-wheels")
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run(["scripts/install", "--download", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot download the dependencies' wheels here: {r.stderr[-300:]}")
    try:
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def old_python(lab: Lab) -> Iterator[None]:
    """standby1's /usr/bin/python3 (and python3.11, which it links to) says 3.9.18."""
    lab.exec("standby1", f"mkdir -p {OLD} && touch {OLD}/python3.11 && "
             f"mount --bind /usr/bin/python3.11 {OLD}/python3.11 && cat > {OLD}/python3 && "
             f"chmod 755 {OLD}/python3 && mount --bind {OLD}/python3 /usr/bin/python3",
             input=SHIM)
    try:
        yield
    finally:
        lab.exec("standby1", f"umount /usr/bin/python3.11; umount {OLD}/python3.11; "
                 f"rm -rf {OLD}", check=False)


def test_on_a_real_system_as_the_readme_says(lab: Lab, wheels: Path, old_python: None,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    readme = readme_section()
    t = Transcript(lab, readme)
    try:
        # The machine itself is untouched by standby1's stand-in.
        assert subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
                              capture_output=True, text=True).stdout.strip() == "(3, 11)"
        t.note("on this machine, in the checkout (it reaches the package index):")
        t.lines.append(f"root@machine:{ROOT}# scripts/install --download /tmp/mxone-wheels")
        assert "scripts/install --download /tmp/mxone-wheels" in readme
        t.lines += [line for line in sorted(p.name for p in wheels.iterdir())]
        t.note("lim3 plays that machine for the copy (the lab's hosts see the checkout and /tmp)")
        t.run("lim3", "scp -r /tmp/mxone-wheels scripts/install root@lim1:", cwd=str(ROOT))
        t.note("lim1 has no project venv: nothing of the project is installed")
        t.run("lim1", "command -v mxone_maintenance || echo none", literal=False)
        t.run("lim1", "~/install --wheels ~/mxone-wheels")
        t.run("lim1", "sudo -H mxone_maintenance --help")
        t.run("lim1", "ls -l /usr/local/bin/mxone_maintenance "
                      "/opt/mxone_install/bin/mxone_maintenance", literal=False)
        t.run("lim1", "sudo -H mxone_maintenance server add lim1 10.77.0.11/24 --lim 1 --new "
                      "--accept-new-host-key")
        t.run("lim1", "sudo -H mxone_maintenance server add lim2 10.77.0.12/24 --lim 2 "
                      "--accept-new-host-key")
        t.run("lim1", "sudo -H mxone_maintenance server add standby1 10.77.0.20/24 "
                      "--accept-new-host-key")
        t.run("lim1", "sudo -H mxone_maintenance standby convert standby1")
        create = ("sudo -H mxone_maintenance cluster create north --standby standby1 "
                  "--lim 2:10.77.0.52 --accept-new-host-key")
        t.note("standby1's python3 says 3.9.18: the cluster is refused, nothing changes")
        t.run("standby1", "/usr/bin/python3 -V", literal=False)
        r = t.run("lim1", create, expect=2)  # 2: not applied
        said = r.stdout + r.stderr
        assert re.search(r"standby1.*lacks what the agent needs: Python 3\.11 or later needed, "
                         r"/usr/bin/python3 is 3\.9\.18: install `apt-get install python3` in "
                         r"a version of at least 3\.11; nothing was changed", said), said
        for host in ("lim2", "standby1"):
            assert lab.exec(host, "test -e /opt/mxone || test -e /etc/mxone/agent",
                            check=False).returncode == 1, host
        t.note("standby1 gets a Python 3.11 (here: the stand-in is taken away)")
        lab.exec("standby1", f"umount /usr/bin/python3.11; umount {OLD}/python3.11")
        t.run("standby1", "/usr/bin/python3 -V", literal=False)
        t.run("lim1", create)
        t.run("lim1", "sudo -H mxone_maintenance cluster status")
        t.run("standby1", "cat /opt/mxone/agent/current/VERSION "
                          "/opt/mxone/agent/current/MIN_PYTHON", literal=False)
        t.note("Upgrade: the new wheels copied as above, then")
        t.run("lim1", "~/install --wheels ~/mxone-wheels")
        t.run("lim1", "sudo -H mxone_maintenance cluster status")
        t.note("Uninstall")
        t.run("lim1", "~/install --uninstall")
        t.run("lim1", "command -v mxone_maintenance || echo none; ls /opt/mxone_install; "
                      "ls /etc/mxone", literal=False)
    finally:
        lab.exec("lim1", "~/install --uninstall; rm -rf ~/install ~/mxone-wheels", check=False,
                 env={"PATH": PATH})
        with capsys.disabled():
            print("\n--- transcript ---\n" + "\n".join(t.lines) + "\n--- end ---")
