"""Backpropagation by hand: the gradients of PaLM's main pieces as explicit tensor formulas.

Chapter 7 derives each formula on paper; this module writes them down, so that tests (and the chapter) can check
them against ``torch.autograd`` and against finite differences. Nothing here calls ``.backward()``: every gradient
is a formula of the forward pass's inputs and of the gradient arriving from above (``grad_out``, the derivative of
the final scalar loss with respect to this piece's output).

Notation (as in the chapter): L is the scalar loss; for any tensor X, dX means dL/dX, a tensor of X's shape.

    linear            y = x W^T                  dx = dy W              dW = dy^T x   (summed over all rows)
    softmax + CE      L = mean(log Z - z_y)      dz = (softmax(z) - onehot(y)) / N   (+ z-loss term)
    attention         S = Q K^T / sqrt(h), P = softmax(S) (causal), O = P V
                      dV = P^T dO    dP = dO V^T    dS = P * (dP - rowsum(P * dP))
                      dQ = dS K / sqrt(h)           dK = dS^T Q / sqrt(h)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

# The forward passes were built in earlier chapters; this one adds their backward passes.
from .attention import attention, causal_mask  # chapter 3
from .loss import logsumexp, softmax  # chapter 5

__all__ = [
    "attention_backward",
    "attention_forward",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "linear_backward",
    "linear_forward",
    "numerical_gradient",
]


# --------------------------------------------------------------------------------------------- linear layer
def linear_forward(x: Tensor, weight: Tensor) -> Tensor:
    """y = x W^T, no bias (as in every PaLM projection, §2). x (..., d_in), W (d_out, d_in) -> (..., d_out)."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features but weight expects {weight.shape[1]} (weight is (d_out, d_in))")
    return x @ weight.T


def linear_backward(x: Tensor, weight: Tensor, grad_out: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of y = x W^T.

    From y[n, j] = sum_i x[n, i] W[j, i]:
        dx[n, i] = sum_j dy[n, j] W[j, i]     ->  dx = dy W           (..., d_in)
        dW[j, i] = sum_n dy[n, j] x[n, i]     ->  dW = dy^T x         (d_out, d_in), summed over every row n

    All leading dimensions of x (batch, time, ...) count as rows n: one weight serves every token, so its gradient
    is the sum of every token's contribution.
    """
    grad_x = grad_out @ weight
    grad_w = grad_out.reshape(-1, grad_out.shape[-1]).T @ x.reshape(-1, x.shape[-1])
    return grad_x, grad_w


# --------------------------------------------------------------------------------------------- softmax + cross-entropy
def _check_logits_targets(logits: Tensor, targets: Tensor) -> None:
    if logits.dim() < 2 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits must be (..., V) with targets of shape (...); got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )


def cross_entropy_forward(logits: Tensor, targets: Tensor, z_loss: float = 0.0) -> Tensor:
    """Mean over positions of -log softmax(z)[y] = log Z - z_y, plus ``z_loss * mean(log Z ** 2)`` (PaLM §5).

    logits (..., V), targets (...) integer ids -> a scalar. With z_loss=1e-4 this is :func:`palmbook.lm_loss`.
    """
    _check_logits_targets(logits, targets)
    log_z = logsumexp(logits)  # (...)
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (log_z - target_logit).mean() + z_loss * log_z.square().mean()


def cross_entropy_backward(logits: Tensor, targets: Tensor, z_loss: float = 0.0) -> Tensor:
    """dL/dlogits of :func:`cross_entropy_forward`: (softmax(z) - onehot(y) + 2 z_loss log Z softmax(z)) / N.

    For one position: d(log Z)/dz_i = exp(z_i) / Z = p_i and d(z_y)/dz_i = 1 if i = y else 0, so
    d(log Z - z_y)/dz_i = p_i - [i = y]; d(z_loss log^2 Z)/dz_i = 2 z_loss log Z p_i. The mean over N positions
    divides every row by N. Returns a tensor of the logits' shape (..., V).
    """
    _check_logits_targets(logits, targets)
    n = targets.numel()
    p = softmax(logits)
    grad = p - torch.nn.functional.one_hot(targets, logits.shape[-1]).to(p.dtype)
    if z_loss:
        grad = grad + 2.0 * z_loss * logsumexp(logits).unsqueeze(-1) * p
    return grad / n


# --------------------------------------------------------------------------------------------- attention
def attention_forward(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention, keeping the probabilities for the backward pass.

    q: (B, H, T, h); k, v: (B, Hk, S, h) with Hk = H (multi-head) or Hk = 1 (multi-query, PaLM §2: all query heads
    share one key and one value head, broadcast here). With ``causal``, query i (at position S - T + i) sees keys
    0..S-T+i only. Returns the output O (B, H, T, h) and the probabilities P (B, H, T, S).
    """
    if k.shape != v.shape or k.shape[1] not in (1, q.shape[1]) or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"expected q (B, H, T, h) and k, v (B, H or 1, S, h); got q {tuple(q.shape)}, k {tuple(k.shape)}, "
            f"v {tuple(v.shape)}"
        )
    mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device) if causal else None
    return attention(q, k, v, mask)  # chapter 3's attention; masked scores are -inf, so their P is exactly 0


