"""PaLM's optimiser and learning-rate schedules (§5 "Optimizer", "Training Setup").

The paper trains with "Adafactor without factorization", which it notes is "effectively equivalent to Adam with
parameter scaling". One update of a parameter tensor X with gradient g, at step k = 1, 2, 3, ... reads:

    beta2_k = 1 - k^(-0.8)                                   second-moment decay (§5); beta2_1 = 0, so no bias
                                                             correction is needed: v_1 = g^2 exactly
    v_k     = beta2_k v_{k-1} + (1 - beta2_k) (g^2 + eps1)   per-element second moment, eps1 = 1e-30
    u_k     = g / sqrt(v_k)                                  Adam's normalised gradient
    u_k     = u_k / max(1, RMS(u_k) / d)                     update clipping, d = 1.0 (NOT in the paper: T5X's
                                                             Adafactor does it, and PaLM trained with T5X/Pathways)
    a_k     = lr_k * max(eps2, RMS(X_{k-1}))                 parameter scaling: a step relative to the size of X,
                                                             eps2 = 1e-3 keeps zero-initialised tensors moving
    m_k     = beta1 m_{k-1} + (1 - beta1) a_k u_k            momentum, beta1 = 0.9 (on the scaled update, as T5X)
    X_k     = (1 - lr_k^2) X_{k-1} - m_k                     "dynamic weight decay" lr^2 (§5), decoupled

RMS(t) = sqrt(mean(t^2)) over the whole tensor. Neither ``torch.optim.Adafactor`` (no beta1) nor Hugging Face's
``Adafactor`` (always factored for matrices) computes this, hence :class:`PaLMAdafactor`.

Schedules are plain functions ``step -> lr`` with ``step`` the number of optimiser updates already taken
(0 for the first update), the convention of ``torch.optim.lr_scheduler.LambdaLR``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

__all__ = [
    "LRSchedule",
    "PaLMAdafactor",
    "build_optimizer",
    "build_scheduler",
    "constant_lr",
    "cosine_lr",
    "lr_curve",
    "palm_lr",
    "restart_scheduler",
]


# ---- the optimiser
class PaLMAdafactor(torch.optim.Optimizer):
    """Adam with parameter scaling, beta2 = 1 - k^-0.8, update clipping and weight decay lr^2 (PaLM §5).

    The formulas are in the module docstring. State per parameter: ``step`` (a float32 scalar tensor, so the
    state dict holds tensors only and round-trips through safetensors), ``exp_avg`` (m) and ``exp_avg_sq`` (v),
    both float32 whatever the parameter dtype.

    Args:
        params: parameters or parameter groups.
        lr: learning rate lr_k; a scheduler changes it per step (PaLM: :func:`palm_lr`).
        beta1: momentum coefficient (0.9 in the paper).
        decay_rate: c in beta2_k = 1 - k^(-c) (0.8 in the paper).
        eps1: added to g^2 (Adafactor's epsilon_1).
        eps2: lower bound of the parameter scale (Adafactor's epsilon_2).
        clip_threshold: d of the update clipping; ``None`` disables it (the paper does not mention it).
        weight_decay: ``"lr^2"`` for PaLM's dynamic weight decay (1 - lr^2) X, a float for a fixed decoupled
            rate, or 0 for none.
        scale_parameter: multiply the step by max(eps2, RMS(X)) (parameter scaling); False gives plain Adam
            without bias correction.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        beta1: float = 0.9,
        decay_rate: float = 0.8,
        eps1: float = 1e-30,
        eps2: float = 1e-3,
        clip_threshold: float | None = 1.0,
        weight_decay: float | Literal["lr^2"] = "lr^2",
        scale_parameter: bool = True,
    ) -> None:
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"lr must be a number >= 0 (PaLM uses 1e-2); got {lr!r}")
        if not 0 <= beta1 < 1:
            raise ValueError(f"beta1 must be in [0, 1) (PaLM uses 0.9); got {beta1!r}")
        if not decay_rate > 0:
            raise ValueError(f"decay_rate must be > 0 (beta2 = 1 - k^-decay_rate; PaLM uses 0.8); got {decay_rate!r}")
        if clip_threshold is not None and not clip_threshold > 0:
            raise ValueError(f"clip_threshold must be > 0 or None; got {clip_threshold!r}")
        if weight_decay != "lr^2" and not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise ValueError(
                f"weight_decay must be 'lr^2' (PaLM's dynamic decay) or a number >= 0; got {weight_decay!r}"
            )
        defaults = dict(
            lr=lr,
            beta1=beta1,
            decay_rate=decay_rate,
            eps1=eps1,
            eps2=eps2,
            clip_threshold=clip_threshold,
            weight_decay=weight_decay,
            scale_parameter=scale_parameter,
        )
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``Optimizer.load_state_dict``, but the moments stay float32.

        torch casts loaded state to each parameter's dtype; for bf16 parameters that would round m and v, and a
        resumed run would differ from the uninterrupted one. So the saved float32 moments are put back after.
        """
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved_ids, params, strict=True):
            for key in ("exp_avg", "exp_avg_sq"):
                saved = state_dict["state"].get(pid, {}).get(key)
                if saved is not None and saved.dtype == torch.float32 and p.dtype != torch.float32:
                    self.state[p][key] = saved.to(device=p.device, copy=True)

    @staticmethod
    def _rms(t: Tensor) -> Tensor:
        # A 0-dim tensor, never a Python float: no device sync, and it works on sharded DTensors (FSDP2),
        # where mean() reduces across shards so the RMS is that of the whole parameter, as the formula wants.
        return t.square().mean().sqrt()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = float(group["lr"])
            wd = lr * lr if group["weight_decay"] == "lr^2" else float(group["weight_decay"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("PaLMAdafactor does not support sparse gradients")
                state = self.state[p]
                if not state:
                    # On the CPU, as torch's Adam keeps it: reading it back costs no device sync.
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                state["step"] += 1
                k = float(state["step"])
                beta2 = 1.0 - k ** (-group["decay_rate"])
                g = p.grad.float()
                x = p.float()
                v = state["exp_avg_sq"]
                v.mul_(beta2).add_(g.square().add_(group["eps1"]), alpha=1.0 - beta2)
                u = g / v.sqrt()
                if group["clip_threshold"] is not None:
                    u = u / (self._rms(u) / group["clip_threshold"]).clamp(min=1.0)
                step_size = lr * self._rms(x).clamp(min=group["eps2"]) if group["scale_parameter"] else lr
                m = state["exp_avg"]
                m.mul_(group["beta1"]).add_(u * step_size * (1.0 - group["beta1"]))
                if wd:
                    x = x * (1.0 - wd)
                p.copy_(x - m)
        return loss


def build_optimizer(
    model: nn.Module,
    name: Literal["adamw", "palm"],
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
) -> torch.optim.Optimizer:
    """The optimiser a :class:`~palmbook.train.Trainer` uses.

    ``"palm"``: :class:`PaLMAdafactor` over every parameter with the paper's settings (weight decay lr^2;
    ``weight_decay`` and ``betas`` are ignored). ``"adamw"``: ``torch.optim.AdamW`` (fused on CUDA) with
    ``weight_decay`` on matrices only: decaying LayerNorm scales towards 0 would fight the normalisation
    (the nanoGPT/GPT-3 convention; the tied embedding is a matrix, so it decays).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "palm":
        return PaLMAdafactor(params, lr=lr)
    if name == "adamw":
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = bool(params) and all(p.device.type == "cuda" for p in params)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adamw' or 'palm'")


