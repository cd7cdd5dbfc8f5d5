"""`mxone-lab`: build, inspect, break and tear down labs from a shell.

Exit codes: 0 success; 1 the lab could not do it (the message says what and why); 2 usage
error or internal error; 130 interrupted. ``exec`` and ``ssh`` exit with the remote
command's status. No traceback reaches the user: an unexpected error prints one line and
the traceback goes to a log file named in that line.

Without ``--lab``, commands act on $MXONE_LAB, else on the current lab (the last one
``mxone-lab up`` built, or a running demo).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mxone_lab import demo, keeper
from mxone_lab.errors import LabError
from mxone_lab.faults import DIRECTIONS
from mxone_lab.lab import Lab
from mxone_lab.machine import check_prerequisites, current_link
from mxone_lab.spec import LabSpec
from mxone_lab.status import LabStatus

PROG = "mxone-lab"


def _parser() -> argparse.ArgumentParser:
    lab_opt = argparse.ArgumentParser(add_help=False)
    lab_opt.add_argument(
        "--lab", metavar="ID", help="the lab to act on (default: $MXONE_LAB, else the current lab)"
    )
    spec_opt = argparse.ArgumentParser(add_help=False)
    g = spec_opt.add_mutually_exclusive_group()
    g.add_argument(
        "--spec", metavar="FILE", help="lab description (TOML: subnet, [hosts] name = byte)"
    )
    g.add_argument(
        "--hosts", type=int, metavar="N", help="N hosts: lim1..lim<N-1> and client (benchmarks)"
    )
    spec_opt.add_argument(
        "--systemd",
        metavar="HOST[,HOST]",
        action="append",
        default=[],
        help="these hosts boot systemd as PID 1 (units, systemctl, journalctl); slower to build",
    )
    spec_opt.add_argument(
        "--networkd",
        metavar="HOST[,HOST]",
        action="append",
        default=[],
        help="these hosts boot systemd, whose systemd-networkd brings up their addresses from "
        "their own /etc/systemd/network (what `reboot` then shows)",
    )

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Several real-looking hosts on this machine, built from network namespaces.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("up", parents=[spec_opt], help="build a lab; it stays up until `down`")
    up.add_argument("--no-sshd", action="store_true", help="do not start an sshd on each host")
    up.add_argument("--json", action="store_true", help="print the lab as JSON")

    down = sub.add_parser("down", parents=[lab_opt], help="tear a lab down (nothing is left)")
    down.add_argument("id", nargs="?", metavar="ID", help="the lab (default: the current lab)")

    sub.add_parser("list", help="list the labs on this machine")

    st = sub.add_parser("status", parents=[lab_opt], help="hosts, addresses, processes, faults")
    st.add_argument("id", nargs="?", metavar="ID", help="the lab (default: the current lab)")
    st.add_argument("--json", action="store_true", help="print the status as JSON")

    rs = sub.add_parser("reset", parents=[lab_opt], help="put every host back to as-built")
    rb = sub.add_parser(
        "reboot",
        parents=[lab_opt],
        help="power-cycle a systemd host: its processes and network state go, its disks stay",
    )
    rb.add_argument("host", metavar="HOST")
    rs.add_argument("id", nargs="?", metavar="ID", help="the lab (default: the current lab)")

    ex = sub.add_parser(
        "exec",
        parents=[lab_opt],
        help="run a command on a host",
        description="Run CMD on HOST (its network, hostname and files); exits with its status.",
    )
    ex.add_argument("host", metavar="HOST")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD ...")

    sh = sub.add_parser(
        "ssh",
        parents=[lab_opt],
        help="interactive shell on a host",
        description="An interactive shell on HOST. With --from, a real SSH login from that "
        "host (lab key, pinned host key); otherwise the shell enters the host directly.",
    )
    sh.add_argument("host", metavar="HOST")
    sh.add_argument(
        "--from", dest="from_host", metavar="HOST", help="log in over SSH from this host"
    )

    f = sub.add_parser("fault", parents=[lab_opt], help="inject or lift network faults")
    fs = f.add_subparsers(dest="fault", metavar="FAULT")
    fs.add_parser("cut", help="drop every frame from and to HOST").add_argument("host")
    loss = fs.add_parser("loss", help="drop PERCENT %% of HOST's frames (0 lifts it)")
    loss.add_argument("host")
    loss.add_argument("percent", type=int)
    loss.add_argument("--direction", choices=DIRECTIONS, default="both")
    part = fs.add_parser("partition", help="drop every frame between A and B")
    part.add_argument("a")
    part.add_argument("b")
    fs.add_parser("link-down", help="take HOST's switch port down").add_argument("host")
    fs.add_parser("link-up", help="bring HOST's switch port up").add_argument("host")
    rest = fs.add_parser("restore", help="lift HOST's faults, or all faults")
    rest.add_argument("host", nargs="?")
    fs.add_parser("list", help="list the faults in force")

    d = sub.add_parser(
        "demo",
        parents=[spec_opt],
        help="build a lab, open mxone_maintenance on lim1 (then a shell), tear down on exit",
    )
    d.add_argument("--on", default="lim1", metavar="HOST", help="the host to open (default lim1)")
    d.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        metavar="-- PROGRAM ...",
        help="run this instead of an interactive bash",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        return _COMMANDS[args.command](args)
    except LabError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception:  # noqa: BLE001 - the last net: one line, traceback to a file
        fd, path = tempfile.mkstemp(prefix="mxone-lab-error-", suffix=".log")
        with os.fdopen(fd, "w") as log:
            traceback.print_exc(file=log)
        print(
            f"{PROG}: internal error ({sys.exc_info()[1]!r}); traceback in {path}", file=sys.stderr
        )
        return 2


def _spec(args: argparse.Namespace) -> LabSpec:
    if getattr(args, "spec", None):
        spec = LabSpec.from_toml(args.spec)
    elif getattr(args, "hosts", None) is not None:
        spec = LabSpec.with_hosts(args.hosts)
    else:
        spec = LabSpec.default()
    systemd = [n.strip() for arg in getattr(args, "systemd", []) for n in arg.split(",")]
    networkd = [n.strip() for arg in getattr(args, "networkd", []) for n in arg.split(",")]
    spec = spec.with_systemd(n for n in systemd if n) if systemd else spec
    return spec.with_networkd(n for n in networkd if n) if networkd else spec


def _lab(args: argparse.Namespace) -> Lab:
    lab_id = getattr(args, "id", None) or getattr(args, "lab", None)
    return Lab.attach(str(lab_id) if lab_id else None)


# ------------------------------------------------------------------------- commands


def _cmd_up(args: argparse.Namespace) -> int:
    spec = _spec(args)
    check_prerequisites(sshd=not args.no_sshd, systemd=bool(spec.systemd_names))
    started = time.monotonic()
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the keeper: builds the lab and stays its parent (see keeper.py)
        os.close(r)
        keeper.run(spec, w, sshd=not args.no_sshd)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    except KeyboardInterrupt:
        # The keeper tears down whatever it built when told to stop.
        os.kill(pid, signal.SIGTERM)
        _wait_child(pid, 30.0)
        raise
    finally:
        os.close(r)
    msg: dict[str, Any] = (
        json.loads(data) if data else {"ok": False, "error": "the lab keeper died unexpectedly"}
    )
    if not msg["ok"]:
        _wait_child(pid, 10.0)
        raise LabError(str(msg["error"]))
    lab = Lab.attach(str(msg["id"]))
    if args.json:
        print(json.dumps(_status_json(lab.status()), indent=1))
        return 0
    print(f"lab {lab.id} is up ({time.monotonic() - started:.2f} s); it is now the current lab")
    _print_status(lab.status())
    for h in lab.hosts.values():
        if h.systemd and h.boot_seconds is not None:
            print(f"{h.name} booted systemd in {h.boot_seconds:.2f} s")
    print(f"\nnext: {PROG} exec lim1 hostname | {PROG} ssh lim1 | {PROG} down {lab.id}")
    return 0


def _wait_child(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.02)


def _cmd_down(args: argparse.Namespace) -> int:
    lab = _lab(args)
    started = time.monotonic()
    lab.down()
    print(f"lab {lab.id} torn down in {time.monotonic() - started:.2f} s: nothing left behind")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    ids = Lab.list_ids()
    if not ids:
        print("no lab is running")
        return 0
    try:
        current = Path(os.readlink(current_link())).name
    except OSError:
        current = ""
    for lab_id in ids:
        try:
            lab = Lab.attach(lab_id)
        except LabError:
            continue
        st = lab.state.read()
        age = time.time() - float(st.get("created", time.time()))
        mark = "  (current)" if lab_id == current else ""
        print(f"{lab_id}  {st.get('state')}  {len(lab.hosts)} hosts  up {age:.0f} s{mark}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    lab = _lab(args)
    st = lab.status()
    if args.json:
        print(json.dumps(_status_json(st), indent=1))
    else:
        _print_status(st)
    return 0


def _print_status(st: LabStatus) -> None:
    print(f"lab {st.id} ({st.state}) on {st.subnet}, files in {st.dir}")
    print(f"{'HOST':<10} {'ADDRESS':<14} {'MAC':<17}  {'HOLDER':<12} {'SSHD':<12} PORT  ON eth0")
    for h in st.hosts:
        holder = f"{h.holder_pid} {'ok' if h.holder_alive else 'DEAD'}"
        sshd = f"{h.sshd_pid} {'ok' if h.sshd_alive else 'DEAD'}" if h.sshd_pid else "-"
        port = {True: "up", False: "DOWN", None: "?"}[h.port_up]
        print(
            f"{h.name:<10} {h.ip!s:<14} {h.mac:<17}  {holder:<12} {sshd:<12} {port:<5} "
            f"{' '.join(h.addresses) or '-'}"
            + (f"  [systemd {h.system_state}]" if h.systemd else "")
        )
    print("faults: " + ("; ".join(st.faults) if st.faults else "none"))


def _status_json(st: LabStatus) -> dict[str, object]:
    return {
        "id": st.id,
        "dir": str(st.dir),
        "state": st.state,
        "subnet": st.subnet,
        "faults": list(st.faults),
        "hosts": [
            {
                "name": h.name,
                "ip": str(h.ip),
                "mac": h.mac,
                "ns": h.ns,
                "holder_pid": h.holder_pid,
                "holder_alive": h.holder_alive,
                "sshd_pid": h.sshd_pid,
                "sshd_alive": h.sshd_alive,
                "addresses": list(h.addresses),
                "port_up": h.port_up,
                "systemd": h.systemd,
                "system_state": h.system_state,
            }
            for h in st.hosts
        ],
    }


def _cmd_reset(args: argparse.Namespace) -> int:
    lab = _lab(args)
    lab.reset()
    print(f"lab {lab.id} reset")
    return 0


def _cmd_reboot(args: argparse.Namespace) -> int:
    lab = _lab(args)
    started = time.monotonic()
    lab.reboot(args.host)
    h = lab.host(args.host)
    print(f"lab {lab.id}: {h.name} rebooted in {time.monotonic() - started:.1f} s; eth0 has "
          f"{', '.join(lab.addresses(h.name)) or 'no address'}")
    return 0


def _cmd_exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise LabError("exec needs a command, e.g. `mxone-lab exec lim1 hostname`")
    lab = _lab(args)
    argv = lab.nsenter_argv(args.host) + cmd
    return _foreground(argv, lab.host_env(args.host))


def _cmd_ssh(args: argparse.Namespace) -> int:
    lab = _lab(args)
    target = lab.host(args.host)
    if args.from_host:
        # The host's /root/.ssh holds the lab key and every host's key: plain ssh works.
        argv = lab.nsenter_argv(args.from_host) + ["ssh", "-t", f"root@{target.name}"]
        env = lab.host_env(args.from_host)
    else:
        rc = lab.dir / f"shell-{target.name}.bashrc"
        rc.write_text(f"export MXONE_LAB={lab.id}\nPS1='(lab {lab.id}) \\u@\\h:\\w\\$ '\ncd ~\n")
        argv = lab.nsenter_argv(target.name) + ["bash", "--rcfile", str(rc), "-i"]
        env = lab.host_env(target.name)
    return _foreground(argv, env)


def _foreground(argv: list[str], env: dict[str, str]) -> int:
    """Run attached to this terminal; a Ctrl-C goes to the program, not to us."""
    old = signal.signal(signal.SIGINT, lambda s, f: None)
    try:
        rc = subprocess.call(argv, env=env)
    finally:
        signal.signal(signal.SIGINT, old)
    return rc if rc >= 0 else 128 - rc


def _cmd_fault(args: argparse.Namespace) -> int:
    lab = _lab(args)
    f = lab.faults
    if args.fault is None or args.fault == "list":
        pass
    elif args.fault == "cut":
        f.cut(args.host)
    elif args.fault == "loss":
        f.loss(args.host, args.percent, args.direction)
    elif args.fault == "partition":
        f.partition(args.a, args.b)
    elif args.fault == "link-down":
        f.link_down(args.host)
    elif args.fault == "link-up":
        f.link_up(args.host)
    elif args.fault == "restore":
        f.restore(args.host)
    active = f.active()
    print(f"lab {lab.id} faults: " + ("; ".join(active) if active else "none"))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    check_prerequisites()
    return demo.run(_spec(args), host=args.on, command=program or None)


_COMMANDS = {
    "up": _cmd_up,
    "down": _cmd_down,
    "list": _cmd_list,
    "status": _cmd_status,
    "reset": _cmd_reset,
    "reboot": _cmd_reboot,
    "exec": _cmd_exec,
    "ssh": _cmd_ssh,
    "fault": _cmd_fault,
    "demo": _cmd_demo,
}
