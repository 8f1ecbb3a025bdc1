import math

import pytest
import torch
import torch.nn.functional as F

from palmbook import fused_lm_loss, lm_loss, perplexity


def test_cross_entropy_part_equals_torch_cross_entropy():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    parts = lm_loss(logits, targets, z_loss=0.0, return_parts=True)
    torch.testing.assert_close(parts.ce, F.cross_entropy(logits.view(-1, 11), targets.view(-1)))
    torch.testing.assert_close(parts.loss, parts.ce)


def test_z_loss_adds_coefficient_times_mean_squared_log_normaliser():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 4, 7) * 3, torch.randint(0, 7, (3, 4))
    parts = lm_loss(logits, targets, z_loss=1e-4, return_parts=True)
    log_z = torch.logsumexp(logits, -1)
    torch.testing.assert_close(parts.z_loss, 1e-4 * log_z.square().mean())
    torch.testing.assert_close(parts.log_z, log_z.mean())
    torch.testing.assert_close(parts.loss, parts.ce + parts.z_loss)


def test_worked_example_softmax_of_one_zero_zero():
    """PALM_FACTS: softmax(1, 0, 0) = (0.576, 0.212, 0.212); the loss of the first class is -ln 0.576."""
    logits = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.allclose(logits.softmax(-1), torch.tensor([[0.5761, 0.2119, 0.2119]]), atol=1e-4)
    loss = lm_loss(logits, torch.tensor([0]), z_loss=0.0)
    assert math.isclose(loss.item(), -math.log(math.e / (math.e + 2)), rel_tol=1e-6)


def test_ignored_positions_do_not_count():
    torch.manual_seed(0)
    logits, targets = torch.randn(1, 6, 9), torch.randint(0, 9, (1, 6))
    masked = targets.clone()
    masked[0, 3:] = -100
    full = lm_loss(logits[:, :3], targets[:, :3])
    torch.testing.assert_close(lm_loss(logits, masked), full)


def test_z_loss_gradient_pulls_log_z_towards_zero():
    logits = torch.full((1, 1, 5), 4.0, requires_grad=True)  # log Z = 4 + ln 5 > 0
    lm_loss(logits, torch.tensor([[0]]), z_loss=1.0).backward()
    no_z = torch.full((1, 1, 5), 4.0, requires_grad=True)
    lm_loss(no_z, torch.tensor([[0]]), z_loss=0.0).backward()
    assert logits.grad.sum() > 0 and abs(no_z.grad.sum().item()) < 1e-6  # z-loss pushes all logits down


def test_loss_is_computed_in_float32_under_bf16():
    logits = torch.randn(2, 3, 50).bfloat16()
    assert lm_loss(logits, torch.randint(0, 50, (2, 3))).dtype == torch.float32


def test_mismatched_shapes_and_float_targets_raise_clear_errors():
    with pytest.raises(ValueError, match="targets of shape"):
        lm_loss(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        lm_loss(torch.randn(2, 3, 5), torch.zeros(2, 3))


def test_perplexity_of_log_v_is_v():
    assert math.isclose(perplexity(math.log(4096)), 4096, rel_tol=1e-9)


# ----------------------------------------------------------------------------------- fused output layer + loss
def _fused_case(seed: int = 0, n: int = 37, d: int = 16, v: int = 53):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, v, (n,), generator=g)
    t[::5] = -100  # ignored positions
    return h, w, t


@pytest.mark.parametrize("chunk_rows", [1, 8, 37, 100])
def test_fused_lm_loss_equals_lm_loss_of_the_logits_values_and_gradients(chunk_rows):
    h, w, t = _fused_case()
    scale = 16**-0.5
    ref = lm_loss(F.linear(h * scale, w), t, z_loss=1e-2, return_parts=True)
    ref.loss.backward()
    ref_gh, ref_gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    out = fused_lm_loss(h, w, t, scale=scale, z_loss=1e-2, chunk_rows=chunk_rows)
    out.loss.backward()
    for got, want in zip(out, ref, strict=True):
        torch.testing.assert_close(got.detach(), want.detach())
    torch.testing.assert_close(h.grad, ref_gh)
    torch.testing.assert_close(w.grad, ref_gw)
    assert not out.ce.requires_grad and not out.log_z.requires_grad  # statistics, like return_parts=True


def test_fused_lm_loss_gradient_scales_with_the_incoming_gradient():
    h, w, t = _fused_case(1)
    fused_lm_loss(h, w, t, chunk_rows=8).loss.backward()
    g1 = h.grad.clone()
    h.grad = None
    (3.0 * fused_lm_loss(h, w, t, chunk_rows=8).loss).backward()  # e.g. a loss scaler or a micro-batch weight
    torch.testing.assert_close(h.grad, 3.0 * g1)


def test_fused_lm_loss_without_gradients_builds_no_graph():
    h, w, t = _fused_case(2)
    with torch.no_grad():
        out = fused_lm_loss(h, w, t)
    assert not out.loss.requires_grad
    torch.testing.assert_close(out.ce, lm_loss(F.linear(h, w), t, return_parts=True).ce.detach())


def test_fused_lm_loss_under_bf16_autocast_stays_close_to_the_unfused_loss():
    h, w, t = (x.float().detach() if x.is_floating_point() else x for x in _fused_case(3, n=64, d=32, v=97))
    h.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = lm_loss(F.linear(h, w), t, return_parts=True)
        out = fused_lm_loss(h, w, t, chunk_rows=16)
    torch.testing.assert_close(out.ce, ref.ce.detach(), atol=2e-2, rtol=0)
    out.loss.backward()
    assert h.grad.dtype == torch.float32 and torch.isfinite(h.grad).all()


def test_fused_lm_loss_rejects_mismatched_shapes_with_a_clear_error():
    h, w, t = _fused_case()
    with pytest.raises(ValueError, match="hidden must be"):
        fused_lm_loss(h, w[:, :3], t)
    with pytest.raises(TypeError, match=r"targets\.long\(\)"):
        fused_lm_loss(h, w, t.float())
