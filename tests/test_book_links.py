"""The book's table of contents and its links, read from the sources (no build needed).

Every committed page of book/ is in _toc.yml (and every _toc.yml entry exists: tests/test_book_build.py), and
every link in a page's markdown that points inside the repository resolves to a file that exists, and, for a book
page, to one the book builds. Links and anchors in the BUILT pages are checked by tests/test_book_build.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import edition  # noqa: E402  (tools/edition.py: _toc.yml's documents)

TOC = edition.toc_files()
PAGES = [ROOT / f"{doc}{suffix}" for doc in TOC for suffix in (".md", ".ipynb") if (ROOT / f"{doc}{suffix}").is_file()]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)


def markdown_of(page: Path) -> str:
    """A page's markdown: the file, or a notebook's markdown cells."""
    if page.suffix == ".md":
        return page.read_text(encoding="utf-8")
    nb = nbformat.read(page, as_version=4)
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def links_in(markdown: str) -> list[str]:
    """Targets of markdown and HTML links and images, outside code."""
    text = INLINE_CODE.sub("", FENCE.sub("", markdown))
    return MD_LINK.findall(text) + HTML_LINK.findall(text)


def is_inside_repo_link(target: str) -> bool:
    parts = urlsplit(target)
    return not (parts.scheme or target.startswith(("#", "//", "{{")) or not parts.path)


def test_link_finder_sees_markdown_and_html_links_but_not_code():
    md = (
        "See [chapter 3](03_attention.ipynb#rope) and ![fig](img/a.png), <a href='../README.md'>x</a>,\n"
        "[web](https://example.org) and [here](#top); `[not](a_link.md)`\n```\n[nor](this.md)\n```\n"
    )
    assert links_in(md) == ["03_attention.ipynb#rope", "img/a.png", "https://example.org", "#top", "../README.md"]
    assert [t for t in links_in(md) if is_inside_repo_link(t)] == [
        "03_attention.ipynb#rope",
        "img/a.png",
        "../README.md",
    ]


def _committed_book_pages() -> set[str]:
    proc = subprocess.run(["git", "ls-files", "book"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout: cannot tell committed pages from drafts")
    return {re.sub(r"\.(ipynb|md)$", "", f) for f in proc.stdout.split() if re.fullmatch(r"book/[^/]+\.(ipynb|md)", f)}


def test_every_committed_page_of_the_book_is_in_the_table_of_contents():
    missing = _committed_book_pages() - set(TOC)
    assert not missing, f"committed but not in _toc.yml (run the toc sync, or list them): {sorted(missing)}"


def _doc(path: Path) -> str:
    return path.relative_to(ROOT).with_suffix("").as_posix()


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_links_inside_the_repository_resolve(page):
    broken = []
    for target in filter(is_inside_repo_link, links_in(markdown_of(page))):
        path = (page.parent / unquote(urlsplit(target).path)).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(f"{target}: no such file in the repository")
        elif path.suffix in (".md", ".ipynb") and path.parent == ROOT / "book" and _doc(path) not in TOC:
            broken.append(f"{target}: a page the book does not build (not in _toc.yml)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
