"""``palmbook book``: TEMPORARY delegate to ``palmbook.book.add_cli`` while that face is being split.

The helper splitting ``palmbook.book`` replaces this module with the command itself (``add_cli`` + ``run``).
Until then the subcommand is registered only when ``palmbook.book`` still offers its old ``add_cli``, so that
``palmbook train|generate|doctor`` keep working while the split is half done.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["add_cli"]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``palmbook book`` through the old ``palmbook.book.add_cli``, when it exists."""
    old = getattr(importlib.import_module("palmbook.book"), "add_cli", None)
    if old is not None:
        old(subparsers)
