"""Specifications of chapter 10's from-scratch samplers and KV cache, and their agreement with the package."""

import pytest
import torch

from palmbook.generate import filter_logits, sample_next
from palmbook.scratch import sampling as S


def test_greedy_is_the_argmax_and_temperature_only_rescales():
    logits = torch.tensor([[0.5, 2.0, -1.0], [3.0, 0.0, 1.0]])
    assert S.greedy(logits).tolist() == [1, 0]
    torch.testing.assert_close(S.with_temperature(logits, 0.5), logits * 2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        S.with_temperature(logits, 0.0)


def test_low_temperature_sharpens_and_high_temperature_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    cold, model, hot = (S.next_token_probs(logits, t) for t in (0.1, 1.0, 10.0))
    assert cold[0, 0] > 0.99 > model[0, 0] > hot[0, 0]
    assert S.entropy_bits(cold) < S.entropy_bits(model) < S.entropy_bits(hot) < 2.0  # 2 bits = uniform over 4


def test_top_k_keeps_the_k_largest_and_ties_with_the_kth():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0, 0.5], [1.0, 1.0, 1.0, 0.0, 0.0]])
    kept = S.top_k_filter(logits, 2).isfinite()
    assert kept.tolist() == [[False, True, True, False, False], [True, True, True, False, False]]


def test_top_p_keeps_the_smallest_prefix_whose_mass_reaches_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert S.top_p_filter(logits, 0.5).isfinite().tolist() == [[True, False, False, False]]
    assert S.top_p_filter(logits, 0.79).isfinite().tolist() == [[True, True, False, False]]
    assert S.top_p_filter(logits, 0.81).isfinite().tolist() == [[True, True, True, False]]
    assert S.top_p_filter(logits, 1.0).isfinite().all()


@pytest.mark.parametrize("top_k", [None, 1, 7, 100])
@pytest.mark.parametrize("top_p", [None, 0.3, 0.9])
def test_filters_mask_exactly_what_the_package_masks(top_k, top_p):
    torch.manual_seed(0)
    logits = torch.randn(6, 300) * 3
    ours = logits
    if top_k is not None:
        ours = S.top_k_filter(ours, top_k)
    if top_p is not None:
        ours = S.top_p_filter(ours, top_p)
    torch.testing.assert_close(ours, filter_logits(logits, top_k, top_p), rtol=0, atol=0)


SETTINGS = [(0.0, None, None), (1.0, None, None), (0.7, 40, None), (1.3, None, 0.9), (0.9, 20, 0.8)]


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), SETTINGS)
def test_same_generator_seed_gives_the_package_s_tokens(temperature, top_k, top_p):
    torch.manual_seed(1)
    logits = torch.randn(16, 500) * 2
    for seed in range(5):
        ours = S.sample(logits, temperature, top_k, top_p, torch.Generator().manual_seed(seed))
        theirs = sample_next(logits, temperature, top_k, top_p, torch.Generator().manual_seed(seed))
        assert torch.equal(ours, theirs)


def test_inverse_cdf_draw_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    u = torch.rand(40_000, generator=torch.Generator().manual_seed(0))
    ids = S.draw(probs.expand(len(u), -1), u)
    freq = torch.bincount(ids, minlength=4).float() / len(u)
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)
    edges = S.draw(probs.expand(4, -1), torch.tensor([0.0, 0.4999, 0.5, 0.9999999]))
    assert edges.tolist() == [0, 0, 1, 3]


def test_cached_forward_gives_the_full_forward_s_logits_position_by_position(tiny_model, tiny_config):
    ids = torch.randint(0, tiny_config.vocab_size, (2, 12))
    with torch.no_grad():
        full = tiny_model(ids)
    cache = S.ScratchKVCache()
    prefill = S.forward_cached(tiny_model, ids[:, :5], cache)
    torch.testing.assert_close(prefill, full[:, :5], rtol=1e-4, atol=1e-4)
    for t in range(5, 12):
        step = S.forward_cached(tiny_model, ids[:, t : t + 1], cache)
        torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-4, atol=1e-4)
    assert cache.length == 12
    c = tiny_config  # multi-query: one key and one value head per layer, float32
    assert cache.nbytes() == 2 * c.n_layers * 2 * 12 * c.head_dim * 4


