"""The book's reusable figures: one function per picture, each returning a plotly ``Figure``.

Every interactive control here (sliders, buttons, dropdowns) is plotly's own, so it keeps working on the static
book page, with no kernel. Chapters append their functions under a banner naming the chapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from torch import Tensor

__all__ = ["attention_map_figure", "rope_rotation_figure", "softmax_temperature_figure"]


# --------------------------------------------------------------------------------------------- chapter 3: attention
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
        sliders=[dict(active=first, steps=steps, currentvalue=dict(prefix="temperature t = "), pad=dict(t=40))],
        yaxis=dict(range=[0, 1.1], title="probability softmax(s / t)"),
        xaxis=dict(title="candidate"),
        title="Softmax with temperature: small t sharpens, large t flattens",
        margin=dict(t=60),
    )
    return fig


def rope_rotation_figure(
    head_dim: int = 16, pairs: Sequence[int] = (0, 1, 2, 4), positions: int = 32, base: float = 10_000.0
) -> go.Figure:
    """RoPE as clock hands: pair i of a head turns by ``position * base^(-2i/head_dim)`` radians.

    Each chosen pair is drawn as a hand of its own length (so hands do not overlap) starting at angle 0;
    a slider (and a play button) moves the position 0 .. positions-1. Works without a kernel.
    """
    if not pairs or max(pairs) >= head_dim // 2 or min(pairs) < 0:
        raise ValueError(f"pairs must be indices in 0..{head_dim // 2 - 1} for head_dim={head_dim}; got {pairs}")
    theta = (base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))[list(pairs)]
    radii = [1.0 + k for k in range(len(pairs))]
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

    def hands(m: int) -> list[go.Scatter]:
        traces = []
        for k, (i, th) in enumerate(zip(pairs, theta.tolist(), strict=True)):
            past = torch.arange(m + 1, dtype=torch.float64) * th
            r, c = radii[k], colors[k % len(colors)]
            traces.append(
                go.Scatter(
                    x=(r * past.cos()).tolist(),
                    y=(r * past.sin()).tolist(),
                    mode="markers",
                    marker=dict(size=4, color=c, opacity=0.35),
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
            a = m * th
            traces.append(
                go.Scatter(
                    x=[0, r * math.cos(a)],
                    y=[0, r * math.sin(a)],
                    mode="lines+markers",
                    line=dict(color=c, width=3),
                    marker=dict(size=[0, 10], color=c),
                    name=f"pair {i}: {th:.3g} rad/position",
                    hovertemplate=f"pair {i}<br>angle = {m} x {th:.4g} = {a:.3f} rad<extra></extra>",
                )
            )
        return traces

    frames = [go.Frame(data=hands(m), name=str(m)) for m in range(positions)]
    lim = radii[-1] + 0.3
    fig = go.Figure(data=hands(0), frames=frames)
    fig.update_layout(
        xaxis=dict(range=[-lim, lim], zeroline=True, showgrid=False, title="first dimension of the pair"),
        yaxis=dict(range=[-lim, lim], scaleanchor="x", zeroline=True, showgrid=False, title="second dimension"),
        title=f"RoPE: each pair of a head's dimensions rotates with the position (head_dim={head_dim})",
        sliders=[
            dict(
                steps=[
                    dict(
                        method="animate",
                        label=str(m),
                        args=[
                            [str(m)],
                            dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=0)),
                        ],
                    )
                    for m in range(positions)
                ],
                currentvalue=dict(prefix="position m = "),
                pad=dict(t=40),
            )
        ],
        updatemenus=[
            dict(
                type="buttons",
                showactive=False,
                x=0,
                y=-0.12,
                xanchor="left",
                yanchor="top",
                buttons=[
                    dict(
                        label="play",
                        method="animate",
                        args=[None, dict(frame=dict(duration=300, redraw=False), fromcurrent=True)],
                    )
                ],
            )
        ],
        height=560,
        legend=dict(x=1.02, y=1),
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
    maps = torch.as_tensor(maps, dtype=torch.float32)
    if maps.dim() != 4 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"maps must be (n_layers, n_heads, T, T); got {tuple(maps.shape)}: pick one sequence")
    L, H, T, _ = maps.shape
    if len(tokens) != T:
        raise ValueError(f"need one token label per position: maps have T={T}, got {len(tokens)} tokens")
    if not (0 <= layer < L and 0 <= head < H):
        raise ValueError(f"layer must be in 0..{L - 1} and head in 0..{H - 1}; got layer={layer}, head={head}")
    visible = torch.ones(T, T, dtype=torch.bool).tril()
    tiles = maps.masked_fill(~visible, float("nan")).permute(0, 2, 1, 3).reshape(L * T, H * T)
    z = [[None if v != v else round(v, 4) for v in row] for row in tiles.tolist()]  # NaN -> blank cell
    labels = [t.replace(" ", "\u2423").replace("\n", "\u21b5") or "\u2205" for t in tokens]  # show spaces, newlines
    text = [[f"{labels[i]} \u2190 {labels[j]}" if j <= i else "" for j in range(T)] * H for i in range(T)] * L
    heat = go.Heatmap(
        z=z,
        text=text,
        colorscale="Blues",
        zmin=0.0,
        zmax=1.0,
        colorbar=dict(title="weight"),
        hovertemplate="query \u2190 key: %{text}<br>weight %{z:.3f}<extra></extra>",
    )
    fig = go.Figure(heat)

    def window(k: int) -> list[float]:
        return [k * T - 0.5, (k + 1) * T - 0.5]

    layer_steps = [dict(method="relayout", label=str(i), args=[{"yaxis.range": window(i)[::-1]}]) for i in range(L)]
    head_steps = [dict(method="relayout", label=str(h), args=[{"xaxis.range": window(h)}]) for h in range(H)]
    fig.update_layout(
        title=title or "Attention weights (row: query token, column: the key token it looks at)",
        xaxis=dict(
            range=window(head),
            tickvals=list(range(H * T)),
            ticktext=labels * H,
            tickangle=-60,
            title="key (attended-to) token",
            constrain="domain",
        ),
        yaxis=dict(
            range=window(layer)[::-1],
            tickvals=list(range(L * T)),
            ticktext=labels * L,
            title="query token",
            scaleanchor="x",
        ),
        sliders=[
            dict(
                active=layer,
                steps=layer_steps,
                currentvalue=dict(prefix="layer "),
                y=-0.18,
                len=0.45,
                x=0,
                pad=dict(t=30),
            ),
            dict(
                active=head,
                steps=head_steps,
                currentvalue=dict(prefix="head "),
                y=-0.18,
                len=0.45,
                x=0.55,
                pad=dict(t=30),
            ),
        ],
        height=640,
        margin=dict(b=160),
    )
    return fig
