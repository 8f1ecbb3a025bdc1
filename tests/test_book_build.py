"""The built book as a reader's browser sees it: every page, served from 127.0.0.1, with every request that
would leave the site aborted.

The session fixture builds the book strictly (`jupyter-book build . --all -W -n --keep-going`) unless
`_build/html` already holds a strict build newer than every source. Chromium is Debian's (/usr/bin/chromium),
driven by playwright (`playwright install` is never needed). Without Chromium these tests skip, unless
PALMBOOK_REQUIRE_BROWSER=1 (set by .ci/run) turns that into a failure.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
STAMP = HTML / ".palmbook-strict-build"  # written only after a strict build succeeded
sys.path.insert(0, str(ROOT / "tools"))
import chapters  # noqa: E402  (tools/chapters.py)
from book_pdf import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402  (tools/book_pdf.py: the one Chromium set-up)
from edition import toc_files  # noqa: E402  (tools/edition.py: every document _toc.yml lists)

PAGE_TIMEOUT_MS = 60_000
SETTLE_MS = 500  # after everything is drawn, wait this long for late errors
PAGES_AT_ONCE = 4  # pages loading in parallel in one browser (all 23 at once timed out on 2 busy cores)


def source_of(doc: str) -> Path:
    for suffix in (".ipynb", ".md"):
        if (ROOT / f"{doc}{suffix}").is_file():
            return ROOT / f"{doc}{suffix}"
    raise FileNotFoundError(f"_toc.yml lists {doc!r}, but neither {doc}.ipynb nor {doc}.md exists")


PAGES = [f"{doc}.html" for doc in toc_files()] + ["index.html", "search.html", "genindex.html"]
CHAPTER_PAGES = [f"{doc}.html" for doc in toc_files() if source_of(doc).suffix == ".ipynb"]


def test_toc_lists_only_files_that_exist():
    for doc in toc_files():
        assert source_of(doc).is_file()


# ----------------------------------------------------------------------------------------------- the build
def _sources() -> list[Path]:
    files = [ROOT / "_config.yml", ROOT / "_toc.yml"]
    files += [p for p in (ROOT / "book").rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts]
    return files


def _build_is_fresh() -> bool:
    return STAMP.is_file() and STAMP.stat().st_mtime >= max(p.stat().st_mtime for p in _sources())


@pytest.fixture(scope="session")
def built_book() -> Path:
    """_build/html from a strict build of the current sources (built here if needed)."""
    if not _build_is_fresh():
        STAMP.unlink(missing_ok=True)
        jb = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(jb) if jb.exists() else "jupyter-book", "build", ".", "--all", "-W", "-n", "--keep-going"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"strict build failed ({' '.join(cmd)}):\n{log[-6000:]}"
        assert "CDN" not in log, f"the book is not self-contained:\n{log[-2000:]}"
        STAMP.write_text(f"strict build in {time.perf_counter() - start:.1f} s\n")
    return HTML


def test_every_toc_page_was_built(built_book):
    for page in PAGES:
        assert (built_book / page).is_file(), page


def test_no_page_refers_to_an_outside_script_or_stylesheet(built_book):
    for page in PAGES:
        html = (built_book / page).read_text(encoding="utf-8")
        for tag in ('<script src="http', '<link rel="stylesheet" href="http', 'src="//', 'href="//'):
            assert tag not in html, f"{page}: {tag}"


class _LinksAndIds(html.parser.HTMLParser):
    """The ``href`` of every ``<a>`` of a page, and every ``id`` / ``name`` an anchor can point at."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        self.ids.update(v for k in ("id", "name") if (v := attr.get(k)))
        if tag == "a" and attr.get("href"):
            self.links.append(attr["href"])


def _parse_page(path: Path) -> _LinksAndIds:
    parser = _LinksAndIds()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_internal_links_and_anchors_of_the_built_book_resolve(built_book):
    """Every link from one page of the site to another (or to a place on a page) lands: file and anchor exist."""
    pages = {
        p.resolve(): _parse_page(p) for p in built_book.rglob("*.html") if not {"_static", "_sources"} & set(p.parts)
    }
    broken, checked = [], 0
    for page, parsed in pages.items():
        for href in parsed.links:
            url = urllib.parse.urlsplit(href)
            if url.scheme or href.startswith("//"):
                continue  # outside the site: the launch and repository buttons, the paper
            target = (page.parent / urllib.parse.unquote(url.path)).resolve() if url.path else page
            target = target / "index.html" if target.is_dir() else target
            checked += 1
            rel = page.relative_to(built_book.resolve())
            if not target.is_file():
                broken.append(f"{rel}: {href} (no such file)")
            elif url.fragment and target.suffix == ".html":
                ids = (pages.get(target) or _parse_page(target)).ids
                if urllib.parse.unquote(url.fragment) not in ids:
                    broken.append(f"{rel}: {href} (no such anchor)")
    assert checked > 10 * len(PAGES), f"only {checked} internal links found: is the parser still reading the pages?"
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_repository_and_issue_buttons_point_at_the_configured_repository(built_book, page):
    """_config.yml's repository.url, the one place the address is written, is what every page's buttons use."""
    url, _ = chapters.repository()
    links = _parse_page(built_book / page).links
    assert url in links, f"{page}: no repository button to {url}"
    issues = [h for h in links if "/issues/new" in h]
    assert issues and all(h.startswith(f"{url}/issues/new?") for h in issues), issues


