"""What every figure module shares, written once: the palette, plotly controls that work on a static page, the
printable form of a token, two small charts (an inline SVG, timing boxes), a figure with a page script, and the
question "is this a notebook, and which one?".

| name                                    | what                                                               |
|-----------------------------------------|--------------------------------------------------------------------|
| ``BLUE`` ... ``GREY``, ``SERIES``       | the colours; ``SERIES`` gives runs / curves their colours in order  |
| ``slider``, ``one_at_a_time``           | a plotly slider, and menu buttons that show one trace (or group)    |
| ``printable_piece``                     | a SentencePiece piece with newline and tab made visible             |
| ``svg_curves``, ``timing_figure``       | an inline SVG line chart (for ipywidgets), box plots of timings     |
| ``show_with_script``                    | a figure whose static-page HTML runs a script (combined sliders)    |
| ``in_colab``, ``in_notebook``           | shell detection: Jupyter, VS Code and Colab are notebooks           |

Every control here is plotly's own (``restyle`` / ``update`` / ``relayout`` methods), so it keeps working on the
book's static page with no kernel. No animation frames anywhere: exported HTML starts playing them on page load.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from ..book.colab import in_colab

__all__ = [
    "BLUE",
    "BROWN",
    "GREEN",
    "GREY",
    "OLIVE",
    "ORANGE",
    "PINK",
    "PURPLE",
    "RED",
    "SERIES",
    "in_colab",
    "in_notebook",
    "one_at_a_time",
    "printable_piece",
    "show_with_script",
    "slider",
    "svg_curves",
    "timing_figure",
]

# ---- palette: plotly's classic (d3 "category10") colours, by name, so a figure says which one it means
BLUE, ORANGE, GREEN, RED, PURPLE = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"
BROWN, PINK, GREY, OLIVE = "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"
# Runs and curves in order: blue and red first, the pair that stays apart for colour-blind readers too.
SERIES = (BLUE, RED, GREEN, PURPLE, ORANGE, BROWN)


# ---- controls
def slider(steps: list[dict], active: int, prefix: str, **place: Any) -> dict:
    """A plotly slider over ``steps`` (dicts with method / label / args), the current value shown after ``prefix``.

    place: where it sits and how much room it takes (``y``, ``x``, ``len``, ``pad``...); the default pad leaves
    room for the axis title above it.
    """
    return dict(active=active, steps=steps, currentvalue=dict(prefix=prefix), **{"pad": dict(t=40), **place})


def one_at_a_time(labels: Sequence[str], titles: Sequence[str] | None = None, per_label: int = 1, always: int = 0):
    """Menu buttons that each show one label's traces and hide the others' (and set the title, if given).

    The figure's traces are ``per_label`` consecutive traces for each label, in order, then ``always`` traces
    that stay visible (e.g. a legend made of dummy traces).
    """
    n = len(labels)
    buttons = []
    for i, label in enumerate(labels):
        visible = [j == i for j in range(n) for _ in range(per_label)] + [True] * always
        layout = {"title.text": titles[i]} if titles is not None else {}
        buttons.append(dict(label=label, method="update", args=[{"visible": visible}, layout]))
    return buttons


# ---- tokens as the figures print them
def printable_piece(piece: str) -> str:
    """A piece as the figures print it: "▁" kept, newline and tab made visible."""
    return piece.replace("\n", "\u21b5").replace("\t", "\u21e5")


# ---- small shared charts
def svg_curves(
    x: Sequence[float],
    curves: dict[str, tuple[Sequence[float], str]],
    y_range: tuple[float, float],
    width: int = 460,
    height: int = 260,
) -> str:
    """A small line chart as an inline SVG string: for ipywidgets ``HTML`` explorers.

    An ``HTML`` widget's saved state is plain markup, so the chart is drawn on the static book page too (a plotly
    figure inside a widget would need a kernel). curves: name -> (y values, CSS colour); y values are clipped.
    """
    pad, x0, x1 = 30, min(x), max(x)
    y0, y1 = y_range

    def px(v: float) -> float:
        return pad + (v - x0) / (x1 - x0) * (width - 2 * pad)

    def py(v: float) -> float:
        v = min(max(v, y0), y1)
        return height - pad - (v - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="12">']
    parts.append(f'<line x1="{pad}" y1="{py(0):.1f}" x2="{width - pad}" y2="{py(0):.1f}" stroke="#bbb"/>')
    parts.append(f'<line x1="{px(0):.1f}" y1="{pad}" x2="{px(0):.1f}" y2="{height - pad}" stroke="#bbb"/>')
    for row, (name, (ys, color)) in enumerate(curves.items()):
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, ys, strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        parts.append(f'<text x="{pad + 6}" y="{pad + 14 * row}" fill="{color}">{name}</text>')
    parts.append(f'<text x="{width - pad}" y="{py(0) + 14:.1f}" text-anchor="end" fill="#777">x = {x1:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timing_figure(times_ms: dict[str, Sequence[float]], title: str) -> go.Figure:
    """Box plots of repeated timings (ms), one per variant, every repetition shown as a point (hover for it)."""
    fig = go.Figure()
    for name, ts in times_ms.items():
        fig.add_box(y=list(ts), name=name, boxpoints="all", jitter=0.4, pointpos=0, hovertemplate="%{y:.1f} ms")
    fig.update_layout(title=title, yaxis_title="milliseconds per forward + backward", showlegend=False, height=420)
    return fig


def show_with_script(fig: go.Figure, post_script: str, div_id: str) -> None:
    """Display a plotly figure whose static-page HTML runs ``post_script`` after drawing (``{plot_id}`` = its div).

    Under a kernel the figure goes out as plotly's own mimetype (JupyterLab draws it; the script does not run
    there, so a live chapter pairs it with ipywidgets) plus the ``text/html`` the static book draws, without
    plotly.js, like every figure of the book. In Colab, which draws only HTML, plotly.js comes from its CDN.
    """
    import plotly.io as pio
    from IPython.display import HTML, display

    if in_colab():
        display(HTML(pio.to_html(fig, full_html=False, include_plotlyjs="cdn", post_script=post_script)))
        return
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    bundle["text/html"] = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=div_id,
        post_script=post_script,
        config={"displaylogo": False, "responsive": True},
    )
    display(bundle, raw=True)


# ---- which shell are we in? (in_colab has its one home in palmbook.book.colab; it is re-exported here)
def in_notebook() -> bool:
    """True under a notebook kernel (JupyterLab / Notebook, VS Code, Colab), False in a terminal or a script.

    Asks what the shell is, not what its class is called: Colab's shell is a subclass with another name, so a
    class-name test silently skips it. A kernel's shell has a ``kernel``, and the app that started it is an
    ``IPKernelApp``; the terminal's ``TerminalInteractiveShell`` has neither.
    """
    if in_colab():
        return True
    ipython = sys.modules.get("IPython")  # not imported yet: no shell is running, and a script need not import it
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    if getattr(shell, "kernel", None) is not None:
        return True
    config = getattr(shell, "config", None) or {}
    return "IPKernelApp" in config
