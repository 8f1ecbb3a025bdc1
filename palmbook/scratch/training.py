"""Training from scratch: the teaching versions built in chapter 9 (``book/09_training.ipynb``).

    pack_documents          documents -> one stream with an end-of-document token after each -> rows of
                            ``block_size`` tokens, no padding (§5); the package's is ``palmbook.data.pack``
    padding_fraction        what the alternative, one padded row per document, would waste
    adamw_step              one AdamW update of one tensor (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``
    beta2_schedule          PaLM's second-moment decay beta2_k = 1 - k^(-0.8) (§5)
    rms                     root mean square of a whole tensor
    palm_adafactor_step     one update of PaLM's optimiser ("Adafactor without factorization", §5), as
                            ``palmbook.PaLMAdafactor``: parameter scaling, beta2_k, update clipping, lr^2 decay
    clip_by_global_norm     gradient clipping by the norm of ALL gradients together (§5: at 1.0), as
                            ``torch.nn.utils.clip_grad_norm_``

Every function is pure (returns new tensors, changes nothing in place), so a cell can show each number it makes.
Shapes: any, unless said; an optimiser update works on one parameter tensor X and its gradient g of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "adamw_step",
    "beta2_schedule",
    "clip_by_global_norm",
    "pack_documents",
    "padding_fraction",
    "palm_adafactor_step",
    "rms",
]


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


# --------------------------------------------------------------------------------------------- optimisers
def adamw_step(
    x: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    k: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> tuple[Tensor, Tensor, Tensor]:
    """One AdamW update at step k = 1, 2, ... Returns (x_new, m_new, v_new).

    m = beta1 m + (1 - beta1) g                 momentum: a running mean of gradients
    v = beta2 v + (1 - beta2) g^2               a running mean of squared gradients, per element
    m_hat = m / (1 - beta1^k), v_hat = v / (1 - beta2^k)     bias correction (m and v start at 0)
    x = x (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)      decay decoupled from the gradient
    """
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**k)
    v_hat = v / (1 - b2**k)
    x = x * (1 - lr * weight_decay) - lr * m_hat / (v_hat.sqrt() + eps)
    return x, m, v


def beta2_schedule(k: int | Tensor, decay_rate: float = 0.8) -> float | Tensor:
    """PaLM's beta2 at step k = 1, 2, ...: 1 - k^(-decay_rate). beta2_1 = 0, and it climbs towards 1.

    v then averages the squared gradients of roughly the last 1 / (1 - beta2_k) = k^0.8 steps: a short memory early,
    when gradients change fast, and a long one later, without Adam's bias correction.
    """
    return 1.0 - k ** (-decay_rate)


def rms(t: Tensor) -> Tensor:
    """Root mean square over the whole tensor: sqrt(mean(t^2)), a 0-dim tensor."""
    return t.square().mean().sqrt()


def palm_adafactor_step(
    x: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    k: int,
    lr: float,
    beta1: float = 0.9,
    decay_rate: float = 0.8,
    eps1: float = 1e-30,
    eps2: float = 1e-3,
    clip_threshold: float | None = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """One update of PaLM's optimiser at step k = 1, 2, ... Returns (x_new, m_new, v_new).

    beta2 = 1 - k^-0.8
    v = beta2 v + (1 - beta2) (g^2 + eps1)           no bias correction needed: at k = 1, v = g^2
    u = g / sqrt(v)                                  Adam's normalised gradient
    u = u / max(1, RMS(u) / clip_threshold)          update clipping (T5X's Adafactor; not in the paper)
    a = lr max(eps2, RMS(x))                         parameter scaling: a step relative to the tensor's size
    m = beta1 m + (1 - beta1) a u                    momentum on the scaled update
    x = (1 - lr^2) x - m                             "dynamic" weight decay lr^2 (§5)
    """
    beta2 = beta2_schedule(k, decay_rate)
    v = beta2 * v + (1 - beta2) * (g * g + eps1)
    u = g / v.sqrt()
    if clip_threshold is not None:
        u = u / torch.clamp(rms(u) / clip_threshold, min=1.0)
    a = lr * torch.clamp(rms(x), min=eps2)
    m = beta1 * m + (1 - beta1) * a * u
    x = (1 - lr * lr) * x - m
    return x, m, v


# --------------------------------------------------------------------------------------------- clipping
def clip_by_global_norm(grads: Sequence[Tensor], max_norm: float) -> tuple[list[Tensor], Tensor]:
    """Scale ALL gradients by one factor so that their joint norm is at most ``max_norm``.

    norm = sqrt(sum over tensors of ||g||^2); factor = min(1, max_norm / (norm + 1e-6)). One factor for every
    tensor keeps the direction of the whole update; only its length changes. Returns (clipped, norm before).
    The 1e-6 is torch's, so that the result equals ``torch.nn.utils.clip_grad_norm_``.
    """
    norm = torch.stack([g.norm() for g in grads]).norm()
    factor = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    return [g * factor for g in grads], norm
