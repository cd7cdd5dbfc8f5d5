"""What the installed product is: the wheel holds the tool, the menus, the agent and the
web pair, never the lab or the benchmarks; its runtime dependencies are what runtime code
imports. And scripts/install puts it in a venv with its commands linked."""

from __future__ import annotations

import ast
import email
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("mxone_maintenance", "menus", "agent", "web")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    [path] = out.glob("mxone_redundancy-*.whl")
    return zipfile.ZipFile(path)


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_the_wheel_holds_the_product_and_no_lab(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"mxone_maintenance", "mxone_menus", "mxone_agent", "mxone_web"}
    assert not [n for n in names if "mxone_lab" in n or "mxone_bench" in n or "bench" in n]
    # Every module of the product is in it, subpackages included (the agent's node side is
    # what the deployed artefact runs on each node).
    for folder, package in (("agent", "mxone_agent"), ("mxone_maintenance", "mxone_maintenance"),
                            ("menus", "mxone_menus"), ("web", "mxone_web")):
        for path in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{path.relative_to(ROOT / folder).as_posix()}" in names, path
    assert "mxone_agent/systemd/mxone-agent.service" in names
    [entry] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = wheel.read(entry).decode()
    assert "mxone-lab" not in scripts and "mxone_lab" not in scripts
    for command in ("mxone_maintenance =", "mxone-agent =", "webserver_config ="):
        assert command in scripts


def test_runtime_dependencies_are_what_runtime_imports(wheel: zipfile.ZipFile) -> None:
    meta = metadata(wheel)
    runtime = sorted(r.split(">")[0].split(";")[0].strip() for r in meta.get_all("Requires-Dist")
                     if "extra ==" not in r)
    assert runtime == ["cryptography", "paramiko", "pyroute2", "tomlkit", "urwid"]
    assert any(r.startswith("scapy") and 'extra == "test"' in r
               for r in meta.get_all("Requires-Dist"))
    assert meta["License-Expression"] == "Apache-2.0"
    imported = set()
    for folder in PRODUCT:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {
        "mxone_maintenance", "mxone_menus", "mxone_agent", "mxone_web", "__future__",
        "psycopg2",  # the web pair's reference application, on the system python3 of its hosts
        "mxone_web_hook_rules"}  # the web hook's rules, installed beside the hook
    assert third_party <= set(runtime)
    # tomlkit: the system file's writer that keeps the administrator's comments (issue 11,
    # item 8) imports it; declared already.
    assert set(runtime) - third_party <= {"tomlkit"}
    assert "scapy" not in imported and "mxone_lab" not in imported


def test_install_script_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "install"
    r = subprocess.run([str(script), "--bogus"], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (1, "install: unknown argument --bogus (see --help)\n")
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "data").write_text("not ours")
    r = subprocess.run([str(script), "--uninstall", "--prefix", str(tmp_path / "opt"),
                        "--bin-dir", str(tmp_path / "bin")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "is not an environment this script made: not removed" in r.stderr
    assert (tmp_path / "opt" / "data").exists()
    r = subprocess.run([str(script), "--wheels", str(tmp_path / "none")], capture_output=True,
                       text=True, timeout=30)
    assert (r.returncode, r.stderr) == (
        1, f"install: {tmp_path / 'none'}: no such directory (make it with --download)\n")


def test_install_from_wheels_links_the_commands_and_uninstalls(tmp_path: Path) -> None:
    """Offline from the wheels ``--download`` made (this machine reaches the package index
    for that; a machine that cannot skips), into a prefix of the test's own."""
    script = ROOT / "scripts" / "install"
    wheels, prefix, bin_dir = tmp_path / "wheels", tmp_path / "opt", tmp_path / "bin"
    r = subprocess.run([str(script), "--download", str(wheels)], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot download the dependencies' wheels here: {r.stderr[-300:]}")
    bin_dir.mkdir()
    (bin_dir / "webserver_config").write_text("#!/bin/sh\n")  # someone else's
    args = [str(script), "--wheels", str(wheels), "--prefix", str(prefix), "--bin-dir",
            str(bin_dir)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1
    assert r.stderr.endswith(f"install: {bin_dir}/webserver_config exists and is not ours: not "
                             "replaced (remove it)\n")
    (bin_dir / "webserver_config").unlink()
    for _ in range(2):  # idempotent
        r = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1].startswith(f"install: mxone-redundancy 0.1.0 installed "
                                                    f"in {prefix}; commands linked in {bin_dir}")
    for command in ("mxone_maintenance", "mxone-agent", "webserver_config"):
        assert os.readlink(bin_dir / command) == f"{prefix}/bin/{command}"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    r = subprocess.run(["mxone_maintenance", "--help"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.startswith("usage: mxone_maintenance"), r.stderr
    r = subprocess.run([f"{prefix}/bin/python", "-c", "import mxone_lab"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert "No module named 'mxone_lab'" in r.stderr
    r = subprocess.run([str(script), "--uninstall", "--prefix", str(prefix), "--bin-dir",
                        str(bin_dir)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not prefix.exists() and list(bin_dir.iterdir()) == []
