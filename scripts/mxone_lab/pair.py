"""A PM/SNM pair in the lab, for lab tests and benchmarks: lim1 (the master) and standby1
booting systemd with Debian's units, the client host beside them, the pair driven through
``python3 -m mxone_web.stack`` on each server as root (the settings as JSON on stdin, as
the operator's tool sends them) and seen from the client through the virtual IP.

    with Lab.up(pair.spec()) as lab:
        p = pair.Pair(lab)
        p.configure()                  # master, then standby; seconds of each
        p.page()["server"]             # 'lim1', read on the client through the VIP
        p.kill_master()                # lim1's port cut, its units' processes SIGKILLed
        p.bring_back()                 # plugged in, powered on (its disks kept)
        p.fall_back()                  # Fallback on lim1, then rejoin on standby1

Nothing here imports the product: it runs the product's commands on the hosts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mxone_lab.errors import LabError
from mxone_lab.lab import Lab
from mxone_lab.spec import LabSpec

MASTER, STANDBY, CLIENT = "lim1", "standby1", "client"
VIP = "10.77.0.50"
#: The units of one server of the pair; a killed master loses every process of them.
UNITS = ("keepalived", "postgresql@15-main", "nginx", "mxone-snm", "mxone-web-syncwatch")
#: Debian enables these; the lab masks what the machine enables, so a pair unmasks them.
MASKED = "keepalived.service postgresql.service postgresql@.service nginx.service"
REPLICATION_PASSWORD = "Rep:lic'a\\tion-7"

T = TypeVar("T")


def spec() -> LabSpec:
    """lim1 .11 and standby1 .20 booting systemd, lim2 .12 (a witness), client .100."""
    return LabSpec.systemd_standby().with_systemd([MASTER])


def settings(lab: Lab, role: str, fallback: str = "manual") -> dict[str, Any]:
    """The PairSettings (as JSON data) of ``role``'s server of the lab's pair."""
    return {
        "role": role,
        "master": {"name": MASTER, "base_ip": str(lab.host(MASTER).ip)},
        "standby": {"name": STANDBY, "base_ip": str(lab.host(STANDBY).ip)},
        "cluster": "cluster1",
        "network": str(lab.spec.subnet),
        "interface": "eth0",
        "vip": VIP,
        "replication_user": "mxone_repl",
        "replication_password": REPLICATION_PASSWORD,
        "fallback": fallback,
        "witnesses": [str(lab.host(CLIENT).ip)],
    }


def eventually(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """``check()``'s first true value, polled every 0.2 s; LabError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"{what}: not within {timeout:g} s (last: {value!r})")
        time.sleep(0.2)


