"""The in-context recall task: exact ground truth, shots, layouts, masks, seeds, and the evaluation helpers."""

import math
from collections import Counter

import pytest
import torch
from torch import nn

from palmbook.incontext import (
    RecallTask,
    accuracy_by_shots,
    frequency_guess,
    induction_scores,
    recall_batch,
    train_incontext,
)

TASK = RecallTask(n_keys=12, n_values=12, n_pairs=8)
SPACED = RecallTask(n_keys=12, n_values=12, n_pairs=8, fillers=5)


def demos(task, row):
    """(key, value) pairs of one sequence, read back from its tokens: every key before the query and its successor."""
    t = row.tolist()
    return [(t[i], t[i + 1]) for i in range(len(t) - 3) if t[i] < task.n_keys]


@pytest.mark.parametrize("task", [TASK, SPACED])
@pytest.mark.parametrize("layout", ["random", "balanced", "mixed"])
def test_every_answer_is_the_value_the_demonstrations_give_the_query(task, layout):
    b = recall_batch(task, 300, [0, 1, 2, 4, 8], layout=layout, seed=3)
    assert b.tokens.shape == (300, task.seq_len)
    for i in range(300):
        row = b.tokens[i].tolist()
        query, answer = row[-2], row[-1]
        assert row[-3] == task.query_token and query < task.n_keys
        pairs, seen = demos(task, b.tokens[i]), {}
        assert len(pairs) == task.n_pairs and row.count(task.filler_token) == task.fillers
        for k, v in pairs:
            assert k < task.n_keys <= v < task.query_token
            assert seen.setdefault(k, v) == v  # one key, one value within a sequence
        if query in seen:
            assert answer == seen[query]
        assert answer == b.mapping[i, query].item() == b.answer[i].item()


def test_fillers_move_the_pairs_around():
    starts = {
        tuple(row.lt(SPACED.n_keys).nonzero()[:, 0].tolist()) for row in recall_batch(SPACED, 50, 2, seed=0).tokens
    }
    assert len(starts) > 10  # without fillers every sequence has its keys at 0, 2, 4, ...


def test_mapping_gives_every_key_its_own_value():
    b = recall_batch(TASK, 200, 2, seed=0)
    for row in b.mapping.tolist():
        assert len(set(row)) == TASK.n_keys
        assert all(TASK.n_keys <= v < TASK.query_token for v in row)


@pytest.mark.parametrize("task", [TASK, SPACED])
@pytest.mark.parametrize("layout", ["random", "balanced"])
@pytest.mark.parametrize("shots", [0, 1, 2, 4, 8])
def test_shots_count_the_demonstrations_that_show_the_query(task, layout, shots):
    b = recall_batch(task, 100, shots, layout=layout, seed=shots)
    for i in range(100):
        count = sum(k == b.query[i].item() for k, _ in demos(task, b.tokens[i]))
        assert count == shots == b.shots[i].item()


def test_shots_drawn_per_row_from_a_list_or_given_as_a_tensor():
    b = recall_batch(TASK, 400, [1, 4], seed=0)
    assert set(b.shots.tolist()) == {1, 4}
    wanted = torch.tensor([0, 3, 8, 5])
    assert torch.equal(recall_batch(TASK, 4, wanted, seed=0).shots, wanted)


@pytest.mark.parametrize("shots", [1, 2, 4, 8])
def test_balanced_layout_shows_every_key_and_value_equally_often(shots):
    b = recall_batch(TASK, 100, shots, layout="balanced", seed=1)
    for i in range(100):
        pairs = demos(TASK, b.tokens[i])
        assert set(Counter(k for k, _ in pairs).values()) == {shots}
        assert set(Counter(v for _, v in pairs).values()) == {shots}  # frequency says nothing


def test_balanced_zero_shot_shows_distinct_keys_and_never_the_query():
    b = recall_batch(TASK, 100, 0, layout="balanced", seed=2)
    for i in range(100):
        keys = [k for k, _ in demos(TASK, b.tokens[i])]
        assert len(set(keys)) == TASK.n_pairs and b.query[i].item() not in keys


@pytest.mark.parametrize("task", [TASK, SPACED])
def test_loss_mask_covers_exactly_the_value_tokens(task):
    b = recall_batch(task, 50, [0, 2, 8], layout="mixed", seed=4)
    is_value = (b.tokens >= task.n_keys) & (b.tokens < task.query_token)
    assert torch.equal(b.loss_mask, is_value)
    assert b.loss_mask[:, -1].all() and b.loss_mask.sum(1).eq(task.n_pairs + 1).all()


@pytest.mark.parametrize("task", [TASK, SPACED])
def test_prior_counts_earlier_showings_of_each_values_key(task):
    b = recall_batch(task, 50, [0, 1, 3, 8], seed=5)
    for i in range(50):
        row, seen = b.tokens[i].tolist(), Counter()
        for t in range(len(row)):
            if task.n_keys <= row[t] < task.query_token and t < len(row) - 1:
                assert b.prior[i, t].item() == seen[row[t - 1]]
                seen[row[t - 1]] += 1
            elif t == len(row) - 1:
                assert b.prior[i, t].item() == seen[row[-2]] == b.shots[i].item()
            else:
                assert b.prior[i, t].item() == -1


def test_same_seed_same_batch_and_a_generator_advances():
    a, b = (
        recall_batch(TASK, 16, [0, 2], layout="mixed", seed=7),
        recall_batch(TASK, 16, [0, 2], layout="mixed", seed=7),
    )
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    g = torch.Generator().manual_seed(7)
    assert not torch.equal(recall_batch(TASK, 16, 2, seed=g).tokens, recall_batch(TASK, 16, 2, seed=g).tokens)


