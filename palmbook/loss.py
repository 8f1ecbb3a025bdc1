"""PaLM's training loss: next-token cross-entropy plus z-loss (§5 "Loss function").

For one position with logits z (V,) and target y:

    log Z   = logsumexp(z)                       the log of the softmax normaliser
    ce      = log Z - z[y]                       = -log softmax(z)[y]
    z_loss  = 1e-4 * (log Z)^2                   pulls log Z towards 0, i.e. keeps the softmax self-normalised

The paper adds z-loss "to increase the stability of training"; no label smoothing.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["LMLoss", "lm_loss", "perplexity"]


class LMLoss(NamedTuple):
    """The parts of :func:`lm_loss`, each a scalar tensor averaged over the non-ignored positions."""

    loss: Tensor  # ce + z_loss: what to call .backward() on
    ce: Tensor  # cross-entropy in nats per token
    z_loss: Tensor  # z_loss coefficient * mean(log Z ** 2)
    log_z: Tensor  # mean log Z (detached): the quantity z-loss steers towards 0


def lm_loss(
    logits: Tensor,
    targets: Tensor,
    z_loss: float = 1e-4,
    ignore_index: int = -100,
    return_parts: bool = False,
) -> Tensor | LMLoss:
    """Cross-entropy plus z-loss, averaged over positions whose target is not ``ignore_index``.

    Args:
        logits: (B, T, V) or (N, V), any float dtype (computed in float32 for accuracy under bf16).
        targets: (B, T) or (N,) token ids; positions equal to ``ignore_index`` do not count.
        z_loss: coefficient of the z-loss term; PaLM uses 1e-4. 0 disables it.
        return_parts: return an :class:`LMLoss` (loss, ce, z_loss, log_z) instead of the loss alone.
    """
    if logits.dim() < 2 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits must be (..., V) with targets of shape (...); got logits {tuple(logits.shape)} and targets "
            f"{tuple(targets.shape)}"
        )
    if targets.dtype not in (torch.long, torch.int32):
        raise TypeError(f"targets must be integer token ids; got dtype {targets.dtype}: use targets.long()")
    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    count = keep.sum().clamp(min=1)
    safe_targets = torch.where(keep, targets, 0)
    log_z = torch.logsumexp(logits, dim=-1)  # (N,)
    ce = (log_z - logits.gather(1, safe_targets[:, None]).squeeze(1)) * keep
    ce = ce.sum() / count
    zl = z_loss * ((log_z.square() * keep).sum() / count) if z_loss else ce.new_zeros(())
    loss = ce + zl
    if return_parts:
        return LMLoss(loss, ce.detach(), zl.detach(), ((log_z * keep).sum() / count).detach())
    return loss


def perplexity(nats_per_token: float | Tensor) -> float:
    """exp(cross-entropy): the effective number of equally likely next tokens."""
    return math.exp(float(nats_per_token))
