"""Training from scratch: the teaching versions built in chapter 9 (``book/09_training.ipynb``).

    pack_documents          documents -> one stream with an end-of-document token after each -> rows of
                            ``block_size`` tokens, no padding (§5); the package's is ``palmbook.data.pack``
    padding_fraction        what the alternative, one padded row per document, would waste
    train_palm              the training loop in full: forward -> cross-entropy + z-loss -> backward -> global
                            clip -> PaLM's optimiser step -> schedule; the package's is ``palmbook.Trainer``

The optimisers, schedules and gradient clipping the trainer uses are built from scratch in chapter 8
(:mod:`palmbook.scratch.optimisers`: ``adamw_step``, ``palm_step``, ``clip_global_norm``) and the loss in chapter 5
(:func:`palmbook.scratch.loss.palm_loss`); ``train_palm`` puts them together.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from ..optim import palm_lr
from .loss import palm_loss
from .optimisers import clip_global_norm, palm_step

__all__ = ["pack_documents", "padding_fraction", "train_palm"]


# --------------------------------------------------------------------------------------------- data
def pack_documents(docs: Sequence[Sequence[int]], block_size: int, eod_id: int) -> list[list[int]]:
    """Join the documents into one stream, each followed by ``eod_id``, and cut it into rows of ``block_size``.

    Empty documents are dropped (no lone end token); the tail shorter than a row is dropped too, so every row is
    full: no padding, a row may end one document and start the next (PaLM §5).
    """
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2 (max_seq_len + 1); got {block_size}")
    stream: list[int] = []
    for doc in docs:
        if len(doc):
            stream.extend(int(t) for t in doc)
            stream.append(eod_id)
    n_rows = len(stream) // block_size
    return [stream[i * block_size : (i + 1) * block_size] for i in range(n_rows)]


def padding_fraction(doc_lengths: Sequence[int], seq_len: int) -> float:
    """Fraction of a batch that would be padding if every document got its own rows of ``seq_len`` tokens.

    A document of n tokens (+1 end token) fills ceil((n + 1) / seq_len) rows; the unused places are padding.
    """
    used = rows = 0
    for n in doc_lengths:
        if n:
            used += n + 1
            rows += math.ceil((n + 1) / seq_len)
    return 1.0 - used / (rows * seq_len) if rows else 0.0


# --------------------------------------------------------------------------------------------- the loop
def train_palm(
    model: nn.Module,
    batches: Iterator[tuple[Tensor, Tensor]],
    steps: int,
    lr: float = 1e-2,
    constant_steps: int = 10_000,
    clip: float = 1.0,
    z_coef: float = 1e-4,
) -> list[float]:
    """Train ``model`` for ``steps`` steps of PaLM's recipe (§5) and return the loss of each step.

    Each step: draw (x, y); loss = cross-entropy + z-loss (chapter 5); gradients (chapter 7); clip their global
    norm at ``clip``; PaLM's optimiser step on every tensor at the schedule's rate (chapter 8). What
    ``palmbook.Trainer`` does in fp32 on one process without dropout, minus logging, checkpoints and spike checks.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    states: list[dict] = [{} for _ in params]  # each tensor's optimiser state: step count k, m, v
    losses = []
    model.train()
    for step in range(steps):  # `step` updates done so far
        x, y = next(batches)
        loss = palm_loss(model(x), y, z_coef)[0]  # cross-entropy + z-loss
        grads, _ = clip_global_norm(torch.autograd.grad(loss, params), clip)  # backward, then one clip factor
        rate = palm_lr(step, lr, constant_steps)  # the schedule: lr for update step + 1
        with torch.no_grad():
            for p, g, state in zip(params, grads, states, strict=True):
                new, state_next = palm_step(p, g, state, rate)
                p.copy_(new)
                state.clear()
                state.update(state_next)
        losses.append(loss.item())
    return losses
