import pytest
import torch

from palmbook.generate import filter_logits, sample_next


def test_greedy_generation_equals_argmax_of_the_full_forward(tiny_model, tiny_config):
    prompt = torch.randint(0, tiny_config.vocab_size, (3, 9))
    out = tiny_model.generate(prompt, 20, temperature=0.0)
    assert out.shape == (3, 29) and torch.equal(out[:, :9], prompt)
    with torch.no_grad():
        logits = tiny_model(out)
    torch.testing.assert_close(logits[:, 8:-1].argmax(-1), out[:, 9:], rtol=0, atol=0)


def test_sampling_is_reproducible_with_a_seed(tiny_model, tiny_config):
    prompt = torch.randint(0, tiny_config.vocab_size, (2, 4))
    a = tiny_model.generate(prompt, 30, temperature=1.0, top_k=50, seed=7)
    b = tiny_model.generate(prompt, 30, temperature=1.0, top_k=50, seed=7)
    c = tiny_model.generate(prompt, 30, temperature=1.0, top_k=50, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generation_stops_when_every_row_emitted_the_stop_token(tiny_model, tiny_config):
    prompt = torch.randint(0, tiny_config.vocab_size, (1, 5))
    greedy = tiny_model.generate(prompt, 12)
    stop = int(greedy[0, 8])  # the 4th generated token
    out = tiny_model.generate(prompt, 12, stop_token=stop)
    first = (greedy[0, 5:] == stop).nonzero()[0].item()
    assert out.shape[1] == 5 + first + 1 and out[0, -1] == stop


def test_generation_refuses_to_run_past_max_seq_len(tiny_model, tiny_config):
    prompt = torch.zeros(1, 100, dtype=torch.long)
    with pytest.raises(ValueError, match="at most 28 new tokens"):
        tiny_model.generate(prompt, 29)
    assert tiny_model.generate(prompt, 28).shape == (1, 128)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(temperature=-1.0), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=1.5), "top_p")],
)
def test_bad_sampling_options_raise_clear_errors(tiny_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.generate(torch.zeros(1, 3, dtype=torch.long), 2, **kwargs)


def test_top_k_keeps_exactly_the_k_largest_logits():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0, 0.5]])
    kept = filter_logits(logits, top_k=2).isfinite()
    assert kept.tolist() == [[False, True, True, False, False]]


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert filter_logits(logits, top_p=0.5).isfinite().tolist() == [[True, False, False, False]]
    assert filter_logits(logits, top_p=0.79).isfinite().tolist() == [[True, True, False, False]]
    assert filter_logits(logits, top_p=0.81).isfinite().tolist() == [[True, True, True, False]]
    assert filter_logits(logits, top_p=0.01).isfinite().sum() == 1  # the top token always survives


def test_sampling_follows_the_distribution():
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.5, 0.3, 0.2]).log().repeat(20000, 1)
    counts = torch.bincount(sample_next(logits, temperature=1.0, generator=gen), minlength=3) / 20000
    torch.testing.assert_close(counts, torch.tensor([0.5, 0.3, 0.2]), atol=0.015, rtol=0)
