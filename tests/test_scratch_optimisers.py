"""Specifications of chapter 8's from-scratch optimisers: each update rule equals its library counterpart step for
step (torch.optim.SGD, RMSprop, Adam, AdamW, palmbook.PaLMAdafactor), clipping equals torch's, and the properties
the chapter's prose relies on hold."""

import functools

import pytest
import torch

from palmbook import PaLM, PaLMAdafactor, PaLMConfig, lm_loss
from palmbook.scratch import optimisers as O


def _run_both(rule, make_torch, steps=6, shape=(4, 3)):
    """Apply ``rule`` and a torch optimiser to the same start and the same random gradients; compare each step."""
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=torch.float64))
    opt = make_torch([p])
    x, state = p.detach().clone(), {}
    for _ in range(steps):
        g = torch.randn(shape, generator=gen, dtype=torch.float64)
        p.grad = g.clone()
        opt.step()
        x, state = rule(x, g, state, opt.param_groups[0]["lr"])
        torch.testing.assert_close(x, p.detach())
    return x, state


def test_sgd_equals_torch_sgd():
    _run_both(O.sgd_step, lambda ps: torch.optim.SGD(ps, lr=0.1))


def test_momentum_equals_torch_sgd_with_momentum():
    _run_both(functools.partial(O.momentum_step, beta=0.9), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9))


def test_rmsprop_equals_torch_rmsprop():
    _run_both(O.rmsprop_step, lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.99, eps=1e-8))


def test_adam_equals_torch_adam_with_and_without_l2_decay():
    _run_both(O.adam_step, lambda ps: torch.optim.Adam(ps, lr=0.01))
    _run_both(
        functools.partial(O.adam_step, betas=(0.9, 0.95), weight_decay=0.1),
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1),
    )


def test_adamw_equals_torch_adamw():
    _run_both(
        functools.partial(O.adamw_step, betas=(0.9, 0.95), weight_decay=0.1),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1),
    )


def test_palm_step_equals_palmbook_palm_adafactor_including_update_clipping():
    # a huge gradient at the last step makes RMS(u) > 1, so the update clipping acts and is compared too
    gen = torch.Generator().manual_seed(1)
    p = torch.nn.Parameter(torch.randn(5, 4, generator=gen))
    opt = PaLMAdafactor([p], lr=0.05)
    x, state = p.detach().clone(), {}
    for k in range(8):
        g = torch.randn(5, 4, generator=gen) * (100.0 if k == 7 else 1.0)
        p.grad = g.clone()
        opt.step()
        x, state = O.palm_step(x, g, state, 0.05)
        torch.testing.assert_close(x, p.detach())
    assert O.rms(g / state["v"].sqrt()) > 1.0  # the clip did act on the last step


