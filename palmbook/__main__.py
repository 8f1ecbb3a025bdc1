"""``python -m palmbook ...`` is the ``palmbook`` command (:mod:`palmbook.cli`)."""

import sys

from .cli import main

__all__: list[str] = []

sys.exit(main())
