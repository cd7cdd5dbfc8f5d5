"""`python -m mxone_menus --config PATH [--new]`: try the menus on a config file, without
agents (a missing file is refused as the installed tool refuses it, unless ``--new``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mxone_maintenance import store
from mxone_maintenance.commands.base import missing_config
from mxone_maintenance.service import Maintenance
from mxone_menus import app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mxone_menus", description="The maintenance menus.")
    p.add_argument("--config", help="the system config file (default: $MXONE_SYSTEM_CONFIG "
                   "or /etc/mxone/system.toml)")
    p.add_argument("--new", action="store_true", help="start a new system: the file does not "
                   "exist yet, the first change writes it")
    args = p.parse_args(argv)
    path = Path(store.config_path(args.config))
    if not args.new and not path.exists():  # as the installed tool: never an empty system
        print(str(missing_config(path, args.config)), file=sys.stderr)
        return 2
    return app.run(Maintenance(path))


if __name__ == "__main__":
    sys.exit(main())