def test_palm_step_equals_the_package_optimiser_on_every_tensor_of_a_model():
    # chapter 9's trainer steps palmbook.PaLMAdafactor on a whole PaLM; chapter 8's rule, tensor by tensor, agrees
    torch.manual_seed(0)
    model = PaLM(PaLMConfig.preset("palm-tiny", max_seq_len=16))
    opt = PaLMAdafactor(model.parameters(), lr=1e-2)
    ours = {n: (p.detach().clone(), {}) for n, p in model.named_parameters()}
    idx = torch.randint(0, 1024, (4, 17), generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        lm_loss(model(idx[:, :-1]), idx[:, 1:]).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        opt.step()
        opt.zero_grad()
        ours = {n: O.palm_step(x, grads[n], state, lr=1e-2) for n, (x, state) in ours.items()}
        for n, p in model.named_parameters():
            torch.testing.assert_close(ours[n][0], p.detach(), msg=n)


def test_rmsprop_first_step_is_ten_learning_rates_and_adam_first_step_is_one():
    x, g = torch.zeros(3, dtype=torch.float64), torch.tensor([1e-3, -2.0, 50.0], dtype=torch.float64)
    after_rmsprop, _ = O.rmsprop_step(x, g, {}, lr=0.01)
    after_adam, _ = O.adam_step(x, g, {}, lr=0.01)
    torch.testing.assert_close(after_rmsprop, -0.1 * g.sign(), rtol=1e-4, atol=0)  # lr / sqrt(1 - 0.99)
    torch.testing.assert_close(after_adam, -0.01 * g.sign(), rtol=1e-4, atol=0)  # bias correction: exactly lr


def test_adamw_decay_is_independent_of_the_gradient_but_adam_l2_decay_is_not():
    # A weight with no gradient: AdamW shrinks it by (1 - lr wd) per step; Adam's L2 gradient wd*x is normalised
    # by sqrt(v) to about 1, so the weight moves about lr per step, and wd (100 times apart here) hardly matters.
    x, zero = torch.tensor([2.0], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    after_l2 = []
    for wd in (0.1, 1e-3):
        xw, xl, sw, sl = x, x, {}, {}
        for _ in range(10):
            xw, sw = O.adamw_step(xw, zero, sw, lr=0.05, weight_decay=wd)
            xl, sl = O.adam_step(xl, zero, sl, lr=0.05, weight_decay=wd)
        torch.testing.assert_close(xw, x * (1 - 0.05 * wd) ** 10)
        after_l2.append(xl)
    torch.testing.assert_close(after_l2[0], after_l2[1], rtol=1e-4, atol=0)
    assert 1.4 < float(after_l2[0]) < 1.6  # 10 steps of about lr = 0.05 each


def test_palm_first_step_is_a_tenth_of_lr_times_rms_of_x_against_the_sign_of_g():
    x = torch.tensor([[3.0, -4.0], [0.0, 5.0]], dtype=torch.float64)
    g = torch.tensor([[0.5, -2.0], [1e-3, -7.0]], dtype=torch.float64)
    new, _ = O.palm_step(x, g, {}, lr=0.01)
    torch.testing.assert_close(new, (1 - 1e-4) * x - 0.1 * 0.01 * O.rms(x) * g.sign())


def test_beta2_starts_at_zero_and_remembers_about_k_to_the_0_8_steps():
    assert O.beta2_schedule(1) == 0.0
    assert 1 / (1 - O.beta2_schedule(10_000)) == pytest.approx(10_000**0.8)


def test_global_clipping_equals_torch_and_keeps_the_direction():
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(6, 5)), torch.nn.Parameter(torch.zeros(7))]
    grads = [torch.randn(6, 5, generator=gen) * 3, torch.randn(7, generator=gen) * 0.1]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    clipped, norm = O.clip_global_norm(grads, 1.0)
    torch.testing.assert_close(norm, torch.nn.utils.clip_grad_norm_(params, 1.0))
    for c, p in zip(clipped, params, strict=True):
        torch.testing.assert_close(c, p.grad)
    flat = lambda ts: torch.cat([t.flatten() for t in ts])
    assert torch.cosine_similarity(flat(grads), flat(clipped), dim=0) == pytest.approx(1.0, abs=1e-6)
    per_tensor = O.clip_per_tensor(grads, 1.0)
    assert torch.cosine_similarity(flat(grads), flat(per_tensor), dim=0) < 0.999  # the update turned
    assert per_tensor[1] is not grads[1] and torch.equal(per_tensor[1], grads[1])  # the small tensor kept its size


def test_trajectory_gives_every_rule_the_same_noise_and_starts_at_start():
    a = O.trajectory(O.sgd_step, (1.0, 1.0), 0.0, 5, noise=1.0)  # lr 0: never moves
    assert a.shape == (6, 2) and torch.equal(a, torch.ones(6, 2, dtype=torch.float64))
    s1 = O.trajectory(O.sgd_step, (1.0, 1.0), 0.1, 5, noise=1.0, seed=3)
    s2 = O.trajectory(O.momentum_step, (1.0, 1.0), 0.1, 5, noise=1.0, seed=3)
    torch.testing.assert_close(s1[1], s2[1])  # step 1 of momentum is step 1 of SGD: the same noise was drawn


def test_sgd_on_the_valley_diverges_above_two_over_the_steep_curvature():
    ok = O.trajectory(O.sgd_step, (1.0, 1.0), 0.19, 50)
    bad = O.trajectory(O.sgd_step, (1.0, 1.0), 0.21, 50)
    assert O.valley(ok[-1]) < O.valley(ok[0]) < O.valley(bad[-1])
