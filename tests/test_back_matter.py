"""The back matter (FAQ, glossary, references) as specifications: complete, linked, and faithful on the facts
readers most often get wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
ARXIV = re.compile(r"(?:arXiv[ :]*|arxiv\.org/abs/)(\d{4}\.\d{4,5})")


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"])
    return path.read_text(encoding="utf-8")


def test_references_list_every_arxiv_paper_a_page_cites():
    bib = (BOOK / "references.bib").read_text(encoding="utf-8")  # the one bibliography ({cite} reads it)
    listed = set(re.findall(r"eprint\s*=\s*\{(\d{4}\.\d{4,5})\}", bib))
    missing = {}
    for page in sorted([*BOOK.glob("*.ipynb"), *BOOK.glob("*.md")]):
        for arxiv_id in set(ARXIV.findall(_text(page))) - listed:
            missing.setdefault(arxiv_id, []).append(page.name)
    assert not missing, f"add these to book/references.bib (an entry with eprint = {{id}}): {missing}"


@pytest.mark.parametrize("page", ["faq.md", "glossary.md", "references.md"])
def test_back_matter_links_point_at_pages_in_the_table_of_contents(page):
    # A page outside _toc.yml is not built, so a link to it breaks the strict build (and a fresh clone's CI):
    # name a chapter that is still being written in plain text until it joins the book.
    toc = set(re.findall(r"^\s*(?:root|- file): (\S+)", (BOOK.parent / "_toc.yml").read_text(encoding="utf-8"), re.M))
    for target in re.findall(r"\]\(([^)\s#]+\.(?:ipynb|md))(?:#[^)]*)?\)", (BOOK / page).read_text(encoding="utf-8")):
        assert (BOOK / target).is_file(), f"{page} links to {target}, which is not in book/"
        assert f"book/{Path(target).with_suffix('')}" in toc, f"{page} links to {target}, which is not in _toc.yml"


def test_faq_states_the_facts_readers_get_wrong():
    faq = (BOOK / "faq.md").read_text(encoding="utf-8")
    assert "Pathways Language Model" in faq
    assert "never released" in faq and "There is no `transformers.PaLMModel`" in faq
    # Appendix B of the paper: the training time of PaLM 540B
    assert "6144 TPU v4 chips for 1200 hours and 3072 TPU v4 chips for 336 hours" in faq
    for arxiv_id in ("2204.02311", "2305.10403", "2312.11805", "2403.08295"):  # PaLM, PaLM 2, Gemini, Gemma
        assert arxiv_id in faq


def test_glossary_terms_each_point_to_a_chapter_an_appendix_or_the_welcome_page():
    body = (BOOK / "glossary.md").read_text(encoding="utf-8").split("```{glossary}")[1].split("```")[0]
    entries = re.split(r"\n(?=\S)", body.strip())[1:]  # after the :sorted: option, one entry per unindented term
    assert len(entries) >= 40
    for entry in entries:
        term = entry.splitlines()[0]
        assert re.search(r"Chapter|Appendix|Welcome|See ", entry), f"glossary term {term!r} names no chapter"
