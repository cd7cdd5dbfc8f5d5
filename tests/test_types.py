"""The product packages pass mypy at the strictness pyproject.toml sets ([tool.mypy]).

The packages are installed under the project's own names (``mxone_menus`` is the folder
``menus/``, ``mxone_agent`` is ``agent/``), which mypy cannot see through the editable
install's import hook; the check therefore runs over a directory of links that carries those
names. The test lab and the tests themselves are not product code and are not checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
PACKAGES = {"mxone_maintenance": "mxone_maintenance", "mxone_menus": "menus",
            "mxone_agent": "agent", "mxone_web": "web"}


def test_product_packages_are_type_clean(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, folder in PACKAGES.items():
        (src / name).symlink_to(TOP / folder, target_is_directory=True)
    args = [sys.executable, "-m", "mypy", "--config-file", str(TOP / "pyproject.toml"),
            "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"]
    for name in PACKAGES:
        args += ["-p", name]
    r = subprocess.run(args, cwd=src, env={"MYPYPATH": str(src), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
