"""Specifications of chapter 3's from-scratch attention, and its agreement with the package."""

import math

import pytest
import torch
import torch.nn.functional as F

from palmbook import PaLM, PaLMConfig
from palmbook.model import apply_rope, multi_query_attention, rope_tables
from palmbook.scratch import attention as S


def test_softmax_matches_torch_and_each_row_sums_to_one():
    torch.manual_seed(0)
    scores = torch.randn(4, 7) * 5
    p = S.softmax(scores)
    torch.testing.assert_close(p, torch.softmax(scores, -1))
    torch.testing.assert_close(p.sum(-1), torch.ones(4))


def test_softmax_of_one_zero_zero_is_e_over_e_plus_two():
    p = S.softmax(torch.tensor([1.0, 0.0, 0.0]))
    e = math.e
    torch.testing.assert_close(p, torch.tensor([e / (e + 2), 1 / (e + 2), 1 / (e + 2)]))
    assert torch.all(p > 0)  # never (0.5, 0.5, 0): a score of 0 still gets weight


def test_softmax_ignores_a_constant_shift_and_does_not_overflow():
    s = torch.tensor([1000.0, 999.0, 998.0])
    p = S.softmax(s)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p, S.softmax(s - 1000))


def test_temperature_sharpens_towards_argmax_and_flattens_towards_uniform():
    s = torch.tensor([2.0, 1.0, 0.5, 0.0])
    cold, warm, hot = S.softmax(s, temperature=0.05), S.softmax(s, temperature=1.0), S.softmax(s, temperature=100.0)
    assert cold[0] > 0.999
    assert cold[0] > warm[0] > hot[0]
    torch.testing.assert_close(hot, torch.full((4,), 0.25), atol=0.01, rtol=0)
    torch.testing.assert_close(S.softmax(s, temperature=2.0), torch.softmax(s / 2.0, -1))


def test_non_positive_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        S.softmax(torch.zeros(3), temperature=0)


def test_causal_mask_lets_each_query_see_itself_and_the_past_only():
    m = S.causal_mask(4)
    for i in range(4):
        for j in range(4):
            assert bool(m[i, j]) == (j <= i)
    # With a cached prefix, the 2 new queries sit at positions 3 and 4 of 5.
    m = S.causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    with pytest.raises(ValueError, match="S >= T"):
        S.causal_mask(5, 2)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_torch_scaled_dot_product_attention(causal):
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)
    out, w = S.attention(q, k, v, S.causal_mask(6) if causal else None)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 6))
    if causal:
        assert torch.all(w.triu(1) == 0)


def test_causal_attention_output_ignores_future_keys_and_values():
    torch.manual_seed(2)
    q, k, v = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4)
    out, _ = S.attention(q, k, v, S.causal_mask(5))
    k2, v2 = k.clone(), v.clone()
    k2[3:], v2[3:] = torch.randn(2, 4), torch.randn(2, 4)
    out2, _ = S.attention(q, k2, v2, S.causal_mask(5))
    torch.testing.assert_close(out2[:3], out[:3])
    assert not torch.allclose(out2[3:], out[3:])


def test_attention_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="same size d_k"):
        S.attention(torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="every key needs a value"):
        S.attention(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 4))


def test_rotate_equals_the_package_rope():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 10, 16)
    cos, sin = rope_tables(10, 16, 10_000.0)
    torch.testing.assert_close(S.rotate(x, torch.arange(10)), apply_rope(x, cos, sin))
    cos, sin = rope_tables(30, 16, 500.0)
    torch.testing.assert_close(S.rotate(x, torch.arange(20, 30), 500.0), apply_rope(x, cos[20:], sin[20:]))


