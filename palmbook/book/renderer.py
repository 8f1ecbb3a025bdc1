"""The plotly renderer of the book: figures that JupyterLab, VS Code and the static book all draw.

A figure renders as ``plotly_mimetype+palmbook``: the mimetype part is what JupyterLab and VS Code draw, the
``palmbook`` part is a ``text/html`` div *without* plotly.js, which the static book draws with the one copy of
plotly.min.js each page loads from the site (myst-nb ignores plotly's own mimetype, so without this the figures
would vanish from the book).

This module imports plotly's renderer machinery, so :mod:`palmbook.book` imports it only when a chapter asks for
the renderer (``import palmbook`` stays free of it).
"""

from __future__ import annotations

import itertools

import plotly.io as pio
from plotly.io.base_renderers import MimetypeRenderer

__all__ = ["BOOK_RENDERER", "RENDERER_NAME", "use_book_renderer"]

RENDERER_NAME = "palmbook"
BOOK_RENDERER = f"plotly_mimetype+{RENDERER_NAME}"


def use_book_renderer() -> str:
    """Register the ``palmbook`` plotly renderer and make ``plotly_mimetype+palmbook`` the default.

    Returns the name of the default renderer. Safe to call more than once.
    """
    if RENDERER_NAME not in pio.renderers:
        pio.renderers[RENDERER_NAME] = _BookHtmlRenderer()
    pio.renderers.default = BOOK_RENDERER
    pio.templates.default = "plotly_white"
    return pio.renderers.default


class _BookHtmlRenderer(MimetypeRenderer):
    """A ``text/html`` bundle holding the figure's div and its ``Plotly.newPlot`` call, but not plotly.js.

    The div ids count up (``palmbook-fig-1``, ...) instead of plotly's random UUIDs, so re-executing a notebook
    does not rewrite every figure's output in the diff. The counter is global because plotly renders with a
    copy of the registered renderer object.
    """

    ids = itertools.count(1)

    def to_mimebundle(self, fig_dict: dict) -> dict[str, str]:
        html = pio.to_html(
            fig_dict,
            full_html=False,
            include_plotlyjs=False,  # the book loads plotly.min.js once per page, from the site
            include_mathjax=False,  # the book already runs MathJax 3; plotly's option would add a CDN script
            validate=False,
            div_id=f"palmbook-fig-{next(self.ids)}",
            config={"displaylogo": False, "responsive": True},
        )
        return {"text/html": html}
