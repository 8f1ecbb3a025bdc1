"""PaLM's optimiser and the learning-rate schedules, checked against the formulas of §5 computed by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from palmbook.optim import (
    LRSchedule,
    PaLMAdafactor,
    build_optimizer,
    build_scheduler,
    cosine_lr,
    lr_curve,
    palm_lr,
)


def _hand_step(x, g, v, m, k, lr, beta1=0.9, eps1=1e-30, eps2=1e-3, d=1.0):
    """One update of PaLM's optimiser on plain Python lists, straight from the module docstring's formulas."""
    beta2 = 1.0 - k**-0.8
    v = [beta2 * vi + (1 - beta2) * (gi * gi + eps1) for vi, gi in zip(v, g, strict=True)]
    u = [gi / math.sqrt(vi) for gi, vi in zip(g, v, strict=True)]
    rms_u = math.sqrt(sum(ui * ui for ui in u) / len(u))
    u = [ui / max(1.0, rms_u / d) for ui in u]
    scale = lr * max(eps2, math.sqrt(sum(xi * xi for xi in x) / len(x)))
    m = [beta1 * mi + (1 - beta1) * scale * ui for mi, ui in zip(m, u, strict=True)]
    x = [(1 - lr * lr) * xi - mi for xi, mi in zip(x, m, strict=True)]
    return x, v, m, rms_u


def test_palm_adafactor_two_steps_equal_the_hand_computation():
    x0 = [0.5, -1.0, 2.0, 0.0]
    grads = [[0.1, -0.2, 0.3, 0.0], [-1.0, 0.05, 2.0, 0.4]]  # step 2's grads jump: update clipping kicks in
    lrs = [0.1, 0.05]  # a different lr per step exercises the lr^2 weight decay
    p = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64).reshape(2, 2))
    opt = PaLMAdafactor([p], lr=lrs[0])
    x, v, m = x0, [0.0] * 4, [0.0] * 4
    rms_seen = []
    for k, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = torch.tensor(g, dtype=torch.float64).reshape(2, 2)
        opt.step()
        x, v, m, rms_u = _hand_step(x, g, v, m, k, lr)
        rms_seen.append(rms_u)
        torch.testing.assert_close(
            p.detach().reshape(-1).double(), torch.tensor(x, dtype=torch.float64), rtol=1e-6, atol=1e-7
        )
        torch.testing.assert_close(
            opt.state[p]["exp_avg_sq"].reshape(-1).double(), torch.tensor(v, dtype=torch.float64), rtol=1e-6, atol=1e-12
        )
    assert rms_seen[1] > 1.0, "the second step must exercise update clipping"
    assert opt.state[p]["step"].item() == 2


def test_first_step_has_beta2_zero_so_v_is_g_squared():
    p = torch.nn.Parameter(torch.ones(3))
    opt = PaLMAdafactor([p], lr=0.0)
    p.grad = torch.tensor([0.5, -2.0, 3.0])
    opt.step()
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], p.grad.square())
    torch.testing.assert_close(p.detach(), torch.ones(3))  # lr 0: no move and no decay


def test_parameter_scaling_makes_the_step_proportional_to_the_parameter_rms():
    grads = torch.tensor([0.3, -0.1, 0.2, 0.5])
    moves = []
    for scale in (1.0, 10.0):
        p = torch.nn.Parameter(scale * torch.tensor([1.0, -1.0, 1.0, -1.0]))
        before = p.detach().clone()
        opt = PaLMAdafactor([p], lr=1e-2, weight_decay=0.0)
        p.grad = grads.clone()
        opt.step()
        moves.append((p.detach() - before).abs())
    torch.testing.assert_close(moves[1], 10 * moves[0])


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3, bias=False)
    b = torch.nn.Linear(4, 3, bias=False)
    b.load_state_dict(a.state_dict())
    opt_a = PaLMAdafactor(a.parameters(), lr=1e-2)
    for _ in range(2):
        a.weight.grad = torch.randn(3, 4)
        opt_a.step()
    b.load_state_dict(a.state_dict())
    opt_b = PaLMAdafactor(b.parameters(), lr=0.5)  # lr, like every hyper-parameter, comes from the state dict
    # a deep copy, as a checkpoint is: torch's load_state_dict shares tensors with the dict it is given
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    g = torch.randn(3, 4)
    a.weight.grad, b.weight.grad = g.clone(), g.clone()
    opt_a.step()
    opt_b.step()
    assert torch.equal(a.weight, b.weight)
    assert opt_b.param_groups[0]["lr"] == 1e-2


def test_moments_stay_float32_for_bf16_parameters_after_loading():
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    opt = PaLMAdafactor([p])
    p.grad = torch.full((4,), 0.1234567, dtype=torch.bfloat16)
    opt.step()
    saved = opt.state_dict()
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = PaLMAdafactor([q])
    opt2.load_state_dict(saved)
    assert opt2.state[q]["exp_avg"].dtype == torch.float32
    assert torch.equal(opt2.state[q]["exp_avg"], opt.state[p]["exp_avg"])


def test_bad_hyper_parameters_raise_one_clear_error():
    p = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match="beta1"):
        PaLMAdafactor(p, beta1=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        PaLMAdafactor(p, weight_decay="lr")
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(torch.nn.Linear(2, 2), "sgd", lr=0.1)


def test_adamw_decays_matrices_but_not_norm_scales():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False), torch.nn.LayerNorm(3, bias=False))
    opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1)
    decays = {tuple(p.shape): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {(3, 3): 0.1, (3,): 0.0}


# --------------------------------------------------------------------------------------------- schedules
def test_palm_schedule_is_one_over_sqrt_of_max_step_and_10k():
    for step in (0, 1, 5_000, 10_000):
        assert palm_lr(step) == pytest.approx(1e-2)
    assert palm_lr(40_000) == pytest.approx(5e-3)
    assert palm_lr(250_000) == pytest.approx(1 / math.sqrt(250_000))
    # a shorter plateau for small runs keeps the shape: 4x the plateau length halves the lr
    assert palm_lr(100, 3e-3, constant_steps=100) == pytest.approx(3e-3)
    assert palm_lr(400, 3e-3, constant_steps=100) == pytest.approx(1.5e-3)


def test_cosine_schedule_warms_up_linearly_then_decays_to_min_lr():
    peak, warm, total = 1e-3, 10, 110
    assert cosine_lr(0, peak, warm, total) == pytest.approx(1e-4)
    assert cosine_lr(4, peak, warm, total) == pytest.approx(5e-4)
    assert cosine_lr(10, peak, warm, total) == pytest.approx(peak)
    assert cosine_lr(60, peak, warm, total) == pytest.approx((peak + 1e-4) / 2)  # halfway: the mean of the ends
    assert cosine_lr(110, peak, warm, total) == pytest.approx(1e-4)
    assert cosine_lr(500, peak, warm, total, min_lr=0.0) == 0.0


def test_lambdalr_follows_the_plain_function():
    schedule = LRSchedule("palm", peak_lr=1e-2, constant_steps=3)
    p = torch.nn.Parameter(torch.ones(2))
    opt = PaLMAdafactor([p], lr=123.0)
    sched = build_scheduler(opt, schedule)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(2)
        opt.step()
        sched.step()
    assert seen == pytest.approx([schedule(s) for s in range(8)])
    assert seen[7] == pytest.approx(1e-2 * math.sqrt(3 / 7))


def test_lr_curve_returns_plottable_arrays():
    steps, lrs = lr_curve(LRSchedule("cosine", peak_lr=1.0, warmup_steps=2, total_steps=10), 12)
    assert list(steps) == list(range(12))
    assert lrs.shape == (12,) and lrs.max() == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="cosine"):
        LRSchedule("linear")