# ---- schedules
def palm_lr(step: int, peak_lr: float = 1e-2, constant_steps: int = 10_000) -> float:
    """PaLM's schedule (§5 "Optimizer"): 1e-2 for the first 10,000 steps, then decay as 1/sqrt(step).

        lr(step) = peak_lr * sqrt(constant_steps / max(step, constant_steps))

    With the paper's values this is exactly lr = 1 / sqrt(max(step, 10_000)): 1e-2 up to step 10,000,
    5e-3 at step 40,000. ``constant_steps`` shrinks the plateau for small runs; the curve keeps its shape
    (continuous at ``constant_steps``, then ~ 1/sqrt(step)). No warm-up: the paper uses none.
    """
    if constant_steps < 1:
        raise ValueError(f"constant_steps must be >= 1; got {constant_steps}")
    return peak_lr * math.sqrt(constant_steps / max(step, constant_steps))


def cosine_lr(step: int, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float | None = None) -> float:
    """Linear warm-up then cosine decay, the common alternative (not PaLM's schedule).

        step <  warmup_steps:   lr = peak_lr * (step + 1) / warmup_steps
        otherwise:              p  = min(1, (step - warmup_steps) / max(1, total_steps - warmup_steps))
                                lr = min_lr + (peak_lr - min_lr) * (1 + cos(pi * p)) / 2

    ``min_lr`` defaults to peak_lr / 10. The first update already uses a non-zero lr (step + 1).
    """
    if min_lr is None:
        min_lr = 0.1 * peak_lr
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def constant_lr(step: int, peak_lr: float, warmup_steps: int = 0) -> float:
    """A constant lr after an optional linear warm-up (lr = peak_lr * (step + 1) / warmup_steps before it)."""
    return peak_lr * (step + 1) / warmup_steps if step < warmup_steps else peak_lr


