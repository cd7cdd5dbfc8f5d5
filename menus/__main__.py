"""`python -m mxone_menus --config PATH`: try the menus on a config file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mxone_maintenance import store
from mxone_maintenance.service import Maintenance
from mxone_menus import app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mxone_menus", description="The maintenance menus.")
    p.add_argument("--config", help="the system config file (default: $MXONE_SYSTEM_CONFIG "
                   "or /etc/mxone/system.toml); created on the first change")
    args = p.parse_args(argv)
    return app.run(Maintenance(Path(store.config_path(args.config))))


if __name__ == "__main__":
    sys.exit(main())
