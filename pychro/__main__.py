"""``python -m pychro``: the same as the ``pychro`` command."""

import sys

from .cli import main

sys.exit(main())
