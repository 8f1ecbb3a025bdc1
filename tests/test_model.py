import math

import pytest
import torch
import torch.nn.functional as F

from palmbook import PaLM, PaLMConfig, lm_loss
from palmbook.model import apply_rope, rope_matrix, rope_tables


def test_changing_future_tokens_never_changes_earlier_logits(tiny_model, tiny_config):
    idx = torch.randint(0, tiny_config.vocab_size, (3, 40))
    base = tiny_model(idx)
    for t in (0, 17, 39):
        changed = idx.clone()
        changed[:, t:] = torch.randint(0, tiny_config.vocab_size, changed[:, t:].shape)
        out = tiny_model(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        if t < 39:
            assert not torch.allclose(out[:, t:], base[:, t:])


@pytest.mark.parametrize("prompt_len", [1, 5, 31])
def test_kv_cache_matches_full_forward_at_every_step(tiny_model, tiny_config, prompt_len):
    torch.manual_seed(prompt_len)
    seq = torch.randint(0, tiny_config.vocab_size, (3, 48))
    full = tiny_model(seq)
    cache = tiny_model.new_kv_cache(3, 48)
    with torch.no_grad():
        first = tiny_model(seq[:, :prompt_len], kv_cache=cache)
        torch.testing.assert_close(first, full[:, :prompt_len], rtol=1e-5, atol=1e-5)
        for t in range(prompt_len, 48):
            step = tiny_model(seq[:, t : t + 1], kv_cache=cache, start_pos=t)
            torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-5, atol=1e-5)


def test_kv_cache_accepts_a_chunk_after_a_cached_prefix(tiny_model, tiny_config):
    seq = torch.randint(0, tiny_config.vocab_size, (2, 30))
    full = tiny_model(seq)
    cache = tiny_model.new_kv_cache(2, 30)
    with torch.no_grad():
        tiny_model(seq[:, :11], kv_cache=cache)
        chunk = tiny_model(seq[:, 11:30], kv_cache=cache, start_pos=11)
    torch.testing.assert_close(chunk, full[:, 11:], rtol=1e-5, atol=1e-5)


def test_kv_cache_stores_one_key_and_one_value_head_per_layer(tiny_model, tiny_config):
    cache = tiny_model.new_kv_cache(2, 20)
    with torch.no_grad():
        tiny_model(torch.zeros(2, 20, dtype=torch.long), kv_cache=cache)
    c = tiny_config
    assert cache.k.shape == (c.n_layers, 2, 1, 20, c.head_dim)
    multi_head_bytes = 2 * c.n_layers * 2 * c.n_heads * 20 * c.head_dim * 4
    assert cache.nbytes() * c.n_heads == multi_head_bytes


def test_no_parameter_is_a_bias(tiny_model):
    for name, p in tiny_model.named_parameters():
        assert "bias" not in name
        assert p.dim() == 2 or name.endswith("norm.weight") or name == "norm_f.weight"
    for module in tiny_model.modules():
        assert getattr(module, "bias", None) is None


def test_embedding_and_output_projection_are_the_same_tensor(tiny_model, tiny_config):
    names = [n for n, _ in tiny_model.named_parameters()]
    assert not any("lm_head" in n or "unembed" in n for n in names)
    h = torch.randn(2, 3, tiny_config.d_model)
    expected = h @ tiny_model.embed.weight.T / math.sqrt(tiny_config.d_model)
    torch.testing.assert_close(tiny_model.logits(h), expected)
    # A gradient through the output layer lands in the input embedding.
    tiny_model.zero_grad()
    tiny_model.logits(h).sum().backward()
    assert tiny_model.embed.weight.grad is not None and tiny_model.embed.weight.grad.abs().sum() > 0


def test_attention_is_multi_query_with_one_key_value_head(tiny_config):
    model = PaLM(tiny_config)
    c = tiny_config
    for block in model.blocks:
        assert block.in_proj.weight.shape == (c.n_heads * c.head_dim + 2 * c.head_dim + 2 * c.d_ff, c.d_model)
        x = torch.randn(2, 5, c.d_model)
        q, k, v, gate, up = block.project(x, model.rope_cos[:5], model.rope_sin[:5])
        assert q.shape == (2, c.n_heads, 5, c.head_dim)
        assert k.shape == v.shape == (2, 1, 5, c.head_dim)
        assert gate.shape == up.shape == (2, 5, c.d_ff)


