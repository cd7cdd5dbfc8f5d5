"""Shared fixtures: the lab (root only), and a guard that keeps tests off the real ~/.ssh.

``lab_session`` builds the default lab (lim1 .11, lim2 .12, lim3 .13, standby1 .20,
client .100 on 10.77.0.0/24, sshd on each) once per test session; ``lab`` hands it to one
test and resets it afterwards (faults lifted, test processes ended, extra addresses and
product dirs removed). The lab is torn down at session end, also when tests fail, on
Ctrl-C and on SIGTERM. Tests using it are marked ``pytest.mark.lab``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from mxone_lab import Lab, LabError, procs


@pytest.fixture(autouse=True)
def _no_real_ssh_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keep every test off the real ~/.ssh and SSH agent of whoever runs the tests.

    HOME points to an empty dir, so paramiko's default key and known_hosts lookups
    (``~/.ssh/...``) find nothing real; the agent socket variable is removed; and loading
    the real known_hosts by its explicit path fails the test. Lab tests pin the lab's
    own keys instead (``Lab.user_key_path``, ``Host.host_key``).
    """
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    try:
        import paramiko  # type: ignore[import-untyped]
    except ImportError:
        return
    real = Path(os.path.expanduser("~root")).resolve() / ".ssh"
    original = paramiko.SSHClient.load_system_host_keys

    def guarded(self: paramiko.SSHClient, filename: str | None = None) -> None:
        if filename is not None and Path(filename).resolve().is_relative_to(real):
            raise AssertionError(
                f"test tried to read the real {filename}: pin the lab's host keys instead"
            )
        original(self, filename)

    monkeypatch.setattr(paramiko.SSHClient, "load_system_host_keys", guarded)


def _lab_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (they build network namespaces)"
    missing = [t for t in ("ip", "nsenter", "unshare", "nft") if shutil.which(t) is None]
    if not os.access("/usr/sbin/sshd", os.X_OK):
        missing.append("sshd")
    if missing:
        return f"lab tests need {', '.join(missing)} (run scripts/bootstrap)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``lab`` test skips, with the reason, where no lab can be built (not root...)."""
    if item.get_closest_marker("lab"):
        reason = _lab_skip_reason()
        if reason:
            pytest.skip(reason)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C, so pytest still runs the lab's teardown."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.getsignal(signal.SIGTERM)
    if old is signal.SIG_DFL:
        # owner_only: a fork of pytest (pyroute2's netns helper, say) must just die on
        # SIGTERM, not unwind its copy of the session and tear the lab down.
        signal.signal(signal.SIGTERM, procs.owner_only(handler))
    try:
        yield
    finally:
        if old is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def lab_session() -> Iterator[Lab]:
    """The default lab, built once per session and torn down at its end (skips if not root)."""
    reason = _lab_skip_reason()
    if reason:
        pytest.skip(reason)
    with _sigterm_as_interrupt():
        lab = Lab.up()
        # Last resort if the interpreter exits without running fixture teardown.
        atexit.register(_down_quietly, lab)
        try:
            yield lab
        finally:
            atexit.unregister(_down_quietly)
            lab.down()


def _down_quietly(lab: Lab) -> None:
    with contextlib.suppress(LabError):
        lab.down()


@pytest.fixture
def lab(lab_session: Lab) -> Iterator[Lab]:
    """The session's lab for one test; reset to as-built afterwards (even if it failed)."""
    yield lab_session
    lab_session.reset()


def _systemd_skip_reason() -> str | None:
    from mxone_lab import systemd_host

    problems = systemd_host.prerequisite_problems()
    return "systemd lab tests: " + "; ".join(problems) if problems else None


@pytest.fixture(scope="module")
def systemd_lab_module() -> Iterator[Lab]:
    """A small lab whose standby1 boots a real systemd as PID 1, built once per test
    module and torn down at its end (also on failure, Ctrl-C and SIGTERM).

    Hosts: lim1 .11, lim2 .12, standby1 .20 (systemd), client .100 on 10.77.0.0/24 - the
    default lab's names and addresses, sshd on each. Skips where no lab can be built.
    """
    from mxone_lab import LabSpec

    with systemd_lab_up(LabSpec.systemd_standby()) as lab:
        yield lab


@contextlib.contextmanager
def systemd_lab_up(spec) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    """A lab of ``spec`` (some hosts booting systemd) for a module's fixture: skips where no
    such lab can be built; torn down at the end, also on failure, Ctrl-C and SIGTERM."""
    import functools

    reason = _lab_skip_reason() or _systemd_skip_reason()
    if reason:
        pytest.skip(reason)
    with _sigterm_as_interrupt():
        lab = Lab.up(spec)
        last_resort = functools.partial(_down_quietly, lab)  # its own: unregister only it
        atexit.register(last_resort)
        try:
            yield lab
        finally:
            atexit.unregister(last_resort)
            lab.down()


@pytest.fixture
def systemd_lab(systemd_lab_module: Lab) -> Iterator[Lab]:
    """The module's systemd lab for one test; reset to as-built afterwards (even if the test
    failed): on standby1 that also stops and removes the units the test or the product
    installed (mxone-agent.service...), daemon-reload, reset-failed, empties the journal."""
    yield systemd_lab_module
    systemd_lab_module.reset()
