"""Is this notebook running in Google Colab? (Colab keeps its own plotly renderer and needs data downloaded.)"""

from __future__ import annotations

import sys

__all__ = ["in_colab"]


def in_colab() -> bool:
    """True inside Google Colab (its kernel imports ``google.colab`` at start-up)."""
    return "google.colab" in sys.modules
