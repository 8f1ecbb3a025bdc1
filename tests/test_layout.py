"""The package is a house with one direction: imports go down, faces sit on top, no room grows too large.

Read from the source with ``ast`` (nothing is imported), so a function-local import counts as much as one at the
top: it runs sooner or later, and a circle closed by it still makes the modules unreadable one at a time.
"""

from __future__ import annotations

import ast
import importlib
import types
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "palmbook"
# The faces: what a person meets (the command, the figures, the benchmark, the chapters' helpers). The core below
# them never imports them; they may import the core and each other.
FACES = ("palmbook.cli", "palmbook.bench", "palmbook.viz", "palmbook.book")
MAX_LINES = 700


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <node.module> import ...`` written in ``module`` (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first: those are imported too."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, anywhere in its body, with the packages those run first."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        explicit: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                explicit.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path, node)
                subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
                explicit |= subs  # `from pkg import sub` imports the module pkg.sub ...
                if len(subs) < len(node.names):  # ... and `from pkg import value` reads pkg itself
                    explicit.add(base)
        # Importing a.b.c runs a/__init__ and a/b/__init__ first, except those this module already sits inside.
        implicit = {p for t in explicit for p in _parents(t)} - set(_parents(name))
        graph[name] = {t for t in explicit | implicit if t in modules and t != name}
    return graph


def _is_face(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FACES)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_reader_sees_relative_local_and_parent_imports():
    graph = _graph()
    assert "palmbook.model" in graph["palmbook.checkpoint"]  # `from .model import ...` at the top
    assert "palmbook.checkpoint" in graph["palmbook.pretrained"]  # `from ..checkpoint import ...` in a package
    assert "palmbook.book" in graph["palmbook.cli.doctor"]  # `from ..book.profiles import` runs book/__init__


def test_the_package_has_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_core_never_imports_a_face():
    """cli, bench, viz and book sit on top; only the public API (palmbook/__init__.py) and other faces import them."""
    offenders = {
        name: sorted(t for t in targets if _is_face(t))
        for name, targets in _graph().items()
        if name not in ("palmbook", "palmbook.__main__") and not _is_face(name)
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"core modules importing faces: {offenders}"


def test_the_core_stack_goes_one_way():
    """The floors of the core: a module imports only modules on lower floors."""
    graph = _graph()
    # the ground floor: facts and formats every floor above may use
    ground = {"palmbook.config", "palmbook.io", "palmbook.runtime", "palmbook.optim", "palmbook.flops"}
    below = {
        "palmbook.hub": set(),
        "palmbook.generate": set(),
        "palmbook.model": {"palmbook.generate", "palmbook.loss", "palmbook.hub"},
        "palmbook.rundir": set(),
        "palmbook.checkpoint": {"palmbook.model", "palmbook.rundir"},
    }
    for name in ground:
        assert not {t for t in graph[name] if t.startswith("palmbook")} - ground, f"{name} imports above the ground"
    for name, allowed in below.items():
        inside = {t for t in graph[name] if t.startswith("palmbook")}
        higher = inside - allowed - ground
        assert not higher, f"{name} imports {sorted(higher)}, above it"
    for lower in ("palmbook.checkpoint", "palmbook.model", "palmbook.data", "palmbook.evaluate"):
        assert "palmbook.train" not in graph[lower] and "palmbook.pretrained" not in graph[lower], lower


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_exceeds_the_line_budget(name):
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{_modules()[name]} has {lines} lines; split it by concern (at most {MAX_LINES})"


def test_argparse_is_imported_only_by_the_command_line():
    users = sorted(
        name
        for name, path in _modules().items()
        if not (name == "palmbook.cli" or name.startswith("palmbook.cli."))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names))
        or (isinstance(node, ast.ImportFrom) and node.module == "argparse")
    )
    assert not users, f"argparse outside palmbook/cli/: {users}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_every_module_declares_its_public_names(name):
    tree = ast.parse(_modules()[name].read_text(encoding="utf-8"))
    declared = [
        node
        for node in tree.body
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets))
        or (isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "__all__")
    ]
    assert declared, f"{_modules()[name]} has no __all__"


@pytest.mark.parametrize("name", ["train", "generate", "pretrained", "shakespeare"])
def test_api_functions_named_like_their_modules_leave_the_modules_importable(name):
    import palmbook

    assert callable(getattr(palmbook, name)) and not isinstance(getattr(palmbook, name), types.ModuleType)
    assert isinstance(importlib.import_module(f"palmbook.{name}"), types.ModuleType)


def test_each_file_name_of_a_model_directory_is_spelled_once():
    """model.safetensors, config.json and tokenizer.model are io.py's constants; code elsewhere uses the names."""
    spelled = {}
    for name, path in _modules().items():
        if name == "palmbook.io":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in ("model.safetensors", "config.json", "tokenizer.model"):
                spelled.setdefault(name, set()).add(node.value)
    assert not spelled, f"file names written out instead of palmbook.io's constants: {spelled}"
