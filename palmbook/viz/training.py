"""Chapter 9, training: learning-rate schedules over a whole run, loss curves of several runs, and a loss spike
with its cure. (The live loss curve of a run in progress is :class:`palmbook.viz.live.LivePlot`.)

| figure                  | shows                                                                         |
|-------------------------|-------------------------------------------------------------------------------|
| ``lr_schedule_figure``  | PaLM's schedule against warm-up + cosine, a slider for each, linear / log steps |
| ``training_runs_figure``| train and validation loss of several runs, one colour a run                   |
| ``spike_figure``        | a loss spike detected, rolled back and its batches skipped (§5.1)             |
| ``precision_figure``    | runs in several precisions taking turns: loss per step, and each step's speed |
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..optim import LRSchedule, lr_curve
from .common import BLUE, ORANGE, RED, SERIES, slider

__all__ = ["lr_schedule_figure", "precision_figure", "spike_figure", "training_runs_figure"]


def lr_schedule_figure(
    total_steps: int = 256_000,
    peak_lr: float = 1e-2,
    plateaus: Sequence[int] = (1_000, 2_500, 5_000, 10_000, 20_000, 50_000),
    warmups: Sequence[int] = (0, 1_000, 2_500, 5_000, 10_000, 25_000),
    start: tuple[int, int] = (10_000, 2_500),
    min_lr_fraction: float = 0.1,
    points: int = 160,
) -> go.Figure:
    """PaLM's schedule (constant, then 1/sqrt(step)) against linear warm-up + cosine decay, over a whole run.

    One slider sets PaLM's plateau (``constant_steps``; the paper: 10,000 steps), the other the cosine warm-up;
    buttons switch the step axis between linear and log. Both schedules peak at ``peak_lr``; the cosine one decays
    to ``min_lr_fraction * peak_lr`` at ``total_steps`` (default: about the steps PaLM 540B's batch schedule needs
    for its 780B tokens, 512 / 1024 / 2048 sequences of 2048 tokens, §5). Curves come from
    :class:`palmbook.optim.LRSchedule`, the schedules the trainer runs.
    """
    steps = _schedule_steps(total_steps, [*plateaus, *warmups], points)

    def curve(schedule: LRSchedule) -> list[float]:
        return [float(f"{v:.5g}") for v in lr_curve(schedule, steps)[1]]

    min_lr = min_lr_fraction * peak_lr
    palm = {c: curve(LRSchedule("palm", peak_lr, constant_steps=c)) for c in plateaus}
    cosine = {
        w: curve(LRSchedule("cosine", peak_lr, warmup_steps=w, total_steps=total_steps, min_lr=min_lr)) for w in warmups
    }
    p0, w0 = start
    fig = go.Figure()
    for ys, name, colour, short in ((palm[p0], "PaLM: constant, then 1/√step", RED, "PaLM"),
                                    (cosine[w0], "linear warm-up + cosine", BLUE, "cosine")):  # fmt: skip
        hover = f"step %{{x:,}}: lr %{{y:.3g}}<extra>{short}</extra>"
        fig.add_scatter(x=steps, y=ys, name=name, line=dict(color=colour, width=3), hovertemplate=hover)
    fig.update_layout(
        title=f"Learning-rate schedules over a {total_steps:,}-step run",
        xaxis=dict(title="optimiser step"),
        yaxis=dict(title="learning rate", rangemode="tozero"),
        height=560,
        margin=dict(b=200),
        hovermode="x unified",
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
        sliders=[
            _schedule_slider(plateaus, palm, 0, p0, "PaLM: constant for the first ", -0.2),
            _schedule_slider(warmups, cosine, 1, w0, "cosine: warm-up steps = ", -0.48),
        ],
        updatemenus=[dict(type="buttons", direction="right", x=1.0, xanchor="right", y=1.12, yanchor="bottom",
                          buttons=_STEP_AXIS_BUTTONS)],
    )  # fmt: skip
    return fig


_STEP_AXIS_BUTTONS = [
    dict(label="linear steps", method="relayout", args=[{"xaxis.type": "linear"}]),
    dict(label="log steps", method="relayout", args=[{"xaxis.type": "log"}]),
]


def _schedule_steps(total_steps: int, marks: Sequence[int], points: int) -> list[int]:
    """The steps to evaluate the schedules at: evenly spaced on a linear and on a log axis (both views stay
    smooth), plus the plateau and warm-up ends themselves, where the curves bend."""
    last = total_steps - 1
    grid = np.unique(np.concatenate([np.linspace(0, last, points), np.geomspace(1, last, points)]))
    steps = np.unique(np.concatenate([grid.astype(int), np.array(list(marks))]))
    return steps[steps < total_steps].tolist()


def _schedule_slider(
    values: Sequence[int], curves: dict[int, list[float]], trace: int, active: int, prefix: str, y: float
) -> dict:
    """A slider over one schedule's setting: each step restyles that schedule's trace only."""
    steps = [dict(method="restyle", label=f"{v:,}", args=[{"y": [curves[v]]}, [trace]]) for v in values]
    return slider(steps, list(values).index(active), prefix, y=y, pad=dict(t=10))


def training_runs_figure(
    runs: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]],
    title: str,
    y_title: str = "loss (nats per token)",
    x_title: str = "optimiser step",
) -> go.Figure:
    """Loss curves of several runs: ``{run: {"train": (steps, losses), "validation": (steps, losses)}}``.

    Each run gets one colour: its training loss as a line, its validation loss (optional) as dashed markers.
    Click a legend entry to hide a curve; hover compares the runs at a step.
    """
    fig = go.Figure()
    for (name, parts), color in zip(runs.items(), SERIES * 4, strict=False):
        if "train" in parts:
            x, y = parts["train"]
            fig.add_scatter(
                x=list(x),
                y=list(y),
                name=f"{name} (train)",
                mode="lines",
                line=dict(color=color),
                hovertemplate="%{y:.3f}<extra>" + name + " train</extra>",
            )
        if "validation" in parts:
            x, y = parts["validation"]
            fig.add_scatter(
                x=list(x),
                y=list(y),
                name=f"{name} (validation)",
                mode="lines+markers",
                line=dict(color=color, dash="dash"),
                marker=dict(size=8),
                hovertemplate="%{y:.3f}<extra>" + name + " validation</extra>",
            )
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=420, hovermode="x unified")
    return fig


def spike_figure(attempts: Sequence[dict], events: Sequence[dict]) -> go.Figure:
    """A loss spike and its cure (§5.1), against the number of batches drawn from the data.

    attempts: one dict per optimiser step as it happened, ``{"batch", "step", "loss", "kept"}``; ``kept`` is False
    for steps a rollback later undid. events: the trainer's ``spike`` and ``rollback`` events. The spike is a red
    cross, the steps it undid are grey, the skipped batches are shaded; the loss axis is logarithmic.
    """
    fig = go.Figure()
    for kept, name, color in ((True, "steps kept", BLUE), (False, "steps undone by the rollback", "#aaaaaa")):
        pts = [a for a in attempts if a["kept"] == kept]
        fig.add_scatter(
            x=[a["batch"] for a in pts],
            y=[a["loss"] for a in pts],
            name=name,
            mode="markers",
            marker=dict(color=color, size=7),
            customdata=[a["step"] for a in pts],
            hovertemplate="batch %{x}, step %{customdata}: loss %{y:.3f}<extra></extra>",
        )
    for e in events:
        if e["event"] == "spike":
            fig.add_scatter(
                x=[e["batches_seen"]],
                y=[e["loss"]],
                name="spike (update not applied)",
                mode="markers",
                marker=dict(color=RED, size=14, symbol="x"),
                hovertemplate=f"batch %{{x}}: loss %{{y:.3g}}, median of the window {e['median']:.3g}<extra></extra>",
            )
        elif e["event"] == "rollback":
            if "skip_batches" in e:  # the trainer's [start, stop): 0-based batch indices; batches here count from 1
                start, stop = e["skip_batches"]
                first, last = start + 1, stop
            else:  # logs written before issue 15: the batch count at the rollback and how many were skipped
                last = e["batches_seen"]
                first = last - e["skipped_batches"] + 1
            fig.add_vrect(
                x0=first - 0.5,
                x1=last + 0.5,
                fillcolor=ORANGE,
                opacity=0.15,
                line_width=0,
                annotation_text=f"{last - first + 1} batches skipped",
                annotation_position="top left",
            )
            fig.add_annotation(
                x=first - 0.5,
                y=0.5,
                yref="paper",
                ax=-60,
                ay=0,
                showarrow=True,
                arrowhead=2,
                text=f"rolled back to step {e['to_step']}",
            )
    fig.update_layout(
        title="An injected loss spike: detected, rolled back, its batches skipped",
        xaxis_title="batches drawn from the data",
        yaxis=dict(title="training loss", type="log"),
        height=420,
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
    )
    return fig


def precision_figure(records: dict[str, Sequence[dict]], title: str) -> go.Figure:
    """Training runs that differ only in precision: ``{precision: [trainer step record, ...]}``.

    Left, the loss per step (one line a run: they should lie on top of each other); right, a box of every step's
    tokens per second after the first (which warms up), all points shown.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "tokens per second (each step)"))
    for (precision, recs), color in zip(records.items(), (BLUE, RED, *SERIES), strict=False):
        fig.add_scatter(
            x=[r["step"] for r in recs], y=[r["loss"] for r in recs], name=precision, line=dict(color=color),
            row=1, col=1,
        )  # fmt: skip
        fig.add_box(
            y=[r["tokens_per_s"] for r in recs[1:]], name=precision, marker_color=color, boxpoints="all",
            showlegend=False, row=1, col=2,
        )  # fmt: skip
    fig.update_layout(title=title, height=400)
    return fig
