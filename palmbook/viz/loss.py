"""Chapter 5, the output layer and the loss: what shifting the logits does to log Z, z-loss in training, and
how a model's predictions sharpen as it trains.

| figure                     | shows                                                                    |
|----------------------------|--------------------------------------------------------------------------|
| ``logit_shift_figure``     | logits + c and softmax(logits + c): only log Z moves (§5, z-loss)        |
| ``loss_and_log_z_figure``  | cross-entropy and mean log Z per step, for runs with and without z-loss  |
| ``prediction_steps_figure``| the top predictions for one context, a slider over training steps        |
| ``loss_table_html``        | the HTML panel of the chapter's explorer: p, log Z, cross-entropy, z-loss |
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..book.widgets import bar_html
from .common import BLUE, GREEN, RED, SERIES, slider

__all__ = ["logit_shift_figure", "loss_and_log_z_figure", "loss_table_html", "prediction_steps_figure"]


def logit_shift_figure(
    logits: Sequence[float], labels: Sequence[str], shifts: Sequence[float] = tuple(range(-4, 7))
) -> go.Figure:
    """Add the same constant c to every logit (slider): the probabilities do not move, log Z moves by c.

    Left: the logits z + c. Right: softmax(z + c). The title reports log Z and the z-loss 1e-4 (log Z)^2, the only
    quantities the shift changes; this is why cross-entropy alone leaves log Z free and z-loss pins it near 0.
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    p = torch.softmax(z, -1).tolist()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("logits z + c (dashed: log Z)", "probabilities softmax(z + c)"))
    start = list(shifts).index(0) if 0 in shifts else 0
    log_zs = [torch.logsumexp(z + c, -1).item() for c in shifts]
    fig.add_shape(
        type="line",
        xref="x domain",
        x0=0,
        x1=1,
        yref="y",
        y0=log_zs[start],
        y1=log_zs[start],
        line=dict(color=RED, dash="dash"),
    )
    fig.add_bar(x=list(labels), y=(z + shifts[start]).tolist(), row=1, col=1, marker_color=BLUE)
    fig.add_bar(x=list(labels), y=p, row=1, col=2, marker_color=GREEN, text=[f"{v:.3f}" for v in p])

    def title(c: float) -> str:
        log_z = torch.logsumexp(z + c, -1).item()
        return f"c = {c:+g}: log Z = {log_z:.3f}, z-loss = 1e-4·(log Z)² = {1e-4 * log_z**2:.2e}"

    steps = [
        dict(
            method="update",
            label=f"{c:+g}",
            args=[{"y": [(z + c).tolist(), p]}, {"title.text": title(c), "shapes[0].y0": lz, "shapes[0].y1": lz}],
        )
        for c, lz in zip(shifts, log_zs, strict=True)
    ]
    lo, hi = float(z.min()) + min(shifts), max(log_zs)
    fig.update_layout(
        title=title(shifts[start]),
        showlegend=False,
        height=420,
        margin=dict(t=90),
        sliders=[slider(steps, start, "shift c = ", pad=dict(t=50))],
    )
    fig.update_yaxes(range=[min(lo, 0) - 0.5, hi + 0.5], row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    return fig


def loss_and_log_z_figure(runs: dict[str, dict[str, Sequence[float]]], ln_v: float) -> go.Figure:
    """Cross-entropy (left, with the ln V of a uniform guess) and mean log Z (right) per step, for several runs.

    runs: name -> {"step": [...], "ce": [...], "log_z": [...]}. Legend clicks hide a run in both panels.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("cross-entropy (nats per token)", "mean log Z"))
    for (name, r), color in zip(runs.items(), SERIES * 4, strict=False):
        for col, key in ((1, "ce"), (2, "log_z")):
            fig.add_scatter(
                x=list(r["step"]),
                y=list(r[key]),
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                row=1,
                col=col,
                line=dict(color=color),
                hovertemplate=f"{name}<br>step %{{x}}: %{{y:.3f}}<extra></extra>",
            )
    fig.add_hline(y=ln_v, line_dash="dot", line_color="#555", annotation_text=f"ln V = {ln_v:.2f}", row=1, col=1)
    fig.add_hline(y=0, line_color="#bbb", row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=430, legend=dict(orientation="h", y=-0.2), title="Training with and without z-loss")
    return fig


def prediction_steps_figure(
    snapshots: Sequence[tuple[int, Sequence[str], Sequence[float]]], context: str, target: str | None = None
) -> go.Figure:
    """The model's top predictions for one fixed context, with a slider over training steps.

    snapshots: (step, token labels, probabilities) for each saved step, each the top-k tokens at that step.
    ``target``, if given, is highlighted when it appears among the top-k.
    """
    if not snapshots:
        raise ValueError("need at least one (step, labels, probabilities) snapshot")

    def colours(labels: Sequence[str]) -> list[str]:
        return [RED if lab == target else BLUE for lab in labels]

    _, labels0, probs0 = snapshots[0]
    fig = go.Figure(
        go.Bar(
            x=list(probs0),
            y=list(labels0),
            orientation="h",
            marker_color=colours(labels0),
            text=[f"{p:.3f}" for p in probs0],
            textposition="outside",
            hovertemplate="%{y}: p = %{x:.4f}<extra></extra>",
        )
    )
    steps = [
        dict(
            method="restyle",
            label=str(s),
            args=[
                {"x": [list(p)], "y": [list(lab)], "text": [[f"{v:.3f}" for v in p]], "marker.color": [colours(lab)]}
            ],
        )
        for s, lab, p in snapshots
    ]
    fig.update_layout(
        title=f"What comes after “{context}”?" + (f" (the text continues with {target!r}, in red)" if target else ""),
        xaxis=dict(range=[0, 1.05], title="predicted probability"),
        yaxis=dict(autorange="reversed", type="category"),
        sliders=[slider(steps, 0, "after training step ", pad=dict(t=50))],
        height=460,
        margin=dict(l=140),
    )
    return fig


def loss_table_html(logits: Sequence[float], labels: Sequence[str], target: str, z_coef: float = 1e-4) -> str:
    """An HTML table of softmax(logits) with bars (the target's in red), then log Z, the cross-entropy
    log Z - z_target, the z-loss z_coef * (log Z)^2 and the perplexity: the panel of chapter 5's explorer."""
    if len(logits) != len(labels) or target not in labels:
        raise ValueError(f"need one label per logit and a target among them; got {len(logits)} logits, {list(labels)}")
    z = torch.as_tensor(logits, dtype=torch.float64)
    p, log_z = torch.softmax(z, -1), torch.logsumexp(z, -1).item()
    ce = log_z - z[list(labels).index(target)].item()
    rows = "".join(
        f"<tr><td>{html.escape(w)}</td><td>{v:+.2f}</td><td>{bar_html(pj, RED if w == target else GREEN, 260)}</td>"
        f"<td>{pj:.3f}</td></tr>"
        for w, v, pj in zip(labels, z.tolist(), p.tolist(), strict=True)
    )
    return (
        f"<table><tr><th>token</th><th>logit</th><th></th><th>p</th></tr>{rows}</table>"
        f"<p>log Z = {log_z:.3f} &nbsp; cross-entropy = log Z − z<sub>{html.escape(target)}</sub> = {ce:.3f} nats"
        f" &nbsp; z-loss = {z_coef * log_z * log_z:.2e} &nbsp; perplexity = {math.exp(ce):.2f}</p>"
    )
