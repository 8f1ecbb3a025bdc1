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
    """Cross-entropy and z-loss from ONE log-softmax of the logits, with a hand-written backward.

    Forward: ``log p = log_softmax(z)`` (one fused kernel); ``ce = -log p[y]``; ``log Z = z[y] - log p[y]``, so both
    terms share that single pass. Backward: both gradients are multiples of ``softmax(z) = exp(log p)``:
    ``dL/dz = w * ((g_ce + 2 c log Z g_zl) * softmax(z) - g_ce * onehot(y))``, computed IN PLACE in the saved
    log p buffer (exp, scale, scatter): no new (N, V) tensor. Autograd's generic chain (logsumexp -> sub, exp, mul;
    gather -> a zero-filled (N, V) buffer) makes ~3 more passes and 2 more (N, V) buffers over the logits, the
    biggest activation of a small model (the in-place reuse alone saves ~20% of the loss's time here). At least
    float32 inside, whatever the dtype of the logits. The price: one backward per forward; a second backward
    through the same graph (``retain_graph=True``) raises a clear error instead of using the spent buffer.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, targets: Tensor, weight: Tensor, z_coef: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        dtype = torch.promote_types(logits.dtype, torch.float32)  # bf16/fp16 -> fp32; fp64 stays
        log_p = torch.log_softmax(logits, dim=-1, dtype=dtype)  # (N, V)
        weight = weight.to(dtype)
        ce = -log_p.gather(1, targets[:, None]).squeeze(1)  # (N,)
        # log Z = z_y - log p_y exactly; its rounding error is ~1e-7 of |log p_y|, far below what z-loss resolves
        log_z = logits.gather(1, targets[:, None]).squeeze(1).to(dtype) + ce
        zl = z_coef * (log_z.square() * weight).sum() if z_coef else log_z.new_zeros(())
        ctx.save_for_backward(log_p, targets, weight, log_z)
        ctx.z_coef, ctx.dtype = z_coef, logits.dtype
        return (ce * weight).sum(), zl, (log_z * weight).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_ce: Tensor, g_zl: Tensor, g_log_z: Tensor) -> tuple[Tensor, None, None, None]:
        if getattr(ctx, "spent", False):
            raise RuntimeError(
                "lm_loss supports one backward pass per forward pass (its backward reuses the log-softmax buffer in "
                "place); compute the loss again instead of calling backward twice with retain_graph=True"
            )
        ctx.spent = True
        log_p, targets, weight, log_z = ctx.saved_tensors
        grad = log_p.exp_()  # softmax(z) = d log Z / dz, in the saved buffer
        grad.mul_((weight * (g_ce + (2 * ctx.z_coef) * log_z * g_zl + g_log_z))[:, None])
        grad.scatter_add_(1, targets[:, None], (-weight * g_ce)[:, None])  # d(-z_y)/dz: minus one at the target
        return grad.to(ctx.dtype), None, None, None


def perplexity(nats_per_token: float | Tensor) -> float:
    """exp(cross-entropy): the effective number of equally likely next tokens."""
    return math.exp(float(nats_per_token))
