"""``python -m mxone_bench``: see :mod:`mxone_bench.failover`."""

from __future__ import annotations

import sys

from mxone_bench.failover import main

sys.exit(main())
