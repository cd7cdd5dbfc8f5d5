"""``python3 -m mxone_web.stack``: see :mod:`mxone_web.stack.cli`."""

import sys

from mxone_web.stack.cli import main

sys.exit(main())
