"""Installing the pair's hook on this server: the script keepalived and systemd run
(:mod:`mxone_web.stack.hook`, copied as one stdlib-only file), what it knows of the pair
(``/etc/mxone/web/pair.json``, no secret) and the synchronous-replication watcher's unit.
"""

from __future__ import annotations

import json
from pathlib import Path

from mxone_web.stack import hook, hook_rules, host
from mxone_web.stack.api import PairSettings
from mxone_web.stack.host import Say

HOOK_PATH = Path("/opt/mxone/web/bin/mxone-web-hook")
#: The hook's rules, beside it (it imports them from its own directory).
RULES_PATH = HOOK_PATH.with_name("mxone_web_hook_rules.py")
WATCH_UNIT = "mxone-web-syncwatch"
WATCH_UNIT_FILE = Path(f"/etc/systemd/system/{WATCH_UNIT}.service")


def pair_data(settings: PairSettings) -> dict[str, object]:
    """``pair.json``: the hook's view of the pair (never the replication password)."""
    return {
        "role": settings.role.value,
        "local": settings.local.name,
        "peer": settings.peer.name,
        "peer_ip": str(settings.peer.base_ip),
        "vip": str(settings.vip),
        "interface": settings.interface,
        "fallback": settings.fallback.value,
        "witnesses": [str(w) for w in settings.witnesses],
        "replication_user": settings.replication_user,
    }


def render_watch_unit() -> str:
    return (
        "[Unit]\n"
        "Description=MX-ONE PM/SNM: synchronous replication while the standby streams\n"
        f"After={'postgresql@15-main.service'}\n"
        "\n"
        "[Service]\n"
        f"ExecStart=/usr/bin/python3 {HOOK_PATH} syncwatch\n"
        "Restart=always\n"
        "RestartSec=1\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def install(settings: PairSettings, say: Say) -> None:
    """The hook script and its rules (root's, not writable by others: keepalived's script
    security), ``pair.json`` and the watcher's unit (not started here)."""
    HOOK_PATH.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    for d in (HOOK_PATH.parent.parent, HOOK_PATH.parent):
        d.chmod(0o755)
    host.write(HOOK_PATH, Path(hook.__file__).read_text(), 0o755)
    host.write(RULES_PATH, Path(hook_rules.__file__).read_text(), 0o644)
    host.write(hook.PAIR_FILE, json.dumps(pair_data(settings), indent=2) + "\n", 0o644)
    host.write(WATCH_UNIT_FILE, render_watch_unit(), 0o644)
    host.systemctl("daemon-reload")
    say(f"hook installed: {HOOK_PATH} (keepalived notify and check, replication watcher)")


def start_watcher(say: Say) -> None:
    host.systemctl("enable", "--now", WATCH_UNIT)
    host.systemctl("restart", WATCH_UNIT)
    say(f"{WATCH_UNIT} running: synchronous replication while the peer streams")


def remove(say: Say) -> None:
    host.systemctl("disable", "--now", WATCH_UNIT, check=False)
    for path in (WATCH_UNIT_FILE, hook.PAIR_FILE, HOOK_PATH, RULES_PATH):
        host.remove(path)
    host.systemctl("daemon-reload")
    say(f"{WATCH_UNIT} stopped and removed")
