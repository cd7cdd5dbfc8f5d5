"""What ``webserver_config``'s commands run against: this server's files, the wire, the
peer, and the stack of this server. Tests replace the parts that reach the world.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paramiko  # type: ignore[import-untyped]
from mxone_agent import paths
from mxone_web import discover, remote, settings, vip
from mxone_web.errors import Refused, WebError
from mxone_web.manager import Account
from mxone_web.stack.api import PairSettings

from mxone_maintenance.knownhosts import fingerprint

Say = Callable[[str], None]


class Stack(Protocol):
    """What runs on this server (:mod:`mxone_web.stack.apply`), as the tool calls it."""

    def configure(self, settings: PairSettings, say: Say) -> None: ...

    def remove(self, settings: PairSettings, say: Say) -> None: ...

    def fallback(self, settings: PairSettings, say: Say) -> None: ...

    def rejoin(self, settings: PairSettings, say: Say) -> None: ...

    def install_app(self, say: Say) -> None: ...

    def reconfigure_fallback(self, settings: PairSettings, say: Say) -> None: ...

    def status(self) -> Mapping[str, object]: ...


class _AppliedStack:
    """The stack of this server, imported when a command first needs it."""

    def _apply(self) -> object:
        try:
            from mxone_web.stack import apply  # type: ignore[attr-defined,unused-ignore]
        except ImportError as e:
            raise NotImplementedError(f"the PM/SNM stack of this server is not installed "
                                      f"({e})") from e
        return apply

    def _call(self, name: str) -> Callable[..., object]:
        fn = getattr(self._apply(), name, None)
        if fn is None:
            raise NotImplementedError(f"the PM/SNM stack of this server has no {name} yet")
        return fn  # type: ignore[no-any-return]

    def configure(self, settings: PairSettings, say: Say) -> None:
        self._call("configure")(settings, say)

    def remove(self, settings: PairSettings, say: Say) -> None:
        self._call("remove")(settings, say)

    def fallback(self, settings: PairSettings, say: Say) -> None:
        self._call("fallback")(settings, say)

    def rejoin(self, settings: PairSettings, say: Say) -> None:
        self._call("rejoin")(settings, say)

    def install_app(self, say: Say) -> None:
        self._call("install_app")(say)

    def reconfigure_fallback(self, settings: PairSettings, say: Say) -> None:
        self._call("reconfigure_fallback")(settings, say)

    def status(self) -> Mapping[str, object]:
        found = self._call("status")()
        to_mapping = getattr(found, "to_mapping", None)
        return dict(to_mapping()) if callable(to_mapping) else dict(vars(found))


@dataclass
class Web:
    """This server, as the commands see it."""

    node_json: Path = Path(paths.NODE_JSON)
    system_config: Path | None = None
    settings_path: Path = settings.SETTINGS
    answers_path: Path = settings.MASTER_ANSWERS
    probe: vip.Probe | None = vip.linux_probe
    host_key_files: Sequence[Path] = remote.HOST_KEY_FILES
    stack: Stack = field(default_factory=_AppliedStack)
    account: Callable[[], Account] = Account.local
    local_shell: Callable[[str], remote.Shell] = remote.LocalShell
    ssh_port: int = 22

    def pair(self) -> discover.Pair:
        """The pair found here (refused when LIM 1 is in no cluster)."""
        return discover.discover(self.node_json, self.system_config)

    def saved(self) -> PairSettings | None:
        return settings.load(self.settings_path)

    def need_saved(self, what: str) -> PairSettings:
        s = self.saved()
        if s is None:
            raise Refused(f"{what}: PM/SNM redundancy is not set on this server "
                          f"({self.settings_path} does not exist); set it up first")
        return s

    def peer_host_key(self, pair: discover.Pair, confirmed: str | None) -> paramiko.PKey:
        """The peer's host key: the one pinned here, or the one it offers when its
        fingerprint is ``confirmed`` by the operator. Refused otherwise, fingerprint shown."""
        pinned = remote.pinned_key(pair.peer, self.host_key_files)
        if pinned is not None:
            return pinned
        offered = remote.offered_key(pair.peer, self.ssh_port)
        if confirmed is not None and confirmed.strip() == fingerprint(offered):
            return offered
        raise Refused(
            f"peer host key: no host key of {pair.peer.name} ({pair.peer.base_ip}) is pinned "
            f"here ({', '.join(map(str, self.host_key_files))}); it offers "
            f"{offered.get_name()} {fingerprint(offered)}. Compare it with `ssh-keygen -lf "
            f"/etc/ssh/ssh_host_ed25519_key.pub` on {pair.peer.name}'s console and confirm "
            "it (--peer-host-key " + fingerprint(offered) + ")")

    def session(self, pair: discover.Pair, user: str, host_key: paramiko.PKey, *,
                password: str | None = None,
                key: paramiko.PKey | None = None) -> remote.Session:
        return remote.Session(pair.peer, user, host_key, password=password, key=key,
                              port=self.ssh_port)

    def manager_key(self) -> paramiko.PKey:
        """``mxone_manager``'s key here (the silent login must have been set up)."""
        path = self.account().private_key
        try:
            return paramiko.Ed25519Key.from_private_key_file(str(path))
        except (OSError, paramiko.SSHException) as e:
            raise WebError(f"{path}: no silent login key of mxone_manager here ({e}); run "
                           "the configuration first") from e
