"""The speed-ups change how the model computes, never what: each fast path against a plain reference."""

import copy

import pytest
import torch

from palmbook import PaLM, lm_loss
from palmbook.model import apply_rope, cached_attention, rope_tables


def reference_lm_loss(logits, targets, z_loss=1e-4, ignore_index=-100):
    """The loss written the obvious way, differentiated by autograd."""
    logits, targets = logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
    keep = targets != ignore_index
    log_z = torch.logsumexp(logits, -1)
    ce = log_z - logits.gather(1, torch.where(keep, targets, 0)[:, None]).squeeze(1)
    return ((ce + z_loss * log_z**2) * keep).sum() / keep.sum()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_loss_value_and_gradient_match_autograd_of_the_formula(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(3, 7, 50) * 5).to(dtype).requires_grad_()
    targets = torch.randint(0, 50, (3, 7))
    targets[1, 2] = targets[2, 6] = -100
    ref = reference_lm_loss(logits, targets, z_loss=0.01)
    (g_ref,) = torch.autograd.grad(ref, logits)
    got = lm_loss(logits, targets, z_loss=0.01)
    (g_got,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    assert g_got.dtype == dtype
    torch.testing.assert_close(g_got.float(), g_ref.float(), rtol=1e-5, atol=1e-7)
    assert torch.all(g_got[1, 2] == 0) and torch.all(g_got[2, 6] == 0)  # ignored positions get no gradient


@pytest.mark.parametrize("z_loss", [0.0, 0.3])  # cross-entropy alone, and with a (large) z-loss term
def test_fused_loss_gradient_matches_finite_differences(z_loss):
    torch.manual_seed(0)
    logits = torch.randn(5, 9, dtype=torch.float64) * 3
    targets = torch.tensor([0, 3, -100, 8, 2])

    def f(x):
        return lm_loss(x, targets, z_loss=z_loss)

    x = logits.clone().requires_grad_()
    (analytic,) = torch.autograd.grad(f(x), x)
    numeric = torch.zeros_like(logits)
    eps = 1e-6
    for i in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            up, down = logits.clone(), logits.clone()
            up[i, j] += eps
            down[i, j] -= eps
            numeric[i, j] = (f(up) - f(down)) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_a_second_backward_through_the_loss_is_refused_clearly():
    logits = torch.randn(4, 10, requires_grad=True)
    loss = lm_loss(logits, torch.tensor([1, 2, 3, 4]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="compute the loss again"):
        loss.backward()


def test_rope_backward_is_the_inverse_rotation():
    cos, sin = rope_tables(6, 8)
    x = torch.randn(2, 6, 3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: apply_rope(x, cos[:, None].double(), sin[:, None].double()), (x,))
    rotated = apply_rope(x, cos[:, None], sin[:, None])
    back = apply_rope(rotated, cos[:, None], -sin[:, None])  # rotating by minus the angle undoes it
    torch.testing.assert_close(back, x)


def test_rope_equals_the_rotate_half_formula():
    cos, sin = rope_tables(10, 16)
    x = torch.randn(4, 10, 16)
    x1, x2 = x.chunk(2, dim=-1)
    torch.testing.assert_close(apply_rope(x, cos, sin), x * cos + torch.cat([-x2, x1], dim=-1) * sin)


def test_activation_checkpointing_gives_identical_gradients_even_with_dropout(tiny_config):
    torch.manual_seed(0)
    model = PaLM(tiny_config.replace(dropout=0.1)).train()
    idx = torch.randint(0, tiny_config.vocab_size, (2, 33))
    grads = []
    for remat in (False, True):
        model.gradient_checkpointing = remat
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks: checkpoint replays the RNG state in the recomputation
        lm_loss(model(idx[:, :-1]), idx[:, 1:]).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name


def test_decoding_path_under_bf16_autocast_matches_the_full_forward(tiny_model, tiny_config):
    seq = torch.randint(0, tiny_config.vocab_size, (2, 24))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = tiny_model(seq)
        cache = tiny_model.new_kv_cache(2, 24)
        tiny_model(seq[:, :10], kv_cache=cache)
        steps = torch.cat([tiny_model(seq[:, t : t + 1], kv_cache=cache, start_pos=t) for t in range(10, 24)], 1)
    assert steps.dtype == full.dtype == torch.bfloat16
    assert (steps.float() - full[:, 10:].float()).abs().max() < 0.05 * full.float().abs().max()


def test_bf16_training_step_gives_the_float32_loss_and_gradients_within_tolerance(tiny_config):
    torch.manual_seed(0)
    model = PaLM(tiny_config)
    idx = torch.randint(0, tiny_config.vocab_size, (4, 65))
    losses, grads = [], []
    for bf16 in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = lm_loss(model(idx[:, :-1]), idx[:, 1:])
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert abs(losses[0] - losses[1]) < 0.01 * losses[0]
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cosine > 0.99


def eager_and_compiled(config, compile_method: str) -> tuple[PaLM, PaLM]:
    """A seeded model and a copy of it with ``compile_blocks`` or ``compile_decoding`` switched on."""
    torch.manual_seed(0)
    eager = PaLM(config)
    return eager, getattr(copy.deepcopy(eager), compile_method)()


@pytest.mark.slow
def test_compiled_blocks_give_the_eager_logits_and_gradients(tiny_config):
    eager, compiled = eager_and_compiled(tiny_config, "compile_blocks")
    idx = torch.randint(0, tiny_config.vocab_size, (2, 33))
    for model in (eager, compiled):
        lm_loss(model(idx[:, :-1]), idx[:, 1:]).backward()
    torch.testing.assert_close(compiled(idx[:, :-1]), eager(idx[:, :-1]), rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # the wrappers are not submodules
    # generation keeps the eager decoding path and gives the same tokens
    prompt = idx[:1, :5]
    assert torch.equal(compiled.generate(prompt, 8), eager.generate(prompt, 8))


def test_cached_attention_equals_sdpa_over_the_visible_positions():
    torch.manual_seed(0)
    B, H, S, h, pos = 2, 4, 12, 16, 7
    q, keys, values = torch.randn(B, H, h), torch.randn(B, S, h), torch.randn(B, S, h)
    visible = (torch.arange(S) <= pos)[None]
    ref = torch.nn.functional.scaled_dot_product_attention(
        q[:, None], keys[:, None, : pos + 1], values[:, None, : pos + 1]
    )  # (B, 1, H, h): the H queries as rows of one head
    torch.testing.assert_close(cached_attention(q, keys, values, visible), ref.reshape(B, H * h))


@pytest.mark.parametrize("greedy", [False, True])
def test_static_decoding_step_gives_the_eager_decoding_logits(tiny_model, tiny_config, greedy):
    """decode_static (masked attention over a longer cache, tensor positions) equals the ordinary cached path."""
    torch.manual_seed(0)
    seq = torch.randint(0, tiny_config.vocab_size, (2, 20))
    with torch.no_grad():
        a, b = tiny_model.new_kv_cache(2, 64), tiny_model.new_kv_cache(2, 20)  # 64: positions past pos are masked
        tiny_model(seq[:, :8], kv_cache=a)
        tiny_model(seq[:, :8], kv_cache=b)
        pos = torch.tensor([8])
        for t in range(8, 20):
            got = tiny_model.decode_static(seq[:, t], pos, a, greedy=greedy)
            want = tiny_model(seq[:, t : t + 1], kv_cache=b, start_pos=t)[:, 0]
            if greedy:
                assert torch.equal(got, want.argmax(-1))
            else:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert pos.item() == 20  # the step advances the position in place
        torch.testing.assert_close(a.k[:, :, :, :20], b.k)  # and writes the same keys at the same places


def test_decode_static_refuses_an_empty_cache(tiny_model):
    with pytest.raises(ValueError, match="run the prompt through"):
        tiny_model.decode_static(torch.tensor([1]), torch.tensor([0]), tiny_model.new_kv_cache(1, 8))


def test_decoding_cache_lengths_are_few_powers_of_two_within_max_seq_len(tiny_config):
    model = PaLM(tiny_config)
    lengths = {model.decode_cache_len(n) for n in range(1, tiny_config.max_seq_len + 1)}
    assert lengths == {64, 128} == {n for n in lengths if n & (n - 1) == 0}  # palm-tiny: max_seq_len 128
    assert all(model.decode_cache_len(n) >= n for n in range(1, tiny_config.max_seq_len + 1))


@pytest.mark.slow
def test_compiled_decoding_gives_the_eager_tokens_greedy_and_sampled(tiny_config):
    eager, compiled = eager_and_compiled(tiny_config, "compile_decoding")
    prompt = torch.randint(0, tiny_config.vocab_size, (2, 5))
    assert torch.equal(compiled.generate(prompt, 12), eager.generate(prompt, 12))
    sampled = [m.generate(prompt, 12, temperature=0.9, top_k=20, seed=3) for m in (compiled, eager)]
    assert torch.equal(sampled[0], sampled[1])
    with torch.no_grad():  # and the logits themselves, step by step, within float32 tolerance
        cache, ref = compiled.new_kv_cache(2, 64), eager.new_kv_cache(2, 17)
        compiled(prompt, kv_cache=cache)
        eager(prompt, kv_cache=ref)
        pos, tok = torch.tensor([5]), prompt[:, -1]
        for t in range(5, 17):
            got = compiled.decode_static(tok, pos, cache)
            want = eager(tok[:, None], kv_cache=ref, start_pos=t)[:, 0]
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
            tok = want.argmax(-1)