def test_parallel_block_computes_x_plus_attention_plus_swiglu_mlp(tiny_model, tiny_config):
    """Rebuild one block from its weights with plain tensor algebra: y = x + Attn(LN(x)) + MLP(LN(x))."""
    c, block = tiny_config, tiny_model.blocks[0]
    T = 7
    x = torch.randn(2, T, c.d_model)
    ln = F.layer_norm(x, (c.d_model,), block.norm.weight, None, c.norm_eps)
    W = block.in_proj.weight
    Hh = c.n_heads * c.head_dim
    q = (ln @ W[:Hh].T).view(2, T, c.n_heads, c.head_dim).transpose(1, 2)
    k = (ln @ W[Hh : Hh + c.head_dim].T)[:, None]
    v = (ln @ W[Hh + c.head_dim : Hh + 2 * c.head_dim].T)[:, None]
    gate = ln @ W[Hh + 2 * c.head_dim : Hh + 2 * c.head_dim + c.d_ff].T
    up = ln @ W[Hh + 2 * c.head_dim + c.d_ff :].T
    cos, sin = rope_tables(T, c.head_dim, c.rope_base)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    scores = q @ k.transpose(-1, -2) / math.sqrt(c.head_dim)
    scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    attn = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, T, Hh)
    mlp = (gate * torch.sigmoid(gate)) * up
    expected = x + attn @ block.attn_out.weight.T + mlp @ block.ffn_out.weight.T
    torch.testing.assert_close(block(x, tiny_model.rope_cos[:T], tiny_model.rope_sin[:T]), expected)


def test_rope_attention_scores_depend_only_on_the_offset():
    head_dim = 16
    cos, sin = rope_tables(64, head_dim)
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(m: int, n: int) -> float:
        qm = apply_rope(q[None], cos[m : m + 1], sin[m : m + 1])[0]
        kn = apply_rope(k[None], cos[n : n + 1], sin[n : n + 1])[0]
        return float(qm @ kn)

    for offset in (0, 3, 10):
        scores = [score(m + offset, m) for m in (0, 7, 20, 40)]
        assert max(scores) - min(scores) < 1e-4, scores
    assert abs(score(10, 0) - score(3, 0)) > 1e-3  # but it does depend on the offset


def test_rope_is_a_rotation_that_preserves_norms():
    cos, sin = rope_tables(32, 8)
    x = torch.randn(5, 32, 8)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


def test_initialisation_follows_the_paper(tiny_config):
    torch.manual_seed(0)
    cfg = tiny_config.replace(d_model=256, d_ff=1024, n_heads=4, head_dim=64, vocab_size=4096)
    model = PaLM(cfg)
    assert abs(model.embed.weight.std().item() - 1.0) < 0.02  # N(0, 1) embeddings
    block = model.blocks[0]
    for linear in (block.in_proj, block.attn_out, block.ffn_out):
        expected = 1 / math.sqrt(linear.in_features)  # fan-in scaling
        assert abs(linear.weight.std().item() / expected - 1) < 0.05
    assert torch.all(block.norm.weight == 1)


