"""The management application and its web server on one server of the pair.

The reference application (:mod:`mxone_web.refapp`, "mxone_snm") is installed under
``/opt/mxone/snm`` and runs as the unit ``mxone-snm`` (system user ``mxone_snm``, the
server's own python3 with Debian's psycopg2) on 127.0.0.1:8070; nginx (Debian's unit)
answers ``/mp`` and ``/snm`` on port 80 of every address, so the virtual IP is served by
whichever server holds it. Both stay when redundancy is removed (each server then serves
its own page).
"""

from __future__ import annotations

from pathlib import Path

from mxone_web import refapp
from mxone_web.stack import host
from mxone_web.stack.host import Say

APP_DIR = Path("/opt/mxone/snm")
APP_USER = "mxone_snm"
APP_UNIT = "mxone-snm"
APP_UNIT_FILE = Path(f"/etc/systemd/system/{APP_UNIT}.service")
APP_LISTEN = "127.0.0.1:8070"
NGINX_UNIT = "nginx"
SITE = Path("/etc/nginx/sites-available/mxone-snm")
SITE_LINK = Path("/etc/nginx/sites-enabled/mxone-snm")
DEFAULT_SITE_LINK = Path("/etc/nginx/sites-enabled/default")
SOURCE = Path(refapp.__file__).resolve().parent
#: The files of the application, as installed.
APP_FILES = ("app.py", "VERSION", "schema.sql")


def schema() -> str:
    return (SOURCE / "schema.sql").read_text()


def installed_package() -> str | None:
    """``mxone_snm-<version>`` as installed here, or None."""
    try:
        return f"{APP_USER}-{(APP_DIR / 'VERSION').read_text().strip()}"
    except OSError:
        return None


def render_unit() -> str:
    return (
        "[Unit]\n"
        "Description=MX-ONE management application (mxone_snm, the PM/SNM reference)\n"
        "After=network.target postgresql@15-main.service\n"
        "\n"
        "[Service]\n"
        f"User={APP_USER}\n"
        f"ExecStart=/usr/bin/python3 {APP_DIR / 'app.py'} --listen {APP_LISTEN}\n"
        "Restart=always\n"
        "RestartSec=1\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def render_site() -> str:
    proxy = (
        f"        proxy_pass http://{APP_LISTEN};\n"
        "        proxy_set_header Host $host;\n"
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "        proxy_connect_timeout 2s;\n"
        "        proxy_read_timeout 30s;\n"
    )
    return (
        "# Written by mxone_web: the management application on every address of this\n"
        "# server, the PM/SNM virtual IP included while this server holds it.\n"
        "server {\n"
        "    listen 80 default_server;\n"
        "    server_name _;\n"
        + "".join(f"    location {loc} {{\n{proxy}    }}\n" for loc in ("/mp", "/snm", "= /health"))
        + "}\n"
    )


def install_app(say: Say) -> None:
    """The application's files, user and unit (not started: its database comes first)."""
    host.system_user(APP_USER)
    APP_DIR.mkdir(parents=True, exist_ok=True)
    for name in APP_FILES:
        host.write(APP_DIR / name, (SOURCE / name).read_text(), 0o755 if name == "app.py" else 0o644)
    host.write(APP_UNIT_FILE, render_unit())
    host.systemctl("daemon-reload")
    say(f"{installed_package()} installed in {APP_DIR}")


def start(say: Say) -> None:
    """nginx's site and the application, enabled and (re)started."""
    host.write(SITE, render_site())
    if SITE_LINK.is_symlink() or SITE_LINK.exists():
        SITE_LINK.unlink()
    SITE_LINK.symlink_to(SITE)
    if DEFAULT_SITE_LINK.is_symlink():
        DEFAULT_SITE_LINK.unlink()  # it too claims default_server on port 80
    host.run(["nginx", "-t", "-q"])
    host.systemctl("enable", APP_UNIT, NGINX_UNIT)
    host.systemctl("restart", APP_UNIT)
    host.systemctl("reload-or-restart", NGINX_UNIT)
    say(f"nginx serves /mp and /snm; {APP_UNIT} running")
