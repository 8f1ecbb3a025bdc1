"""The widget scaffolding chapters repeat: controls above an HTML panel redrawn on every change, and its HTML bits.

Ten chapters build the same explorer by hand (sliders, an ``ipywidgets.HTML`` panel, an ``observe`` on each
control, a ``VBox``); here it is written once, so that a chapter's cell holds only what it teaches, the function
that draws the panel:

    explorer(lambda d_model, n_layers: f"<b>{count(d_model, n_layers):,}</b> parameters",
             {"d_model": widgets.IntSlider(8192, 512, 20480, 512), "n_layers": widgets.IntSlider(64, 1, 128)})

On the static page the book shows the explorer as ``make execute`` saved it (the controls and the panel as first
drawn, from the notebook's widget state); it does not redraw without a kernel. Pair it with a plotly figure (which
does react on the static page) where the reader should play without one.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["bar_html", "explorer", "pre_html"]


def explorer(
    render: Callable[..., str],
    controls: Mapping[str, Any],
    *,
    rows: Sequence[Sequence[str]] | None = None,
) -> Any:
    """Controls above an HTML panel showing ``render(**{name: control.value})``, redrawn whenever one changes.

    Args:
        render: returns the panel's HTML; called with one keyword argument per control, named as in
            ``controls``, once now and again on every change.
        controls: name -> an ipywidgets control with a ``value`` (slider, text box, dropdown, ...).
        rows: names of the controls to put side by side, one row each (default: one control per row); every
            control must appear exactly once.

    Returns:
        An ``ipywidgets.VBox``: the controls, then the panel (an ``ipywidgets.HTML``, its last child).
    """
    import ipywidgets as widgets  # a heavy import: only chapters that draw an explorer pay for it

    rows = [[name] for name in controls] if rows is None else [list(row) for row in rows]
    placed = [name for row in rows for name in row]
    if sorted(placed) != sorted(controls):
        raise ValueError(f"rows must place every control exactly once: got {placed} for {list(controls)}")
    panel = widgets.HTML()

    def redraw(_change: object = None) -> None:
        panel.value = render(**{name: control.value for name, control in controls.items()})

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    lines = [controls[row[0]] if len(row) == 1 else widgets.HBox([controls[n] for n in row]) for row in rows]
    return widgets.VBox([*lines, panel])


def pre_html(text: str, emphasis: str = "") -> str:
    """``text`` then ``emphasis`` in bold, escaped, as wrapped preformatted HTML (a prompt and what a model added)."""
    bold = f"<b>{html.escape(emphasis)}</b>" if emphasis else ""
    return f"<pre style='white-space: pre-wrap'>{html.escape(text)}{bold}</pre>"


def bar_html(fraction: float, color: str = "#1f77b4", width: int = 300) -> str:
    """A horizontal bar ``fraction`` (0..1) of ``width`` pixels long, for the bar tables of an explorer's panel."""
    return f"<div style='background:{color};height:14px;width:{width * fraction:.0f}px'></div>"