def test_recompute_scratch_cache_and_package_agree_token_for_token(tiny_model, tiny_config):
    prompt = torch.randint(0, tiny_config.vocab_size, (3, 6))
    greedy = [S.generate_recompute(tiny_model, prompt, 25), S.generate_cached(tiny_model, prompt, 25),
              tiny_model.generate(prompt, 25)]  # fmt: skip
    assert all(torch.equal(g, greedy[0]) for g in greedy)
    sampled = [
        S.generate_recompute(tiny_model, prompt, 25, 0.9, 30, 0.95, torch.Generator().manual_seed(4)),
        S.generate_cached(tiny_model, prompt, 25, 0.9, 30, 0.95, torch.Generator().manual_seed(4)),
        tiny_model.generate(prompt, 25, temperature=0.9, top_k=30, top_p=0.95, seed=4),
    ]
    assert all(torch.equal(s, sampled[0]) for s in sampled) and not torch.equal(sampled[0], greedy[0])


def test_distinct_ngrams_is_one_without_repeats_and_small_for_a_loop():
    assert S.distinct_ngrams(list(range(10)), 3) == 1.0
    assert S.distinct_ngrams([1, 2] * 10, 3) == 2 / 18
    with pytest.raises(ValueError, match="at least n=3"):
        S.distinct_ngrams([1, 2], 3)


def _table_model(table: dict[tuple[int, ...], list[float]], prompt_len: int):
    # A toy "language model": next-token probabilities looked up by the tokens after the prompt.
    def log_probs(ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor([table[tuple(row[prompt_len:].tolist())] for row in ids]).log()

    return log_probs


def test_beam_search_finds_the_sequence_greedy_misses_and_brute_force_agrees():
    table = {(): [0.5, 0.4, 0.1], (0,): [0.3, 0.3, 0.4], (1,): [0.05, 0.05, 0.9], (2,): [1 / 3] * 3}
    lp, prefix = _table_model(table, 1), torch.tensor([7])
    greedy_seq, greedy_lp = S.beam_search(lp, prefix, 2, width=1)
    assert greedy_seq == [0, 2] and greedy_lp == pytest.approx(torch.tensor(0.5 * 0.4).log().item())
    beam_seq, beam_lp = S.beam_search(lp, prefix, 2, width=2)
    assert beam_seq == [1, 2] and beam_lp == pytest.approx(torch.tensor(0.4 * 0.9).log().item())
    assert S.best_by_brute_force(lp, prefix, 2, 3) == (beam_seq, pytest.approx(beam_lp))
    assert S.sequence_log_prob(lp, prefix, beam_seq) == pytest.approx(beam_lp)


def test_beam_search_of_width_one_is_greedy_decoding_on_a_model(tiny_model, tiny_config):
    prompt = torch.randint(0, tiny_config.vocab_size, (5,))
    with torch.no_grad():
        seq, score = S.beam_search(lambda ids: tiny_model(ids)[:, -1].log_softmax(-1), prompt, 6, width=1)
    assert seq == tiny_model.generate(prompt[None], 6)[0, 5:].tolist()
    assert score == pytest.approx(S.sequence_log_prob(lambda ids: tiny_model(ids)[:, -1].log_softmax(-1), prompt, seq))


def test_generate_until_stops_after_the_stop_sequence_and_matches_the_package(tiny_model, tiny_config):
    prompt = torch.randint(0, tiny_config.vocab_size, (1, 4))
    full = tiny_model.generate(prompt, 30)[0, 4:].tolist()
    stop = full[5:7]  # a pair of tokens that greedy decoding produces
    out = S.generate_until(tiny_model, prompt, 30, stop)[0, 4:].tolist()
    first = next(i for i in range(len(full) - 1) if full[i : i + 2] == stop)
    assert out == full[: first + 2]
    assert S.generate_until(tiny_model, prompt, 3, [-1])[0, 4:].tolist() == full[:3]  # never found: max_new_tokens
    with pytest.raises(ValueError, match="stop sequence"):
        S.generate_until(tiny_model, prompt, 3, [])
