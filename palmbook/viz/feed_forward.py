"""Chapter 4, the feed-forward layer: activation functions and their slopes, Swish's β, and gated linear units.

| figure                | shows                                                                          |
|-----------------------|--------------------------------------------------------------------------------|
| ``activation_figure`` | ReLU, GELU and Swish with their derivatives (hand-written in ``scratch``)       |
| ``swish_beta_figure`` | Swish_β with a slider over β, between its limits x / 2 and ReLU                 |
| ``gated_unit_figure`` | f(a) * b over the gate a and the value b, a menu over f (SwiGLU: PaLM's, §2)    |
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..scratch.feed_forward import d_gelu, d_relu, d_swish, gelu, relu, swish
from .common import BLUE, GREY, OLIVE, RED, one_at_a_time, slider

__all__ = ["activation_figure", "gated_unit_figure", "swish_beta_figure"]


def activation_figure(lo: float = -5.0, hi: float = 5.0, points: int = 201) -> go.Figure:
    """ReLU, GELU and Swish (left) and their derivatives (right), with a menu to show one curve or all.

    Clicking a legend entry hides a curve in both panels (the two traces of a function share a legend group).
    The derivatives come from :mod:`palmbook.scratch.feed_forward` (hand-written, tested against autograd).
    """
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    curves = {
        "ReLU": (relu, d_relu, GREY),
        "GELU": (gelu, d_gelu, BLUE),
        "Swish (β = 1)": (swish, d_swish, RED),
    }
    fig = make_subplots(rows=1, cols=2, subplot_titles=("f(x)", "f′(x): the slope gradients flow through"))
    for name, (f, df, color) in curves.items():
        for col, fn in ((1, f), (2, df)):
            fig.add_scatter(
                x=x.float().numpy(),  # float32 arrays travel as compact binary in the page
                y=fn(x).float().numpy(),
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                row=1,
                col=col,
                line=dict(color=color, width=2.5),
                hovertemplate=f"{name}<br>x = %{{x:.2f}}<br>y = %{{y:.4f}}<extra></extra>",
            )
    names = list(curves)
    buttons = [dict(label="all three", method="restyle", args=[{"visible": [True] * 2 * len(names)}])]
    buttons += one_at_a_time(names, per_label=2)  # f and f' of each function
    fig.update_layout(
        title="Activation functions and their derivatives",
        updatemenus=[dict(buttons=buttons, direction="down", x=0.0, xanchor="left", y=1.22, yanchor="top")],
        height=420,
        margin=dict(t=110),
        legend=dict(orientation="h", y=-0.15),
    )
    fig.update_xaxes(title_text="x", zeroline=True)
    fig.update_yaxes(zeroline=True)
    return fig


def swish_beta_figure(
    betas: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 1.702, 2.0, 4.0, 10.0), start: float = 1.0
) -> go.Figure:
    """Swish_beta(x) = x * sigmoid(beta x) with a slider over beta, against ReLU and x/2 (its two limits).

    beta = 1.702 is the sigmoid approximation of GELU, x * sigmoid(1.702 x) (Hendrycks & Gimpel, 2016).
    """
    x = torch.linspace(-5, 5, 201, dtype=torch.float64)
    ys = [swish(x, b).tolist() for b in betas]
    first = min(range(len(betas)), key=lambda i: abs(betas[i] - start))
    fig = go.Figure()
    fig.add_scatter(x=x.tolist(), y=relu(x).tolist(), name="ReLU (β → ∞)", line=dict(color=GREY, dash="dot"))
    fig.add_scatter(x=x.tolist(), y=(x / 2).tolist(), name="x / 2 (β = 0)", line=dict(color=OLIVE, dash="dot"))
    fig.add_scatter(x=x.tolist(), y=ys[first], name="Swish_β", line=dict(color=RED, width=3))
    steps = [dict(method="restyle", label=f"{b:g}", args=[{"y": [y]}, [2]]) for b, y in zip(betas, ys, strict=True)]
    fig.update_layout(
        title="Swish_β(x) = x·σ(βx) slides from a line (β = 0) to ReLU (β → ∞)",
        sliders=[slider(steps, first, "β = ")],
        xaxis_title="x",
        yaxis=dict(title="Swish_β(x)", range=[-2.6, 5.2]),
        height=440,
    )
    return fig


def gated_unit_figure(lim: float = 3.0, points: int = 41) -> go.Figure:
    """The gated linear units of Shazeer (2020) as maps: f(a) * b over the gate a = x·w and the value b = x·v.

    A menu switches f: sigmoid (GLU, Dauphin et al. 2017), identity (bilinear), ReLU (ReGLU), GELU (GEGLU),
    Swish (SwiGLU, PaLM's choice). Hover shows the exact value.
    """
    a = torch.linspace(-lim, lim, points, dtype=torch.float64)
    b = torch.linspace(-lim, lim, points, dtype=torch.float64)
    variants = {
        "SwiGLU: Swish(a)·b": swish,
        "GEGLU: GELU(a)·b": gelu,
        "ReGLU: ReLU(a)·b": relu,
        "GLU: σ(a)·b": torch.sigmoid,
        "bilinear: a·b": lambda t: t,
    }
    fig = go.Figure()
    for i, (name, f) in enumerate(variants.items()):
        z = (b[:, None] * f(a)[None, :]).float().numpy()  # rows: b, columns: a; float32 binary in the page
        fig.add_heatmap(
            x=a.tolist(),
            y=b.tolist(),
            z=z,
            zmid=0,
            colorscale="RdBu_r",
            visible=i == 0,
            name=name,
            hovertemplate="gate a = %{x:.2f}<br>value b = %{y:.2f}<br>output = %{z:.3f}<extra></extra>",
        )
    names = list(variants)
    buttons = one_at_a_time(names, titles=names)
    fig.update_layout(
        title=names[0],
        xaxis_title="gate a = x·w (one column of W)",
        yaxis_title="value b = x·v (one column of V)",
        updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.18, yanchor="top")],
        height=460,
        margin=dict(t=90),
    )
    return fig
