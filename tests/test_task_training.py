"""The small training loop of chapter 11: targets, masked accuracy, and that it learns a trivial task."""

import pytest
import torch

from palmbook import PaLM, PaLMConfig
from palmbook.task_training import lm_targets, masked_accuracy, train_on_task


def test_targets_ignore_every_token_outside_the_answer():
    tokens = torch.tensor([[5, 6, 7, 8]])
    inputs, targets = lm_targets(tokens, torch.tensor([[False, False, True, True]]))
    assert inputs.tolist() == [[5, 6, 7]] and targets.tolist() == [[-100, 7, 8]]


def copy_batch(batch_size=32, seed=0):
    """x y -> y: the second token repeats the first; only the second is an answer."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, 8, (batch_size, 1), generator=g)
    tokens = torch.cat([first, first], dim=1)
    return tokens, torch.tensor([[False, True]]).expand(batch_size, 2)


def test_training_on_the_masked_tokens_learns_to_copy():
    torch.manual_seed(0)
    model = PaLM(PaLMConfig(vocab_size=8, d_model=32, n_layers=1, n_heads=2, head_dim=16, max_seq_len=2))
    history = train_on_task(model, lambda step: copy_batch(seed=step), 150, lr=3e-3, warmup=10, log_every=50)
    per_token, per_sequence = masked_accuracy(model, *copy_batch(256, seed=999))
    assert history.step == [50, 100, 150] and history.loss[-1] < history.loss[0]
    assert per_token == per_sequence == 1.0


def test_masked_accuracy_needs_every_answer_token_right_for_a_sequence():
    class Fixed(torch.nn.Module):
        def forward(self, idx):  # predicts token 1 everywhere
            out = torch.zeros(*idx.shape, 4)
            out[..., 1] = 1
            return out

    tokens = torch.tensor([[0, 1, 1], [0, 1, 2]])
    mask = torch.tensor([[False, True, True], [False, True, True]])
    assert masked_accuracy(Fixed(), tokens, mask) == (0.75, 0.5)


def test_text_windows_are_consecutive_slices_of_the_text_with_every_token_a_target():
    from palmbook.task_training import text_windows

    ids = torch.arange(100)
    tokens, mask = text_windows(ids, 8, 10, seed=0)(1)
    assert tokens.shape == mask.shape == (8, 11) and bool(mask.all())
    assert bool((tokens.diff(dim=1) == 1).all()) and int(tokens.max()) <= 99  # windows never run past the end
    again, _ = text_windows(ids, 8, 10, seed=0)(1)
    assert torch.equal(tokens, again)
    with pytest.raises(ValueError, match="longer than seq_len"):
        text_windows(torch.arange(5), 2, 10)
