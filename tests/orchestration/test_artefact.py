"""The agent artefact: deterministic, cached, runnable with nothing but python3."""

from __future__ import annotations

import ast
import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mxone_agent.version import VERSION
from mxone_maintenance import artefact

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).resolve().parent / "fake_agent" / "mxone_agent"


def test_same_code_same_bytes(tmp_path: Path) -> None:
    a = artefact.build_bytes({"mxone_agent": FAKE})
    b = artefact.build_bytes({"mxone_agent": FAKE})
    assert a == b
    names = tarfile.open(fileobj=io.BytesIO(a)).getnames()
    files = [n for n in names if n.startswith("lib/")]
    assert files == sorted(files)
    assert "bin/mxone-agent" in names and "lib/mxone_agent/main.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    for m in tarfile.open(fileobj=io.BytesIO(a)).getmembers():
        assert m.mtime == 0 and m.uid == 0 and m.gid == 0


def test_sha_changes_only_when_code_changes_and_cache_is_reused(tmp_path: Path) -> None:
    src = tmp_path / "src" / "mxone_agent"
    shutil.copytree(FAKE, src, ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    first = artefact.build(cache, {"mxone_agent": src})
    again = artefact.build(cache, {"mxone_agent": src})
    assert again == first and len(list(cache.glob("*.tar.gz"))) == 1
    (src / "__pycache__").mkdir(exist_ok=True)
    (src / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert artefact.build(cache, {"mxone_agent": src}).sha256 == first.sha256
    (src / "main.py").write_text((src / "main.py").read_text() + "\n# changed\n")
    changed = artefact.build(cache, {"mxone_agent": src})
    assert changed.sha256 != first.sha256 and changed.release == changed.sha256[:12]


def test_real_artefact_runs_with_system_python_only(tmp_path: Path) -> None:
    """The launcher finds the agent and its libraries in lib/, not in any venv."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 here")
    art = artefact.build(tmp_path / "cache")
    with tarfile.open(art.path) as tar:
        tar.extractall(tmp_path / "x")  # our own tarball; no data filter on 3.11.2
    names = set((tmp_path / "x" / "lib").iterdir())
    assert {p.name for p in names} == {"mxone_agent", "pyroute2"}
    r = subprocess.run([str(tmp_path / "x" / "bin" / "mxone-agent"), "--help"],
                       capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "mxone-agent" in r.stdout
    r = subprocess.run(["/usr/bin/python3", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "import pyroute2, mxone_agent; print(mxone_agent.__file__)",
                        str(tmp_path / "x" / "lib")], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(tmp_path / "x" / "lib"))


def test_a_file_that_is_no_artefact_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"nope")
    with pytest.raises(artefact.ArtefactError, match="not a gzip tarball holding bin/mxone-agent"):
        artefact.from_file(bad)


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()  # type: ignore[union-attr]
                if m.isfile()}


def test_the_artefact_states_its_lowest_python_its_versions_and_licence() -> None:
    files = _members(artefact.build_bytes())
    assert files["MIN_PYTHON"] == b"3.11\n"
    assert artefact.MIN_PYTHON == (3, 11)
    agent, project = files["VERSION"].decode().splitlines()
    assert project == f"project mxone-redundancy {VERSION}"
    assert re.fullmatch(rf"mxone-agent {re.escape(VERSION)}\+[0-9a-f]{{12}}", agent), agent
    assert files["LICENSE"] == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in files["LICENSE"]
    assert "LICENSES/pyroute2/LICENSE" in files  # the library it carries, with its licence
    # The content id follows the code, not the build: a changed file changes it.
    fake = _members(artefact.build_bytes({"mxone_agent": FAKE}))["VERSION"]
    assert fake.split(b"\n")[0] != agent.encode()


def test_the_agent_is_written_for_its_lowest_python() -> None:
    """No syntax newer than MIN_PYTHON in what the artefact carries of ours; and the
    bootstrap that unpacks a release runs on any python3 (SUSE 15's is 3.6): no
    ``from __future__ import annotations``, no annotation evaluated at run time."""
    for path in sorted((ROOT / "agent").rglob("*.py")):
        ast.parse(path.read_text(), str(path), feature_version=artefact.MIN_PYTHON)
    release = ROOT / "agent" / "node" / "release.py"
    tree = ast.parse(release.read_text(), feature_version=(3, 6))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and n.module == "__future__"]
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for ann in [a.annotation for a in fn.args.args] + [fn.returns]:
            assert ann is None or isinstance(ann, (ast.Name, ast.Constant)), \
                (fn.name, ast.unparse(ann))


def _unpacked(tmp_path: Path) -> Path:
    (tmp_path / "a.tar.gz").write_bytes(artefact.build_bytes())
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        tar.extractall(tmp_path / "x")  # our own tarball
    return tmp_path / "x"


# Runs a script as an interpreter of another version would (sys.version_info says so).
AS_OLD = """import runpy, sys
sys.version_info = (3, 9, 18, "final", 0)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_the_launcher_refuses_a_too_old_python_naming_both_versions(tmp_path: Path) -> None:
    home = _unpacked(tmp_path)
    (tmp_path / "old.py").write_text(AS_OLD)
    r = subprocess.run([sys.executable, str(tmp_path / "old.py"), str(home / "bin/mxone-agent"),
                        "unit"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "MXONE_AGENT_PYTHON_TRIED": "1"})
    assert r.returncode == artefact.EXIT_TOO_OLD == 127
    assert r.stdout == ""
    assert r.stderr.startswith("mxone-agent: Python 3.11 or newer needed, found 3.9.18 (")
    assert "zypper install python311" in r.stderr


def test_the_launcher_runs_on_a_newer_python_installed_beside_an_old_one(
        tmp_path: Path) -> None:
    """As on SUSE: /usr/bin/python3 is old, /usr/bin/python3.11 (python311) runs the agent."""
    if not Path(f"/usr/bin/python3.{sys.version_info[1]}").exists():
        pytest.skip("no /usr/bin/python3.X here")
    home = _unpacked(tmp_path)
    (tmp_path / "old.py").write_text(AS_OLD)
    r = subprocess.run([sys.executable, str(tmp_path / "old.py"), str(home / "bin/mxone-agent"),
                        "unit"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT / "agent" / "systemd" / "mxone-agent.service").read_text()
