"""Bad sampling options and bad training targets: each is one ValueError (or TypeError) naming the fix, never a
NaN, a torch error from deep inside, or a silently ignored value (reliability review, defects 11 and forward)."""

from __future__ import annotations

import math

import pytest
import torch

from palmbook.generate import sample_next


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("temperature", None, "temperature must be a finite number >= 0"),
        ("temperature", math.inf, "temperature must be a finite number >= 0"),
        ("temperature", math.nan, "temperature must be a finite number >= 0"),
        ("temperature", -0.5, "temperature must be a finite number >= 0"),
        ("top_k", True, "top_k must be a positive integer"),
        ("top_k", 0, "top_k must be a positive integer"),
        ("top_k", 2.5, "top_k must be a positive integer"),
        ("top_p", 0.0, r"top_p must be a number in \(0, 1\]"),
        ("top_p", 1.5, r"top_p must be a number in \(0, 1\]"),
        ("top_p", True, r"top_p must be a number in \(0, 1\]"),
        ("stop_token", -1, r"stop_token must be a token id in \[0, 1023\]"),
        ("stop_token", 1024, r"stop_token must be a token id in \[0, 1023\]"),
        ("stop_token", True, "stop_token must be a token id"),
        ("seed", 2**70, "seed must be an integer"),
        ("seed", "0", "seed must be an integer"),
    ],
)
def test_each_meaningless_sampling_option_is_a_value_error_naming_it(tiny_model, option, value, message):
    assert tiny_model.config.vocab_size == 1024
    with pytest.raises(ValueError, match=message):
        tiny_model.generate(torch.zeros(1, 3, dtype=torch.long), 4, **{"temperature": 1.0, option: value})


def test_a_tiny_temperature_samples_the_greedy_token_instead_of_nan():
    logits = torch.randn(64, 300) * 20
    for t in (1e-45, 1e-30, 1e-8):
        assert torch.equal(sample_next(logits, temperature=t, generator=torch.Generator().manual_seed(0)),
                           logits.argmax(-1))  # fmt: skip


def test_a_tiny_temperature_generates_like_greedy(tiny_model):
    prompt = torch.randint(0, 1024, (2, 5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(tiny_model.generate(prompt, 8, temperature=1e-45, seed=0), tiny_model.generate(prompt, 8))


def test_a_stop_token_inside_the_vocabulary_is_still_accepted(tiny_model):
    assert tiny_model.generate(torch.zeros(1, 3, dtype=torch.long), 4, stop_token=1023).shape[1] <= 7


@pytest.mark.parametrize("bad", [-5, 1024, 10**6])
def test_targets_outside_the_vocabulary_are_a_value_error_not_index_out_of_bounds(tiny_model, bad):
    idx = torch.zeros(2, 6, dtype=torch.long)
    targets = idx.clone()
    targets[1, 3] = bad
    with pytest.raises(ValueError, match=rf"target id {bad} is out of range for vocab_size=1024"):
        tiny_model(idx, targets=targets)


def test_ignored_targets_may_hold_ignore_index(tiny_model):
    idx = torch.zeros(1, 6, dtype=torch.long)
    targets = torch.tensor([[1, 2, -100, 3, -100, 4]])
    assert torch.isfinite(tiny_model(idx, targets=targets).loss)
    with pytest.raises(ValueError, match="ignore_index=-1"):  # -100 is an id like any other once -1 is ignored
        tiny_model(idx, targets=targets, ignore_index=-1)


@pytest.mark.parametrize("z", [-1e-4, math.nan, math.inf, None, True])
def test_a_negative_or_non_finite_z_loss_is_refused(tiny_model, z):
    idx = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="z_loss must be a finite weight >= 0"):
        tiny_model(idx, targets=idx, z_loss=z)


def test_float_targets_are_a_type_error(tiny_model):
    idx = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(TypeError, match="targets must hold integer token ids"):
        tiny_model(idx, targets=idx.float())


def test_a_progress_bar_changes_no_generated_token(tiny_model, capsys):
    prompt = torch.zeros(2, 3, dtype=torch.long)
    quiet = tiny_model.generate(prompt, 6, temperature=0.9, top_k=20, seed=3)
    shown = tiny_model.generate(prompt, 6, temperature=0.9, top_k=20, seed=3, progress=True)
    assert torch.equal(quiet, shown)
    assert "generating" in capsys.readouterr().err  # tqdm draws on stderr