@dataclass(frozen=True)
class LRSchedule:
    """A schedule as data (JSON-able, so checkpoints can record it), callable as ``schedule(step) -> lr``.

    kind: ``"palm"`` (:func:`palm_lr`, uses ``constant_steps``), ``"cosine"`` (:func:`cosine_lr`, uses
    ``warmup_steps``, ``total_steps``, ``min_lr``) or ``"constant"`` (:func:`constant_lr`).
    """

    kind: Literal["palm", "cosine", "constant"] = "palm"
    peak_lr: float = 1e-2
    constant_steps: int = 10_000
    warmup_steps: int = 0
    total_steps: int = 1
    min_lr: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("palm", "cosine", "constant"):
            raise ValueError(f"unknown schedule {self.kind!r}; choose 'palm', 'cosine' or 'constant'")
        if not self.peak_lr > 0:
            raise ValueError(f"peak lr must be > 0; got {self.peak_lr!r}")
        if self.warmup_steps < 0 or self.constant_steps < 1 or self.total_steps < 1:
            raise ValueError(
                f"need warmup_steps >= 0, constant_steps >= 1, total_steps >= 1; got {self.warmup_steps}, "
                f"{self.constant_steps}, {self.total_steps}"
            )

    def __call__(self, step: int) -> float:
        if self.kind == "palm":
            return palm_lr(step, self.peak_lr, self.constant_steps)
        if self.kind == "cosine":
            return cosine_lr(step, self.peak_lr, self.warmup_steps, self.total_steps, self.min_lr)
        return constant_lr(step, self.peak_lr, self.warmup_steps)

    def multiplier(self, step: int) -> float:
        """lr(step) / peak_lr: the factor ``LambdaLR`` multiplies the optimiser's base lr by."""
        return self(step) / self.peak_lr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: LRSchedule) -> LambdaLR:
    """A ``LambdaLR`` that sets every group's lr to ``schedule(step)`` (the base lr becomes ``peak_lr``).

    The lambda is a bound method of a frozen dataclass, so ``scheduler.state_dict()`` holds only numbers.
    """
    for group in optimizer.param_groups:
        group["lr"] = schedule.peak_lr
        group["initial_lr"] = schedule.peak_lr
    return LambdaLR(optimizer, schedule.multiplier)


def restart_scheduler(optimizer: torch.optim.Optimizer, schedule: LRSchedule, step: int) -> LambdaLR:
    """A scheduler at ``step`` of ``schedule``, for a resumed run: every group's lr is set now to what an
    uninterrupted run with this schedule has after ``step`` updates (bit-exact: the same ``base * multiplier``).

    The scheduler is a pure function of (schedule, step), so a resume rebuilds it rather than loading its saved
    state: a changed ``--lr``, ``--schedule``, ``--warmup-steps`` or ``--steps`` takes effect from the next step.
    """
    scheduler = build_scheduler(optimizer, schedule)
    scheduler.last_epoch = step
    lrs = [base * schedule.multiplier(step) for base in scheduler.base_lrs]
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports
    return scheduler


def lr_curve(schedule: LRSchedule | Callable[[int], float], steps: int | Iterable[int]) -> tuple[Any, Any]:
    """Arrays (steps, lrs) for plotting a schedule, e.g. ``go.Scatter(x=steps, y=lrs)``.

    ``steps``: a count (0..steps-1) or any iterable of step numbers.
    """
    xs = np.arange(steps) if isinstance(steps, int) else np.asarray(list(steps))
    return xs, np.array([schedule(int(s)) for s in xs], dtype=np.float64)


# The first edition's name, still used by palmbook.scratch.efficiency; build_scheduler is the one name now.
make_scheduler = build_scheduler
