"""PaLM's training loss: next-token cross-entropy plus z-loss (§5 "Loss function").

For one position with logits z (V,) and target y:

    log Z   = logsumexp(z)                       the log of the softmax normaliser
    ce      = log Z - z[y]                       = -log softmax(z)[y]
    z_loss  = 1e-4 * (log Z)^2                   pulls log Z towards 0, i.e. keeps the softmax self-normalised

The paper adds z-loss "to increase the stability of training"; no label smoothing.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

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
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    weight = keep / keep.sum().clamp(min=1)  # (N,): 1/count for the positions that count, 0 for ignored ones
    safe_targets = torch.where(keep, targets, 0)
    ce, zl, log_z = _CrossEntropyZLoss.apply(logits.reshape(-1, logits.shape[-1]), safe_targets, weight, z_loss)
    loss = ce + zl
    if return_parts:
        return LMLoss(loss, ce.detach(), zl.detach(), log_z.detach())
    return loss


class _CrossEntropyZLoss(torch.autograd.Function):
    """Cross-entropy and z-loss in one pass over the logits, with a hand-written backward.

    Forward: ``log Z = logsumexp(z)`` once, shared by both terms. Backward: both terms' gradients are multiples of
    softmax(z), so ``dL/dz = w * ((g_ce + 2 c log Z g_zl) * softmax(z) - g_ce * onehot(y))``: ONE fused softmax
    kernel, an in-place scale and a scatter. Autograd's generic chain (logsumexp -> sub, exp, mul; gather ->
    a zero-filled (N, V) buffer) costs about twice the time and memory traffic on the (N, V) logits, which is
    the biggest activation of a small model. At least float32 inside, whatever the dtype of the logits.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, targets: Tensor, weight: Tensor, z_coef: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32; fp64 stays
        weight = weight.to(x.dtype)
        log_z = torch.logsumexp(x, dim=-1)  # (N,)
        target_logit = x.gather(1, targets[:, None]).squeeze(1)
        ce = ((log_z - target_logit) * weight).sum()
        zl = z_coef * (log_z.square() * weight).sum() if z_coef else ce.new_zeros(())
        ctx.save_for_backward(logits, targets, weight, log_z)
        ctx.z_coef = z_coef
        return ce, zl, (log_z * weight).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_ce: Tensor, g_zl: Tensor, g_log_z: Tensor) -> tuple[Tensor, None, None, None]:
        logits, targets, weight, log_z = ctx.saved_tensors
        grad = torch.softmax(logits, dim=-1, dtype=log_z.dtype)  # (N, V): d log Z / dz
        grad.mul_((weight * (g_ce + (2 * ctx.z_coef) * log_z * g_zl + g_log_z))[:, None])
        grad.scatter_add_(1, targets[:, None], (-weight * g_ce)[:, None])  # d(-z_y)/dz: minus one at the target
        return grad.to(logits.dtype), None, None, None


def perplexity(nats_per_token: float | Tensor) -> float:
    """exp(cross-entropy): the effective number of equally likely next tokens."""
    return math.exp(float(nats_per_token))