def attention_backward(
    q: Tensor, k: Tensor, v: Tensor, probs: Tensor, grad_out: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of O = softmax(Q K^T / sqrt(h)) V, given P from :func:`attention_forward` and dO (B, H, T, h).

        dV = P^T dO                             a value row receives what each query that read it passes back
        dP = dO V^T                             (B, H, T, S)
        dS = P * (dP - sum_j P_j dP_j)          the softmax Jacobian, row by row; masked entries have P = 0, so dS = 0
        dQ = dS K / sqrt(h),  dK = dS^T Q / sqrt(h)

    When k and v are shared by all heads (multi-query), the per-head gradients are summed over heads: a tensor used
    H times receives H contributions. Returns dq, dk, dv in the shapes of q, k, v.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    grad_v = probs.transpose(-2, -1) @ grad_out  # (B, H, S, h)
    grad_p = grad_out @ v.transpose(-2, -1)  # (B, H, T, S)
    grad_s = probs * (grad_p - (probs * grad_p).sum(dim=-1, keepdim=True))
    grad_q = grad_s @ k * scale
    grad_k = grad_s.transpose(-2, -1) @ q * scale  # (B, H, S, h)
    return grad_q, _sum_to(grad_k, k.shape), _sum_to(grad_v, v.shape)


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum a gradient over the dimensions that broadcasting expanded (size 1 in ``shape``)."""
    dims = [i for i, (g, s) in enumerate(zip(grad.shape, shape, strict=True)) if s == 1 and g != 1]
    return grad.sum(dim=dims, keepdim=True) if dims else grad


# --------------------------------------------------------------------------------------------- finite differences
def numerical_gradient(f: Callable[[Tensor], Tensor], x: Tensor, eps: float = 1e-6) -> Tensor:
    """dL/dx by central differences: (f(x + eps e_i) - f(x - eps e_i)) / (2 eps), one coordinate i at a time.

    Independent of any backward formula, so it can check them all. The error is O(eps^2) from the Taylor series
    plus O(machine epsilon / eps) from rounding: in float64 with eps = 1e-6 both are ~1e-10. Costs 2 * x.numel()
    calls of f: for small tensors only. ``f`` maps a float64 tensor shaped like x to a scalar tensor.
    """
    x = x.detach().to(torch.float64).clone()
    flat = x.view(-1)
    grad = torch.empty_like(flat)
    with torch.no_grad():
        for i in range(flat.numel()):
            original = flat[i].item()
            flat[i] = original + eps
            above = f(x).item()
            flat[i] = original - eps
            below = f(x).item()
            flat[i] = original
            grad[i] = (above - below) / (2 * eps)
    return grad.view_as(x)
