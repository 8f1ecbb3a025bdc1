"""The loss curve of a run in progress, redrawn while a notebook trains: a training callback.

    trainer = Trainer(model, config, data, val, callbacks=[LivePlot()])   # or train(..., callbacks=[LivePlot()])

It draws in JupyterLab / Notebook, VS Code and Colab, and stays silent in a terminal, a script and on every
process but rank 0 of a ``torchrun`` job, so the same code serves the book and the cluster. How it draws:

- a plotly ``FigureWidget`` updated in place, where the widget stack (ipywidgets + anywidget) is there;
- otherwise one display output replaced through its ``display_id``: plotly's own mimetype in Jupyter and VS Code,
  HTML with plotly.js from its CDN in Colab (which draws only HTML, and no ``FigureWidget``);
- a last time when the run ends, through the notebook's default plotly renderer, so a saved notebook (and the
  book's static page) keeps the final curve.

A plot must never stop training: a drawing error turns the plot off for the rest of the run.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import plotly.graph_objects as go

from ..train import Callback, Trainer, TrainResult
from .common import BLUE, RED, in_colab, in_notebook

__all__ = ["LivePlot"]


class LivePlot(Callback):
    """Train and validation loss against the step, redrawn at most once per ``min_interval_s`` while training.

    every: plot the training loss every ``every`` steps (None: the run's ``log_every``, like its metrics file);
        every validation loss is plotted, and the last step. The whole curve is drawn once more when fit() ends.
    draw: None (draw only in a notebook), True (draw in any IPython display) or False (only record the points).
    points: ``{"train": (steps, losses), "validation": (steps, losses)}``, what the plot shows; kept on rank 0.
    """

    def __init__(self, every: int | None = None, draw: bool | None = None, min_interval_s: float = 1.0) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every must be a number of steps >= 1 (or None for the run's log_every); got {every}")
        self.every = every
        self.draw = draw
        self.min_interval_s = min_interval_s
        self.points: dict[str, tuple[list[int], list[float]]] = {"train": ([], []), "validation": ([], [])}
        self.figure: go.Figure | None = None  # built at the first point, on rank 0 only
        self._widget = False  # a FigureWidget redraws itself; otherwise _handle's display output is replaced
        self._handle: Any = None  # set by the first drawing
        self._off = False  # set for good when drawing is not wanted or failed
        self._last_draw = -math.inf

    # ---- the trainer's hooks
    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if getattr(trainer, "rank", 0) != 0:
            return
        every = self.every or trainer.config.log_every
        if trainer.step % every == 0 or trainer.step >= trainer.config.steps:
            self.add("train", trainer.step, record["loss"])

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if getattr(trainer, "rank", 0) != 0:
            return
        self.add("validation", record["step"], record["val_loss"])

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if getattr(trainer, "rank", 0) != 0:
            return
        if event["event"] == "rollback":  # the steps after to_step are undone: so are their points
            self.drop_after(event["to_step"])

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        if getattr(trainer, "rank", 0) == 0:
            self.flush(final=True)  # the whole curve, whatever the throttle skipped, kept by a saved notebook

    # ---- points and drawing
    def add(self, name: str, step: int, value: float) -> None:
        """Add a point to the "train" or "validation" curve, and redraw if ``min_interval_s`` has passed."""
        xs, ys = self.points[name]
        xs.append(step)
        ys.append(float(value))
        if time.monotonic() - self._last_draw >= self.min_interval_s:
            self.flush()

    def drop_after(self, step: int) -> None:
        """Forget every point after ``step`` (a rollback resumed from there)."""
        for name, (xs, ys) in self.points.items():
            keep = sum(1 for x in xs if x <= step)  # steps only grow between rollbacks
            self.points[name] = (xs[:keep], ys[:keep])

    def flush(self, final: bool = False) -> None:
        """Redraw now; ``final``: through the notebook's own renderer too, so a saved notebook keeps the curve."""
        self._last_draw = time.monotonic()
        if self._off or (self.figure is None and not self._build()):
            return
        try:
            from IPython.display import display

            with self.figure.batch_update():  # a widget sends one message, not one per trace
                for trace in self.figure.data:
                    trace.x, trace.y = self.points[trace.name]
            if self._handle is None:  # the first drawing
                shown = (
                    display(self.figure) if self._widget else display(self._bundle(final), raw=True, display_id=True)
                )
                self._handle = shown if not self._widget else self.figure
            elif not self._widget:  # a widget redraws itself when its traces change
                self._handle.update(self._bundle(final), raw=True)
        except Exception:  # no IPython, or a front end that refuses: a plot must never stop training
            self._off = True

    def _build(self) -> bool:
        """Build the figure if this process should draw (False: it should not). Not shown yet."""
        if self.draw is False or (self.draw is None and not in_notebook()):
            self._off = True
            return False
        fig = go.Figure()
        fig.add_scatter(x=[], y=[], name="train", mode="lines", line=dict(color=BLUE))
        fig.add_scatter(x=[], y=[], name="validation", mode="lines+markers", line=dict(color=RED))
        fig.update_layout(xaxis_title="step", yaxis_title="loss (nats/token)", height=320, margin=dict(t=30))
        self.figure, self._widget = fig, False
        if not in_colab():  # Colab's front end does not render FigureWidget
            with contextlib.suppress(Exception):  # e.g. no anywidget (plotly >= 6 needs it for widgets)
                self.figure, self._widget = go.FigureWidget(fig), True
        return True

    def _bundle(self, final: bool) -> dict[str, Any]:
        """What the display output holds: plotly's mimetype (HTML with plotly.js from the CDN in Colab); when
        ``final``, also what ``fig.show()`` would display, which is what a saved notebook keeps."""
        import plotly.io as pio

        if in_colab():
            html = pio.to_html(self.figure, full_html=False, include_plotlyjs="cdn")
            return {"text/html": html, "text/plain": "<loss curve>"}
        # IPython's display-id updates do not reach plotly's own _ipython_display_, hence raw bundles.
        bundle = {"application/vnd.plotly.v1+json": self.figure.to_plotly_json(), "text/plain": "<loss curve>"}
        if final:
            with contextlib.suppress(Exception):  # a renderer that opens a browser builds no bundle: keep ours
                bundle.update(pio.renderers._build_mime_bundle(self.figure.to_dict()))
        return bundle
