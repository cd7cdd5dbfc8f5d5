from mxone_maintenance.cli import main
import sys

sys.exit(main())
