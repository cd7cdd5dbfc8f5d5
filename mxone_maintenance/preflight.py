"""Before the first change: does every node have what the agent needs?

A node needs a Python of at least :data:`~mxone_maintenance.artefact.MIN_PYTHON` - its
``/usr/bin/python3``, or one installed beside it as ``/usr/bin/python3.X`` (SUSE keeps its
old ``python3`` and installs newer ones that way; the agent's launcher then runs on the
newest of them) - ``nft`` (the self-fencing lease and the address guard) and the ``ssh``
client (exchange-data sync between the cluster's servers; sshd answers the tool already).

:func:`check` asks each node in one SSH round trip (:data:`PROBE`, plain ``sh``: it must
run where the Python is too old) and :func:`refusals` turns the answers into one line per
node that lacks something, naming the package to install for the node's distribution.
The tool refuses the whole change, with nothing changed anywhere, when any node has one.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mxone_maintenance import ssh
from mxone_maintenance.artefact import MIN_PYTHON

PROBE = r"""
v() { "$1" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))' 2>/dev/null; }
echo "python3=$(v /usr/bin/python3)"
for f in /usr/bin/python3.[1-9][0-9]; do [ -x "$f" ] && echo "alt=$f $(v "$f")"; done
for f in /usr/sbin/nft /sbin/nft /usr/bin/nft /bin/nft; do
    [ -x "$f" ] && { echo "nft=$f"; break; }
done
for f in /usr/bin/ssh /bin/ssh; do [ -x "$f" ] && { echo "ssh=$f"; break; }; done
if [ -r /etc/os-release ]; then
    . /etc/os-release
    echo "os=${ID:-} ${ID_LIKE:-}"
    echo "os_name=${PRETTY_NAME:-}"
fi
echo end=ok
"""
"""What each node runs (``sh -c``): ``key=value`` lines, ``end=ok`` last."""

COMMAND = f"sh -c {shlex.quote(PROBE)}"
Version = tuple[int, ...]


@dataclass(frozen=True)
class Facts:
    """What one node has, as :data:`PROBE` found it."""

    python3: Version | None = None  # /usr/bin/python3's version (None: none that runs)
    others: dict[str, Version] = field(default_factory=dict)  # /usr/bin/python3.X -> version
    nft: str = ""
    ssh: str = ""
    os: tuple[str, ...] = ()  # ID, then ID_LIKE's words (os-release)
    os_name: str = ""

    @property
    def python(self) -> tuple[str, Version] | None:
        """The interpreter the agent's launcher will run on (None: none new enough)."""
        if self.python3 is not None and self.python3[:2] >= MIN_PYTHON:
            return "/usr/bin/python3", self.python3
        fit = [(v, p) for p, v in self.others.items() if v[:2] >= MIN_PYTHON]
        return (max(fit)[1], max(fit)[0]) if fit else None


def _version(text: str) -> Version | None:
    try:
        return tuple(int(x) for x in text.strip().split(".")) or None
    except ValueError:
        return None


def parse(stdout: str) -> Facts | None:
    """The facts of :data:`PROBE`'s output (None unless it ran to its end)."""
    values: dict[str, str] = {}
    others: dict[str, Version] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "alt":
            path, _, version = value.partition(" ")
            if (v := _version(version)) is not None:
                others[path] = v
        else:
            values[key] = value.strip()
    if values.get("end") != "ok":
        return None
    return Facts(_version(values.get("python3", "")), others, values.get("nft", ""),
                 values.get("ssh", ""), tuple(values.get("os", "").split()),
                 values.get("os_name", ""))


# What to install, per distribution family: (install command, python, nft, ssh client).
_PACKAGES = {
    "suse": ("zypper install", f"python3{MIN_PYTHON[1]}", "nftables", "openssh"),
    "debian": ("apt-get install", "python3", "nftables", "openssh-client"),
    "rhel": ("dnf install", f"python3.{MIN_PYTHON[1]}", "nftables", "openssh-clients"),
}
_FAMILY = {"sles": "suse", "sled": "suse", "suse": "suse", "opensuse": "suse",
           "opensuse-leap": "suse", "debian": "debian", "ubuntu": "debian", "rhel": "rhel",
           "fedora": "rhel", "centos": "rhel", "rocky": "rhel", "almalinux": "rhel"}


def _family(facts: Facts) -> str | None:
    return next((_FAMILY[w] for w in facts.os if w in _FAMILY), None)


def missing(facts: Facts) -> list[str]:
    """What the node lacks, each with what to install ([] when nothing)."""
    need = ".".join(map(str, MIN_PYTHON))
    family = _family(facts)
    install, py, nft, ssh_pkg = _PACKAGES.get(family or "", ("", "", "nftables", "openssh"))

    def how(package: str) -> str:
        return f"`{install} {package}`" if install else f"the package {package}"

    out = []
    if facts.python is None:
        found = (f"/usr/bin/python3 is {'.'.join(map(str, facts.python3))}"
                 if facts.python3 else "no /usr/bin/python3 runs")
        if family == "suse":
            hint = (f"install {how(py)} (SUSE Linux Enterprise 15 SP4 and later ship it; it "
                    f"installs /usr/bin/python3.{MIN_PYTHON[1]}, which the agent then runs on)")
        elif py:
            hint = f"install {how(py)} in a version of at least {need}"
        else:
            hint = f"install Python {need} or later as /usr/bin/python3 or /usr/bin/python3.X"
        out.append(f"Python {need} or later needed, {found}: {hint}")
    if not facts.nft:
        out.append(f"no nft (the agent's fencing and address guard need it): install {how(nft)}")
    if not facts.ssh:
        out.append("no ssh client (the cluster's servers sync exchange data over SSH): "
                   f"install {how(ssh_pkg)}")
    return out


def refusals(results: Mapping[str, ssh.Result]) -> dict[str, str]:
    """Server -> why the change cannot go there (only the servers that lack something)."""
    out = {}
    for name, r in sorted(results.items()):
        facts = parse(r.stdout) if r.ok else None
        if facts is None:
            why = r.describe() if not r.ok else f"unexpected answer {r.stdout[-200:]!r}"
            out[name] = f"cannot check what this server has (sh): {why}"
            continue
        if lacks := missing(facts):
            where = f" ({facts.os_name})" if facts.os_name else ""
            out[name] = f"this server{where} lacks what the agent needs: " + "; ".join(lacks)
    return out


def check(pool: ssh.Pool, targets: Iterable[ssh.Target]) -> dict[str, str]:
    """Ask every target at once (one round trip each); the refusals (:func:`refusals`)."""
    return refusals(pool.run_all(list(targets), COMMAND, timeout=30))
