"""The `mxone_maintenance` command: the menus without a command, the CLI with one.

The console script lives here, not in mxone_maintenance, because imports go one way:
the menus use the core, the core never imports the menus.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mxone_maintenance import cli


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    config: str | None = None
    if len(args) == 2 and args[0] == "--config":
        config, args = args[1], []
    elif len(args) == 1 and args[0].startswith("--config="):
        config, args = args[0].split("=", 1)[1], []
    if args:
        return cli.main(args)
    from mxone_maintenance import operations
    from mxone_menus import app  # urwid is imported only when the menus are wanted
    from mxone_menus.operations import AgentOperations

    try:
        backend = operations.backend(config)
        try:
            return app.run(backend.maintenance,
                           AgentOperations(backend.maintenance, backend.operations))
        finally:
            backend.close()
    except Exception as exc:  # the last guard: one line for the operator, details in the log
        log = cli.log_internal_error()
        print(f"{cli.PROG}: internal error: {type(exc).__name__}: {exc} (details in {log})",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
