"""The ``palmbook`` command: one argparse program; each subcommand is one module of this package.

    palmbook train ...        palmbook.cli.train      (also under torchrun)
    palmbook generate ...     palmbook.cli.generate
    palmbook doctor           palmbook.cli.doctor
    palmbook bench ...        palmbook.cli.bench
    palmbook book             palmbook.cli.book       (the book's run profiles and the one that runs here)
    python -m palmbook ...    the same program

This package is the only place that parses command lines: the library below it never imports argparse.
Adding a subcommand: write a module here with ``add_cli(subparsers)`` (it calls ``subparsers.add_parser(name,
...)`` and ``set_defaults(func=run)``) and ``run(args) -> int`` (the exit code), then add it to :data:`COMMANDS`.

Every error prints ONE line to stderr and exits with a non-zero code, never a traceback: errors a user can fix
(a missing file, a corrupt checkpoint, a bad option, a full disk) name the fix; anything else is reported as an
internal error (a bug in palmbook). ``--debug`` (before the subcommand) or ``PALMBOOK_DEBUG=1`` shows the
traceback instead.
Exit codes: 0 done, 1 error, 2 bad command line, 130 / 143 stopped by SIGINT / SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..checkpoint import CorruptCheckpoint
from ..train import TrainingDiverged

__all__ = ["COMMANDS", "UserError", "build_parser", "main"]

# Subcommand name -> the module whose add_cli(subparsers) registers it, in the order `palmbook --help` lists them.
COMMANDS: dict[str, str] = {
    "train": "palmbook.cli.train",
    "generate": "palmbook.cli.generate",
    "doctor": "palmbook.cli.doctor",
    "bench": "palmbook.cli.bench",
    "book": "palmbook.cli.book",
}


class UserError(Exception):
    """A mistake the user can fix; raise it (or a ValueError / FileNotFoundError) with a message naming the fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line instead of argparse's usage block + error: the usage is one --help away.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole program's parser: each module of :data:`COMMANDS` adds its subcommand."""
    parser = _Parser(prog="palmbook", description="PaLM, built chapter by chapter: train, sample, inspect.")
    parser.add_argument("--version", action="version", version=f"palmbook {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or PALMBOOK_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(module).add_cli(sub)
    return parser


# Errors whose message names the fix: printed as one line, no traceback.
_USER_ERRORS = (UserError, ValueError, OSError, CorruptCheckpoint, TrainingDiverged, ModuleNotFoundError)


def _user_cause(error: BaseException) -> BaseException | None:
    """The user error inside a library's wrapper (datasets wraps a UnicodeDecodeError of a non-UTF-8 file in a
    DatasetGenerationError, for example), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _USER_ERRORS):
            return error
        error = error.__cause__ or error.__context__
    return None


def _one_line(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"the input is not UTF-8 text ({error}); convert it first, e.g. iconv -f latin1 -t utf-8"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["palmbook", *(sys.argv[1:] if argv is None else argv)]  # the command as typed, for run records
    debug = args.debug or bool(os.environ.get("PALMBOOK_DEBUG"))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("palmbook: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        cause = _user_cause(e)
        if cause is not None:
            print(f"palmbook {args.command}: error: {_one_line(cause)}", file=sys.stderr)
        else:
            print(
                f"palmbook {args.command}: internal error: {type(e).__name__}: {_one_line(e)} (a bug in palmbook; "
                "rerun with palmbook --debug to see the traceback, and report it)",
                file=sys.stderr,
            )
        return 1
