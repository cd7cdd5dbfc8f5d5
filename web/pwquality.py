"""Password quality, checked by libpwquality itself (Debian ``libpwquality1``).

The library is called through ctypes: its settings are read from the system's
``/etc/security/pwquality.conf`` (as ``passwd`` and PAM's pam_pwquality read them), and a
refusal carries the library's own message ("The password is shorter than 8 characters",
"The password fails the dictionary check - it is too simplistic/systematic"), so the
operator reads here what ``passwd`` would print after "BAD PASSWORD:".
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

from mxone_web.errors import Refused, WebError

LIBRARY = "libpwquality.so.1"
MESSAGE_SIZE = 256


@dataclass(frozen=True)
class Verdict:
    """libpwquality's answer: ``score`` 0-100 when accepted, else its error and message."""

    ok: bool
    score: int
    message: str

    @property
    def line(self) -> str:
        return "password accepted" if self.ok else f"BAD PASSWORD: {self.message}"


class _Library:
    """The four calls of libpwquality this tool needs, typed once."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError as e:
            raise WebError(f"{LIBRARY} cannot be loaded ({e}); install the Debian package "
                           "libpwquality1") from e
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        lib.pwquality_default_settings.restype = vp
        lib.pwquality_default_settings.argtypes = []
        lib.pwquality_read_config.restype = ctypes.c_int
        lib.pwquality_read_config.argtypes = [vp, cp, ctypes.POINTER(vp)]
        lib.pwquality_check.restype = ctypes.c_int
        lib.pwquality_check.argtypes = [vp, cp, cp, cp, ctypes.POINTER(vp)]
        lib.pwquality_strerror.restype = cp
        lib.pwquality_strerror.argtypes = [cp, ctypes.c_size_t, ctypes.c_int, vp]
        self.lib = lib
        self.settings = lib.pwquality_default_settings()
        if not self.settings:
            raise WebError("libpwquality: out of memory for its settings")
        # A missing or unreadable config file leaves the library's defaults in force, as
        # for passwd.
        lib.pwquality_read_config(self.settings, None, ctypes.byref(vp()))

    def check(self, password: str, old: str | None, user: str | None) -> Verdict:
        def enc(text: str | None) -> bytes | None:
            return None if text is None else text.encode("utf-8")

        aux = ctypes.c_void_p()
        score = self.lib.pwquality_check(self.settings, enc(password), enc(old), enc(user),
                                         ctypes.byref(aux))
        if score >= 0:
            return Verdict(True, score, "")
        buf = ctypes.create_string_buffer(MESSAGE_SIZE)
        text = self.lib.pwquality_strerror(buf, MESSAGE_SIZE, score, aux)
        return Verdict(False, score, (text or b"rejected").decode("utf-8", "replace"))


@functools.cache
def _library() -> _Library:
    return _Library()


def check(password: str, user: str | None = None, old: str | None = None) -> Verdict:
    """libpwquality's verdict on ``password`` for ``user`` (its name must not be in it)."""
    return _library().check(password, old, user)


def require(field: str, password: str, user: str | None = None) -> None:
    """Refuse ``password`` (the field named) unless libpwquality accepts it."""
    verdict = check(password, user)
    if not verdict.ok:
        raise Refused(f"{field}: BAD PASSWORD: {verdict.message}")


def require_twice(field: str, password: str, again: str, user: str | None = None) -> None:
    """The password typed twice: equal, then accepted by libpwquality."""
    if password != again:
        raise Refused(f"{field}: the two passwords typed differ; type the same password twice")
    require(field, password, user)
