"""Figures of chapter 11, "What scale buys": few-shot accuracy, induction heads, chain of thought, scaling laws.

Every figure takes plain numbers (lists or arrays), one row per seed where a result has seeds, and draws the mean
with a **noise band**: the lowest to the highest seed, so a reader sees how far apart runs that differ only in
their seed land. Controls are plotly's own (sliders, buttons), so they work on the static page.

| function                 | what it shows                                                           |
|--------------------------|-------------------------------------------------------------------------|
| ``shots_figure``         | accuracy against the number of shots, a slider over training steps      |
| ``curves_figure``        | any quantity against training steps, one band per run kind              |
| ``induction_figure``     | each layer's attention over one sequence, a slider over training steps  |
| ``cot_figure``           | accuracy of direct vs worked answers by number of terms                 |
| ``scaling_figure``       | loss against parameters or compute, log-log, with fitted power laws     |
| ``emergence_figure``     | per-token vs exact-match accuracy against model size, linear or log y   |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import BLUE, GREY, RED, SERIES, slider

__all__ = [
    "band",
    "cot_figure",
    "curves_figure",
    "emergence_figure",
    "induction_figure",
    "scaling_figure",
    "shots_figure",
]


def band(values: Sequence[Sequence[float]] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, lowest and highest over seeds: values (seeds, points) -> three (points,) arrays."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"values must be (seeds, points); got shape {v.shape}")
    return v.mean(0), v.min(0), v.max(0)


def _fill(x: Sequence[float], lo: np.ndarray, hi: np.ndarray) -> tuple[list[float], list[float]]:
    """The outline of a band as one closed polygon: along the top, back along the bottom."""
    x = list(x)
    return x + x[::-1], list(hi) + list(lo)[::-1]


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _band_traces(x, values, name: str, color: str, hover: str, **line) -> list[go.Scatter]:
    mean, lo, hi = band(values)
    bx, by = _fill(x, lo, hi)
    seeds = np.asarray(values).reshape(-1, len(list(x))).shape[0]
    return [
        go.Scatter(
            x=bx, y=by, fill="toself", fillcolor=_rgba(color, 0.18), line=dict(width=0), hoverinfo="skip",
            showlegend=False, name=f"{name} band",
        ),
        go.Scatter(
            x=list(x), y=list(mean), name=name, line=dict(color=color, width=3, **line), mode="lines+markers",
            hovertemplate=f"{name}<br>{hover}<br>mean of {seeds} seeds<extra></extra>",
        ),
    ]  # fmt: skip


def shots_figure(
    shots: Sequence[int],
    eval_steps: Sequence[int],
    runs: Mapping[str, Sequence | np.ndarray],
    *,
    chance: float | None = None,
    baseline: Sequence[float] | None = None,
    title: str = "Accuracy at the query against the number of shots",
) -> go.Figure:
    """Accuracy against shots, one band per run kind, a slider over the training steps (starting at the last).

    runs: label -> accuracies (seeds, len(eval_steps), len(shots)) in [0, 1]. chance: a dashed line (1 / values);
    baseline: (len(shots),) a dotted line, e.g. the best a model that counts but cannot bind keys can do.
    """
    arrays = {k: np.asarray(v, dtype=float) for k, v in runs.items()}
    for k, a in arrays.items():
        if a.ndim != 3 or a.shape[1:] != (len(eval_steps), len(shots)):
            raise ValueError(f"runs[{k!r}] must be (seeds, {len(eval_steps)} steps, {len(shots)} shots); got {a.shape}")
    x, last = list(shots), len(eval_steps) - 1
    fig = go.Figure()
    for i, (label, a) in enumerate(arrays.items()):
        for t in _band_traces(x, a[:, last], label, SERIES[i % len(SERIES)], "%{x} shots: %{y:.0%}"):
            fig.add_trace(t)
    moving = list(range(len(fig.data)))
    if chance is not None:
        fig.add_scatter(x=x, y=[chance] * len(x), name=f"chance ({chance:.0%})", mode="lines",
                        line=dict(color=GREY, dash="dash"))  # fmt: skip
    if baseline is not None:
        fig.add_scatter(x=x, y=list(baseline), name="counting without binding", mode="lines+markers",
                        line=dict(color=GREY, dash="dot"))  # fmt: skip
    steps = []
    for j, s in enumerate(eval_steps):
        ys = []
        for a in arrays.values():
            mean, lo, hi = band(a[:, j])
            ys += [_fill(x, lo, hi)[1], list(mean)]
        steps.append(dict(label=str(s), method="restyle", args=[{"y": ys}, moving]))
    fig.update_layout(
        title=title, xaxis_title="shots: demonstrations of the query's key in the context", height=480,
        yaxis=dict(title="accuracy", range=[0, 1.05], tickformat=".0%"), xaxis=dict(tickvals=x),
        sliders=[slider(steps, last, "after training step ", pad=dict(t=60))], legend=dict(x=0.01, y=0.99),
    )  # fmt: skip
    return fig


def curves_figure(
    steps: Sequence[int],
    runs: Mapping[str, Sequence | np.ndarray],
    *,
    title: str,
    y_title: str,
    x_title: str = "training step",
    percent: bool = True,
    chance: float | None = None,
    per_seed: bool = False,
) -> go.Figure:
    """One quantity against training steps: runs label -> (seeds, len(steps)); a band per label, click to hide.

    ``per_seed`` adds every seed's own curve as a thin line (legend group of its label), so a jump that happens at a
    different step in each run is not blurred into a slow rise by the mean.
    """
    fig = go.Figure()
    for i, (label, values) in enumerate(runs.items()):
        v = np.asarray(values, dtype=float)
        if v.ndim != 2 or v.shape[1] != len(steps):
            raise ValueError(f"runs[{label!r}] must be (seeds, {len(steps)} steps); got {v.shape}")
        fmt = "%{y:.0%}" if percent else "%{y:.3f}"
        color = SERIES[i % len(SERIES)]
        for t in _band_traces(steps, v, label, color, f"step %{{x}}: {fmt}"):
            t.legendgroup = label
            fig.add_trace(t)
        if per_seed:
            for seed, row in enumerate(v):
                fig.add_scatter(
                    x=list(steps), y=list(row), mode="lines", name=f"{label}, seed {seed}", legendgroup=label,
                    showlegend=False, line=dict(color=color, width=1, dash="dot"),
                    hovertemplate=f"{label}, seed {seed}<br>step %{{x}}: {fmt}<extra></extra>",
                )  # fmt: skip
    if chance is not None:
        fig.add_scatter(x=[steps[0], steps[-1]], y=[chance, chance], name=f"chance ({chance:.0%})", mode="lines",
                        line=dict(color=GREY, dash="dash"))  # fmt: skip
    yaxis = dict(title=y_title, tickformat=".0%", range=[0, 1.05]) if percent else dict(title=y_title)
    fig.update_layout(title=title, xaxis_title=x_title, yaxis=yaxis, height=420, legend=dict(x=0.01, y=0.99))
    return fig


def induction_figure(
    maps: Sequence | np.ndarray,
    tokens: Sequence[str],
    eval_steps: Sequence[int],
    *,
    layer_titles: Sequence[str] | None = None,
    title: str = "Attention over one sequence, by layer",
) -> go.Figure:
    """Heat maps of attention (query row attends to key column), one panel per layer, a slider over steps.

    maps: (len(eval_steps), n_layers, T, T) attention weights of one head per layer; tokens: the T token names.
    """
    m = np.asarray(maps, dtype=float)
    T = len(tokens)
    if m.ndim != 4 or m.shape[0] != len(eval_steps) or m.shape[2:] != (T, T):
        raise ValueError(f"maps must be ({len(eval_steps)} steps, layers, {T}, {T}); got {m.shape}")
    n_layers, last = m.shape[1], len(eval_steps) - 1
    titles = list(layer_titles) if layer_titles else [f"layer {i}" for i in range(n_layers)]
    fig = make_subplots(rows=1, cols=n_layers, subplot_titles=titles, horizontal_spacing=0.08)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]  # unique names keep repeated tokens apart on the axes
    for layer in range(n_layers):
        fig.add_heatmap(
            z=m[last, layer], x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues", showscale=layer == n_layers - 1,
            hovertemplate="query %{y}<br>looks at %{x}<br>weight %{z:.2f}<extra></extra>", row=1, col=layer + 1,
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", tickfont=dict(size=9), row=1, col=layer + 1)
        fig.update_xaxes(tickfont=dict(size=9), tickangle=-90, row=1, col=layer + 1)
    steps = [
        dict(label=str(s), method="restyle", args=[{"z": [m[j, layer].round(3).tolist() for layer in range(n_layers)]}])
        for j, s in enumerate(eval_steps)
    ]
    fig.update_layout(title=title, height=520, sliders=[slider(steps, last, "after training step ", pad=dict(t=90))])
    return fig


def cot_figure(
    n_terms: Sequence[int],
    runs: Mapping[str, Sequence | np.ndarray],
    *,
    trained_max: int,
    title: str = "Exact-match accuracy on held-out problems",
) -> go.Figure:
    """Bars of mean accuracy by number of terms, error bars from the lowest to the highest seed.

    runs: label (e.g. "direct", "worked steps") -> (seeds, len(n_terms)). Counts above ``trained_max`` were never
    seen in training; they sit on a shaded background.
    """
    fig = go.Figure()
    x = [str(n) for n in n_terms]
    for i, (label, values) in enumerate(runs.items()):
        mean, lo, hi = band(values)
        if mean.shape != (len(n_terms),):
            raise ValueError(f"runs[{label!r}] must be (seeds, {len(n_terms)}); got {np.asarray(values).shape}")
        fig.add_bar(
            x=x, y=mean, name=label, marker_color=(BLUE, RED, *SERIES[2:])[i % len(SERIES)],
            error_y=dict(type="data", symmetric=False, array=hi - mean, arrayminus=mean - lo),
            customdata=np.stack([lo, hi], 1), hovertemplate=(
                f"{label}<br>%{{x}} terms: %{{y:.0%}} (seeds %{{customdata[0]:.0%}} to %{{customdata[1]:.0%}})"
                "<extra></extra>"
            ),
        )  # fmt: skip
    unseen = [s for s, n in zip(x, n_terms, strict=True) if n > trained_max]
    if unseen:
        fig.add_vrect(x0=x.index(unseen[0]) - 0.5, x1=len(x) - 0.5, fillcolor=GREY, opacity=0.12, line_width=0,
                      annotation_text="more terms than in training", annotation_position="top left")  # fmt: skip
    fig.update_layout(
        title=title, barmode="group", xaxis_title="numbers added in the problem", height=440,
        yaxis=dict(title="exact match", tickformat=".0%", range=[0, 1.08]), legend=dict(x=0.75, y=0.99),
    )  # fmt: skip
    return fig


def scaling_figure(
    xs: Mapping[str, Sequence[float]],
    loss: Sequence | np.ndarray,
    fits: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    *,
    labels: Sequence[str] | None = None,
    title: str = "Validation loss against model size",
    y_title: str = "validation loss (nats per character)",
) -> go.Figure:
    """Loss against each of several size measures on log-log axes, buttons to switch between them.

    xs: measure name (e.g. "parameters", "training compute (FLOPs)") -> (sizes,); loss: (seeds, sizes); fits: the
    same names -> a fitted curve (``PowerLawFit`` is one), drawn over the measured range and named in the legend by
    its ``str`` (fit against compute with ``fit_power_law(..., var="C")`` so that it reads L(C)). labels: hover text
    per size.
    """
    mean, lo, hi = band(loss)
    names = list(xs)
    fig = go.Figure()
    for i, name in enumerate(names):
        x = np.asarray(xs[name], dtype=float)
        if x.shape != mean.shape:
            raise ValueError(f"xs[{name!r}] needs one value per size ({mean.size}); got {x.size}")
        grid = np.geomspace(x.min(), x.max(), 60)
        text = list(labels) if labels is not None else [f"{v:.3g}" for v in x]
        fig.add_scatter(
            x=x, y=mean, mode="markers", name="measured (mean, seed range)", visible=i == 0, text=text,
            marker=dict(size=10, color=BLUE), error_y=dict(type="data", symmetric=False, array=hi - mean,
                                                           arrayminus=mean - lo),
            hovertemplate="%{text}<br>" + name + " %{x:.3g}<br>loss %{y:.3f}<extra></extra>",
        )  # fmt: skip
        fig.add_scatter(x=grid, y=fits[name](grid), mode="lines", name=f"fit: {fits[name]}", visible=i == 0,
                        line=dict(color=RED, dash="dash"))  # fmt: skip
    buttons = [
        dict(label=name, method="update",
             args=[{"visible": [j // 2 == i for j in range(2 * len(names))]}, {"xaxis.title.text": name}])
        for i, name in enumerate(names)
    ]  # fmt: skip
    fig.update_layout(
        title=title, height=480, xaxis=dict(type="log", title=names[0]), yaxis=dict(type="log", title=y_title),
        updatemenus=[dict(type="buttons", direction="right", buttons=buttons, x=0.0, y=1.12, xanchor="left")],
        legend=dict(x=0.35, y=0.99),
    )  # fmt: skip
    return fig


def emergence_figure(
    params: Sequence[float],
    runs: Mapping[str, Sequence | np.ndarray],
    *,
    title: str = "One model sweep, two metrics",
    x_title: str = "parameters",
) -> go.Figure:
    """Accuracies against model size (log x), one band per metric; buttons switch the y axis linear / log.

    runs: metric name -> (seeds, sizes) in [0, 1]. On a log y axis a metric that looks flat-then-jump on a linear one
    may turn out to rise steadily all along (Schaeffer et al., 2023).
    """
    fig = go.Figure()
    for i, (label, values) in enumerate(runs.items()):
        for t in _band_traces(params, values, label, SERIES[i % len(SERIES)], "%{x:.3g} parameters: %{y:.1%}"):
            fig.add_trace(t)
    buttons = [
        dict(label="linear accuracy", method="relayout", args=[{"yaxis.type": "linear", "yaxis.range": [0, 1.05]}]),
        dict(label="log accuracy", method="relayout", args=[{"yaxis.type": "log", "yaxis.autorange": True}]),
    ]
    fig.update_layout(
        title=title, height=460, xaxis=dict(type="log", title=x_title),
        yaxis=dict(title="accuracy", tickformat=".0%", range=[0, 1.05]), legend=dict(x=0.01, y=0.99),
        updatemenus=[dict(type="buttons", direction="right", buttons=buttons, x=0.0, y=1.12, xanchor="left")],
    )  # fmt: skip
    return fig
