"""``python -m mxone_agent``: the ``mxone-agent`` command."""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["service"] and sys.argv[2:3] not in (["-h"], ["--help"]):
    # The reference service starts on a takeover's path: none of the agent's modules.
    from mxone_agent.service_node import main as service_main

    sys.exit(service_main(sys.argv[2:]))

from mxone_agent.main import main  # noqa: E402

sys.exit(main())