# --------------------------------------------------------------------------------------------- the browser
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def server(built_book):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=built_book))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


WIDGET_MODULES = ["@jupyter-widgets/html-manager/dist/embed-amd", "@jupyter-widgets/html-manager",
                  "@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/base7",
                  "@jupyter-widgets/controls7"]  # fmt: skip
# What a page must show once its scripts have run, measured in the page.
PROBE = """() => {
  const WIDGET_MODULES = __WIDGET_MODULES__;
  const q = (s) => document.querySelectorAll(s);
  const plots = [...q('.js-plotly-plot')];
  const maths = [...q('.math')];
  const mermaids = [...q('.mermaid')];
  return {
    plotly_divs: q('div[id^="palmbook-fig-"]').length,
    plotly_drawn: plots.filter((p) => p.querySelector('svg.main-svg')).length,
    math: maths.length,
    math_typeset: maths.filter((m) => m.querySelector('mjx-container')).length,
    math_errors: q('mjx-merror').length,
    mermaid: mermaids.length,
    mermaid_drawn: mermaids.filter((m) => m.querySelector('svg')).length,
    widget_views_saved: q('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widget_views_drawn: q('.jupyter-widgets').length,
    sliders: q('.widget-slider').length,
    colab: [...q('a[href^="https://colab.research.google.com"]')].map((a) => a.href),
    // Where require.js puts each AMD module of the widget manager: every bundle takes its font URLs from there.
    widget_module_urls: typeof window.require === 'function' && window.require.toUrl
      ? WIDGET_MODULES.map((id) => window.require.toUrl(id)) : [],
  };
}""".replace("__WIDGET_MODULES__", json.dumps(WIDGET_MODULES))
READY = """() => {
  const plots = [...document.querySelectorAll('div[id^="palmbook-fig-"]')];
  const maths = [...document.querySelectorAll('.math')];
  const mermaids = [...document.querySelectorAll('.mermaid')];
  const saved = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  return plots.every((p) => p.querySelector('svg.main-svg'))
    && maths.every((m) => m.querySelector('mjx-container'))
    && mermaids.every((m) => m.querySelector('svg'))
    && (saved === 0 || document.querySelectorAll('.jupyter-widgets').length >= saved);
}"""


DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}  # an iPhone 12-15 in portrait, in CSS pixels


def _visit_all(
    urls: dict[str, str],
    allowed: tuple[str, ...],
    viewport: dict[str, int] = DESKTOP,
    mode: str | None = None,
    probe: str = PROBE,
) -> dict[str, dict]:
    """Open the urls a few at a time (``PAGES_AT_ONCE`` load in parallel), wait for each to draw; return what each
    page showed. All at once, the second edition's 23 pages (several with megabytes of figures) took longer than
    ``PAGE_TIMEOUT_MS`` to fire ``load`` on a busy 2-core machine.

    Requests outside ``allowed`` (url prefixes) are aborted and recorded. ``mode`` ("light" / "dark") is what the
    theme switcher would have stored: the pydata theme reads it from localStorage before the page draws.
    """
    from playwright.sync_api import sync_playwright

    reports: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
        if mode:
            context.add_init_script(f"window.localStorage.setItem('mode', '{mode}');")
        items = list(urls.items())
        for start in range(0, len(items), PAGES_AT_ONCE):
            _visit_group(context, dict(items[start : start + PAGES_AT_ONCE]), reports, allowed, probe)
        browser.close()
    return reports


