"""``python -m mxone_agent``: the ``mxone-agent`` command."""

from __future__ import annotations

import sys

from mxone_agent.main import main

sys.exit(main())
