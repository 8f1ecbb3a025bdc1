"""Chapter 10, generation: how sampling reshapes the next-token distribution, how fast each decoding method is,
and how much a sample repeats itself.

| figure                      | shows                                                                     |
|-----------------------------|---------------------------------------------------------------------------|
| ``sampling_filters_figure`` | one distribution under temperature, top-k and top-p, a slider for each    |
| ``generation_speed_figure`` | tokens per second against tokens generated, one line per method           |
| ``repetition_figure``       | the share of distinct 3-grams against the sampling setting                |
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from ..book.timing import Spread
from ..generate import filter_logits
from .common import printable_piece, slider

__all__ = ["generation_speed_figure", "repetition_figure", "sampling_filters_figure"]

# The three panels: which filter, the slider's prefix, the colour of what the sampler draws from
_FILTERS = {
    "t": ("temperature t = ", "#4c78a8"),
    "k": ("top-k: k = ", "#f58518"),
    "p": ("top-p: p = ", "#54a24b"),
}


def sampling_filters_figure(
    logits: Tensor,
    labels: Sequence[str],
    temperatures: Sequence[float] = (0.25, 0.5, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0),
    ks: Sequence[int] = (1, 2, 3, 5, 10, 20, 50, 100),
    ps: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
    top_n: int = 25,
    start: tuple[float, int, float] = (1.0, 10, 0.9),
) -> go.Figure:
    """How temperature, top-k and top-p reshape ONE next-token distribution: three panels, one slider each.

    logits: (V,) the model's scores for the next token; labels: (V,) how to print each token. The panels show the
    ``top_n`` most likely tokens (model order). Grey bars: the model's own probabilities (t = 1, nothing cut);
    coloured bars: what the sampler draws from. Every probability is computed over the whole vocabulary, so the
    bars show the renormalisation after a cut. Each slider restyles only its own panel (works without a kernel);
    the panel titles report the kept tokens and the entropy (log2 of the effective number of choices).
    """
    z = torch.as_tensor(logits, dtype=torch.float32).reshape(-1)
    if len(labels) != z.numel():
        raise ValueError(f"need one label per logit; got {len(labels)} labels for {z.numel()} logits")
    base = z.softmax(-1)
    order = base.argsort(descending=True)[:top_n]
    x = [f"{i + 1}. {printable_piece(labels[j])}" for i, j in enumerate(order.tolist())]
    settings = {"t": temperatures, "k": ks, "p": ps}
    panels = {kind: _filtered(z, order, kind, values) for kind, values in settings.items()}
    firsts = {kind: _nearest(values, s) for (kind, values), s in zip(settings.items(), start, strict=True)}
    titles = [panels[kind][firsts[kind]][1] for kind in settings]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.12, subplot_titles=titles)
    model_p = [round(float(q), 5) for q in base[order]]
    for row, kind in enumerate(settings, start=1):  # traces 2i (the model) and 2i + 1 (the sampler) per panel
        shared = dict(x=x, showlegend=row == 1)
        fig.add_bar(
            y=model_p,
            marker_color="rgba(0,0,0,0.18)",
            name="the model's own (t = 1)",
            hovertemplate="%{x}: %{y:.4f}<extra>model</extra>",
            row=row,
            col=1,
            **shared,
        )
        fig.add_bar(
            y=panels[kind][firsts[kind]][0],
            marker_color=_FILTERS[kind][1],
            opacity=0.85,
            name="what the sampler draws from",
            hovertemplate="%{x}: %{y:.4f}<extra>sampler</extra>",
            row=row,
            col=1,
            **shared,
        )
    sliders = [
        _panel_slider(i, settings[kind], panels[kind], firsts[kind], _FILTERS[kind][0]) for i, kind in enumerate(panels)
    ]
    fig.update_layout(
        sliders=sliders,
        barmode="overlay",
        height=900,
        margin=dict(t=60, b=260),
        legend=dict(orientation="h", y=1.1, x=0, yanchor="bottom"),
        title=dict(text="One next-token distribution, three ways to reshape it", y=0.99),
    )
    top = max(max(ys) for panel in panels.values() for ys, _ in panel)
    fig.update_yaxes(range=[0, max(1e-9, top) * 1.05], title="probability")
    fig.update_xaxes(tickangle=-60, row=3, col=1)
    return fig


def _filtered(z: Tensor, order: Tensor, kind: str, values: Sequence) -> list[tuple[list[float], str]]:
    """For each setting of one filter ("t", "k" or "p"): the probabilities of the tokens in ``order`` (rounded,
    for a small page) and the panel title naming the setting and summing up the distribution."""
    out = []
    for v in values:
        if kind == "t":
            p, name = (z / v).softmax(-1), f"temperature t = {v:g}"
        elif kind == "k":
            p, name = filter_logits(z[None], top_k=int(v))[0].softmax(-1), f"top-k, k = {v}"
        else:
            p, name = filter_logits(z[None], top_p=float(v))[0].softmax(-1), f"top-p, p = {v:g}"
        out.append(([round(float(q), 5) for q in p[order]], f"{name}: {_summary(p)}"))
    return out


def _summary(p: Tensor) -> str:
    """How many tokens can be drawn, the top token's share and the entropy in bits, for probabilities p (V,)."""
    kept = int((p > 0).sum())
    h = max(0.0, float(-(p[p > 0] * p[p > 0].log2()).sum()))
    return f"{kept:,} tokens can be drawn; top token {float(p.max()):.0%}; entropy {h:.2f} bits"