def _visit_group(context, urls: dict[str, str], reports: dict[str, dict], allowed: tuple[str, ...], probe: str):
    """Open ``urls`` in parallel in ``context``, wait for each to draw, record what each showed, close them."""
    open_pages = []
    for key, url in urls.items():
        report = reports[key] = {"console": [], "page_errors": [], "failed": [], "outside": [], "http": []}
        page = context.new_page()

        def route(r, report=report):
            if r.request.url.startswith(allowed):
                r.continue_()
            else:
                report["outside"].append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m, rep=report: m.type == "error" and rep["console"].append(m.text))
        page.on("pageerror", lambda e, rep=report: rep["page_errors"].append(str(e)))
        page.on("requestfailed", lambda r, rep=report: rep["failed"].append(f"{r.url} {r.failure}"))
        page.on("response", lambda r, rep=report: r.status >= 400 and rep["http"].append(f"{r.status} {r.url}"))
        page.goto(url, wait_until="commit", timeout=PAGE_TIMEOUT_MS)
        open_pages.append((key, page))
    for key, page in open_pages:
        page.wait_for_load_state("load", timeout=PAGE_TIMEOUT_MS)
        try:
            page.wait_for_function(READY, timeout=PAGE_TIMEOUT_MS)
            reports[key]["ready"] = True
        except Exception as e:  # reported by the tests, with what the probe saw
            reports[key]["ready"] = f"not drawn after {PAGE_TIMEOUT_MS} ms: {e}"
    open_pages[0][1].wait_for_timeout(SETTLE_MS)
    for key, page in open_pages:
        reports[key].update(page.evaluate(probe))
        page.close()


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        msg = f"no Chromium at {CHROMIUM}: `apt-get install chromium` (or set PALMBOOK_CHROMIUM)"
        if os.environ.get("PALMBOOK_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def seen(server, built_book) -> dict[str, dict]:
    """What the browser saw on every page over http://127.0.0.1 (key: page) and, for chapters, from disk
    (key: "file:" + page), as a reader who downloaded the site would open it."""
    _need_chromium()
    urls = {page: server + page for page in PAGES}
    urls.update({"file:" + page: (built_book / page).as_uri() for page in CHAPTER_PAGES})
    return _visit_all(urls, allowed=(server, built_book.as_uri() + "/"))


def _notebook_outputs(page: str, mime: str) -> int:
    """How many outputs of this mime type the page's notebook holds (0 for a markdown page)."""
    source = ROOT / page.replace(".html", ".ipynb")
    if not source.is_file():
        return 0
    nb = json.loads(source.read_text(encoding="utf-8"))
    hidden = ("remove-output", "remove-cell")
    return sum(
        mime in out.get("data", {})
        for cell in nb["cells"]
        if not any(tag in cell.get("metadata", {}).get("tags", []) for tag in hidden)
        for out in cell.get("outputs", [])
    )


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_page_loads_offline_without_errors(seen, page):
    r = seen[page]
    assert r["outside"] == [], f"requests that would leave the site: {r['outside']}"
    assert r["page_errors"] == [], r["page_errors"]
    assert r["console"] == [], r["console"]
    assert r["failed"] == [] and r["http"] == [], r["failed"] + r["http"]
    assert r["ready"] is True, (r["ready"], {k: v for k, v in r.items() if isinstance(v, int)})


@pytest.mark.browser
@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_chapter_works_opened_from_disk(seen, page):
    r = seen["file:" + page]
    assert r["outside"] == [] and r["page_errors"] == [] and r["console"] == [] and r["failed"] == [], r
    assert r["ready"] is True, r["ready"]


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_every_figure_is_drawn(seen, page):
    r = seen[page]
    figures = _notebook_outputs(page, "application/vnd.plotly.v1+json")  # one plotly div on the page each
    assert r["plotly_divs"] == figures, f"{page}: {r['plotly_divs']} figure divs, the notebook has {figures} figures"
    assert r["plotly_drawn"] == figures, f"{page}: {r['plotly_drawn']} of {figures} figures drew an SVG"


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset_and_diagrams_are_drawn(seen, page):
    r = seen[page]
    assert r["math_typeset"] == r["math"], f"{page}: {r['math_typeset']} of {r['math']} formulas typeset"
    assert r["math_errors"] == 0, f"{page}: {r['math_errors']} TeX errors"
    assert r["mermaid_drawn"] == r["mermaid"], f"{page}: {r['mermaid_drawn']} of {r['mermaid']} diagrams drawn"


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_saved_widgets_are_present(seen, page):
    r = seen[page]
    saved = _notebook_outputs(page, "application/vnd.jupyter.widget-view+json")
    assert r["widget_views_saved"] == saved, (
        f"{page}: {r['widget_views_saved']} widget views on the page, {saved} saved"
    )
    if saved:
        assert r["widget_views_drawn"] >= saved, f"{page}: {r['widget_views_drawn']} of {saved} widget views drawn"
        # Each widget bundle loads its icon fonts from the folder of its module's URL: all must be the site's copy
        # (a module left to resolve against the page made the fonts 404 whenever its @font-face won the race).
        urls = r["widget_module_urls"]
        assert len(urls) == len(WIDGET_MODULES), f"{page}: require.js not configured: {urls}"
        static = "/_static/widgets/"
        assert all(static in u and "/" not in u.split(static)[1] for u in urls), urls


@pytest.mark.browser
@pytest.mark.parametrize("page", CHAPTER_PAGES)
def test_colab_link_opens_this_chapters_notebook(seen, page):
    expected = chapters.colab_url(ROOT / page.replace(".html", ".ipynb"))
    assert seen[page]["colab"] == [expected]


@pytest.mark.browser
def test_chapter_zero_page_shows_each_kind_of_content(seen):
    """The opening chapter exercises the whole pipeline, so a broken piece cannot hide behind 'nothing to check'."""
    r = seen["book/00_what_is_palm.html"]
    assert r["plotly_drawn"] >= 2 and r["math_typeset"] >= 10 and r["mermaid_drawn"] >= 1 and r["sliders"] >= 4


# ------------------------------------------------------------------------------------ buttons and back matter
def _edit_links(page: Path) -> list[str]:
    return [h for h in _parse_page(page).links if "/edit/" in h]


@pytest.mark.parametrize("page", [f"{doc}.html" for doc in toc_files()])
def test_edit_button_opens_this_pages_source_on_the_development_branch(built_book, page):
    """The "suggest edit" button must open an editable file: the page's own source on a branch (repository.branch is the
    edition's tag, which GitHub cannot edit), at the path the source has in the repository."""
    url, _ = chapters.repository()
    doc = page.removesuffix(".html")
    links = _edit_links(built_book / page)
    expected = f"{url}/edit/main/{source_of(doc).relative_to(ROOT).as_posix()}"
    assert links == [expected], f"{page}: {links}"


BIB = ROOT / "book" / "references.bib"


def _bib_entries() -> dict[str, dict[str, str]]:
    from pybtex.database import parse_file

    data = parse_file(str(BIB))
    return {key: {**e.fields, "type": e.type, "author": " and ".join(map(str, e.persons.get("author", [])))}
            for key, e in data.entries.items()}  # fmt: skip


def test_every_bibliography_entry_is_complete_and_grouped():
    """Each entry has what the references page prints (author, title, year) and one of the page's groups."""
    groups = set(re.findall(r'keywords % "\^(\w+)\$"', (ROOT / "book" / "references.md").read_text(encoding="utf-8")))
    entries = _bib_entries()
    assert len(entries) >= 70
    for key, e in entries.items():
        assert e["author"] and e.get("title") and re.fullmatch(r"\d{4}", e.get("year", "")), key
        assert e.get("keywords") in groups, f"{key}: keywords {e.get('keywords')!r} is none of {sorted(groups)}"


def test_bibliography_holds_every_arxiv_paper_a_page_cites():
    listed = {e["eprint"] for e in _bib_entries().values() if e.get("eprint")}
    arxiv = re.compile(r"(?:arXiv[ :]*|arxiv\.org/abs/)(\d{4}\.\d{4,5})")
    missing: dict[str, list[str]] = {}
    for doc in toc_files():
        source = source_of(doc)
        if source.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(source.read_text(encoding="utf-8"))["cells"])
        else:
            text = source.read_text(encoding="utf-8")
        for arxiv_id in set(arxiv.findall(text)) - listed:
            missing.setdefault(arxiv_id, []).append(source.name)
    assert not missing, f"add these to book/references.bib (an entry with eprint = {{id}}): {missing}"