class Pair:
    """The PM/SNM pair of ``lab`` (built from :func:`spec`); the master is always lim1."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    # -- the stack's commands ----------------------------------------------------------

    def stack(self, host: str, action: str, role: str = "", timeout: float = 240.0,
              fallback: str = "manual") -> str:
        """``python3 -m mxone_web.stack ACTION`` on ``host`` (with ``role``'s settings, the
        fallback type ``fallback``, on stdin when a role is given); its output. LabError with
        the output, the last lines of both servers' mxone-web journal and of ``host``'s
        PostgreSQL log when it fails."""
        r = self.lab.exec(host, [sys.executable, "-m", "mxone_web.stack", action],
                          input=json.dumps(settings(self.lab, role, fallback)) if role else "",
                          timeout=timeout, check=False)
        if r.returncode != 0:
            journals = "\n".join(
                f"--- {h}:\n" + self.lab.exec(h, "journalctl -t mxone-web --no-pager "
                                              "-o short-precise | tail -15", check=False).stdout
                for h in (MASTER, STANDBY))
            pg_log = self.lab.exec(
                host, "tail -25 /var/log/postgresql/postgresql-15-main.log; echo '--- systemd:'; "
                "journalctl -u 'postgresql@15-main' --no-pager -o short-precise | tail -15",
                check=False).stdout
            raise LabError(f"{host}: mxone_web.stack {action} failed (exit {r.returncode}):\n"
                           f"{r.stdout}{r.stderr}{journals}\n--- {host}'s PostgreSQL log:\n"
                           f"{pg_log}")
        return r.stdout

    def actions(self) -> tuple[str, ...]:
        """The actions ``python3 -m mxone_web.stack`` offers (fallback only once it exists)."""
        r = self.lab.exec(MASTER, [sys.executable, "-m", "mxone_web.stack", "--help"])
        choices = r.stdout.split("{", 1)[1].split("}", 1)[0]
        return tuple(choices.split(","))

    def configure(self) -> dict[str, float]:
        """Unmask Debian's units, then configure the master, then the standby; the seconds
        each configure took."""
        for host in (MASTER, STANDBY):
            self.lab.exec(host, f"systemctl unmask {MASKED} && systemctl daemon-reload")
        took = {}
        for host, role in ((MASTER, "master"), (STANDBY, "standby")):
            t0 = time.monotonic()
            self.stack(host, "configure", role)
            took[role] = time.monotonic() - t0
        return took

    def status(self, host: str) -> dict[str, Any]:
        """CheckStatus of ``host`` (StackStatus as a mapping)."""
        data: dict[str, Any] = json.loads(self.stack(host, "status"))
        return data

    def synchronous(self, primary: str = MASTER, timeout: float = 45.0) -> None:
        """Wait until ``primary``'s database streams synchronously to the other server."""
        eventually(f"{primary} streams synchronously",
                   lambda: self.status(primary)["replication"] == "streaming (sync)", timeout)

    # -- faults ------------------------------------------------------------------------

    def kill_master(self) -> list[str]:
        """lim1 dies: its switch port cut, every process of its units SIGKILLed by PID;
        those PIDs."""
        pids = self.lab.exec(MASTER, "for u in " + " ".join(UNITS) + "; do cat /sys/fs/cgroup"
                             "$(systemctl show -p ControlGroup --value $u)/cgroup.procs; done",
                             check=False).stdout.split()
        self.lab.faults.cut(MASTER)
        if pids:
            self.lab.exec(MASTER, ["kill", "-KILL", *pids], check=False)
        return pids

    def bring_back(self) -> None:
        """lim1 plugged in, then powered on (a power cycle also ends the dead processes'
        orphaned connections); returns once its keepalived runs again."""
        self.lab.faults.restore(MASTER)
        self.lab.reboot(MASTER, timeout=30)
        eventually("lim1's keepalived runs",
                   lambda: self.status(MASTER)["keepalived_running"], timeout=60)

    def fall_back(self) -> dict[str, float]:
        """Fallback on lim1 (its database rejoins, then it takes the VIP back), then rejoin
        on standby1; the seconds each took."""
        t0 = time.monotonic()
        self.stack(MASTER, "fallback", "master")
        t1 = time.monotonic()
        self.stack(STANDBY, "rejoin", "standby")
        return {"fallback": t1 - t0, "rejoin": time.monotonic() - t1}

    # -- the client's view -------------------------------------------------------------

    def page(self, address: str = VIP) -> dict[str, Any]:
        """``GET http://ADDRESS/mp?format=json`` from the client host."""
        r = self.lab.exec(CLIENT, [sys.executable, "-m", "mxone_lab.web_client", "get",
                                   f"http://{address}/mp"], timeout=30)
        data: dict[str, Any] = json.loads(r.stdout)
        return data

    def serves(self, server: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the VIP answers with ``server``'s page; that page."""
        def answered() -> dict[str, Any] | None:
            page = self.page()
            return page if page.get("server") == server else None

        return eventually(f"the VIP answers from {server}", answered, timeout)

    def client(self, command: str, *args: str) -> subprocess.Popen[str]:
        """``mxone_lab.web_client COMMAND http://VIP/mp ARGS`` started on the client host;
        close its stdin to end it early, then read its lines with :func:`records`."""
        return self.lab.popen(CLIENT, [sys.executable, "-m", "mxone_lab.web_client", command,
                                       f"http://{VIP}/mp", *args],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def records(proc: subprocess.Popen[str], timeout: float = 60.0) -> list[dict[str, Any]]:
    """End a :meth:`Pair.client` run (stdin closed) and return its records."""
    out, _ = proc.communicate("", timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.strip()]
