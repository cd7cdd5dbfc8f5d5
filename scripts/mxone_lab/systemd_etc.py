"""What a systemd host's own /etc says before its first boot (written into the host's
overlay upper dir; the machine's /etc is never written): units masked, generators
disabled, tmpfiles.d lines for paths the host shares with the machine left out, drop-ins
for the manager and journald, a machine id of its own.

Masked: everything that would touch the network, the disks, the clock or the kernel of the
machine, and every unit the machine itself has enabled (ssh, keepalived, postgresql,
timers...), keeping journald, dbus and logind (:data:`KEPT_UNITS`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

#: Units no systemd host runs, whether or not the machine has them enabled.
MASKED_UNITS = (
    # the lab runs the host's sshd itself (lab keys, the host's own addresses)
    "ssh.service",
    "ssh.socket",
    "sshd.service",
    # daemons that would serve or change the network
    "keepalived.service",
    "postgresql.service",
    "postgresql@.service",
    "systemd-timesyncd.service",
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
    "systemd-resolved.service",
    "networking.service",
    "ifup@.service",
    "NetworkManager.service",
    "cron.service",
    "anacron.service",
    "atd.service",
    "rsyslog.service",
    "exim4.service",
    # timers that update, scrub or trim the machine (and tmpfiles-clean: the lab dir is
    # visible in the host's /tmp, and a copied-up file keeps its old mtime)
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_all.service",
    "e2scrub_reap.service",
    "fstrim.timer",
    "fstrim.service",
    "man-db.timer",
    "logrotate.timer",
    "systemd-tmpfiles-clean.timer",
    # the machine's kernel, hardware, disks and clock
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "modprobe@.service",
    "kmod-static-nodes.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-hwdb-update.service",
    "systemd-random-seed.service",
    "systemd-pstore.service",
    "systemd-remount-fs.service",
    "systemd-fsck-root.service",
    "systemd-fsck@.service",
    "systemd-quotacheck.service",
    "quotaon.service",
    "systemd-repart.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-boot-update.service",
    "systemd-timedated.service",
    "systemd-journald-audit.socket",
    "hwclock.service",
    # consoles and terminals: the host has none
    "getty@.service",
    "getty-static.service",
    "console-getty.service",
    "serial-getty@.service",
    "container-getty@.service",
    "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
)

#: What a ``networkd`` host runs (unmasked and enabled): systemd-networkd brings up its
#: addresses at boot, and network-online.target waits for it, as on a server.
NETWORKD_UNITS = {
    "systemd-networkd.service": "multi-user.target.wants",
    "systemd-networkd.socket": "sockets.target.wants",
    "systemd-networkd-wait-online.service": "network-online.target.wants",
}

#: Units a systemd host keeps even when the machine enables them.
KEPT_UNITS = frozenset(
    {
        "dbus.service",
        "dbus.socket",
        "systemd-journald.service",
        "systemd-journald.socket",
        "systemd-journald-dev-log.socket",
        "systemd-logind.service",
        "systemd-user-sessions.service",
    }
)

_ENABLED_DIRS = ("/etc/systemd/system",)
#: Where tmpfiles.d files live, highest precedence first (/run's are the host's own).
_TMPFILES_DIRS = (
    "/etc/tmpfiles.d",
    "/usr/local/lib/tmpfiles.d",
    "/usr/lib/tmpfiles.d",
    "/lib/tmpfiles.d",
)
#: What a systemd host has of its own (private or overlaid), or cannot write (/proc, /sys).
HOST_OWNED = ("/etc", "/var", "/root", "/opt", "/run", "/tmp", "/dev", "/proc", "/sys")
_GENERATOR_DIRS = (
    "/etc/systemd/system-generators",
    "/usr/local/lib/systemd/system-generators",
    "/usr/lib/systemd/system-generators",
    "/lib/systemd/system-generators",
)

_SYSTEM_CONF = (
    "# lab host: a process killed by the watchdog (SIGABRT) must not dump core: the\n"
    "# machine's core_pattern would write it into the machine's own file system.\n"
    "[Manager]\n"
    "DefaultLimitCORE=0\n"
    "LogColor=no\n"
)
_JOURNALD_CONF = (
    "# lab host: the journal lives in the host's own /run; the machine's kernel log and\n"
    "# audit stream are not the host's.\n"
    "[Journal]\n"
    "Storage=volatile\n"
    "RuntimeMaxUse=32M\n"
    "ReadKMsg=no\n"
    "ForwardToWall=no\n"
)


def masked_units() -> list[str]:
    """:data:`MASKED_UNITS` plus every unit the machine has enabled, minus :data:`KEPT_UNITS`."""
    units = dict.fromkeys(MASKED_UNITS)
    for top in _ENABLED_DIRS:
        with contextlib.suppress(OSError):
            for entry in sorted(os.scandir(top), key=lambda e: e.name):
                if entry.is_dir() and entry.name.endswith((".wants", ".requires", ".upholds")):
                    for unit in sorted(os.listdir(entry.path)):
                        units.setdefault(unit)
    return [u for u in units if u not in KEPT_UNITS]


def generators() -> list[str]:
    """The names of every systemd generator on the machine (a host disables them all:
    they turn the machine's fstab, crypttab, init scripts and rc.local into units)."""
    names: dict[str, None] = {}
    for d in _GENERATOR_DIRS:
        with contextlib.suppress(OSError):
            names.update(dict.fromkeys(sorted(os.listdir(d))))
    return list(names)


def tmpfiles_overrides() -> dict[str, str]:
    """tmpfiles.d files of the machine that touch paths outside :data:`HOST_OWNED`, as
    the text a host gets instead (the same lines less those); by file name."""
    seen: dict[str, Path] = {}
    for d in _TMPFILES_DIRS:
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(d)):
                if name.endswith(".conf"):
                    seen.setdefault(name, Path(d) / name)
    out = {}
    for name, path in seen.items():
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        dropped = [line for line in lines if not _tmpfiles_line_is_hosts(line)]
        if dropped:
            kept = [line for line in lines if _tmpfiles_line_is_hosts(line)]
            head = [f"# lab host: {path} less the lines for paths it shares with the machine:"]
            out[name] = "\n".join(head + [f"#   {line}" for line in dropped] + kept) + "\n"
    return out