def test_references_page_prints_every_entry_and_citations_link_to_it(built_book):
    html = (built_book / "book" / "references.html").read_text(encoding="utf-8")
    for key, e in _bib_entries().items():
        if e.get("eprint"):
            assert f"arXiv:{e['eprint']}" in html, f"{key} is not on the references page"
    faq = _parse_page(built_book / "book" / "faq.html").links
    assert sum(h.startswith("references.html#") for h in faq) >= 10, "the FAQ's {cite} roles do not link to it"


def test_back_matter_links_its_terms_to_the_glossary(built_book):
    for page in ("book/index.html", "book/faq.html", "book/glossary.html"):
        links = _parse_page(built_book / page).links
        terms = [h for h in links if "glossary.html#term-" in h or h.startswith("#term-")]
        assert len(terms) >= 8, f"{page}: only {len(terms)} links to glossary terms"


# ----------------------------------------------------------------------------------- phones and dark mode
# Measured on each page: anything in the article that sticks out of the screen (outside an element that scrolls
# sideways on its own, as code blocks and wide outputs do), and how wide each figure is against its column.
PHONE_PROBE = """() => {
  const W = document.documentElement.clientWidth;
  const article = document.querySelector('article.bd-article');
  const scrolls = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if ((o === 'auto' || o === 'scroll' || o === 'hidden') && p.getBoundingClientRect().right <= W + 1) return true;
    }
    return false;
  };
  const out = [];
  for (const el of article ? article.querySelectorAll('*') : []) {
    if (el.closest('mjx-assistive-mml')) continue;  // MathJax's clipped copy for screen readers
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > W + 1 || r.left < -1) && !scrolls(el)) {
      const name = `${el.tagName.toLowerCase()}.${String(el.className).slice(0, 40)}`;
      out.push(`${name} [${Math.round(r.left)}, ${Math.round(r.right)}]`);
    }
  }
  const plots = [...document.querySelectorAll('.js-plotly-plot')].filter((p) => p.offsetParent !== null);
  return {
    viewport: W,
    page_width: document.documentElement.scrollWidth,
    outside: out.slice(0, 10),
    figures: plots.map((p) => [Math.round(p.getBoundingClientRect().width),
                               (p.closest('.output, .cell_output, article') || document.body).clientWidth]),
    figures_drawn: plots.filter((p) => p.querySelector('svg.main-svg')).length,
  };
}"""

