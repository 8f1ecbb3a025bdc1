"""``python -m palmbook ...`` is the ``palmbook`` command."""

import sys

from .cli import main

sys.exit(main())
