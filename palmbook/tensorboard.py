"""Training you can watch in TensorBoard: a :class:`~palmbook.Callback` that writes every step's and every
evaluation's numbers as scalars.

    from palmbook.tensorboard import TensorBoardLogger
    palmbook.train(model, cfg, data, callbacks=[TensorBoardLogger("runs/x/tensorboard")])
    # then: tensorboard --logdir runs/x/tensorboard

Optional: ``pip install tensorboard`` (or ``palmbook[tensorboard]``), imported only when a logger is made. Only
rank 0 writes under torchrun, so a multi-process run makes one set of curves.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from .train_hooks import Callback

if TYPE_CHECKING:
    from .train import Trainer, TrainResult

__all__ = ["TensorBoardLogger", "require_tensorboard", "summary_writer"]


_MISSING = "TensorBoard logging needs the tensorboard package: pip install tensorboard (or 'palmbook[tensorboard]')"


def require_tensorboard() -> None:
    """Fail when a logger is made, not at the first step, if tensorboard is missing (found, not imported)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise ModuleNotFoundError(_MISSING)  # an ImportError, and the CLI's one-line kind


def summary_writer(log_dir: str | os.PathLike) -> Any:
    """``torch.utils.tensorboard.SummaryWriter(log_dir)``, or an ImportError that names the install."""
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=os.fspath(log_dir))


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers (bools and the step excluded); a non-finite loss is kept: a spike is worth seeing."""
    return {
        k: float(v)
        for k, v in record.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(float(v))
    }


class TensorBoardLogger(Callback):
    """Writes ``train/<name>`` for each step record (loss, lr, grad_norm, tokens/s, ...), ``val/<name>`` for each
    evaluation, and each event (a spike, a skipped step, a checkpoint) as text under ``events``.

    ``writer``: anything with SummaryWriter's add_scalar / add_text / flush / close (tests pass a fake);
    by default a SummaryWriter on ``log_dir``, created at the first record of rank 0.
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, *, writer: Any = None) -> None:
        if writer is None and log_dir is None:
            raise ValueError("TensorBoardLogger needs a log_dir (e.g. '<out_dir>/tensorboard') or a writer")
        if writer is None:
            require_tensorboard()
        self.log_dir = log_dir
        self._writer = writer

    def _get(self, trainer: Trainer) -> Any | None:
        if getattr(trainer, "rank", 0) != 0:
            return None
        if self._writer is None:
            self._writer = summary_writer(self.log_dir)  # type: ignore[arg-type]
        return self._writer

    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if (w := self._get(trainer)) is not None:
            for k, v in _scalars(record).items():
                w.add_scalar(f"train/{k}", v, global_step=int(record.get("step", trainer.step)))

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if (w := self._get(trainer)) is not None:
            for k, v in _scalars(record).items():
                name = k if k.startswith("val") else f"val/{k}"
                w.add_scalar(name.replace("val_", "val/", 1), v, global_step=int(record.get("step", trainer.step)))
            w.flush()  # evaluations are rare: make them visible in a running TensorBoard at once

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if (w := self._get(trainer)) is not None:
            text = ", ".join(f"{k}={v}" for k, v in event.items() if k != "step")
            w.add_text("events", text, global_step=int(event.get("step", trainer.step)))

    def on_fit_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
