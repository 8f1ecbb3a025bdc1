"""Chapter 4's from-scratch feed-forward code agrees with PyTorch and with the package's ParallelBlock."""

import pytest
import torch
import torch.nn.functional as F

from palmbook import PaLM, PaLMConfig
from palmbook.scratch.feed_forward import (
    SerialBlock,
    UnfusedParallelBlock,
    d_gelu,
    d_relu,
    d_swish,
    ffn_costs,
    gelu,
    relu,
    swiglu_ffn,
    swiglu_weights,
    swish,
)

X = torch.linspace(-6, 6, 241, dtype=torch.float64)


def test_activations_equal_torch_builtins():
    torch.testing.assert_close(relu(X), F.relu(X))
    torch.testing.assert_close(gelu(X), F.gelu(X))
    torch.testing.assert_close(swish(X), F.silu(X))


def test_swish_limits_are_a_half_line_and_relu():
    torch.testing.assert_close(swish(X, beta=1e-9), X / 2)
    torch.testing.assert_close(swish(X, beta=1e4), F.relu(X))


@pytest.mark.parametrize(("f", "df"), [(relu, d_relu), (gelu, d_gelu), (swish, d_swish)])
def test_hand_written_derivatives_equal_autograd(f, df):
    x = X[X.abs() > 1e-6].clone().requires_grad_(True)  # ReLU has no derivative at 0
    (grad,) = torch.autograd.grad(f(x).sum(), x)
    torch.testing.assert_close(df(x.detach()), grad)


def test_swish_derivative_with_beta_equals_autograd():
    x = X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(swish(x, beta=2.5).sum(), x)
    torch.testing.assert_close(d_swish(X, beta=2.5), grad)


def test_worked_example_gate_zero_blocks_the_value():
    """Chapter 4's worked example: x W = (2, 0, -1), x V = (1, 3, 2); the middle value 3 is gated to 0."""
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    w = torch.tensor([[2.0, -2.0, 1.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    v = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    w2 = torch.tensor([[1.0, 0.0], [2.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    s = torch.sigmoid(torch.tensor([2.0, -1.0], dtype=torch.float64))
    h = torch.stack([2 * s[0] * 1, torch.tensor(0.0, dtype=torch.float64), -1 * s[1] * 2])
    expected = torch.stack([h[0] + 2 * h[1] + h[2], h[1] - h[2]])
    torch.testing.assert_close(swiglu_ffn(x, w, v, w2), expected)


def test_swiglu_ffn_equals_the_ffn_branch_of_the_package_block():
    torch.manual_seed(0)
    cfg = PaLMConfig.preset("palm-tiny")
    block = PaLM(cfg).blocks[0]
    x = torch.randn(2, 9, cfg.d_model)
    cos, sin = torch.ones(9, cfg.head_dim), torch.zeros(9, cfg.head_dim)
    with torch.no_grad():
        block.attn_out.weight.zero_()  # switch attention off: the block's update is then the FFN branch alone
        ffn_branch = block(x, cos, sin) - x
        ours = swiglu_ffn(block.norm(x), *swiglu_weights(block))
    torch.testing.assert_close(ours, ffn_branch, rtol=1e-5, atol=1e-5)


def test_swiglu_weights_are_views_of_the_fused_projection():
    cfg = PaLMConfig.preset("palm-tiny")
    block = PaLM(cfg).blocks[0]
    w, v, w2 = swiglu_weights(block)
    assert w.shape == v.shape == (cfg.d_model, cfg.d_ff) and w2.shape == (cfg.d_ff, cfg.d_model)
    assert w.data_ptr() != v.data_ptr()
    with torch.no_grad():
        block.in_proj.weight[cfg.qkv_dim].fill_(7.0)  # first gate row of the fused matrix
    assert torch.all(w[:, 0] == 7.0) and not torch.any(v == 7.0)


def test_ffn_costs_match_palm_540b_parameter_share():
    cfg = PaLMConfig.preset("palm-540b")
    gated = ffn_costs(cfg.d_model, cfg.d_ff, gated=True)
    assert gated["params"] == 12 * cfg.d_model**2
    assert ffn_costs(cfg.d_model, cfg.d_ff, gated=False)["params"] == 8 * cfg.d_model**2
    # A two-matrix MLP with d_ff = 6d costs exactly what SwiGLU with 4d costs.
    assert ffn_costs(cfg.d_model, 6 * cfg.d_model, gated=False) == gated
    per_layer = cfg.d_model * cfg.fused_dim + cfg.n_heads * cfg.head_dim * cfg.d_model + cfg.d_ff * cfg.d_model
    assert cfg.num_parameters(include_norms=False) == cfg.vocab_size * cfg.d_model + cfg.n_layers * per_layer
    assert 0.85 < cfg.n_layers * gated["params"] / cfg.num_parameters(include_norms=False) < 0.95


def _block_inputs(cfg, T=12):
    torch.manual_seed(1)
    model = PaLM(cfg)
    return model.blocks[0], torch.randn(2, T, cfg.d_model), model.rope_cos[:T], model.rope_sin[:T]


def test_unfused_parallel_block_with_copied_weights_equals_the_package_block():
    cfg = PaLMConfig.preset("palm-tiny")
    block, x, cos, sin = _block_inputs(cfg)
    unfused = UnfusedParallelBlock.from_parallel(block)
    with torch.no_grad():
        torch.testing.assert_close(unfused(x, cos, sin), block(x, cos, sin), rtol=1e-5, atol=1e-5)


def test_serial_block_differs_from_parallel_only_through_attention_feeding_the_mlp():
    cfg = PaLMConfig.preset("palm-tiny")
    block, x, cos, sin = _block_inputs(cfg)
    serial = SerialBlock.from_parallel(block)
    with torch.no_grad():
        assert not torch.allclose(serial(x, cos, sin), block(x, cos, sin), atol=1e-3)
        block.attn_out.weight.zero_()
        serial.attn_out.weight.zero_()  # no attention output: the MLP of both sees LN(x)
        torch.testing.assert_close(serial(x, cos, sin), block(x, cos, sin), rtol=1e-5, atol=1e-5)


def test_serial_block_is_attention_then_mlp_on_the_updated_stream():
    cfg = PaLMConfig.preset("palm-tiny")
    _, x, cos, sin = _block_inputs(cfg)
    torch.manual_seed(2)
    serial = SerialBlock(cfg)
    with torch.no_grad():
        y = x + serial.attention(serial.norm1(x), cos, sin)
        w, v = serial.ffn_in.weight[: cfg.d_ff].T, serial.ffn_in.weight[cfg.d_ff :].T
        expected = y + swiglu_ffn(serial.norm2(y), w, v, serial.ffn_out.weight.T)
        torch.testing.assert_close(serial(x, cos, sin), expected, rtol=1e-5, atol=1e-5)


def test_serial_block_is_causal():
    cfg = PaLMConfig.preset("palm-tiny")
    _, x, cos, sin = _block_inputs(cfg)
    serial = SerialBlock(cfg)
    changed = x.clone()
    changed[:, 7:] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(serial(changed, cos, sin)[:, :7], serial(x, cos, sin)[:, :7])


def test_swiglu_ffn_rejects_mismatched_shapes_with_a_clear_error():
    with pytest.raises(ValueError, match=r"W and V \(d, d_ff\)"):
        swiglu_ffn(torch.randn(3), torch.randn(3, 5), torch.randn(3, 4), torch.randn(5, 3))