def _nearest(values: Sequence[float], target: float) -> int:
    return min(range(len(values)), key=lambda i: abs(values[i] - target))


def _panel_slider(i: int, values: Sequence, panel: list[tuple[list[float], str]], active: int, prefix: str) -> dict:
    """Panel i's slider: each step restyles only that panel's sampler bars (trace 2i + 1) and its title
    (annotation i), so the three sliders never undo each other."""
    steps = [
        dict(method="update", label=f"{v:g}", args=[{"y": [ys]}, {f"annotations[{i}].text": title}, [2 * i + 1]])
        for v, (ys, title) in zip(values, panel, strict=True)
    ]
    return slider(steps, active, prefix, y=-0.08 - 0.17 * i, len=0.9, x=0.05, pad=dict(t=10, b=10))


def generation_speed_figure(
    rates: dict[str, dict[int, Spread | tuple[float, float, float]]], machine: str
) -> go.Figure:
    """Tokens per second against the number of generated tokens, one line per method (log scale).

    rates: ``{method: {n: rate}}``, each rate a :class:`palmbook.book.Spread` (what :func:`palmbook.book.rates`
    gives for repeated timings) or a ``(median, slowest, fastest)`` tuple; the error bars span the slowest and
    fastest repetition.
    """
    fig = go.Figure()
    for name, given in rates.items():
        per = {n: (r.median, r.low, r.high) if isinstance(r, Spread) else tuple(r) for n, r in given.items()}
        ns = sorted(per)
        med = [per[n][0] for n in ns]
        fig.add_trace(
            go.Scatter(
                x=ns,
                y=med,
                mode="lines+markers",
                name=name,
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[per[n][2] - per[n][0] for n in ns],
                    arrayminus=[per[n][0] - per[n][1] for n in ns],
                ),
                hovertemplate="%{x} tokens: %{y:,.0f} tokens/s<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        title=f"Generation speed: median of interleaved repetitions<br><sup>measured on {machine}</sup>",
        xaxis=dict(title="tokens generated (after an 8-token prompt)", type="log"),
        yaxis=dict(title="tokens per second", type="log"),
        hovermode="x unified",
    )
    return fig


def repetition_figure(points: dict[str, list[tuple[float, float, str]]]) -> go.Figure:
    """Distinct-n fraction against the sampling setting, one line per family; hover shows the sample's start.

    points: ``{family: [(x, distinct_fraction, sample_text), ...]}``.
    """
    fig = go.Figure()
    for name, pts in points.items():
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in pts],
                y=[p[1] for p in pts],
                mode="lines+markers",
                name=name,
                customdata=[p[2][:90].replace("\n", " / ") for p in pts],
                hovertemplate="%{x}: %{y:.0%} distinct<br>%{customdata}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        title="How much of a sample repeats itself: distinct 3-grams",
        xaxis=dict(title="temperature (0 = greedy)"),
        yaxis=dict(title="fraction of 3-grams that are distinct", range=[0, 1.05], tickformat=".0%"),
    )
    return fig
