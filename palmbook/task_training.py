"""A small training loop for the synthetic tasks of chapter 11 ("What scale buys").

The tasks (:mod:`palmbook.incontext`, :mod:`palmbook.arithmetic`) hand out batches as ``(tokens, loss_mask)``:
tokens (B, T) and a boolean mask (B, T) that is True on the tokens the model must learn to predict (the answers),
False on the prompts it is given. The loop trains a :class:`~palmbook.PaLM` on those tokens only, with plain AdamW,
and records the loss and any evaluation the caller passes in. It is deliberately not :mod:`palmbook.train`: no
data files, checkpoints or schedules beyond a warm-up, so that a chapter can train several small models live and
read every line of how it was done.

Teacher-forced accuracy (:func:`masked_accuracy`) scores the answers in one forward pass: a token is right when
its argmax prediction, given the true prefix, is the true token, and a sequence is right when all its answer
tokens are. For greedy decoding the second equals exact match: if every answer token is the argmax given the
right prefix, greedy decoding writes exactly that answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .model import PaLM

__all__ = ["TaskHistory", "lm_targets", "masked_accuracy", "text_windows", "train_on_task"]

IGNORE_INDEX = -100


def lm_targets(tokens: Tensor, loss_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Next-token inputs and targets from a task batch.

    tokens, loss_mask: (B, T) -> inputs (B, T-1) = tokens[:, :-1] and targets (B, T-1) = tokens[:, 1:], with
    ``-100`` (ignored by the loss) wherever the predicted token is not an answer token.
    """
    if tokens.shape != loss_mask.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and loss_mask {tuple(loss_mask.shape)} must match")
    targets = tokens[:, 1:].masked_fill(~loss_mask[:, 1:], IGNORE_INDEX)
    return tokens[:, :-1], targets


def text_windows(
    ids: Tensor, batch_size: int, seq_len: int, *, seed: int | torch.Generator = 0
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """A ``sample`` for :func:`train_on_task` that reads plain text: ordinary language modelling.

    ids: (N,) the token ids of one long text. Each call returns ``batch_size`` windows of ``seq_len + 1``
    consecutive ids starting at random places (tokens (B, seq_len + 1)), with a mask that is True everywhere: every
    next token is a target, as in pretraining.
    """
    if ids.dim() != 1 or ids.numel() <= seq_len + 1:
        raise ValueError(f"ids must be one text longer than seq_len + 1 = {seq_len + 1} tokens; got {tuple(ids.shape)}")
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    offsets = torch.arange(seq_len + 1)

    def sample(step: int) -> tuple[Tensor, Tensor]:
        starts = torch.randint(0, ids.numel() - seq_len - 1, (batch_size, 1), generator=g)
        tokens = ids[starts + offsets]  # (B, seq_len + 1)
        return tokens, torch.ones_like(tokens, dtype=torch.bool)

    return sample


@torch.no_grad()
def masked_accuracy(model: PaLM, tokens: Tensor, loss_mask: Tensor) -> tuple[float, float]:
    """Teacher-forced accuracy on the answer tokens: (per token, per sequence).

    tokens, loss_mask: (B, T). A sequence counts as right only if every one of its answer tokens is predicted
    (argmax) correctly; for greedy decoding that is exact match of the whole answer. Sequences without answer
    tokens are left out of the per-sequence figure.
    """
    was_training = model.training
    model.eval()
    try:
        inputs, targets = lm_targets(tokens, loss_mask)
        device = getattr(model, "device", inputs.device)
        right = model(inputs.to(device)).argmax(-1).cpu() == targets.cpu()  # (B, T-1)
    finally:
        model.train(was_training)
    targets = targets.cpu()
    scored = targets != IGNORE_INDEX
    per_token = (right & scored).sum().item() / max(scored.sum().item(), 1)
    has_answer = scored.any(1)
    per_sequence = ((right | ~scored).all(1) & has_answer).sum().item() / max(has_answer.sum().item(), 1)
    return per_token, per_sequence


@dataclass
class TaskHistory:
    """What :func:`train_on_task` recorded.

    Attributes:
        step: optimiser step of each logged loss (1-based).
        loss: training cross-entropy (nats per answer token) at those steps, averaged since the previous log.
        eval_step: steps at which ``evaluate`` ran (0 = before training).
        evals: what ``evaluate(model)`` returned at those steps.
        seconds: wall time of the whole run, evaluations included.
        train_seconds: wall time of the optimiser steps alone.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    evals: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float = 0.0


def train_on_task(
    model: PaLM,
    sample: Callable[[int], tuple[Tensor, Tensor]],
    steps: int,
    *,
    lr: float = 2e-3,
    warmup: int = 100,
    weight_decay: float = 0.0,
    clip: float = 1.0,
    log_every: int = 50,
    eval_every: int | None = None,
    evaluate: Callable[[PaLM], Any] | None = None,
) -> TaskHistory:
    """Train ``model`` in place on batches ``sample(step) -> (tokens (B, T), loss_mask (B, T))``.

    AdamW (betas 0.9, 0.98) with a linear warm-up over ``warmup`` steps then a constant rate, global-norm
    clipping at ``clip``, and PaLM's loss (cross-entropy plus z-loss, §5) on the masked tokens only. Constant,
    not decaying: a phase change must not be confused with the end of a schedule. ``evaluate(model)`` runs
    before training, every ``eval_every`` steps and after the last step, in eval mode without gradients.

    Returns:
        A :class:`TaskHistory`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer; got {steps!r}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"eval_every must be a positive number of steps or None; got {eval_every!r}")
    history = TaskHistory()
    decay = [p for p in model.parameters() if p.dim() > 1]
    other = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.98),
    )
    device = model.device
    start = time.perf_counter()

    def run_eval(step: int) -> None:
        if evaluate is None:
            return
        was_training = model.training
        model.eval()
        with torch.no_grad():
            history.evals.append(evaluate(model))
        history.eval_step.append(step)
        model.train(was_training)

    run_eval(0)
    model.train()
    running, count, train_time = 0.0, 0, 0.0
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        tokens, mask = sample(step)
        inputs, targets = lm_targets(tokens.to(device), mask.to(device))
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, step / max(warmup, 1))
        out = model(inputs, targets=targets)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        train_time += time.perf_counter() - t0
        running += out.ce.item()
        count += 1
        if step % log_every == 0 or step == steps:
            history.step.append(step)
            history.loss.append(running / count)
            running, count = 0.0, 0
        due = (eval_every and step % eval_every == 0) or step == steps
        if evaluate is not None and due and (not history.eval_step or history.eval_step[-1] != step):
            run_eval(step)
    history.seconds = time.perf_counter() - start
    history.train_seconds = train_time
    return history
