"""keepalived on one server of the pair: VRRP over unicast between the two base
addresses, the virtual IP on the active server, a health check of the web page and the
database, and the hook as ``notify`` (promote on MASTER, fence otherwise).

Both servers derive the same ``virtual_router_id`` and VRRP password from the settings
(:func:`router_id`, :func:`auth_pass`), so nothing more is asked of the operator. The
master's priority is higher. Fallback MANUAL: both start as BACKUP with ``nopreempt``, so
the VIP stays where it is until the operator's Fallback; AUTOMATIC: the master preempts
and takes the VIP back once healthy. Detection: ``advert_int`` 1 s, so the backup takes the
VIP 3 adverts + skew (at most :data:`DETECTION_SECONDS`) after the master falls silent.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

from mxone_web.stack import hooks, host
from mxone_web.stack.api import PairRole, PairSettings, WebFallback
from mxone_web.stack.host import Say

UNIT = "keepalived"
CONF = Path("/etc/keepalived/keepalived.conf")
INSTANCE = "mxone_web"
PRIORITY = {PairRole.MASTER: 150, PairRole.STANDBY: 100}
ADVERT_INT = 1
#: Seconds between the active server's repeated gratuitous ARPs for the VIP.
GARP_REFRESH = 2
#: keepalived's master-down interval: 3 adverts + skew (256 - priority) / 256 adverts.
DETECTION_SECONDS = 3 * ADVERT_INT + (256 - PRIORITY[PairRole.STANDBY]) / 256 * ADVERT_INT


def router_id(vip: ipaddress.IPv4Address) -> int:
    """The VRRP ``virtual_router_id`` (1..255) for ``vip``: the same on both servers."""
    return int(vip) % 255 + 1


def auth_pass(settings: PairSettings) -> str:
    """VRRP's 8-character password, derived from the VIP and the replication password
    (both servers know both; the result says nothing usable of the password)."""
    seed = f"mxone-web-vrrp\0{settings.vip}\0{settings.replication_password}".encode()
    return hashlib.sha256(seed).hexdigest()[:8]


def render(settings: PairSettings, preempt: bool = False) -> str:
    """``keepalived.conf`` for this server (see the module docstring); ``preempt``: as if
    the fallback were automatic (Fallback's switch)."""
    automatic = preempt or settings.fallback is WebFallback.AUTOMATIC
    state = "MASTER" if automatic and settings.role is PairRole.MASTER else "BACKUP"
    hook = hooks.HOOK_PATH
    lines = [
        "# Written by mxone_web (webserver_config > Redundancy); rewritten at every",
        "# Reconfigure and Reconfigure Fallback.",
        "global_defs {",
        f"    router_id mxone-web-{settings.local.name}",
        "    script_user root",
        "    enable_script_security",
        # While MASTER, the VIP is announced again every GARP_REFRESH s: clients that a
        # peer's brief claim (a partition's) pointed elsewhere come back within that.
        f"    vrrp_garp_master_refresh {GARP_REFRESH}",
        "}",
        "",
        "vrrp_script mxone_web_check {",
        f'    script "/usr/bin/python3 {hook} check"',
        "    interval 1",
        "    timeout 3",
        "    fall 2",
        "    rise 2",
        "    init_fail",
        "}",
        "",
        f"vrrp_instance {INSTANCE} {{",
        f"    state {state}",
        f"    interface {settings.interface}",
        f"    virtual_router_id {router_id(settings.vip)}",
        f"    priority {PRIORITY[settings.role]}",
        f"    advert_int {ADVERT_INT}",
        *(["    nopreempt"] if not automatic else []),
        f"    unicast_src_ip {settings.local.base_ip}",
        "    unicast_peer {",
        f"        {settings.peer.base_ip}",
        "    }",
        "    authentication {",
        "        auth_type PASS",
        f"        auth_pass {auth_pass(settings)}",
        "    }",
        "    virtual_ipaddress {",
        f"        {settings.vip}/{settings.network.prefixlen} dev {settings.interface}",
        "    }",
        "    track_script {",
        "        mxone_web_check",
        "    }",
        f'    notify "/usr/bin/python3 {hook} notify"',
        "}",
    ]
    return "\n".join(lines) + "\n"


def install_and_start(settings: PairSettings, say: Say, restart: bool = True,
                      preempt: bool = False) -> None:
    """Write the configuration; restart keepalived (or, with ``restart`` False, reload it:
    the VIP stays where it is)."""
    # The VRRP password is in the file: root's only.
    host.write(CONF, render(settings, preempt), 0o600)
    host.run(["keepalived", "--config-test", "-f", str(CONF)])
    host.systemctl("enable", UNIT)
    host.systemctl("restart" if restart else "reload", UNIT)
    say(f"keepalived running: VIP {settings.vip} on {settings.interface}, "
        f"priority {PRIORITY[settings.role]}, fallback {settings.fallback.value}"
        + (" (preempting once)" if preempt else ""))


def preempt_once(settings: PairSettings, say: Say) -> None:
    """The master takes the VIP now, whatever the fallback type (reloaded configuration
    that preempts; :func:`install_and_start` puts the normal one back)."""
    install_and_start(settings, say, restart=False, preempt=True)


def remove(say: Say) -> None:
    host.systemctl("disable", "--now", UNIT, check=False)
    host.remove(CONF)
    say("keepalived stopped and disabled")


def running() -> bool:
    return host.is_active(UNIT)
