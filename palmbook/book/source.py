"""Show a function's or a class's code in a chapter: the code exactly as written, comments kept, docstrings cut.

The prose around a cell explains what a docstring would, so a chapter prints the code without it. The lines are
cut from the source text itself (``ast`` only says *which* lines hold a docstring): printing ``ast.unparse`` of
the tree instead, as the first edition's chapters did, silently drops every comment and reformats the code.
"""

from __future__ import annotations

import ast
import inspect

__all__ = ["show_source", "source"]

_SCOPES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _docstring_lines(tree: ast.AST) -> set[int]:
    """0-based line numbers of every docstring in ``tree``: its own and those of the functions and classes in it."""
    cut: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _SCOPES) or not node.body:
            continue
        first = node.body[0]
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
            continue
        if not isinstance(first.value.value, str) or first.end_lineno is None:
            continue
        if not isinstance(node, ast.Module) and first.lineno == node.lineno:
            continue  # a one-line `def f(): "doc"` shares its line with code: keep the whole line
        cut.update(range(first.lineno - 1, first.end_lineno))
    return cut


def source(obj: object) -> str:
    """The source of a function, method, class or module without its docstrings, dedented, comments kept.

    Docstrings of the functions and classes defined inside ``obj`` (a class's methods) are cut too; decorators,
    comments and blank lines between statements stay as written.

    Raises:
        TypeError: ``obj`` is a builtin or a C extension's object (no Python source).
        OSError: the source file cannot be read (an object defined at an interactive prompt).
    """
    lines = inspect.getsource(obj).splitlines()
    indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
    # A method's source is indented like its class; strip that indentation from every code line so that it
    # parses. Lines inside a multi-line string may be indented less: they keep their text (and do not matter to
    # the parser, being inside a string).
    lines = [line[indent:] if line[:indent].isspace() else line for line in lines]
    cut = _docstring_lines(ast.parse("\n".join(lines)))
    # The blank line right after a docstring goes with it: the code below moves up instead of leaving a gap.
    kept = [line for i, line in enumerate(lines) if i not in cut and not ((i - 1) in cut and not line.strip())]
    return "\n".join(kept)


def show_source(obj: object) -> None:
    """Print :func:`source` of ``obj``: its code as written, comments kept, docstrings cut."""
    print(source(obj))
