"""The whole tree passes pyflakes' checks (undefined and unused names, bad syntax)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]


def test_no_undefined_or_unused_names() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    r = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select", "F,E9",
                        "--target-version", "py311", str(TOP)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
