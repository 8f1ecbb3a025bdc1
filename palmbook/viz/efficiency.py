"""Chapter 13, efficiency: what each smaller or faster variant of a model costs in quality.

| figure            | shows                                                                               |
|-------------------|-------------------------------------------------------------------------------------|
| ``tradeoff_figure``| size against validation loss, marker area for speed; menus switch size and speed     |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from .common import SERIES

__all__ = ["tradeoff_figure"]


def tradeoff_figure(rows: Sequence[dict], machine: str) -> go.Figure:
    """Size against quality for model variants, marker area proportional to speed (a trade-off map).

    rows: ``{"name", "group", "disk_mb", "memory_mb", "nats_per_char", "forward_tok_s", "generate_tok_s"}``
    (+ optional ``"detail"``). One trace per group; menus switch the size axis (file / memory) and which speed
    sets the marker area (forward pass / generation). Lower and further left is better; bigger is faster.
    """
    groups = list(dict.fromkeys(r["group"] for r in rows))
    by_group = {g: [r for r in rows if r["group"] == g] for g in groups}

    def sizes(key: str) -> list[list[float]]:
        top = max(r[key] for r in rows)
        return [[8 + 42 * math.sqrt(r[key] / top) for r in by_group[g]] for g in groups]  # area ~ speed

    fig = go.Figure()
    forward = sizes("forward_tok_s")
    for g, s, color in zip(groups, forward, SERIES * 4, strict=False):
        pts = by_group[g]
        fig.add_scatter(
            x=[r["disk_mb"] for r in pts],
            y=[r["nats_per_char"] for r in pts],
            name=g,
            mode="markers+text",
            text=[r["name"] for r in pts],
            textposition="top center",
            marker=dict(size=s, color=color, opacity=0.7, line=dict(color="black", width=1)),
            customdata=[
                [r["disk_mb"], r["memory_mb"], r["forward_tok_s"], r["generate_tok_s"], r.get("detail", "")]
                for r in pts
            ],
            hovertemplate="<b>%{text}</b><br>file %{customdata[0]:.2f} MB, memory %{customdata[1]:.2f} MB<br>"
            "forward %{customdata[2]:,.0f} tok/s, generate %{customdata[3]:,.0f} tok/s<br>"
            "validation loss %{y:.4f} nats/char<br>%{customdata[4]}<extra></extra>",
        )
    n = len(groups)
    x_of = {k: [[r[k] for r in by_group[g]] for g in groups] for k in ("disk_mb", "memory_mb")}
    menus = [
        dict(buttons=[dict(label="marker: forward speed", method="restyle",
                           args=[{"marker.size": forward}, list(range(n))]),
                      dict(label="marker: generation speed", method="restyle",
                           args=[{"marker.size": sizes("generate_tok_s")}, list(range(n))])],
             x=0.0, xanchor="left", y=1.14, yanchor="bottom"),
        dict(buttons=[dict(label="x: size of the file", method="update",
                           args=[{"x": x_of["disk_mb"]}, {"xaxis.title.text": "size of the saved model (MB)"}]),
                      dict(label="x: size in memory", method="update",
                           args=[{"x": x_of["memory_mb"]}, {"xaxis.title.text": "weights in memory (MB)"}])],
             x=0.45, xanchor="left", y=1.14, yanchor="bottom"),
    ]  # fmt: skip
    fig.update_layout(
        title=dict(text=f"Size, quality and speed of each variant ({machine})", y=0.98),
        xaxis=dict(title="size of the saved model (MB)", rangemode="tozero"),
        yaxis=dict(title="validation loss (nats per character; lower is better)"),
        updatemenus=menus,
        height=560,
        margin=dict(t=130),
        legend=dict(title="family"),
    )
    return fig
