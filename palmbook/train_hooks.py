"""What a training run reports and where code can hook into it: :class:`TrainResult`, :class:`Callback`, the
loss-spike rule (:class:`SpikeDetector`, PaLM §5.1) and :class:`TrainingDiverged`. The :class:`~palmbook.train.Trainer`
uses them; they are re-exported from :mod:`palmbook.train`.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

Trainer = Any  # the palmbook.train.Trainer calling the hooks (not imported: train imports this module)

__all__ = ["Callback", "SpikeDetector", "TrainResult", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The loss kept spiking after ``max_rollbacks`` rollbacks: lower the lr or inspect the data."""


# ---- results and hooks
@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did in this call.

    history: one dict per optimiser step taken (step, loss, ce, z_loss, log_z, lr, grad_norm, tokens, ...).
    evals: one dict per evaluation (step, val_loss, val_ppl, val_nats_per_char, ...).
    events: spikes, rollbacks, checkpoints, resumes, stops, in order.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    interrupted: str | None = None
    stopped_early: bool = False
    best_val_loss: float | None = None
    best_step: int | None = None
    out_dir: Path | None = None

    @property
    def losses(self) -> list[float]:
        """Training loss (cross-entropy + z-loss) of each step taken in this call."""
        return [r["loss"] for r in self.history]


class Callback:
    """Hooks into the training loop; override what you need (all are optional no-ops).

    on_batch(trainer, x, y) -> (x, y): see or replace a batch before it is used (e.g. corrupt one in a test).
    on_loss(trainer, loss) -> loss: see or replace each micro-batch's loss before backward.
    on_before_optimizer_step(trainer): gradients are accumulated, unscaled and clipped; the update comes next.
    on_step_end(trainer, record), on_eval(trainer, record), on_event(trainer, event).
    on_fit_end(trainer, result): the loop is over (done, stopped or stopped early); the last checkpoint is written.
    """

    def on_batch(self, trainer: Trainer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return x, y

    def on_loss(self, trainer: Trainer, loss: Tensor) -> Tensor:
        return loss

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        pass

    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        pass


class SpikeDetector:
    """§5.1's loss spikes, detected as: loss > factor x median(last ``window`` losses), or a non-finite loss.

    The paper gives no rule (it watched the curves); this one never fires while the loss is falling, and its
    window is saved in checkpoints so a resumed run decides exactly as an uninterrupted one.
    """

    def __init__(self, factor: float | None, window: int) -> None:
        self.factor = factor
        self.history: deque[float] = deque(maxlen=window)

    def median(self) -> float | None:
        return statistics.median(self.history) if self.history else None

    def is_spike(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        if self.factor is None or len(self.history) < (self.history.maxlen or 0):
            return False
        return loss > self.factor * statistics.median(self.history)

    def update(self, loss: float) -> None:
        self.history.append(loss)