def test_rotate_preserves_length_and_leaves_position_zero_unchanged():
    torch.manual_seed(4)
    x = torch.randn(6, 8)
    r = S.rotate(x, torch.arange(6))
    torch.testing.assert_close(r.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(r[0], x[0])
    assert not torch.allclose(r[1:], x[1:])


def test_rotated_dot_product_depends_only_on_relative_position():
    torch.manual_seed(5)
    q, k = torch.randn(1, 32), torch.randn(1, 32)

    def score(m: int, n: int) -> float:
        return float(S.rotate(q, torch.tensor([m]))[0] @ S.rotate(k, torch.tensor([n]))[0])

    for offset in (0, 1, 5, 40):
        scores = [score(n + offset, n) for n in (0, 3, 17, 100)]
        assert max(scores) - min(scores) < 1e-3, (offset, scores)
    assert abs(score(5, 0) - score(1, 0)) > 1e-2


def test_rope_needs_an_even_head_size_and_one_position_per_row():
    with pytest.raises(ValueError, match="must be even"):
        S.rope_frequencies(7)
    with pytest.raises(ValueError, match="one position per row"):
        S.rotate(torch.zeros(4, 8), torch.arange(3))


def test_split_and_merge_heads_are_inverses_and_refuse_a_non_divisor():
    x = torch.randn(2, 5, 12)
    assert S.split_heads(x, 3).shape == (2, 3, 5, 4)
    torch.testing.assert_close(S.merge_heads(S.split_heads(x, 3)), x)
    with pytest.raises(ValueError, match="n_heads=5"):
        S.split_heads(x, 5)


def _random_weights(d: int, H: int, h: int, kv_heads: int) -> list[torch.Tensor]:
    return [torch.randn(d, H * h) / d**0.5, torch.randn(d, kv_heads * h) / d**0.5,
            torch.randn(d, kv_heads * h) / d**0.5, torch.randn(H * h, d) / (H * h) ** 0.5]  # fmt: skip


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_equals_torch_multihead_attention(causal):
    torch.manual_seed(6)
    d, H, T = 16, 4, 9
    w_q, w_k, w_v, w_o = _random_weights(d, H, d // H, H)
    mha = torch.nn.MultiheadAttention(d, H, bias=False, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([w_q.T, w_k.T, w_v.T]))
        mha.out_proj.weight.copy_(w_o.T)
    x = torch.randn(2, T, d)
    mask = ~S.causal_mask(T) if causal else None  # torch's boolean mask means "may NOT attend"
    expected, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
    got = S.multi_head_attention(x, w_q, w_k, w_v, w_o, H, causal=causal)
    torch.testing.assert_close(got, expected)


def test_multi_query_attention_is_multi_head_attention_with_one_shared_key_value_head():
    torch.manual_seed(7)
    d, H, h, T = 16, 4, 8, 6
    w_q, w_k, w_v, w_o = _random_weights(d, H, h, 1)
    x = torch.randn(2, T, d)
    mqa = S.multi_query_attention(x, w_q, w_k, w_v, w_o, H, rope_base=10_000.0)
    mha = S.multi_head_attention(x, w_q, w_k.repeat(1, H), w_v.repeat(1, H), w_o, H, rope_base=10_000.0)
    torch.testing.assert_close(mqa, mha)
    with pytest.raises(ValueError, match="one key and one value head"):
        S.multi_query_attention(x, w_q, w_k.repeat(1, 2), w_v, w_o, H)


def test_scratch_single_head_attention_equals_package_multi_query_attention():
    torch.manual_seed(8)
    B, H, T, h = 2, 3, 7, 8
    q, k, v = torch.randn(B, H, T, h), torch.randn(B, 1, T, h), torch.randn(B, 1, T, h)
    out, _ = S.attention(q, k, v, S.causal_mask(T))
    torch.testing.assert_close(S.merge_heads(out), multi_query_attention(q, k, v))
    # A chunk of 3 new queries after 4 cached positions.
    out, _ = S.attention(q[:, :, 4:], k, v, S.causal_mask(3, T))
    torch.testing.assert_close(S.merge_heads(out), multi_query_attention(q[:, :, 4:], k, v, pos=4))


def test_block_attention_branch_equals_the_parallel_block_minus_its_mlp_branch():
    torch.manual_seed(9)
    cfg = PaLMConfig.preset("palm-tiny")
    model = PaLM(cfg).eval()
    block, T = model.blocks[1], 11
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)  # a non-trivial LayerNorm scale
        x = torch.randn(2, T, cfg.d_model)
        cos, sin = model.rope_cos[:T], model.rope_sin[:T]
        q, k, v, gate, up = block.project(x, cos, sin)
        package_branch = block.attn_out(multi_query_attention(q, k, v))
        mlp_branch = block.ffn_out(F.silu(gate) * up)
        got = S.block_attention_branch(block, x, cfg.rope_base)
        torch.testing.assert_close(got, package_branch)
        torch.testing.assert_close(x + got + mlp_branch, block(x, cos, sin))


def test_block_attention_map_equals_the_models_first_layer_attention_maps():
    torch.manual_seed(3)
    cfg = PaLMConfig.preset("palm-tiny")
    model = PaLM(cfg).eval()
    with torch.no_grad():
        model.blocks[0].norm.weight.uniform_(0.5, 1.5)
        idx = torch.randint(0, cfg.vocab_size, (2, 9))
        got = S.block_attention_map(model.blocks[0], model.embed(idx), cfg.rope_base)
    torch.testing.assert_close(got, model.attention_maps(idx)[0])
    torch.testing.assert_close(got.sum(-1), torch.ones(2, cfg.n_heads, 9))


def test_block_attention_weights_have_the_multi_query_shapes():
    cfg = PaLMConfig.preset("palm-tiny")
    w = S.block_attention_weights(PaLM(cfg).blocks[0])
    Hh = cfg.n_heads * cfg.head_dim
    assert w.w_q.shape == (cfg.d_model, Hh)
    assert w.w_k.shape == w.w_v.shape == (cfg.d_model, cfg.head_dim)
    assert w.w_o.shape == (Hh, cfg.d_model)


def test_kv_cache_bytes_per_token_matches_the_package_cache():
    cfg = PaLMConfig.preset("palm-tiny")
    model = PaLM(cfg).eval()
    T = 10
    cache = model.new_kv_cache(2, T)
    with torch.no_grad():
        model(torch.zeros(2, T, dtype=torch.long), kv_cache=cache)
    assert cache.nbytes() == 2 * T * S.kv_cache_bytes_per_token(cfg, kv_heads=1, bytes_per_number=4)
    mha = S.kv_cache_bytes_per_token(cfg, kv_heads=cfg.n_heads)
    assert mha == cfg.n_heads * S.kv_cache_bytes_per_token(cfg)
    with pytest.raises(ValueError, match="must be > 0"):
        S.kv_cache_bytes_per_token(cfg, kv_heads=0)


def test_rotate_in_float64_keeps_the_relative_property_to_double_precision():
    q = torch.randn(64, dtype=torch.float64)
    k = torch.randn(64, dtype=torch.float64)
    pos = torch.arange(200)
    grid = S.rotate(q.expand(200, 64), pos) @ S.rotate(k.expand(200, 64), pos).T
    for offset in (-150, -7, 0, 3, 120):
        diagonal = grid.diagonal(offset)
        assert (diagonal - diagonal[0]).abs().max() < 1e-9
