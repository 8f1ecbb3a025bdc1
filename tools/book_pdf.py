"""Print the built book to one PDF, offline: ``python tools/book_pdf.py`` (after ``make book``).

Every page ``_toc.yml`` lists is opened, in the book's order, in Debian's Chromium (driven by playwright; nothing is
downloaded, no request leaves 127.0.0.1), left to draw its figures, formulas, diagrams and saved widgets, printed
with the theme's print style (no sidebars or buttons), and the pages are joined with pypdf into
``_build/pdf/palmbook.pdf`` with one bookmark per page.

Why not ``jupyter-book build --builder pdfhtml``: it drives Chromium through pyppeteer, which downloads its own
browser (impossible offline), and prints the single-page HTML build, which skips this book's per-page scripts
(local plotly.js, widget manager), so the figures would be blank.

Needs: a strict HTML build in ``_build/html``, ``/usr/bin/chromium`` (or ``PALMBOOK_CHROMIUM``), and the python
packages playwright and pypdf.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["build_pdf", "main"]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from edition import toc_files  # noqa: E402  (tools/edition.py: the documents of _toc.yml, in order)

HTML = ROOT / "_build" / "html"
OUT = ROOT / "_build" / "pdf" / "palmbook.pdf"
CHROMIUM = os.environ.get("PALMBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# An A4 sheet with 15 mm margins is 180 mm = 680 CSS px wide: figures are drawn at that width so none is cut.
PRINT_WIDTH_PX = 680
TIMEOUT_MS = 120_000
# Drawn: every plotly figure has its SVG, every formula is typeset, every diagram drawn, saved widgets rendered.
READY = """() => {
  const all = (sel, inner) => [...document.querySelectorAll(sel)].every((e) => e.querySelector(inner));
  const saved = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  return all('div[id^="palmbook-fig-"]', 'svg.main-svg') && all('.math', 'mjx-container')
    && all('.mermaid', 'svg') && (saved === 0 || document.querySelectorAll('.jupyter-widgets').length >= saved);
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _serve(directory: Path) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=directory))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _title(page: object) -> str:
    title = page.evaluate("() => (document.querySelector('article h1') || {}).textContent || document.title")  # type: ignore[attr-defined]
    return " ".join(str(title).replace("#", "").split())


def _print_pages(base: str, docs: list[str]) -> list[tuple[str, bytes]]:
    """Each document as (title, PDF bytes), in order."""
    from playwright.sync_api import sync_playwright

    printed = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": PRINT_WIDTH_PX, "height": 1000})
        # Only the site itself: a request elsewhere would hang offline (and the book must not need one).
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
        for doc in docs:
            page = context.new_page()
            page.emulate_media(media="print")
            start = time.perf_counter()
            page.goto(f"{base}{doc}.html", wait_until="load", timeout=TIMEOUT_MS)
            page.wait_for_function(READY, timeout=TIMEOUT_MS)
            page.wait_for_timeout(300)  # let plotly finish resizing to the print width
            pdf = page.pdf(
                format="A4",
                print_background=True,
                margin={"top": "15mm", "bottom": "15mm", "left": "15mm", "right": "15mm"},
                display_header_footer=True,
                header_template="<span></span>",
                footer_template=(
                    '<div style="font-size:8px;width:100%;text-align:center;color:#666">'
                    '<span class="title"></span> &middot; <span class="pageNumber"></span></div>'
                ),
            )
            printed.append((_title(page), pdf))
            print(f"  {doc}: {len(pdf) / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            page.close()
        browser.close()
    return printed


def build_pdf(html: Path = HTML, out: Path = OUT) -> Path:
    """Print every page of the built book in ``html`` and join them into ``out`` (with bookmarks)."""
    from pypdf import PdfReader, PdfWriter

    if not (html / "index.html").is_file():
        raise FileNotFoundError(f"no built book in {html}: run `make book` first")
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (or set PALMBOOK_CHROMIUM)")
    with _serve(html) as base:
        printed = _print_pages(base, toc_files())
    writer = PdfWriter()
    for title, pdf in printed:
        first = len(writer.pages)
        writer.append(PdfReader(io.BytesIO(pdf)))
        writer.add_outline_item(title=title, page_number=first)
    writer.add_metadata({"/Title": "palmbook: PaLM, built chapter by chapter", "/Author": "The palmbook authors"})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        writer.write(f)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=HTML, help="the built site (default: _build/html)")
    parser.add_argument("--out", type=Path, default=OUT, help="the PDF to write (default: _build/pdf/palmbook.pdf)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = build_pdf(args.html, args.out)
    print(f"palmbook: {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
