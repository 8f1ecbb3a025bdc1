"""Chapter 2, embeddings: how large a fresh model's logits are, and where training moved each token's vector.

| figure                  | shows                                                                         |
|-------------------------|-------------------------------------------------------------------------------|
| ``logit_scale_figure``  | histograms of a fresh model's logits, a slider over the width d               |
| ``embedding_map_figure``| token embeddings (their principal components) in 2-D or 3-D, one colour a category |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from torch import Tensor

from .common import printable_piece, slider

__all__ = ["embedding_map_figure", "logit_scale_figure"]


def _density(values: Tensor, width: float) -> tuple[list[float], list[float]]:
    """A histogram as (bin centres, densities), only the non-empty bins: compact enough for a static page."""
    bins, counts = torch.unique(torch.floor(values.double() / width), return_counts=True)
    return ((bins + 0.5) * width).tolist(), (counts.double() / (len(values) * width)).tolist()


def logit_scale_figure(samples: dict[int, tuple[Tensor, Tensor]], bin_width: float = 0.25) -> go.Figure:
    """Histograms of a fresh model's logits, with a slider over the model width d (works without a kernel).

    samples: {d: (logits of the input token itself (n,), logits of other tokens (m,))}. With N(0, 1)
    embeddings and the 1/sqrt(d) scale, the other logits stay near N(0, 1) whatever d is, while the input token's
    own logit sits near sqrt(d) (a dashed line): the wider the model, the more a fresh one expects its input to
    repeat. The histograms are binned here (``bin_width``), so the page holds bins, not samples.
    """
    if not samples:
        raise ValueError("samples is empty: give {d_model: (self_logits, other_logits)}")
    fig = go.Figure()
    ds = sorted(samples)
    ranges = []
    for i, d in enumerate(ds):
        own, others = (torch.as_tensor(t, dtype=torch.float32).flatten() for t in samples[d])
        for values, name, colour in ((others, "other tokens", "#8ecae6"), (own, "the input token", "#fb8500")):
            x, y = _density(values, bin_width)
            fig.add_bar(
                x=x,
                y=y,
                width=bin_width,
                name=name,
                marker_color=colour,
                opacity=0.8,
                visible=(i == 0),
                hovertemplate="logit %{x:.2f}<br>density %{y:.3f}<extra>" + name + "</extra>",
            )
        root = math.sqrt(d)
        fig.add_scatter(
            x=[root, root],
            y=[0, 0.8],
            mode="lines",
            line=dict(dash="dash", color="#333"),
            name="sqrt(d)",
            visible=(i == 0),
            hovertemplate=f"sqrt({d}) = {root:.2f}<extra></extra>",
        )
        ranges.append([min(-4.0, others.min().item() - 0.5), max(own.max().item(), root) + 2.0])
    titles = [
        f"Embedding, LayerNorm, shared output (no blocks), d = {d}: own logit near sqrt(d) = {d**0.5:.1f}" for d in ds
    ]
    steps = [
        dict(
            method="update",
            label=str(d),
            args=[
                {"visible": [j // 3 == i for j in range(3 * len(ds))]},
                {"title.text": titles[i], "xaxis.range": ranges[i]},
            ],
        )
        for i, d in enumerate(ds)
    ]
    fig.update_layout(
        title=titles[0],
        barmode="overlay",
        bargap=0,
        xaxis=dict(title="logit = h · E_j / sqrt(d)", range=ranges[0]),
        yaxis=dict(title="density", range=[0, 0.8]),
        sliders=[slider(steps, 0, "d_model = ", pad=dict(t=50))],
        legend=dict(x=0.98, xanchor="right", y=0.98),
        height=460,
    )
    return fig


def embedding_map_figure(
    coords: Tensor,
    pieces: Sequence[str],
    categories: Sequence[str],
    ids: Sequence[int] | None = None,
    title: str = "The embedding matrix, one point per token",
    axis_titles: Sequence[str] | None = None,
    colours: dict[str, str] | None = None,
) -> go.Figure:
    """A 2-D or 3-D scatter of token embeddings (e.g. their principal components), one colour per category.

    coords: (N, 2) or (N, 3); pieces, categories: N strings (hover shows the piece, its id and category; clicking a
    legend entry hides or shows a category); colours: {category: CSS colour} (default: plotly's palette).
    In 3-D, drag to turn the cloud, scroll to zoom.
    """
    coords = torch.as_tensor(coords, dtype=torch.float32)
    if coords.dim() != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"coords must be (N, 2) or (N, 3); got {tuple(coords.shape)}")
    N, k = coords.shape
    if len(pieces) != N or len(categories) != N:
        raise ValueError(
            f"need one piece and one category per point: {N} points, {len(pieces)} pieces, {len(categories)} categories"
        )
    ids = list(range(N)) if ids is None else list(ids)
    axis_titles = list(axis_titles or [f"component {i + 1}" for i in range(k)])
    fig = go.Figure()
    for cat in dict.fromkeys(categories):  # first-seen order
        rows = [i for i, c in enumerate(categories) if c == cat]
        pts = coords[rows].double().mul(1000).round().div(1000)  # 3 decimals: a smaller page, the same picture
        custom = [[printable_piece(pieces[i]), ids[i]] for i in rows]
        common = dict(
            mode="markers",
            name=f"{cat} ({len(rows)})",
            customdata=custom,
            hovertemplate="%{customdata[0]} (id %{customdata[1]})<extra>" + cat + "</extra>",
        )
        colour = (colours or {}).get(cat)
        if k == 3:
            fig.add_scatter3d(
                x=pts[:, 0].tolist(),
                y=pts[:, 1].tolist(),
                z=pts[:, 2].tolist(),
                marker=dict(size=3, opacity=0.8, color=colour),
                **common,
            )
        else:
            marker = dict(size=6, opacity=0.8, color=colour)
            fig.add_scatter(x=pts[:, 0].tolist(), y=pts[:, 1].tolist(), marker=marker, **common)
    if k == 3:
        fig.update_layout(
            scene=dict(xaxis_title=axis_titles[0], yaxis_title=axis_titles[1], zaxis_title=axis_titles[2])
        )
    else:
        fig.update_layout(xaxis_title=axis_titles[0], yaxis_title=axis_titles[1])
    fig.update_layout(title=title, height=600, legend=dict(itemsizing="constant"))
    return fig
