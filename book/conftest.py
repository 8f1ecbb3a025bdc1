"""pytest settings for running the chapters as tests (nbval: `pytest --nbval-lax book/`, part of `make test`).

The kernel nbval starts inherits this process's environment, so every chapter runs with the small `smoke`
profile (seconds per chapter) and never touches the network. Cells whose output is compared
(`# NBVAL_CHECK_OUTPUT`) must therefore print the same thing under `smoke` as under `cpu`, the profile the
committed notebooks were executed with.
"""

import os

os.environ.setdefault("PALMBOOK_PROFILE", "smoke")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
