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

__all__ = ["LMLoss", "fused_lm_loss", "lm_loss", "perplexity"]


class LMLoss(NamedTuple):
    """The parts of :func:`lm_loss`, each a scalar tensor averaged over the non-ignored positions."""

    loss: Tensor  # ce + z_loss: what to call .backward() on
    ce: Tensor  # cross-entropy in nats per token
    z_loss: Tensor  # z_loss coefficient * mean(log Z ** 2)
    log_z: Tensor  # mean log Z (detached): the quantity z-loss steers towards 0


def _flat_targets(targets: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """targets (...) -> (N,) ids with ignored positions set to 0 (safe to index with), and (N,) averaging weights:
    1/count for the positions that count, 0 for ignored ones."""
    if targets.dtype not in (torch.long, torch.int32):
        raise TypeError(f"targets must be integer token ids; got dtype {targets.dtype}: use targets.long()")
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    return torch.where(keep, targets, 0), keep / keep.sum().clamp(min=1)


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
    safe_targets, weight = _flat_targets(targets, ignore_index)
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


def fused_lm_loss(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    scale: float = 1.0,
    z_loss: float = 1e-4,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
) -> LMLoss:
    """The output layer and :func:`lm_loss` in one pass, chunk by chunk: the (N, V) logits never exist whole.

    Computes exactly ``lm_loss(F.linear(hidden * scale, weight), targets, z_loss, ignore_index, return_parts=True)``
    but walks the positions ``chunk_rows`` at a time: each chunk's logits, log-softmax and gradient live only
    while that chunk is processed (a few MB), instead of two (N, V) float32 tensors (logits and
    log-softmax: 128 MB for 8 sequences of 256 tokens over 8,192 tokens) that are written to and read back from
    memory. The gradients for ``hidden`` and ``weight`` are computed during the forward pass, while each chunk is
    at hand, and only scaled by the incoming gradient in backward (the technique of Liger-Kernel's fused linear
    cross-entropy and of Wijmans et al. 2024, "Cut your losses"). So ``loss`` supports one backward pass, and
    ``ce``, ``z_loss``, ``log_z`` are detached statistics, as with ``lm_loss(..., return_parts=True)``.

    Args:
        hidden: (..., d) final hidden states (PaLM: after the final LayerNorm).
        weight: (V, d) output matrix (PaLM: the shared embedding).
        targets: (...) token ids; ``ignore_index`` positions do not count.
        scale: multiplies ``hidden`` before the product (PaLM: 1/sqrt(d_model)).
        chunk_rows: positions per chunk; default: at least 256, about 16 MB of float32 logits per chunk (smaller
            chunks keep more in cache but leave a 2-thread matmul too little work per call).
    Under autocast the products run in the autocast dtype and the softmax in float32, as in the unfused path.
    """
    if hidden.shape[:-1] != targets.shape or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"hidden must be (..., d) with targets (...) and weight (V, d); got hidden {tuple(hidden.shape)}, "
            f"targets {tuple(targets.shape)}, weight {tuple(weight.shape)}"
        )
    safe_targets, row_weight = _flat_targets(targets, ignore_index)
    if chunk_rows is None:
        chunk_rows = max(256, (1 << 22) // weight.shape[0])  # 4M float32 logits = 16 MB per chunk
    with_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype
    if dtype == torch.float16:
        # The gradient is formed here, before any loss scaling reaches it: probabilities x 1/N would underflow
        # float16 (smallest subnormal 6e-8). bfloat16 has float32's range and keeps its speed.
        dtype = torch.float32
    loss, ce, zl, log_z = _FusedOutputLoss.apply(
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        safe_targets,
        row_weight,
        float(scale),
        float(z_loss),
        int(chunk_rows),
        dtype,
        with_grad,
    )
    return LMLoss(loss, ce.detach(), zl.detach(), log_z.detach())


class _FusedOutputLoss(torch.autograd.Function):
    """Chunked ``(h * scale) @ W^T`` -> log-softmax -> cross-entropy + z-loss, gradients computed on the way."""

    @staticmethod
    def forward(
        ctx: Any,
        h: Tensor,
        weight: Tensor,
        targets: Tensor,
        row_weight: Tensor,
        scale: float,
        z_coef: float,
        chunk: int,
        dtype: torch.dtype,
        with_grad: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        acc = torch.promote_types(dtype, torch.float32)  # softmax and sums in at least float32
        w = weight.to(dtype)  # one cast for all chunks (a no-op in float32)
        grad_h = torch.empty(h.shape, dtype=h.dtype, device=h.device) if with_grad else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if with_grad else None
        sums = torch.zeros(3, dtype=acc, device=h.device)  # ce, z-loss, log Z, each weighted
        with torch.autocast(h.device.type, enabled=False):  # dtypes are chosen explicitly below
            for start in range(0, h.shape[0], chunk):
                rows = slice(start, start + chunk)
                hs = (h[rows] * scale).to(dtype)  # (n, d)
                log_p = torch.log_softmax(torch.mm(hs, w.t()), dim=-1, dtype=acc)  # (n, V)
                t, rw = targets[rows, None], row_weight[rows].to(acc)
                ce = -log_p.gather(1, t).squeeze(1)  # (n,)
                # log Z = z_y - log p_y, with z_y = h_y . w_y recomputed from the inputs (n dot products)
                log_z = (hs.to(acc) * w[targets[rows]].to(acc)).sum(-1) + ce
                sums += torch.stack([(ce * rw).sum(), (log_z.square() * rw).sum() * z_coef, (log_z * rw).sum()])
                if with_grad:  # d(ce + z-loss)/dz = rw * ((1 + 2c log Z) softmax(z) - onehot(y)), in place
                    g = log_p.exp_().mul_((rw * (1 + 2 * z_coef * log_z))[:, None])
                    g.scatter_add_(1, t, -rw[:, None])
                    g = g.to(dtype)
                    grad_h[rows] = (torch.mm(g, w) * scale).to(h.dtype)  # (n, d)
                    if grad_w.dtype == g.dtype:
                        grad_w.addmm_(g.t(), hs)  # (V, d) += (V, n) @ (n, d)
                    else:  # bf16 products, float32 accumulation across chunks
                        grad_w.add_(torch.mm(g.t(), hs))
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        loss = sums[0] + sums[1]
        stats = sums.unbind()  # ce, z-loss, log Z: statistics, not differentiable
        ctx.mark_non_differentiable(*stats)
        return loss, *stats

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_loss: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is None:  # unreachable through autograd: without gradients no graph is recorded
            raise RuntimeError("fused_lm_loss ran without gradients: nothing to backpropagate")
        # one backward per forward (like lm_loss): scale the precomputed gradients in place
        return grad_h.mul_(g_loss.to(grad_h.dtype)), grad_w.mul_(g_loss).to(ctx.weight_dtype), *([None] * 7)


def perplexity(nats_per_token: float | Tensor) -> float:
    """exp(cross-entropy): the effective number of equally likely next tokens."""
    return math.exp(float(nats_per_token))
