"""The lab: several real-looking hosts on one machine, built from Linux namespaces.

Layout of a lab with id ``mx3fa9c1`` (the id is random per build, so labs coexist)::

    netns mx3fa9c1-sw      the "switch": bridge br0, one port v-<host> per host,
                           the fault table (faults.py); a holder process keeps it
    netns mx3fa9c1-<host>  one per host: eth0 (the peer of v-<host>), lo
    holder of <host>       `sleep infinity` in the host's netns plus its own UTS and
                           mount namespaces: hostname <host>, overlayfs over /etc, /var,
                           /root, /opt (upper dirs in the lab dir), a tmpfs on /run
    sshd of <host>         listening on every address of the host, lab-only keys
    /tmp/mx3fa9c1/         everything on disk: lab.json (the state), keys, per-host
                           configs, logs and overlay upper dirs

A host marked ``systemd`` in the spec is held by a real systemd instead of `sleep`: PID 1
of the host's own PID namespace, with its own /tmp, /run, /dev, IPC and cgroup namespace
(the cgroup ``<lab id>-<host>`` on the machine's cgroup2 hierarchy), booted until
``systemctl is-system-running`` says so; see systemd_host.py for what keeps it off the
machine. Its console goes to ``hosts/<host>/console.log``. :meth:`Lab.reboot` power-cycles
it with its disks (overlay upper dirs) kept. Every host has its own network configuration
(:data:`NETWORK_FILE`); a ``networkd`` host's systemd-networkd brings its addresses up from
it at every boot, on the others the lab adds the base address itself.

:class:`Lab` is the face callers use; each of its jobs lives in a module of its own:
state.py (the record of what was created), machine.py (the labs on this machine), build.py
and boot.py (building, booting systemd hosts), sshd.py, commands.py (running commands on
hosts), faults.py, reset.py, reboot.py, teardown.py and status.py. Everything is ended by
PID and namespaces are deleted by name, both restricted to this lab's unique prefix.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Self

import mxone_lab.machine as machine
from mxone_lab.boot import SystemdHosts
from mxone_lab.build import Builder
from mxone_lab.commands import HostCommands
from mxone_lab.errors import BuildError, LabError
from mxone_lab.faults import Faults
from mxone_lab.machine import DEFAULT_ROOT, check_prerequisites
from mxone_lab.reboot import Rebooter
from mxone_lab.reset import Resetter
from mxone_lab.spec import LabSpec
from mxone_lab.sshd import Sshd
from mxone_lab.state import NETWORK_FILE, Host, LabState, Processes
from mxone_lab.status import HostStatus, LabStatus, observe
from mxone_lab.teardown import Teardown

__all__ = ["NETWORK_FILE", "Host", "HostStatus", "Lab", "LabStatus", "check_prerequisites"]


class Lab:
    """A running lab. Build one with :meth:`up`, find a running one with :meth:`attach`.

    A ``Lab`` is a context manager that tears the lab down on exit. Methods that act on a
    host take its name and raise :class:`~mxone_lab.errors.UnknownHost` for others.
    Running things on hosts - :meth:`exec`, :meth:`popen`, :meth:`run_python`,
    :meth:`ssh_exec`, :meth:`addresses`, :meth:`nsenter_argv`, :meth:`host_env` - is
    ``lab.commands`` (:class:`~mxone_lab.commands.HostCommands`); faults are
    ``lab.faults``; ``lab.state`` is the record of what was created.
    """

    def __init__(self, state: LabState) -> None:
        """Internal: use :meth:`up` or :meth:`attach`."""
        self.state = state
        self.dir = state.dir
        self.processes = Processes()
        self.commands = HostCommands(state, self.processes)
        self.faults = Faults(state)
        sshd = Sshd(state, self.processes, self.commands)
        systemd = SystemdHosts(state, self.processes, self.commands)
        self._builder = Builder(state, self.processes, sshd, systemd)
        self._resetter = Resetter(state, self.processes, self.commands, sshd, self.faults)
        self._rebooter = Rebooter(state, self.processes, sshd, systemd, self.faults)
        self._teardown = Teardown(state, self.processes)
        self.exec = self.commands.exec
        self.popen = self.commands.popen
        self.run_python = self.commands.run_python
        self.ssh_exec = self.commands.ssh_exec
        self.addresses = self.commands.addresses
        self.nsenter_argv = self.commands.nsenter_argv
        self.host_env = self.commands.host_env

    # ---------------------------------------------------------------- identity / data

    @property
    def id(self) -> str:
        """The lab id, e.g. ``"mx3fa9c1"``; also the prefix of all its names."""
        return self.state.id

    @property
    def prefix(self) -> str:
        """The prefix of every namespace of the lab, e.g. ``"mx3fa9c1-"``."""
        return self.state.prefix

    @property
    def spec(self) -> LabSpec:
        return self.state.spec

    @property
    def state_file(self) -> Path:
        return self.state.file

    @property
    def switch_ns(self) -> str:
        return self.state.switch_ns

    @property
    def switch_pid(self) -> int:
        """The PID of the process holding the switch namespace."""
        return self.state.switch_pid

    @property
    def switch_netns_path(self) -> str:
        """A path to the switch's network namespace that works from any mount namespace."""
        return self.state.switch_netns_path

    @property
    def user_key_path(self) -> Path:
        """The lab-only SSH user private key (root on every host accepts it)."""
        return self.state.user_key_path

    @property
    def known_hosts_path(self) -> Path:
        """A known_hosts file with every host's key, by name and by address."""
        return self.state.known_hosts_path

    @property
    def hosts(self) -> dict[str, Host]:
        """The hosts, by name, in spec order."""
        return self.state.hosts

    def host(self, name: str) -> Host:
        """The host called ``name``; :class:`UnknownHost` lists the lab's hosts otherwise."""
        return self.state.host(name)

    def __repr__(self) -> str:
        return f"<Lab {self.id} {len(self.state.records)} hosts {self.state.data.get('state')}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ------------------------------------------------------------ build / find

    @classmethod
    def up(
        cls,
        spec: LabSpec | None = None,
        *,
        sshd: bool = True,
        root: Path = DEFAULT_ROOT,
        timeout: float = 10.0,
        boot_timeout: float = 120.0,
        keeper_pid: int | None = None,
    ) -> Lab:
        """Build a lab and return it running.

        ``spec`` defaults to :meth:`LabSpec.default`. With ``sshd`` every host runs an sshd
        on its base address, listening before this returns. ``timeout`` bounds each wait
        (holders ready, sshd listening). Hosts marked ``systemd`` in the spec boot systemd;
        this returns once ``systemctl is-system-running`` says ``running`` (or
        ``degraded``: then a warning names the failed units, and :meth:`status` shows them),
        each boot bounded by ``boot_timeout``. On any failure, or KeyboardInterrupt,
        whatever was built is torn down before the error propagates (:class:`BuildError`
        for failures). The processes of the lab are started in their own sessions: they
        outlive the calling process unless :meth:`down` is called.
        """
        spec = spec or LabSpec.default()
        machine.check_prerequisites(sshd=sshd, systemd=bool(spec.systemd_names))
        lab = cls(machine.claim(spec, root, keeper_pid))
        try:
            lab._builder.build(sshd, timeout, boot_timeout)
        except BaseException as exc:
            cleanup_note = ""
            try:
                lab.down()
            except LabError as td:
                cleanup_note = f"; and teardown failed: {td}"
            if isinstance(exc, (LabError, OSError, subprocess.SubprocessError)):
                raise BuildError(
                    f"building lab {lab.id} failed: {exc}" + (cleanup_note or "; torn down")
                ) from exc
            raise
        return lab

    @classmethod
    def attach(cls, lab_id: str | None = None, *, root: Path = DEFAULT_ROOT) -> Lab:
        """The running lab ``lab_id``; without one: $MXONE_LAB, else the current lab.

        Raises :class:`LabNotFound` with the ids of the labs that do exist.
        """
        return cls(machine.load(lab_id, root))

    @staticmethod
    def list_ids(root: Path = DEFAULT_ROOT) -> list[str]:
        """Ids of the labs with a state file under ``root``, oldest first."""
        return machine.list_ids(root)

    # ------------------------------------------------------------ whole-lab actions

    def status(self) -> LabStatus:
        """A live look at the lab: processes alive, addresses, switch ports, faults."""
        return observe(self.state, self.commands, self.faults)

    def reset(self, timeout: float = 10.0) -> None:
        """Put every host back to its just-built state, between tests.

        Lifts every fault; ends every process on the hosts except the lab's own (holders,
        sshd listeners) and those started with ``popen(..., keep_on_reset=True)``;
        restarts an sshd that died; removes links other than lo/eth0, addresses other than
        the base one, non-kernel routes and every neighbour entry; restores hostname,
        eth0's MAC and up state, nftables (flushed), qdiscs and a few ARP sysctls; wipes
        the product dirs (:data:`~mxone_lab.reset.PRODUCT_DIRS`) and root's
        authorized_keys. Raises :class:`LabError` naming what could not be reset; a host
        whose holder died cannot be (rebuild the lab).

        On a systemd host, first every unit that was not running as built is stopped
        (0.5 s for a clean stop, then SIGKILL to all its processes), the unit files, masks
        and enablement symlinks go back to as-built (what the product installed under
        /etc/systemd/system is removed), then ``daemon-reload`` and ``reset-failed``; its
        processes outside the as-built units (leftovers of ``KillMode=process``, commands
        run there) are ended like any other; /run/mxone is removed and the journal emptied.
        The host's systemd and its as-built units keep running (one a test stopped is
        started again).
        """
        self._resetter.reset(timeout)

    def reboot(self, name: str, timeout: float = 10.0, boot_timeout: float = 120.0) -> None:
        """Power-cycle systemd host ``name``: everything it ran ends, its disks stay.

        Kept, as on a server's disks: the host's own /etc, /var, /root and /opt (its
        overlay upper dirs). Lost, as in a power cycle: every process (its PID 1 is killed,
        so the kernel ends everything in its PID namespace, the lab's sshd there too),
        /run, /tmp, /dev, and the kernel's network state: the connections its processes
        left are ended (``ss -K``) and the host's network namespace is replaced by a new
        one with a fresh eth0 (same name, MAC and switch port), so its addresses, routes,
        neighbours, nftables and sysctls are gone. Faults in force on its switch port stay
        in force. Then systemd boots again from the host's own files:
        on a ``networkd`` host systemd-networkd brings up whatever the host's network
        configuration says (not necessarily the lab's base address); on another the lab
        adds the base address as at build. Returns once boot is over, eth0 has an address
        and (if the lab runs sshd) sshd listens.

        Raises :class:`LabError` for a host that does not boot systemd (nothing would boot
        it again), or when it does not come back (with its console log).
        """
        self._rebooter.reboot(name, timeout, boot_timeout)

    def down(self, timeout: float = 10.0) -> None:
        """Tear the lab down and check that nothing is left.

        Ends every process in the lab's namespaces (holders, sshd, anything), deletes the
        namespaces, checks no mount of the lab remains in the machine's mount table,
        removes the lab dir and, if it names this lab, the current-lab link. Idempotent.
        A systemd host is ended by SIGKILL to its PID 1 (the kernel then ends everything
        in its PID namespace), then its cgroup tree is removed.
        Raises :class:`TeardownError` naming each leftover (after doing all it could).
        """
        self._teardown.down(timeout)

    def cgroups_left(self) -> list[str]:
        """Cgroups on the machine named after this lab (want: none once torn down)."""
        return self._teardown.cgroups_left()

    def mounts_left(self) -> list[str]:
        """Mount points in the machine's mount table that belong to this lab (want: none)."""
        return self._teardown.mounts_left()