def test_vocabulary_layout_and_a_config_that_fits():
    assert (TASK.query_token, TASK.filler_token, TASK.vocab_size, TASK.seq_len) == (24, 25, 26, 19)
    assert SPACED.seq_len == 24
    cfg = TASK.config(n_layers=1)
    assert cfg.vocab_size == 26 and cfg.max_seq_len == 19 and cfg.n_layers == 1 and cfg.n_heads == 1
    assert TASK.describe(torch.tensor([3, 19, 25, 24, 3, 19])) == "K3 V7 . ? K3 V7"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shots=3, layout="balanced"), "dividing n_pairs"),
        (dict(shots=9), r"\[0, n_pairs=8\]"),
        (dict(shots=1, layout="sideways"), "layout must be"),
        (dict(shots=torch.tensor([1, 2])), "one count per row"),
    ],
)
def test_bad_requests_say_how_to_fix_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        recall_batch(TASK, 4, **kwargs)


def test_task_rejects_fewer_values_than_keys_and_balanced_zero_shot_without_spare_keys():
    with pytest.raises(ValueError, match="at least as many values"):
        RecallTask(n_keys=10, n_values=8)
    with pytest.raises(ValueError, match="n_keys > 8"):
        recall_batch(RecallTask(n_keys=8, n_values=8, n_pairs=8), 2, 0, layout="balanced")


@pytest.mark.parametrize("task", [TASK, SPACED])
def test_frequency_heuristic_wins_the_random_layout_and_is_a_guess_in_the_balanced_one(task):
    many = recall_batch(task, 2000, 4, layout="random", seed=8)
    assert (frequency_guess(task, many.tokens) == many.answer).float().mean() > 0.9
    fair = recall_batch(task, 2000, 1, layout="balanced", seed=8)
    acc = (frequency_guess(task, fair.tokens, seed=1) == fair.answer).float().mean().item()
    assert abs(acc - 1 / task.n_pairs) < 0.03  # one of the 8 equally frequent values, at random


class RecallOracle(nn.Module):
    """Answers by looking up the last demonstration of the query's key (a perfect induction head)."""

    def __init__(self, task):
        super().__init__()
        self.task = task
        self.anchor = nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.anchor.device

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, self.task.vocab_size)
        for i, row in enumerate(idx):
            shown = dict(demos(self.task, torch.cat([row, row[-1:]])))  # demos() expects the answer at the end
            logits[i, -1, shown.get(row[-1].item(), 0)] = 1.0
        return logits


@pytest.mark.parametrize("task", [TASK, SPACED])
def test_accuracy_by_shots_scores_the_query_answer(task):
    acc = accuracy_by_shots(RecallOracle(task), task, (0, 1, 2, 8), n=100)
    assert acc[1] == acc[2] == acc[8] == 1.0 and acc[0] == 0.0  # 0 shots: the oracle answers a key, never right


class FixedAttention(nn.Module):
    """attention_maps() returns whatever maps the test builds."""

    def __init__(self, maps):
        super().__init__()
        self.maps, self.anchor = maps, nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.anchor.device

    def attention_maps(self, idx):
        return self.maps


def test_induction_and_previous_token_scores_find_the_heads_that_have_those_patterns():
    b = recall_batch(SPACED, 8, 2, layout="random", seed=9)
    B, T = b.tokens.shape
    prev = torch.zeros(B, T, T)
    prev[:, 0, 0] = 1
    prev[:, torch.arange(1, T), torch.arange(T - 1)] = 1  # every position looks at its predecessor
    induct = torch.zeros(B, T, T)
    for i, row in enumerate(b.tokens.tolist()):
        for t in range(T):
            targets = [s for s in range(1, t + 1) if row[s - 1] == row[t] and row[t] < TASK.n_keys]
            for s in targets or [t]:
                induct[i, t, s] = 1 / len(targets or [t])
    maps = torch.stack([torch.stack([prev, induct], 1), torch.stack([induct, prev], 1)])  # (L=2, B, H=2, T, T)
    induction, previous = induction_scores(FixedAttention(maps), b.tokens, TASK.n_keys)
    assert induction[0, 1].item() == pytest.approx(1.0) and induction[1, 0].item() == pytest.approx(1.0)
    assert induction[0, 0] < 0.5 and induction[1, 1] < 0.5  # a previous-token head lands on an induction target rarely
    assert previous[0, 0].item() == pytest.approx(1.0) and previous[0, 1] < 0.5  # mean of A[t, t-1] over t >= 1


def test_train_incontext_runs_and_records_loss_and_accuracy_by_shots():
    model, history = train_incontext(TASK, TASK.config(d_model=32, n_heads=2, head_dim=16), 4, eval_every=2, eval_n=8)
    assert history.eval_step == [0, 2, 4] and all(math.isfinite(x) for x in history.loss)
    assert set(history.evals[-1]["random"]) == {0, 1, 2, 4, 8} and set(history.evals[-1]["balanced"]) == {0, 1, 2, 4, 8}
    induction, previous = induction_scores(model, recall_batch(TASK, 4, 2).tokens, TASK.n_keys)
    assert induction.shape == previous.shape == (2, 2)


def test_train_incontext_records_the_probe_at_every_evaluation():
    seen = []

    def probe(model):
        seen.append(model.training)
        return len(seen)

    _, history = train_incontext(TASK, TASK.config(d_model=32, head_dim=16), 4, eval_every=2, eval_n=8, probe=probe)
    assert history.eval_step == [0, 2, 4] and [e["probe"] for e in history.evals] == [1, 2, 3]
    assert seen == [False, False, False]  # probed in eval mode, like the accuracies
