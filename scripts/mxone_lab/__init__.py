"""The lab: several real-looking MX-ONE hosts on one machine, for tests, benchmarks, demos.

Each host is a set of Linux namespaces with its own network (eth0 on a bridge in a
"switch" namespace), hostname, /etc, /var, /root, /opt and sshd; nothing of it touches the
machine's own network or files. Typical use::

    from mxone_lab import Lab

    with Lab.up() as lab:                      # lim1 lim2 lim3 standby1 client
        lab.exec("lim1", ["hostname"]).stdout   # 'lim1\\n'
        lab.ssh_exec("client", "hostname")      # real SSH from client to every host
        lab.faults.cut("lim2")                  # lim2 unreachable, still running
        lab.reset()                             # back to as-built, between tests

A host can boot a real systemd as its PID 1 (units, ``systemctl``, ``journalctl``,
watchdogs, ``Restart=``), at the cost of a boot (about half a second here)::

    spec = LabSpec.default().with_systemd(["standby1"])   # or HostSpec(..., systemd=True)
    with Lab.up(spec) as lab:
        lab.exec("standby1", "systemctl is-system-running").stdout   # 'running\n'

The command is ``mxone-lab`` (``scripts/lab``; ``mxone-lab up --systemd standby1``); the
pytest fixtures are ``lab_session`` and ``lab`` in tests/conftest.py, and
``systemd_lab_module`` / ``systemd_lab`` for a small lab whose standby1 boots systemd.
"""

from __future__ import annotations

# The modules of this package import each other by their full names
# (``import mxone_lab.procs as procs``), never through this file: re-exporting here then
# makes no import cycle.
from mxone_lab.errors import (
    BuildError,
    HostCommandError,
    LabError,
    LabNotFound,
    PrerequisiteError,
    SpecError,
    TeardownError,
    UnknownHost,
)
from mxone_lab.faults import Faults, FaultState
from mxone_lab.lab import Lab
from mxone_lab.machine import check_prerequisites
from mxone_lab.remote import SshResult
from mxone_lab.spec import HostSpec, LabSpec
from mxone_lab.state import Host
from mxone_lab.status import HostStatus, LabStatus

__all__ = [
    "BuildError",
    "FaultState",
    "Faults",
    "Host",
    "HostCommandError",
    "HostSpec",
    "HostStatus",
    "Lab",
    "LabError",
    "LabNotFound",
    "LabSpec",
    "LabStatus",
    "PrerequisiteError",
    "SpecError",
    "SshResult",
    "TeardownError",
    "UnknownHost",
    "check_prerequisites",
]
