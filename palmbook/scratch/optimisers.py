"""Optimisers from scratch: the ladder built in chapter 8 (``book/08_optimisers.ipynb``), one failure at a time.

    sgd_step            x - lr g                                           torch.optim.SGD
    momentum_step       a running sum of past gradients (heavy ball)       torch.optim.SGD(momentum=beta)
    rmsprop_step        divide by a running RMS of each weight's gradient  torch.optim.RMSprop
    adam_step           momentum / RMS, both bias-corrected; L2 decay      torch.optim.Adam
    adamw_step          Adam with the decay taken out of the gradient      torch.optim.AdamW
    palm_step           PaLM's "Adafactor without factorization" (§5)      palmbook.PaLMAdafactor
    clip_global_norm    one factor for all gradients                       torch.nn.utils.clip_grad_norm_
    clip_per_tensor     one factor per tensor (what PaLM does NOT do)

Every update rule has the same form, ``rule(x, g, state, lr, **settings) -> (x_new, state_new)``: ``x`` is one
parameter tensor, ``g`` its gradient (same shape, any shape), ``state`` a dict of what the optimiser remembers
between steps (``{}`` before the first step; each rule fills in its own entries, the step count ``k`` included).
The rules are pure: they return new tensors and a new dict, and change nothing in place, so a chapter can keep
every intermediate value. :func:`trajectory` runs any rule on a 2-D loss surface such as :func:`valley`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "Rule",
    "adam_step",
    "adamw_step",
    "beta2_schedule",
    "clip_global_norm",
    "clip_per_tensor",
    "momentum_step",
    "palm_step",
    "rms",
    "rmsprop_step",
    "sgd_step",
    "trajectory",
    "valley",
]

# rule(x, g, state, lr) -> (x_new, state_new); settings are bound with functools.partial or a lambda
Rule = Callable[[Tensor, Tensor, dict[str, Any], float], tuple[Tensor, dict[str, Any]]]


# ---- the ladder
def sgd_step(x: Tensor, g: Tensor, state: dict[str, Any], lr: float) -> tuple[Tensor, dict[str, Any]]:
    """Plain (stochastic) gradient descent: one learning rate for every weight, no memory."""
    return x - lr * g, {}


def momentum_step(
    x: Tensor, g: Tensor, state: dict[str, Any], lr: float, beta: float = 0.9
) -> tuple[Tensor, dict[str, Any]]:
    """Heavy-ball momentum, as ``torch.optim.SGD(momentum=beta)``: step along a decaying sum of past gradients.

    velocity = beta * velocity + g (0 before the first step). Gradients that agree from step to step add up (up
    to 1 / (1 - beta) = 10 times one gradient); gradients that flip sign cancel.
    """
    velocity = beta * state.get("velocity", torch.zeros_like(x)) + g
    return x - lr * velocity, {"velocity": velocity}


def rmsprop_step(
    x: Tensor, g: Tensor, state: dict[str, Any], lr: float, alpha: float = 0.99, eps: float = 1e-8
) -> tuple[Tensor, dict[str, Any]]:
    """RMSProp, as ``torch.optim.RMSprop``: divide each weight's gradient by the RMS of its recent gradients.

    v = alpha * v + (1 - alpha) * g^2 (0 before the first step) estimates each weight's mean squared gradient, so
    g / sqrt(v) is about +-1 whatever the weight's gradient scale: every weight moves about lr per step. No bias
    correction: at step 1, v = (1 - alpha) g^2, and the step is lr / sqrt(1 - alpha) = 10 lr.
    """
    v = alpha * state.get("v", torch.zeros_like(x)) + (1 - alpha) * g * g
    return x - lr * g / (v.sqrt() + eps), {"v": v}


def adam_step(
    x: Tensor,
    g: Tensor,
    state: dict[str, Any],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[Tensor, dict[str, Any]]:
    """Adam, as ``torch.optim.Adam``: momentum of g divided by RMSProp's RMS, both bias-corrected.

    m and v start at 0, so after k steps they hold only (1 - beta^k) of the average they estimate; dividing by
    1 - beta^k undoes that. ``weight_decay`` is an L2 penalty (weight_decay / 2) |x|^2 added to the loss, so its
    gradient weight_decay * x joins g and is divided by sqrt(v) with it (what :func:`adamw_step` changes).
    """
    b1, b2 = betas
    k = state.get("k", 0) + 1
    g = g + weight_decay * x
    m = b1 * state.get("m", torch.zeros_like(x)) + (1 - b1) * g
    v = b2 * state.get("v", torch.zeros_like(x)) + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**k), v / (1 - b2**k)
    return x - lr * m_hat / (v_hat.sqrt() + eps), {"k": k, "m": m, "v": v}


def adamw_step(
    x: Tensor,
    g: Tensor,
    state: dict[str, Any],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> tuple[Tensor, dict[str, Any]]:
    """AdamW, as ``torch.optim.AdamW``: shrink x by (1 - lr * weight_decay), then take Adam's step on g alone.

    The decay is *decoupled*: every weight loses the same fraction lr * weight_decay per step, whatever its
    gradients, instead of passing through Adam's division by sqrt(v).
    """
    return adam_step(x * (1 - lr * weight_decay), g, state, lr, betas, eps, weight_decay=0.0)


def rms(t: Tensor) -> Tensor:
    """Root mean square over the whole tensor: sqrt(mean(t^2)), a 0-dim tensor."""
    return t.square().mean().sqrt()


def beta2_schedule(k: int, decay_rate: float = 0.8) -> float:
    """PaLM's beta2 at step k = 1, 2, ...: 1 - k^(-decay_rate). 0 at step 1, then towards 1.

    v then averages the squared gradients of roughly the last 1 / (1 - beta2) = k^0.8 steps.
    """
    return 1.0 - k ** (-decay_rate)


def palm_step(
    x: Tensor,
    g: Tensor,
    state: dict[str, Any],
    lr: float,
    beta1: float = 0.9,
    decay_rate: float = 0.8,
    eps1: float = 1e-30,
    eps2: float = 1e-3,
    clip_threshold: float | None = 1.0,
    weight_decay: float | Literal["lr^2"] = "lr^2",
) -> tuple[Tensor, dict[str, Any]]:
    """PaLM's optimiser (§5: "Adafactor without factorization"), as ``palmbook.PaLMAdafactor``.

        beta2 = 1 - k^-0.8                         v_1 = g^2 exactly: no bias correction needed
        v = beta2 v + (1 - beta2) (g^2 + eps1)
        u = g / sqrt(v)                            RMSProp's normalised gradient
        u = u / max(1, RMS(u) / clip_threshold)    update clipping (T5X's Adafactor; not in the paper)
        m = beta1 m + (1 - beta1) lr max(eps2, RMS(x)) u     momentum of the *scaled* step, not bias-corrected
        x = (1 - lr^2) x - m                       decoupled weight decay lr^2 (§5)

    Parameter scaling (the RMS(x) factor) makes every tensor change by about the same *fraction* of its size.
    """
    k = state.get("k", 0) + 1
    beta2 = beta2_schedule(k, decay_rate)
    v = beta2 * state.get("v", torch.zeros_like(x)) + (1 - beta2) * (g * g + eps1)
    u = g / v.sqrt()
    if clip_threshold is not None:
        u = u / torch.clamp(rms(u) / clip_threshold, min=1.0)
    scale = lr * torch.clamp(rms(x), min=eps2)
    m = beta1 * state.get("m", torch.zeros_like(x)) + (1 - beta1) * scale * u
    wd = lr * lr if weight_decay == "lr^2" else weight_decay
    return (1 - wd) * x - m, {"k": k, "m": m, "v": v}


# ---- clipping
def clip_global_norm(grads: Sequence[Tensor], max_norm: float) -> tuple[list[Tensor], Tensor]:
    """Scale ALL gradients by one factor min(1, max_norm / (norm + 1e-6)), norm = sqrt(sum of ||g_t||^2).

    One factor keeps the direction of the whole update. Returns (clipped, norm before); the 1e-6 is torch's, so
    the result equals ``torch.nn.utils.clip_grad_norm_``.
    """
    norm = torch.stack([g.norm() for g in grads]).norm()
    factor = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    return [g * factor for g in grads], norm


def clip_per_tensor(grads: Sequence[Tensor], max_norm: float) -> list[Tensor]:
    """Scale each tensor's gradient by its own factor min(1, max_norm / ||g_t||): tensors over the threshold
    shrink, the others do not, so the whole update turns towards the small ones."""
    return [g * torch.clamp(max_norm / (g.norm() + 1e-6), max=1.0) for g in grads]


# ---- a 2-D loss surface to watch them on
def valley(xy: Tensor, steep: float = 10.0, flat: float = 0.1) -> Tensor:
    """An elongated bowl, 0.5 (flat x^2 + steep y^2), minimum 0 at the origin; xy (..., 2) -> loss (...).

    Its curvature is ``flat`` along x and ``steep`` along y (a ratio of 100 by default): a step small enough not
    to overshoot across y crawls along x. Most of a network's loss surface looks like this in some directions.
    """
    return 0.5 * (flat * xy[..., 0] ** 2 + steep * xy[..., 1] ** 2)


def trajectory(
    rule: Rule,
    start: Sequence[float],
    lr: float | Callable[[int], float],
    steps: int,
    loss: Callable[[Tensor], Tensor] = valley,
    noise: float = 0.0,
    seed: int = 0,
) -> Tensor:
    """Run ``rule`` for ``steps`` steps on a 2-D surface from ``start``; returns the points, (steps + 1, 2).

    The gradient comes from autograd on ``loss`` (float64), plus ``noise`` times a standard normal draw per
    coordinate: what a minibatch gradient looks like (the true gradient plus a random error). ``lr`` is a number
    or a schedule ``step -> lr`` (step = updates already taken). The same ``seed`` gives every rule the same
    noise, so trajectories differ only by the rule.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor(start, dtype=torch.float64)
    state: dict[str, Any] = {}
    points = [x]
    for step in range(steps):
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(xg), xg)
        g = g + noise * torch.randn(2, generator=gen, dtype=torch.float64)
        x, state = rule(x, g, state, lr(step) if callable(lr) else lr)
        points.append(x.detach())
    return torch.stack(points)
