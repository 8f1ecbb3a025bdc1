"""``palmbook bench``: TEMPORARY delegate to ``palmbook.bench.add_cli`` while that face is being split.

The helper splitting ``palmbook.bench`` replaces this module with the command itself (``add_cli`` + ``run``).
Until then the subcommand is registered only when ``palmbook.bench`` still offers its old ``add_cli``, so that
``palmbook train|generate|doctor`` keep working while the split is half done.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["add_cli"]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``palmbook bench`` through the old ``palmbook.bench.add_cli``, when it exists."""
    old = getattr(importlib.import_module("palmbook.bench"), "add_cli", None)
    if old is not None:
        old(subparsers)
