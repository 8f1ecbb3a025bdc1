"""Multi-step addition: every answer checked by an independent computation, masks, splits, decoding, scoring."""

import math

import pytest
import torch
from torch import nn

from palmbook.arithmetic import (
    CHARS,
    PAD,
    addition_batch,
    addition_config,
    complete,
    cot_accuracy,
    decode,
    encode,
    format_problem,
    majority_vote,
    read_answer,
    sample_terms,
    train_arithmetic,
)


@pytest.mark.parametrize("worked", [False, True])
def test_every_generated_answer_agrees_with_python_arithmetic(worked):
    b = addition_batch(500, (2, 3, 4, 7), worked=worked, seed=1)
    for row, n, total in zip(b.tokens, b.n_terms.tolist(), b.total.tolist(), strict=True):
        text = decode(row).rstrip(" ")
        prompt, answer = text.split("=")
        terms = [int(t) for t in prompt.split("+")]
        assert len(terms) == n and eval(prompt) == sum(terms) == total  # digits and "+" only
        assert answer.endswith(";") and read_answer(answer) == total
        fields = [int(x) for x in answer[:-1].split(",")]
        running = [sum(terms[: i + 1]) for i in range(1, n)]  # independent of the module's accumulate
        assert fields == (running if worked else [total])


def test_direct_and_worked_forms_share_their_prompts_for_one_seed():
    direct, worked = addition_batch(50, 3, worked=False, seed=2), addition_batch(50, 3, worked=True, seed=2)
    assert torch.equal(direct.terms, worked.terms)
    p = int(direct.prompt_len[0])
    assert torch.equal(direct.tokens[:, :p], worked.tokens[:, :p])


@pytest.mark.parametrize("worked", [False, True])
def test_loss_mask_covers_exactly_the_answer_characters(worked):
    b = addition_batch(100, (2, 5), worked=worked, seed=3, seq_len=40)
    for row, mask, p, terms, n in zip(b.tokens, b.loss_mask, b.prompt_len, b.terms, b.n_terms, strict=True):
        prompt, answer = format_problem(terms[:n].tolist(), worked)
        assert decode(row[mask]) == answer and int(p) == len(prompt)
        assert mask.nonzero()[:, 0].tolist() == list(range(len(prompt), len(prompt) + len(answer)))
        assert (row[len(prompt + answer) :] == PAD).all() and not mask[len(prompt + answer) :].any()


def test_terms_have_exactly_the_requested_number_of_digits():
    for digits in (1, 2, 3):
        terms, n = sample_terms(400, (2, 4), digits=digits, split="any", seed=4)
        used = terms[torch.arange(terms.shape[1]) < n[:, None]]
        assert used.min() >= (10 ** (digits - 1) if digits > 1 else 0) and used.max() < 10**digits
        assert (terms[torch.arange(terms.shape[1]) >= n[:, None]] == 0).all()


def test_train_and_test_problems_never_overlap_and_test_is_one_in_ten():
    def problems(split, count, seed):
        terms, n = sample_terms(count, 2, split=split, seed=seed)
        return {tuple(row[:k]) for row, k in zip(terms.tolist(), n.tolist(), strict=True)}

    # 90 * 90 = 8,100 two-term problems; these draws see (almost surely) every one of each split
    train, test = problems("train", 100_000, 5), problems("test", 20_000, 6)
    assert not train & test and len(train | test) == 8100
    assert 0.08 < len(test) / 8100 < 0.12


def test_same_seed_same_problems():
    a, b = addition_batch(32, (2, 3), worked=True, seed=12), addition_batch(32, (2, 3), worked=True, seed=12)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a.terms, addition_batch(32, (2, 3), worked=True, seed=13).terms)


def test_tokenizer_round_trips_and_names_the_vocabulary_on_bad_input():
    text = "12+34+56=46,102; "
    assert decode(encode(text)) == text and len(CHARS) == 15
    with pytest.raises(ValueError, match="arithmetic vocabulary"):
        encode("12-3")


@pytest.mark.parametrize(
    "text, expected",
    [("102;", 102), ("46,102;", 102), ("46,102;999", 102), ("46,102", None), (",;", None), ("4a;", None)],
)
def test_read_answer_takes_the_last_number_before_the_stop(text, expected):
    assert read_answer(text) == expected


def test_majority_vote_ignores_unreadable_samples_and_breaks_ties_by_order():
    assert majority_vote([[3, 4, 4], [None, 7, None], [None, None], [5, 6]]) == [4, 7, None, 5]


def test_bad_requests_say_how_to_fix_them():
    with pytest.raises(ValueError, match="at least 2"):
        format_problem([5], worked=False)
    with pytest.raises(ValueError, match="counts >= 2"):
        sample_terms(4, 1)
    with pytest.raises(ValueError, match="split must be"):
        sample_terms(4, 2, split="validation")
    with pytest.raises(ValueError, match="shorter than the longest"):
        addition_batch(4, 3, worked=True, seq_len=5)


def test_config_fits_the_longest_problem_of_either_form():
    cfg = addition_config(6)
    prompt, answer = format_problem([99] * 6, worked=True)
    assert cfg.vocab_size == 15 and cfg.max_seq_len == len(prompt + answer) == 18 + 20


