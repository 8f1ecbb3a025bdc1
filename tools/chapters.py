"""Chapter tooling: the header cells every chapter starts with, a new-chapter skeleton, and ``make execute``.

    python tools/chapters.py new book/03_attention.ipynb "3. Attention"   # a skeleton with the header cells
    python tools/chapters.py execute                                      # every chapter, profile cpu
    python tools/chapters.py execute book/03_attention.ipynb              # one chapter
    python tools/chapters.py sync                                         # install cells only, no run

Executing first brings the Colab install cell up to date with ``_config.yml`` and the package version, then
writes the notebook back with its outputs and its **widget state** (nbclient's ``store_widget_state``):
the static book draws ipywidgets from that state, and nbval or a plain "Save" in Jupyter may not store it.
The repository's address comes from ``_config.yml`` (its one home; ``tools/edition.py --set-repository`` moves it
and every copy); tests/test_notebooks.py checks every chapter's install cell against :func:`colab_install_source`.

**Editions.** The book is published from a tag ``v<version>`` (``palmbook.__version__``): ``_config.yml``'s
``repository.branch`` is that tag, so a chapter's Colab link opens the notebook of the edition being read, and its
install cell installs the package from the same tag. Book and package stay in step; no torch is ever pinned.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]  # tools/ sits in the repository root
BOOK = ROOT / "book"
KERNEL = "python3"

# Cell tags the book understands (myst-nb): "remove-cell" drops a cell from the page (it still runs in Colab
# and under the tests); "hide-input" / "hide-output" / "hide-cell" fold a part behind a toggle.
COLAB_CELL_TAGS = ["remove-cell"]
SETUP_SOURCE = "from palmbook.book import setup\n\nP = setup()  # profile, device and seeds; prints what runs"


def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def repository() -> tuple[str, str]:
    """(url, branch) of the repository, from ``_config.yml``."""
    repo = book_config()["repository"]
    return repo["url"].rstrip("/"), repo["branch"]


def package_version() -> str:
    """``palmbook.__version__``, read from ``palmbook/__init__.py`` (its one home) without importing torch."""
    tree = ast.parse((ROOT / "palmbook" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("palmbook/__init__.py defines no __version__")


def edition_tag() -> str:
    """The git tag of this edition of book and package: ``v`` + ``palmbook.__version__``."""
    return f"v{package_version()}"


def install_spec() -> str:
    """What a chapter's Colab cell gives to pip: the package with ``[colab]`` (figures, widgets and the
    applications the chapters import: pyproject.toml) at this edition's tag. Deliberately no torch: Colab's own
    CUDA build satisfies ``torch>=...`` and must stay; ``[colab]`` accepts Colab's ipywidgets 7.7 and plotly 5.24."""
    url, _ = repository()
    return f"palmbook[colab] @ git+{url}@{edition_tag()}"


def chapters() -> list[Path]:
    """Every chapter notebook, in order: ``book/NN_topic.ipynb`` then the appendices ``book/A_topic.ipynb``."""
    return sorted(BOOK.glob("[0-9][0-9]_*.ipynb")) + sorted(BOOK.glob("[A-Z]_*.ipynb"))


def chapter_number(notebook: Path) -> str:
    """The number a chapter's title starts with: ``"3"`` for ``03_attention``, ``"A"`` for ``A_measuring_speed``."""
    head = notebook.name.split("_", 1)[0]
    return str(int(head)) if head.isdigit() else head


def colab_url(notebook: Path) -> str:
    """The Colab address of a chapter, as the book's launch button must give it."""
    url, branch = repository()
    org_repo = url.removeprefix("https://github.com/")
    rel = notebook.resolve().relative_to(ROOT).as_posix()
    return f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{rel}"


def colab_install_source() -> str:
    """Source of every chapter's first code cell: in Colab only, install this edition of palmbook, check for a GPU."""
    return f"""# Colab only (the book hides this cell): install palmbook {package_version()}, the package of this
# edition of the book, from its repository's tag {edition_tag()}, and check for a GPU.
import sys

if "google.colab" in sys.modules:
    import shutil
    import subprocess

    # No torch pin: Colab's own CUDA build of torch satisfies palmbook's requirement and stays.
    spec = "{install_spec()}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], check=True)
    if shutil.which("nvidia-smi") is None:
        print(
            "WARNING: this Colab runtime has no GPU. Choose Runtime > Change runtime type > T4 GPU and run all "
            "cells again (on the CPU the chapter runs with the smaller 'cpu' profile)."
        )"""


