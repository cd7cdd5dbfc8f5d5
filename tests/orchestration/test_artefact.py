"""The agent artefact: deterministic, cached, runnable with nothing but python3."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from mxone_maintenance import artefact

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