# In dark mode: the theme really is dark, and each figure's text contrasts with what is behind it (WCAG ratio).
DARK_PROBE = r"""() => {
  const rgba = (c) => {
    const probe = document.createElement('span');
    probe.style.color = c;
    document.body.appendChild(probe);
    const m = getComputedStyle(probe).color.match(/[\d.]+/g).map(Number);
    probe.remove();
    return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      layers.push(c);
      if (c[3] === 1) break;
    }
    return layers.reverse().reduce((acc, c) => over(c, acc), [255, 255, 255, 1]);
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const page = background(document.querySelector('article.bd-article') || document.body);
  return {
    theme: document.documentElement.dataset.theme,
    switcher: document.querySelectorAll('.theme-switch-button').length,
    page_text_contrast: ratio(rgba(getComputedStyle(document.querySelector('article') || document.body).color), page),
    figure_contrast: [...document.querySelectorAll('.js-plotly-plot')].filter((p) => p._fullLayout).map((p) => {
      const behind = over(rgba(p._fullLayout.paper_bgcolor), background(p));
      return Math.round(ratio(rgba(p._fullLayout.font.color), behind) * 10) / 10;
    }),
  };
}"""


@pytest.fixture(scope="module")
def seen_on_phone(server) -> dict[str, dict]:
    _need_chromium()
    return _visit_all({p: server + p for p in PAGES}, allowed=(server,), viewport=PHONE, probe=PHONE_PROBE)


@pytest.fixture(scope="module")
def seen_in_dark_mode(server) -> dict[str, dict]:
    _need_chromium()
    pages = ["index.html", *CHAPTER_PAGES]
    return _visit_all({p: server + p for p in pages}, allowed=(server,), mode="dark", probe=DARK_PROBE)


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_page_fits_a_phone_screen(seen_on_phone, page):
    """At 390 px the page never scrolls sideways, nothing in the text sticks out, every figure fits its column."""
    r = seen_on_phone[page]
    assert r["page_errors"] == [] and r["console"] == [] and r["failed"] == [] and r["http"] == [], r
    assert r["ready"] is True, r["ready"]
    assert r["page_width"] <= r["viewport"], f"{page}: {r['page_width']} px wide on a {r['viewport']} px screen"
    assert r["outside"] == [], f"{page}: sticks out of the screen: {r['outside']}"
    assert all(width <= column + 1 for width, column in r["figures"]), f"{page}: figure vs column {r['figures']}"
    assert r["figures_drawn"] == len(r["figures"])


@pytest.mark.browser
@pytest.mark.parametrize("page", ["index.html", *CHAPTER_PAGES])
def test_dark_mode_keeps_text_and_figures_readable(seen_in_dark_mode, page):
    r = seen_in_dark_mode[page]
    assert r["page_errors"] == [] and r["console"] == [] and r["failed"] == [] and r["http"] == [], r
    assert r["switcher"] >= 1, f"{page}: no theme switcher"
    assert r["theme"] == "dark", f"{page}: the stored mode did not switch the theme ({r['theme']})"
    assert r["page_text_contrast"] >= 7, r["page_text_contrast"]
    assert all(c >= 4.5 for c in r["figure_contrast"]), f"{page}: figure text contrast {r['figure_contrast']} < 4.5"
