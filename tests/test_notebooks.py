"""The committed chapters, read as files: executed top to bottom, without errors, with the header every chapter
shares and with what the static book needs to draw them (widget state, figures as HTML).

Running them is nbval's job (`pytest --nbval-lax book/`, see book/conftest.py); these tests catch a chapter that
was committed half-run, run out of order, run without `setup()`, or saved without its widget state.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import chapters  # noqa: E402  (tools/chapters.py: the header cells and `make execute`)

CHAPTERS = chapters.chapters()
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PLOTLY = "application/vnd.plotly.v1+json"


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_chapter_zero_exists():
    assert ROOT / "book" / "00_what_is_palm.ipynb" in CHAPTERS


each_chapter = pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])


@each_chapter
def test_is_a_valid_notebook_with_a_python_kernel(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("language") == "python"


@each_chapter
def test_was_executed_top_to_bottom(path):
    counts = [c.execution_count for c in _code_cells(_read(path))]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts}; run `make execute NB={path.relative_to(ROOT)}` and commit it"
    )


@each_chapter
def test_has_no_error_outputs(path):
    for i, cell in enumerate(_read(path).cells):
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{path.name} cell {i}: {out.get('ename')}: {out.get('evalue')}"
            assert not (out.output_type == "stream" and "Traceback (most recent call last)" in out.text), (
                f"{path.name} cell {i} printed a traceback"
            )


@each_chapter
def test_has_no_empty_code_cells(path):
    assert all(c.source.strip() for c in _code_cells(_read(path))), f"{path.name}: delete the empty code cells"


@each_chapter
def test_opens_with_a_numbered_title(path):
    first = _read(path).cells[0]
    number = chapters.chapter_number(path)
    assert first.cell_type == "markdown"
    assert re.match(rf"# {number}\. \S", first.source), f"{path.name}: the first cell must start with '# {number}. '"


@each_chapter
def test_first_code_cell_installs_palmbook_in_colab_only_and_is_hidden(path):
    cell = _code_cells(_read(path))[0]
    assert cell.source == chapters.colab_install_source(), (
        f"{path.name}: the first code cell must be the Colab install cell of this edition; "
        f"`python tools/chapters.py sync {path.relative_to(ROOT)}` rewrites it (it follows _config.yml's "
        "repository url and palmbook.__version__)"
    )
    assert "remove-cell" in cell.metadata.get("tags", []), "tag it remove-cell so the book hides it"
    assert cell.outputs == [], "outside Colab the install cell does nothing, so it prints nothing"


@each_chapter
def test_second_code_cell_calls_setup_and_ran_with_the_cpu_profile(path):
    cell = _code_cells(_read(path))[1]
    assert "from palmbook.book import setup" in cell.source and "setup(" in cell.source
    assert "profile 'cpu'" in _text(cell), f"{path.name}: commit chapters executed with `make execute` (profile cpu)"


@each_chapter
def test_header_shows_the_palmbook_version_it_was_executed_with(path):
    """The setup cell prints ``palmbook <version> | torch ...``: a new edition re-executes every chapter."""
    printed = _text(_code_cells(_read(path))[1])
    version = chapters.package_version()
    assert re.search(r"^palmbook \S+ \| torch ", printed, re.M), f"{path.name}: setup() printed no versions"
    assert f"palmbook {version} |" in printed, (
        f"{path.name} was executed with another palmbook than {version}: run `make execute NB={path.relative_to(ROOT)}`"
    )


@each_chapter
def test_nbval_markers_stand_alone_on_the_first_line(path):
    for cell in _code_cells(_read(path)):
        if "NBVAL_" in cell.source:
            first = cell.source.splitlines()[0]
            assert re.fullmatch(r"# NBVAL_[A-Z_]+", first), f"nbval reads a marker only alone on line 1: {first!r}"


@each_chapter
def test_widgets_have_saved_state(path):
    nb = _read(path)
    views = {
        out.data[WIDGET_VIEW]["model_id"]
        for cell in _code_cells(nb)
        for out in cell.outputs
        if WIDGET_VIEW in out.get("data", {})
    }
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    missing = views - set(state)
    assert not missing, f"{path.name}: widget views without saved state (execute with `make execute`): {missing}"


@each_chapter
def test_figures_carry_html_for_the_static_book(path):
    for i, cell in enumerate(_code_cells(_read(path))):
        for out in cell.outputs:
            data = out.get("data", {})
            if PLOTLY in data:
                html = data.get("text/html", "")
                assert "Plotly.newPlot" in html, f"{path.name} code cell {i}: figure without HTML; call setup() first"
                assert "cdn.plot.ly" not in html and "<script src=" not in html, "figures must not load plotly.js"


# Plumbing has one home (palmbook.book): a chapter that writes its own copy drifts from the others.
PLUMBING = {"show_source", "machine", "train_stand_in", "timed", "interleaved", "explorer"}


def _syntax(cell: nbformat.NotebookNode) -> ast.Module:
    """A code cell as Python, IPython's ``%magic`` and ``!shell`` lines left out."""
    lines = cell.source.splitlines()
    return ast.parse("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!"))))


@each_chapter
def test_defines_no_plumbing_of_its_own(path):
    defined = {
        node.name
        for cell in _code_cells(_read(path))
        for node in ast.walk(_syntax(cell))
        if isinstance(node, ast.FunctionDef)
    }
    copies = defined & PLUMBING
    assert not copies, f"{path.name} defines {sorted(copies)}: use palmbook.book's (from palmbook.book import ...)"


@each_chapter
def test_imports_only_public_names(path):
    for cell in _code_cells(_read(path)):
        for node in ast.walk(_syntax(cell)):
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "palmbook"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                name = alias.name
                submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{name}")
                assert not name.startswith("_") and (name in getattr(module, "__all__", ()) or submodule), (
                    f"{path.name}: `from {node.module} import {name}` is not in {node.module}.__all__: "
                    "import a public name"
                )
