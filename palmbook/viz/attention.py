"""Chapter 3, attention: softmax with a temperature, RoPE as clock hands, and the attention maps of every head.

| figure                         | shows                                                                   |
|--------------------------------|-------------------------------------------------------------------------|
| ``softmax_temperature_figure`` | softmax(s / t) with a slider over t                                     |
| ``rope_rotation_figure``       | each pair of a head's dimensions turning with the position (§2, RoPE)   |
| ``attention_map_figure``       | (n_layers, n_heads, T, T) weights, one slider for the layer, one for the head |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from torch import Tensor

from .common import BLUE, BROWN, GREEN, GREY, ORANGE, PINK, PURPLE, RED, slider

__all__ = ["attention_map_figure", "rope_rotation_figure", "softmax_temperature_figure"]


def softmax_temperature_figure(
    scores: Sequence[float],
    labels: Sequence[str],
    temperatures: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
    start: float = 1.0,
) -> go.Figure:
    """Bar chart of ``softmax(scores / t)`` with a slider over the temperature t (works without a kernel).

    scores: one raw score (logit) per candidate; labels: their names. The slider's steps restyle the bars.
    """
    if len(scores) != len(labels):
        raise ValueError(f"need one label per score; got {len(scores)} scores and {len(labels)} labels")
    s = torch.as_tensor(scores, dtype=torch.float64)
    probs = [torch.softmax(s / t, -1).tolist() for t in temperatures]
    first = min(range(len(temperatures)), key=lambda i: abs(temperatures[i] - start))
    bar = go.Bar(
        x=list(labels),
        y=probs[first],
        text=[f"{p:.3f}" for p in probs[first]],
        textposition="outside",
        hovertemplate="%{x}: p = %{y:.4f}<extra></extra>",
    )
    steps = [
        dict(method="restyle", label=f"{t:g}", args=[{"y": [p], "text": [[f"{x:.3f}" for x in p]]}, [0]])
        for t, p in zip(temperatures, probs, strict=True)
    ]
    fig = go.Figure(bar)
    fig.update_layout(
        sliders=[slider(steps, first, "temperature t = ")],
        yaxis=dict(range=[0, 1.1], title="probability softmax(s / t)"),
        xaxis=dict(title="candidate"),
        title="Softmax with temperature: small t sharpens, large t flattens",
        margin=dict(t=60),
        height=450,
    )
    return fig


def rope_rotation_figure(
    head_dim: int = 16, pairs: Sequence[int] = (0, 1, 2, 4), positions: int = 32, base: float = 10_000.0
) -> go.Figure:
    """RoPE as clock hands: pair i of a head turns by ``position * base^(-2i/head_dim)`` radians.

    Each chosen pair is drawn as a hand of its own length (so hands do not overlap) starting at angle 0, with faint
    dots where it points at every position; a slider moves the position 0 .. positions-1.
    Works without a kernel.
    """
    if not pairs or max(pairs) >= head_dim // 2 or min(pairs) < 0:
        raise ValueError(f"pairs must be indices in 0..{head_dim // 2 - 1} for head_dim={head_dim}; got {pairs}")
    theta = (base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))[list(pairs)]
    radii = [1.0 + k for k in range(len(pairs))]
    colors = [BLUE, ORANGE, GREEN, RED, PURPLE, BROWN, PINK, GREY]

    every = torch.arange(positions, dtype=torch.float64)
    dots = [  # where each hand points at every position: drawn once, faint
        go.Scatter(
            x=(r * (every * th).cos()).numpy(),
            y=(r * (every * th).sin()).numpy(),
            mode="markers",
            marker=dict(size=4, color=colors[k % len(colors)], opacity=0.3),
            hoverinfo="skip",
            showlegend=False,
        )
        for k, (r, th) in enumerate(zip(radii, theta.tolist(), strict=True))
    ]

    def hand(k: int, m: int) -> dict:
        """Pair k's hand at position m: a line from the origin, and its hover text."""
        a = m * theta[k].item()
        x, y = [0.0, radii[k] * math.cos(a)], [0.0, radii[k] * math.sin(a)]
        return dict(
            x=x, y=y, hovertemplate=f"pair {pairs[k]}<br>angle = {m} x {theta[k]:.4g} = {a:.3f} rad<extra></extra>"
        )

    hands = [
        go.Scatter(
            **hand(k, 0),
            mode="lines+markers",
            line=dict(color=colors[k % len(colors)], width=3),
            marker=dict(size=[0, 10], color=colors[k % len(colors)]),
            name=f"pair {i}: {theta[k]:.3g} rad/position",
        )
        for k, i in enumerate(pairs)
    ]
    # Slider steps restyle the hands (trace indices after the dots). Deliberately no animation frames: exported
    # HTML starts playing frames on page load, and a slider is all the reader needs.
    moving = list(range(len(pairs), 2 * len(pairs)))
    steps = []
    for m in range(positions):
        now = [hand(k, m) for k in range(len(pairs))]
        update = {key: [h[key] for h in now] for key in ("x", "y", "hovertemplate")}
        steps.append(dict(method="restyle", label=str(m), args=[update, moving]))
    lim = radii[-1] + 0.3
    fig = go.Figure(data=dots + hands)
    fig.update_layout(
        xaxis=dict(range=[-lim, lim], zeroline=True, showgrid=False, title="first dimension of the pair"),
        yaxis=dict(range=[-lim, lim], scaleanchor="x", zeroline=True, showgrid=False, title="second dimension"),
        title=f"RoPE: each pair of a head's dimensions rotates with the position (head_dim={head_dim})",
        sliders=[slider(steps, 0, "position m = ")],
        height=560,
        legend=dict(x=1.02, y=1),
        plot_bgcolor="white",
    )
    return fig


