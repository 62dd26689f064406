"""``python -m entmap``: the command line of :mod:`entmap.cli`."""

import sys

from entmap.cli import main

sys.exit(main())
