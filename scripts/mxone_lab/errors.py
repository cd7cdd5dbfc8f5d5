"""The one exception root of the lab, and its direct kinds.

Every error the lab raises on purpose derives from :class:`LabError` and carries a message
that names what failed (the host, the command, the file) and why; the CLI prints it as is,
without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class LabError(Exception):
    """Root of every error the lab raises on purpose."""


class SpecError(LabError):
    """A lab description is invalid; ``problems`` lists every broken rule, one per line."""

    def __init__(self, problems: Sequence[str], source: str = "lab spec") -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class PrerequisiteError(LabError):
    """The machine cannot host a lab: not root, a tool missing, run inside a lab host."""


class LabNotFound(LabError):
    """No lab with the given id (or no current lab) exists on this machine."""


class UnknownHost(LabError):
    """A host name that is not part of the lab; the message lists the lab's hosts."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown host {name!r}: the lab has {', '.join(self.known)}")


class BuildError(LabError):
    """Building a lab failed; whatever was built has already been torn down."""


class HostCommandError(LabError):
    """A command run on a lab host failed (non-zero exit) or did not finish in time.

    ``returncode`` is None when the command timed out; ``stdout``/``stderr`` hold what it
    printed (text).
    """

    def __init__(
        self,
        host: str,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        timeout: float | None = None,
    ) -> None:
        self.host = host
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        cmd = " ".join(self.argv)
        if len(cmd) > 120:
            cmd = cmd[:117] + "..."
        if returncode is None:
            what = f"did not finish within {timeout:g} s"
        else:
            what = f"exited with status {returncode}"
        tail = _tail(stderr) or _tail(stdout)
        super().__init__(f"on {host}: `{cmd}` {what}" + (f": {tail}" if tail else ""))


class TeardownError(LabError):
    """Tearing a lab down left something behind; ``leftovers`` names each thing."""

    def __init__(self, lab_id: str, leftovers: Sequence[str]) -> None:
        self.lab_id = lab_id
        self.leftovers = tuple(leftovers)
        super().__init__(f"lab {lab_id}: teardown left behind: " + "; ".join(self.leftovers))


class ProbeError(LabError):
    """The probe could not start, or its output could not be read back."""


def _tail(text: str, lines: int = 3) -> str:
    """The last few non-empty lines of ``text``, joined with ' | ' (for one-line messages)."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