def attention_map_figure(
    maps: Tensor, tokens: Sequence[str], title: str | None = None, layer: int = 0, head: int = 0
) -> go.Figure:
    """Attention weights of every layer and head, with a layer slider and a head slider (no kernel needed).

    maps: (n_layers, n_heads, T, T), row = query position, column = key position (e.g. one sequence of
    ``model.attention_maps(idx)[:, 0]``); tokens: the T token strings, used as axis labels; layer, head: the
    map shown first.

    How two sliders work on a static page: all maps are tiled into ONE heatmap, layers down and heads across.
    The layer slider only moves the y-axis window and the head slider only the x-axis window, so each keeps
    the other's choice. Masked (future) positions are left blank, so the causal triangle shows.
    """
    maps = _check_maps(maps, tokens, layer, head)
    L, H, T, _ = maps.shape
    labels = [t.replace(" ", "\u2423").replace("\n", "\u21b5") or "\u2205" for t in tokens]  # show spaces, newlines
    xcats, ycats = _tile_categories(labels, H), _tile_categories(labels, L)
    heat = go.Heatmap(
        z=_tile(maps).numpy(),  # float32, sent to the page as a compact binary array; NaN (masked) cells stay blank
        x=xcats,
        y=ycats,
        colorscale="Blues",
        zmin=0.0,
        zmax=1.0,
        colorbar=dict(title="weight"),
        hovertemplate="query %{y} \u2190 key %{x}<br>weight %{z:.3f}<extra></extra>",
    )

    def window(k: int) -> list[float]:
        """The axis range that shows tile k (of T categories each)."""
        return [k * T - 0.5, (k + 1) * T - 0.5]

    layer_steps = [dict(method="relayout", label=str(i), args=[{"yaxis.range": window(i)[::-1]}]) for i in range(L)]
    head_steps = [dict(method="relayout", label=str(h), args=[{"xaxis.range": window(h)}]) for h in range(H)]
    fig = go.Figure(heat)
    fig.update_layout(
        title=title or "Attention weights (row: query token, column: the key token it looks at)",
        xaxis=dict(
            range=window(head),
            type="category",
            showgrid=False,
            tickvals=xcats,
            ticktext=labels * H,
            tickangle=-60,
            title="key (attended-to) token",
            constrain="domain",
        ),
        yaxis=dict(
            range=window(layer)[::-1],
            type="category",
            showgrid=False,
            tickvals=ycats,
            ticktext=labels * L,
            title="query token",
            scaleanchor="x",
        ),
        sliders=[
            slider(layer_steps, layer, "layer ", y=-0.18, len=0.45, x=0, pad=dict(t=30)),
            slider(head_steps, head, "head ", y=-0.18, len=0.45, x=0.55, pad=dict(t=30)),
        ],
        height=640,
        margin=dict(b=160),
        plot_bgcolor="white",  # masked (blank) cells show the background
    )
    return fig


def _check_maps(maps: Tensor, tokens: Sequence[str], layer: int, head: int) -> Tensor:
    """``maps`` as float32 (n_layers, n_heads, T, T), after checking it against the labels and the first view."""
    maps = torch.as_tensor(maps, dtype=torch.float32)
    if maps.dim() != 4 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"maps must be (n_layers, n_heads, T, T); got {tuple(maps.shape)}: pick one sequence")
    L, H, T, _ = maps.shape
    if len(tokens) != T:
        raise ValueError(f"need one token label per position: maps have T={T}, got {len(tokens)} tokens")
    if not (0 <= layer < L and 0 <= head < H):
        raise ValueError(f"layer must be in 0..{L - 1} and head in 0..{H - 1}; got layer={layer}, head={head}")
    return maps


def _tile(maps: Tensor) -> Tensor:
    """(L, H, T, T) maps -> one (L * T, H * T) matrix, layers down and heads across; future positions NaN."""
    L, H, T, _ = maps.shape
    visible = torch.ones(T, T, dtype=torch.bool).tril()
    return maps.masked_fill(~visible, float("nan")).permute(0, 2, 1, 3).reshape(L * T, H * T)


def _tile_categories(labels: Sequence[str], tiles: int) -> list[str]:
    """Category names for ``tiles`` repeats of the T labels: hover then names the tokens without a (large)
    per-cell text array. Categories must be unique, so tile k's names end in k zero-width spaces (invisible)."""
    return [f"{label} ({j})" + "\u200b" * k for k in range(tiles) for j, label in enumerate(labels)]