def sync_install_cell(nb: nbformat.NotebookNode) -> bool:
    """Rewrite a chapter's Colab install cell to the current :func:`colab_install_source` (the repository url in
    _config.yml or the package version may have changed). Only a first code cell that already is an install cell
    is touched; it has no outputs (outside Colab it does nothing), so no re-execution is needed."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or not code[0].source.startswith("# Colab only"):
        return False
    changed = code[0].source != colab_install_source()
    code[0].source = colab_install_source()
    code[0].metadata["tags"] = sorted({*code[0].metadata.get("tags", []), *COLAB_CELL_TAGS})
    return changed


def header_cells(title: str) -> list[nbformat.NotebookNode]:
    """Title + goals, the hidden Colab install cell, and the setup cell."""
    v4 = nbformat.v4
    return [
        v4.new_markdown_cell(
            f"# {title}\n\n**In this chapter you will be able to:**\n\n- ...\n\n"
            "Runs in seconds on a laptop CPU (profile `cpu`); the book's launch button opens it in Colab."
        ),
        v4.new_code_cell(colab_install_source(), metadata={"tags": list(COLAB_CELL_TAGS)}),
        v4.new_code_cell(SETUP_SOURCE),
    ]


def new_chapter(path: Path, title: str) -> Path:
    if path.exists():
        raise SystemExit(f"{path} already exists; pick another name or edit it")
    head = path.name.split("_", 1)[0]
    if path.parent.resolve() != BOOK or not re.fullmatch(r"\d\d|[A-Z]", head) or path.suffix != ".ipynb":
        raise SystemExit(f"chapters are book/NN_topic.ipynb (appendices book/A_topic.ipynb); got {path}")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        *header_cells(title),
        nbformat.v4.new_markdown_cell("## Exercises\n\n1. ..."),
        # Solutions are code (so that the tests run them) in cells the book folds away.
        nbformat.v4.new_code_cell("# Solution 1\n", metadata={"tags": ["hide-cell"]}),
        nbformat.v4.new_markdown_cell("## In the paper\n\n- §2 ..."),
    ]
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    entry = _rel(path.with_suffix(""))
    print(f"wrote {path}. When it runs: `make execute NB={path}`, then add `- file: {entry}` to _toc.yml")
    return path


def execute(paths: list[Path], profile: str = "cpu", timeout: int = 1800) -> None:
    """Run each notebook top to bottom in a fresh kernel and save it with outputs and widget state."""
    from nbclient import NotebookClient

    os.environ["PALMBOOK_PROFILE"] = profile  # the kernel inherits this process's environment
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for path in (p.resolve() for p in paths):
        start = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        sync_install_cell(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
                cell.metadata.pop("execution", None)
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name=KERNEL,
            resources={"metadata": {"path": str(path.parent)}},  # chapters run with book/ as the working dir
            store_widget_state=True,
            record_timing=False,  # no timestamps in the committed notebook: smaller diffs
        )
        client.execute()
        nb.metadata.pop("papermill", None)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"executed {_rel(path)} (profile {profile}) in {time.perf_counter() - start:.1f} s")


def sync(paths: list[Path]) -> list[Path]:
    """Bring the Colab install cell of each notebook up to date, touching nothing else; return those changed."""
    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if sync_install_cell(nb):
            nbformat.write(nb, path)
            changed.append(path)
            print(f"updated the install cell of {_rel(path)}")
    return changed


def _rel(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (for messages)."""
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chapters.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_new = sub.add_parser("new", help="write a chapter skeleton with the header cells")
    p_new.add_argument("path", type=Path)
    p_new.add_argument("title")
    p_exec = sub.add_parser("execute", help="execute chapters and save outputs + widget state")
    p_exec.add_argument("paths", type=Path, nargs="*", help="default: every book/NN_*.ipynb")
    p_exec.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"), choices=["smoke", "cpu", "gpu"])
    p_exec.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    p_sync = sub.add_parser("sync", help="rewrite the Colab install cells (after a version or repository change)")
    p_sync.add_argument("paths", type=Path, nargs="*", help="default: every book/NN_*.ipynb")
    args = parser.parse_args(argv)
    if args.command == "new":
        new_chapter(args.path, args.title)
        return 0
    paths = args.paths or chapters()
    for p in paths:
        if not p.is_file():
            parser.error(f"no notebook at {p}")
    if args.command == "sync":
        sync(paths)
    else:
        execute(paths, args.profile, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
