"""Chapter 5, from scratch: the output layer, softmax, cross-entropy and z-loss.

For one position with hidden state h (d,), the shared embedding E (V, d) and the target token y:

    z        = (h / sqrt(d)) E^T              logits (V,): the input embedding reused as the output layer (§2, §5)
    log Z    = log sum_j exp(z_j)             the log of the softmax normaliser
    p        = exp(z - log Z)                 softmax: probabilities that sum to 1
    ce       = log Z - z_y = -log p_y         cross-entropy, in nats
    z_loss   = 1e-4 * (log Z)^2               PaLM's auxiliary loss (§5 "Loss function")

Every reduction here is written out (max, exp, sum, log) instead of calling ``torch.logsumexp`` or
``F.cross_entropy``, so the chapter can show each step; ``palmbook.lm_loss`` is the fast version it is checked against.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["cross_entropy", "log_softmax", "logsumexp", "output_logits", "palm_loss", "softmax"]


def output_logits(h: Tensor, embedding: Tensor) -> Tensor:
    """Logits through the tied embedding: ``(h / sqrt(d)) @ E^T``. h: (..., d); embedding E: (V, d) -> (..., V).

    The 1/sqrt(d) keeps the logits O(1): with N(0, 1) embeddings, h . e_j is a sum of d terms of variance 1.
    """
    d = embedding.shape[1]
    return (h / math.sqrt(d)) @ embedding.T


def logsumexp(z: Tensor) -> Tensor:
    """log sum_j exp(z_j) over the last dimension, computed stably: ``m + log sum exp(z - m)`` with m = max(z).

    Subtracting the max makes the largest term exp(0) = 1: nothing overflows, and the sum is at least 1.
    """
    m = z.max(dim=-1, keepdim=True).values
    return (m + torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True))).squeeze(-1)


def log_softmax(z: Tensor) -> Tensor:
    """log p = z - log Z over the last dimension."""
    return z - logsumexp(z).unsqueeze(-1)


def softmax(z: Tensor) -> Tensor:
    """p_j = exp(z_j) / sum_k exp(z_k) over the last dimension. Adding a constant to every z_j changes nothing."""
    return torch.exp(log_softmax(z))


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean of ``log Z - z_target`` over positions. logits (N, V), targets (N,) -> scalar, in nats."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # z_y for each position: (N,)
    return (logsumexp(logits) - picked).mean()


def palm_loss(logits: Tensor, targets: Tensor, z_coef: float = 1e-4) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PaLM's training loss on (B, T, V) or (N, V) logits: returns ``(loss, ce, z_loss, mean log Z)``.

    loss = cross-entropy + z_coef * mean((log Z)^2). No label smoothing (§5). Computed in at least float32
    (bf16 logits are upcast; float64 stays float64, for exact worked examples).
    """
    logits = logits.reshape(-1, logits.shape[-1])
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    targets = targets.reshape(-1)
    log_z = logsumexp(logits)  # (N,)
    ce = cross_entropy(logits, targets)
    z_loss = z_coef * log_z.square().mean()
    return ce + z_loss, ce, z_loss, log_z.mean()