def _tmpfiles_line_is_hosts(line: str) -> bool:
    parts = line.split()
    if not parts or parts[0].startswith("#") or len(parts) < 2:
        return True
    path = parts[1].strip('"')
    return any(path == top or path.startswith(top + "/") for top in HOST_OWNED)


def write_etc(upper: Path, networkd: bool = False) -> None:
    """Populate a host's overlay upper /etc before boot: masks, disabled generators,
    tmpfiles.d overrides, drop-ins for the manager and journald, a machine id of its own;
    with ``networkd``, systemd-networkd enabled (:data:`NETWORKD_UNITS`)."""
    units = upper / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in masked_units():
        if not (networkd and unit in NETWORKD_UNITS):
            os.symlink("/dev/null", units / unit)
    if networkd:
        for unit, wants in NETWORKD_UNITS.items():
            (units / wants).mkdir(exist_ok=True)
            os.symlink(f"/lib/systemd/system/{unit}", units / wants / unit)
    gens = upper / "systemd" / "system-generators"
    gens.mkdir(exist_ok=True)
    for name in generators():
        os.symlink("/dev/null", gens / name)
    for sub, name, text in (
        ("system.conf.d", "mxone-lab.conf", _SYSTEM_CONF),
        ("journald.conf.d", "mxone-lab.conf", _JOURNALD_CONF),
    ):
        (upper / "systemd" / sub).mkdir(exist_ok=True)
        (upper / "systemd" / sub / name).write_text(text)
    overrides = tmpfiles_overrides()
    if overrides:
        (upper / "tmpfiles.d").mkdir(exist_ok=True)
        for name, text in overrides.items():
            (upper / "tmpfiles.d" / name).write_text(text)
    (upper / "machine-id").write_text(secrets.token_hex(16) + "\n")
