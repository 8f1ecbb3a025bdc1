"""Chapter 6, PaLM in one page: where a PaLM's parameters live.

| figure                       | shows                                                                       |
|------------------------------|-----------------------------------------------------------------------------|
| ``parameter_breakdown_figure`` | each model's parameters by part, as shares or as counts (a menu switches) |
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

from .common import SERIES

__all__ = ["parameter_breakdown_figure"]


def parameter_breakdown_figure(breakdowns: Mapping[str, Mapping[str, int]]) -> go.Figure:
    """Stacked horizontal bars, one per model, one colour per part of the model (embedding, attention, MLP...).

    ``breakdowns``: model name -> {part name -> parameter count}; every model must list the same parts, in the
    same order. A menu switches between each part's share of its model (%), where models of any size compare,
    and the counts themselves, where the sizes do. Hovering a segment shows both.
    """
    names = list(breakdowns)
    if not names:
        raise ValueError("breakdowns is empty: give at least one model, e.g. {'8B': {'embedding': ..., ...}}")
    parts = list(breakdowns[names[0]])
    for name in names:
        if list(breakdowns[name]) != parts:
            raise ValueError(
                f"every model must list the same parts in the same order; {name!r} lists "
                f"{list(breakdowns[name])}, {names[0]!r} lists {parts}"
            )
    totals = [sum(breakdowns[n].values()) for n in names]
    colours = [*SERIES, "#17becf", "#bcbd22", "#7f7f7f"]
    shares, counts = [], []
    fig = go.Figure()
    for j, part in enumerate(parts):
        count = [breakdowns[n][part] for n in names]
        share = [100 * c / t for c, t in zip(count, totals, strict=True)]
        shares.append(share)
        counts.append([c / 1e9 for c in count])
        fig.add_bar(
            y=names,
            x=share,
            name=part,
            orientation="h",
            marker_color=colours[j % len(colours)],
            customdata=[[f"{c:,}", s] for c, s in zip(count, share, strict=True)],
            hovertemplate=f"{part}<br>%{{y}}: %{{customdata[0]}} parameters<br>%{{customdata[1]:.2f}}% of the model"
            "<extra></extra>",
        )
    views = [
        ("share of each model (%)", shares, "share of the model's parameters (%)"),
        ("parameters (billions)", counts, "parameters (billions)"),
    ]
    buttons = [
        dict(label=label, method="update", args=[{"x": xs}, {"xaxis.title.text": title, "xaxis.autorange": True}])
        for label, xs, title in views
    ]
    fig.update_layout(
        barmode="stack",
        title="Where the parameters live",
        xaxis_title=views[0][2],
        yaxis=dict(autorange="reversed"),  # the first model on top
        updatemenus=[dict(buttons=buttons, direction="down", x=0.0, xanchor="left", y=1.2, yanchor="top")],
        height=400,
        margin=dict(t=100),
        legend=dict(orientation="h", y=-0.22),
    )
    return fig
