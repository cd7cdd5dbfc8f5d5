"""`python -m mxone_lab ...` is `mxone-lab ...`."""

from __future__ import annotations

import sys

from mxone_lab.cli import main

sys.exit(main())