def test_a_tiny_model_overfits_one_batch(tiny_config):
    torch.manual_seed(0)
    model = PaLM(tiny_config)
    idx = torch.randint(0, tiny_config.vocab_size, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(150):
        loss = lm_loss(model(idx[:, :-1]), idx[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 5 and loss.item() < 0.1


def test_bf16_autocast_gives_the_float32_logits_within_tolerance(tiny_model, tiny_config):
    idx = torch.randint(0, tiny_config.vocab_size, (2, 32))
    ref = tiny_model(idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = tiny_model(idx)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_save_and_load_round_trip_bit_exactly(tiny_model, tiny_config, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = PaLM.from_pretrained(tmp_path / "m")
    assert loaded.config == tiny_config
    for (n1, p1), (n2, p2) in zip(tiny_model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2), n1
    idx = torch.randint(0, tiny_config.vocab_size, (2, 16))
    assert torch.equal(tiny_model(idx), loaded(idx))


def test_a_pickled_checkpoint_is_refused(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    torch.save(tiny_model.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="never unpickles"):
        PaLM.from_pretrained(tmp_path)


def test_a_truncated_or_tampered_checkpoint_is_refused(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or tampered"):
        PaLM.from_pretrained(tmp_path)
    weights.write_bytes(b"\x00" * 8 + data[8:])
    with pytest.raises(ValueError, match="truncated or tampered"):
        PaLM.from_pretrained(tmp_path)


def test_weights_that_do_not_match_the_config_are_refused(tiny_model, tiny_config, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    tiny_config.replace(n_layers=3).save(tmp_path / "config.json")
    with pytest.raises(ValueError, match="does not match"):
        PaLM.from_pretrained(tmp_path)


def test_loading_a_missing_directory_names_save_pretrained(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        PaLM.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize(
    ("idx", "error", "message"),
    [
        ([[1, 2, 3]], TypeError, "must be a torch.Tensor"),
        (torch.ones(2, 3), TypeError, "integer token ids"),
        (torch.ones(3, dtype=torch.long), ValueError, r"unsqueeze\(0\)"),
        (torch.ones(1, 2, 3, dtype=torch.long), ValueError, r"shape \(batch, seq\)"),
        (torch.ones(2, 0, dtype=torch.long), ValueError, "empty"),
        (torch.ones(1, 129, dtype=torch.long), ValueError, "exceed max_seq_len=128"),
        (torch.tensor([[1, 1024]]), ValueError, "token id 1024 is out of range"),
        (torch.tensor([[-1, 3]]), ValueError, "token id -1 is out of range"),
    ],
)
def test_bad_input_raises_one_clear_error(tiny_model, idx, error, message):
    with pytest.raises(error, match=message):
        tiny_model(idx)


def test_attention_maps_are_causal_probability_distributions(tiny_model, tiny_config):
    idx = torch.randint(0, tiny_config.vocab_size, (2, 12))
    maps = tiny_model.attention_maps(idx)
    assert maps.shape == (tiny_config.n_layers, 2, tiny_config.n_heads, 12, 12)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert torch.all(maps.triu(1) == 0)


def test_fresh_model_loss_sits_above_log_vocab_because_of_tied_embeddings():
    """PALM_FACTS: with N(0,1) tied embeddings a fresh model's logit for the input token is ~sqrt(d)."""
    torch.manual_seed(0)
    cfg = PaLMConfig(vocab_size=4096, d_model=384, n_layers=2, n_heads=6, head_dim=64, max_seq_len=64)
    model = PaLM(cfg)
    idx = torch.randint(0, cfg.vocab_size, (4, 64))
    loss = lm_loss(model(idx[:, :-1]), idx[:, 1:]).item()
    assert loss > math.log(cfg.vocab_size) + 2


def test_forward_with_targets_equals_lm_loss_of_the_logits_with_the_same_gradients(tiny_config):
    torch.manual_seed(0)
    model = PaLM(tiny_config).double()
    idx = torch.randint(0, tiny_config.vocab_size, (3, 9))
    targets = torch.randint(0, tiny_config.vocab_size, (3, 9))
    targets[0, :4] = -100
    ref = lm_loss(model(idx), targets, return_parts=True)
    ref.loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    out = model(idx, targets=targets)  # the fused output layer + loss: no (B, T, V) logits
    out.loss.backward()
    torch.testing.assert_close(out.loss.detach(), ref.loss.detach())
    torch.testing.assert_close(out.log_z, ref.log_z)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], msg=name)


def test_rope_matrix_rotates_exactly_like_apply_rope():
    cos, sin = rope_tables(40, 16)
    x = torch.randn(3, 5, 16)
    for pos in (0, 1, 17, 39):
        torch.testing.assert_close(x @ rope_matrix(cos[pos], sin[pos]), apply_rope(x, cos[pos], sin[pos]))


def test_targets_of_another_shape_than_idx_name_the_fix(tiny_model, tiny_config):
    idx = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"tokens\[:, 1:\]"):
        tiny_model(idx, targets=torch.zeros(2, 4, dtype=torch.long))


def test_a_model_too_large_for_ram_fails_before_allocating_while_meta_still_builds(monkeypatch):
    import palmbook.flops

    monkeypatch.setattr(palmbook.flops, "available_memory", lambda: 2**10)  # a machine with 1 KiB free
    config = PaLMConfig.preset("palm-tiny")
    with pytest.raises(ValueError, match=r"needs at least .* of memory for its float32 weights"):
        PaLM(config)
    with torch.device("meta"):  # counting parameters allocates nothing, so it is never refused
        assert PaLM(config).num_parameters() > 0
