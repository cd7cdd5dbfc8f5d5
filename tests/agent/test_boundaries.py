"""The agent's import boundaries: pure modules stay pure, and nothing of the TUI or SSH."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mxone_agent

AGENT_DIR = Path(mxone_agent.__file__).parent
PURE = ["config", "config_rules", "config_types", "contract", "jsonreader", "heartbeat", "peers",
        "decide", "local_state", "situation", "fallback", "takeover", "explain", "actions",
        "model", "errors", "sync_policy", "paths", "version"]
# The modules with side effects (sockets, processes, files); stdlib + pyroute2 only.
IO = ["action_worker", "alarms", "arp", "early_probe", "priority", "rtnl", "announce", "warm_start", "bonding", "config_reload", "control", "control_client",
      "control_service",
      "daemon", "data_reloads", "decision_cycle", "outcomes", "service_watch",
      "notify_hooks", "metrics",
      "executor", "files", "heartbeat_link", "lease", "lease_upkeep", "leave",
      "network", "node_files", "orders", "lease_nft", "sdnotify", "service_node", "status_report",
      "sync_worker", "xdata", "xdata_serve", "xdata_sync", "xdata_wire",
      "control_request", "control_socket",
      "xdata_beneath", "xdata_manifest", "xdata_store", "xdata_transfer",
      "journal", "agent_log", "timeline", "command_line"]
# What a pure module may import: the standard library's data tools, and the agent itself.
ALLOWED = {"__future__", "collections", "dataclasses", "enum", "hashlib", "hmac", "ipaddress",
           "math", "re", "secrets", "struct", "types", "typing", "mxone_agent"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io(module: str) -> None:
    assert imports_of(AGENT_DIR / f"{module}.py") <= ALLOWED


def test_whole_package_imports_neither_tui_nor_ssh_nor_maintenance() -> None:
    code = ("import sys, mxone_agent.main, " + ", ".join(f"mxone_agent.{m}" for m in PURE)
            + "; bad = [m for m in sys.modules if m.split('.')[0] in "
              "('urwid', 'paramiko', 'mxone_maintenance', 'mxone_menus', 'socket')]"
            + "; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_agent_module_is_checked() -> None:
    modules = {p.stem for p in AGENT_DIR.glob("*.py")} - {"__init__", "__main__", "main"}
    assert modules == set(PURE) | set(IO)


def deployed_lib(tmp_path: Path) -> Path:
    """A lib dir as the deployer makes it: mxone_agent and pyroute2, nothing else."""
    import pyroute2

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mxone_agent").symlink_to(AGENT_DIR)
    for mod in (pyroute2,):
        (lib / mod.__name__).symlink_to(Path(mod.__file__).parent)
    return lib


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="no system python3")
def test_the_agent_runs_on_the_system_python_with_its_lib_dir_only(tmp_path: Path) -> None:
    """The system python, isolated (-I: no site-packages), finds all it needs in lib/."""
    lib = deployed_lib(tmp_path)
    code = (f"import sys; sys.path.insert(0, {str(lib)!r}); import mxone_agent.main, "
            + ", ".join(f"mxone_agent.{m}" for m in IO)
            + "; from mxone_agent.network import LinuxNetwork; n = LinuxNetwork(); n.close()"
            + "; bad = [m for m in sys.modules if m.split('.')[0] in "
              "('urwid', 'paramiko', 'mxone_maintenance', 'mxone_menus')]"
            + "; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-c", code], check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([SYSTEM_PYTHON, "-I", "-c", f"import sys; sys.path.insert(0, "
                           f"{str(lib)!r}); from mxone_agent.main import main; "
                           "sys.exit(main(['unit']))"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Type=notify" in done.stdout, done.stderr