@pytest.mark.parametrize("worked", [False, True])
def test_running_sums_modulo_ten_agree_with_python_arithmetic(worked):
    b = addition_batch(400, (2, 3, 5, 8), worked=worked, digits=1, modulo=10, seed=21)
    for row, mask, n, total in zip(b.tokens, b.loss_mask, b.n_terms.tolist(), b.total.tolist(), strict=True):
        prompt, answer = decode(row).rstrip(" ").split("=")
        terms = [int(t) for t in prompt.split("+")]
        assert len(terms) == n and all(0 <= t <= 9 for t in terms) and total == sum(terms) % 10
        fields = [int(x) for x in answer[:-1].split(",")]
        running = [sum(terms[: i + 1]) % 10 for i in range(1, n)]  # independent of the module's accumulate
        assert fields == (running if worked else [total]) and all(len(f) == 1 for f in answer[:-1].split(","))
        assert decode(row[mask]) == answer


def test_modulo_config_fits_its_longest_problem_and_bad_modulo_is_refused():
    cfg = addition_config(8, digits=1, modulo=10)
    prompt, answer = format_problem([9] * 8, worked=True, modulo=10)
    assert cfg.max_seq_len == len(prompt + answer) == 16 + 14
    assert format_problem([3, 5, 9], True, modulo=10) == ("3+5+9=", "8,7;")
    with pytest.raises(ValueError, match="modulo"):
        format_problem([3, 5], True, modulo=1)


class AdditionOracle(nn.Module):
    """Writes the right answer (plus ``error``) character by character, as logits: a stand-in for a trained PaLM."""

    def __init__(self, worked, error=0, modulo=None):
        super().__init__()
        self.worked, self.error, self.modulo = worked, error, modulo
        self.anchor = nn.Parameter(torch.zeros(()))
        self.config = addition_config(8)

    @property
    def device(self):
        return self.anchor.device

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, len(CHARS))
        for i, row in enumerate(idx.tolist()):
            prompt, written = decode(row).split("=")
            terms = [int(t) for t in prompt.split("+")]
            _, answer = format_problem([*terms[:-1], terms[-1] + self.error], self.worked, modulo=self.modulo)
            logits[i, -1, encode(answer[len(written)] if len(written) < len(answer) else ";")[0]] = 50.0
        return logits


@pytest.mark.parametrize("worked", [False, True])
def test_cot_accuracy_is_one_for_a_perfect_model_and_zero_for_one_that_is_always_off(worked):
    assert cot_accuracy(AdditionOracle(worked), 5, worked=worked, n_problems=20).accuracy == 1.0
    score = cot_accuracy(AdditionOracle(worked, error=1), 5, worked=worked, n_problems=20)
    assert score.accuracy == 0.0 and all(a[0] == t + 1 for a, t in zip(score.answers, _totals(5, 20), strict=True))


def _totals(n_terms, n_problems):
    return addition_batch(n_problems, n_terms, worked=False, split="test", seed=4321).total.tolist()


def test_self_consistency_votes_over_samples():
    score = cot_accuracy(AdditionOracle(True), 3, worked=True, n_problems=10, samples=3, temperature=1.0)
    assert score.accuracy == 1.0 and all(len(a) == 3 for a in score.answers)
    with pytest.raises(ValueError, match="temperature > 0"):
        cot_accuracy(AdditionOracle(True), 3, worked=True, samples=3)


def test_complete_stops_every_row_after_the_stop_token():
    prompts = torch.tensor([encode("12+34="), encode("99+99=")])
    new = complete(AdditionOracle(True), prompts, 10)
    assert [decode(r) for r in new] == ["46;;", "198;"]  # a finished row keeps writing the stop token


def test_train_arithmetic_runs_and_records_accuracy_per_number_of_terms():
    cfg = addition_config(4, d_model=32, n_layers=2, n_heads=2, head_dim=16)
    model, history = train_arithmetic(cfg, 4, worked=True, n_terms=(2, 3), eval_every=2, eval_terms=(3, 4), eval_n=4)
    assert history.eval_step == [0, 2, 4] and set(history.evals[-1]) == {3, 4}
    assert all(math.isfinite(x) for x in history.loss) and model.config.max_seq_len == cfg.max_seq_len


def test_cot_accuracy_scores_running_sums_modulo_ten():
    score = cot_accuracy(AdditionOracle(True, modulo=10), 6, worked=True, n_problems=20, digits=1, modulo=10)
    assert score.accuracy == 1.0 and all(0 <= a[0] <= 9 for a in score.answers)
    off = cot_accuracy(AdditionOracle(False, error=1, modulo=10), 6, worked=False, n_problems=20, digits=1, modulo=10)
    assert off.accuracy == 0.0


def test_train_arithmetic_modulo_runs():
    cfg = addition_config(5, digits=1, modulo=10, d_model=32, n_layers=2, n_heads=2, head_dim=16)
    _, history = train_arithmetic(cfg, 3, worked=True, n_terms=(2, 4), digits=1, modulo=10, eval_every=3,
                                  eval_terms=(5,), eval_n=4)  # fmt: skip
    assert history.eval_step == [0, 3] and 0 <= history.evals[-1][5] <= 1
