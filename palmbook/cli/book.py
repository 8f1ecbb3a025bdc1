"""``palmbook book``: the book's run profiles (smoke / cpu / gpu), the one chapters would run here marked ``*``.

``palmbook book --profile cpu`` shows only that one. The profiles themselves: :mod:`palmbook.book.profiles`.
"""

from __future__ import annotations

import argparse
import os

from ..book.profiles import ENV_PROFILE, PROFILES, default_profile_name, profile

__all__ = ["add_cli", "run"]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``palmbook book`` (called by :func:`palmbook.cli.build_parser`)."""
    p = subparsers.add_parser("book", help="the book's run profiles (smoke / cpu / gpu) and which one runs here")
    p.add_argument("--profile", choices=list(PROFILES), help="show only this profile")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the profiles (or the one asked for), marking with ``*`` the one chapters run here; exit code 0."""
    here = default_profile_name()
    for name in [args.profile] if args.profile else list(PROFILES):
        print(("* " if name == here else "  ") + str(profile(name)))
    print(f"* runs here ({ENV_PROFILE}={os.environ.get(ENV_PROFILE) or 'unset'}); chapters call setup() to use it")
    return 0
