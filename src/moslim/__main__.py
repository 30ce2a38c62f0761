"""``python -m moslim``: the command line, also for launchers that take a module (``torchrun -m moslim ...``)."""

import sys

from moslim.cli import main

sys.exit(main())
