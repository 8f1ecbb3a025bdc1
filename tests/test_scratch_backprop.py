"""Chapter 7's hand-derived gradients equal torch.autograd's and the central finite differences'."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from palmbook import lm_loss
from palmbook.model import multi_query_attention
from palmbook.scratch.backprop import (
    attention_backward,
    attention_forward,
    cross_entropy_backward,
    cross_entropy_forward,
    linear_backward,
    linear_forward,
    numerical_gradient,
)

f64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- finite differences themselves


def test_numerical_gradient_recovers_a_known_derivative() -> None:
    x = torch.randn(3, 4, generator=_gen(0), dtype=f64)
    numeric = numerical_gradient(lambda t: (t**3).sum() + t[0, 1] * t[2, 3], x)
    exact = 3 * x**2
    exact[0, 1] += x[2, 3]
    exact[2, 3] += x[0, 1]
    torch.testing.assert_close(numeric, exact, rtol=1e-8, atol=1e-8)


def test_numerical_gradient_leaves_its_input_unchanged() -> None:
    x = torch.randn(5, generator=_gen(1), dtype=f64)
    before = x.clone()
    numerical_gradient(lambda t: t.exp().sum(), x)
    assert torch.equal(x, before)


# ----------------------------------------------------------------------------- linear layer


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3)])
def test_linear_backward_matches_autograd_and_finite_differences(shape: tuple[int, ...]) -> None:
    g = _gen(2)
    x = torch.randn(*shape, generator=g, dtype=f64, requires_grad=True)
    w = torch.randn(6, shape[-1], generator=g, dtype=f64, requires_grad=True)
    upstream = torch.randn(*shape[:-1], 6, generator=g, dtype=f64)  # a random dL/dy: L = sum(y * upstream)
    y = linear_forward(x, w)
    torch.testing.assert_close(y, F.linear(x, w))
    (y * upstream).sum().backward()
    dx, dw = linear_backward(x.detach(), w.detach(), upstream)
    torch.testing.assert_close(dx, x.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dw, w.grad, rtol=1e-12, atol=1e-12)
    num_dw = numerical_gradient(lambda t: (linear_forward(x.detach(), t) * upstream).sum(), w)
    num_dx = numerical_gradient(lambda t: (linear_forward(t, w.detach()) * upstream).sum(), x)
    torch.testing.assert_close(dw, num_dw, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(dx, num_dx, rtol=1e-6, atol=1e-8)


def test_linear_forward_rejects_mismatched_features() -> None:
    with pytest.raises(ValueError, match="d_out, d_in"):
        linear_forward(torch.zeros(2, 3), torch.zeros(4, 5))


# ----------------------------------------------------------------------------- softmax + cross-entropy (+ z-loss)


@pytest.mark.parametrize("z_loss", [0.0, 1e-4, 0.3])
def test_cross_entropy_forward_is_palmbooks_lm_loss(z_loss: float) -> None:
    g = _gen(3)
    logits = torch.randn(2, 5, 11, generator=g, dtype=f64) * 3
    targets = torch.randint(0, 11, (2, 5), generator=g)
    torch.testing.assert_close(cross_entropy_forward(logits, targets, z_loss), lm_loss(logits, targets, z_loss=z_loss))


@pytest.mark.parametrize("z_loss", [0.0, 1e-4, 0.3])
def test_cross_entropy_backward_matches_autograd_of_lm_loss(z_loss: float) -> None:
    g = _gen(4)
    logits = (torch.randn(3, 4, 9, generator=g, dtype=f64) * 4).requires_grad_()
    targets = torch.randint(0, 9, (3, 4), generator=g)
    lm_loss(logits, targets, z_loss=z_loss).backward()
    torch.testing.assert_close(cross_entropy_backward(logits.detach(), targets, z_loss), logits.grad)


def test_cross_entropy_backward_matches_finite_differences_and_gradcheck() -> None:
    g = _gen(5)
    logits = torch.randn(6, 7, generator=g, dtype=f64)
    targets = torch.randint(0, 7, (6,), generator=g)
    numeric = numerical_gradient(lambda z: cross_entropy_forward(z, targets, 1e-2), logits)
    torch.testing.assert_close(cross_entropy_backward(logits, targets, 1e-2), numeric, rtol=1e-6, atol=1e-9)
    assert torch.autograd.gradcheck(
        lambda z: cross_entropy_forward(z, targets, 1e-2), (logits.clone().requires_grad_(),)
    )


def test_cross_entropy_gradient_rows_sum_to_zero_without_z_loss() -> None:
    # sum_i (p_i - [i = y]) = 1 - 1: pushing every logit up by the same amount changes nothing
    g = _gen(6)
    logits = torch.randn(8, 13, generator=g, dtype=f64)
    targets = torch.randint(0, 13, (8,), generator=g)
    row_sums = cross_entropy_backward(logits, targets).sum(-1)
    torch.testing.assert_close(row_sums, torch.zeros(8, dtype=f64), rtol=0, atol=1e-15)


def test_cross_entropy_rejects_mismatched_targets() -> None:
    with pytest.raises(ValueError, match="targets of shape"):
        cross_entropy_backward(torch.zeros(4, 5), torch.zeros(3, dtype=torch.long))


# ----------------------------------------------------------------------------- attention


def _qkv(seed: int, B: int = 2, H: int = 3, T: int = 5, h: int = 4, kv_heads: int = 1, dtype=f64):
    g = _gen(seed)
    q = torch.randn(B, H, T, h, generator=g, dtype=dtype)
    k = torch.randn(B, kv_heads, T, h, generator=g, dtype=dtype)
    v = torch.randn(B, kv_heads, T, h, generator=g, dtype=dtype)
    return q, k, v


def test_attention_forward_is_the_packages_multi_query_attention() -> None:
    q, k, v = _qkv(7, dtype=torch.float32)
    out, probs = attention_forward(q, k, v)
    B, H, T, h = q.shape
    torch.testing.assert_close(out.transpose(1, 2).reshape(B, T, H * h), multi_query_attention(q, k, v))
    torch.testing.assert_close(probs.sum(-1), torch.ones(B, H, T))
    assert (probs.triu(diagonal=1) == 0).all()  # causal: nothing from the future


@pytest.mark.parametrize("kv_heads", [1, 3])  # multi-query (PaLM) and multi-head
def test_attention_backward_matches_autograd(kv_heads: int) -> None:
    q, k, v = (t.requires_grad_() for t in _qkv(8, kv_heads=kv_heads))
    upstream = torch.randn(q.shape, generator=_gen(9), dtype=f64)
    out, probs = attention_forward(q, k, v)
    (out * upstream).sum().backward()
    dq, dk, dv = attention_backward(q.detach(), k.detach(), v.detach(), probs.detach(), upstream)
    assert dk.shape == k.shape and dv.shape == v.shape
    torch.testing.assert_close(dq, q.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dk, k.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dv, v.grad, rtol=1e-10, atol=1e-12)


def test_attention_backward_matches_autograd_through_the_packages_kernel() -> None:
    q, k, v = (t.float().requires_grad_() for t in _qkv(10, B=2, H=4, T=16, h=8))
    upstream = torch.randn(2, 16, 32, generator=_gen(11))
    (multi_query_attention(q, k, v) * upstream).sum().backward()  # F.scaled_dot_product_attention inside
    _, probs = attention_forward(q.detach(), k.detach(), v.detach())
    d_out = upstream.view(2, 16, 4, 8).transpose(1, 2)  # (B, T, H*h) -> (B, H, T, h)
    dq, dk, dv = attention_backward(q.detach(), k.detach(), v.detach(), probs, d_out)
    for mine, theirs in ((dq, q.grad), (dk, k.grad), (dv, v.grad)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_attention_backward_matches_finite_differences() -> None:
    q, k, v = _qkv(12, B=1, H=2, T=4, h=3)
    upstream = torch.randn(q.shape, generator=_gen(13), dtype=f64)
    _, probs = attention_forward(q, k, v)
    dq, dk, dv = attention_backward(q, k, v, probs, upstream)
    loss = lambda q_, k_, v_: (attention_forward(q_, k_, v_)[0] * upstream).sum()
    torch.testing.assert_close(dq, numerical_gradient(lambda t: loss(t, k, v), q), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(dk, numerical_gradient(lambda t: loss(q, t, v), k), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(dv, numerical_gradient(lambda t: loss(q, k, t), v), rtol=1e-6, atol=1e-8)


def test_attention_gradient_never_flows_from_a_query_to_future_keys() -> None:
    q, k, v = _qkv(14)
    _, probs = attention_forward(q, k, v)
    upstream = torch.zeros(q.shape, dtype=f64)
    upstream[:, :, 1] = 1.0  # only query 1's output matters: it saw keys 0 and 1
    _, dk, dv = attention_backward(q, k, v, probs, upstream)
    assert (dk[:, :, 2:] == 0).all() and (dv[:, :, 2:] == 0).all()
    assert (dk[:, :, :2] != 0).all() and (dv[:, :, :2] != 0).all()


def test_attention_forward_rejects_a_wrong_number_of_key_heads() -> None:
    q, _, _ = _qkv(15, H=4)
    k = torch.zeros(2, 2, 5, 4, dtype=f64)
    with pytest.raises(ValueError, match="H or 1"):
        attention_forward(q, k, k)
