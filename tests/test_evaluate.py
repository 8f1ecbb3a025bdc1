"""palmbook.evaluate: likelihood scoring equals the definition, metrics equal the libraries' own numbers."""

import math

import pytest
import torch

from palmbook import PaLM, PaLMConfig
from palmbook.evaluate import (
    accuracy_interval,
    bleu,
    choose,
    classification_report,
    evaluate_lm,
    exact_match,
    generate_batched,
    lm_perplexity,
    score_continuations,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = PaLMConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=2, head_dim=16, max_seq_len=24)
    return PaLM(cfg).eval()


def definition(model, ctx, cont):
    """log p(cont | ctx) one sequence at a time, in float64."""
    ids = torch.tensor([ctx + cont])
    logp = torch.log_softmax(model(ids[:, :-1])[0].double(), -1)
    return sum(logp[t - 1, ids[0, t]].item() for t in range(len(ctx), len(ctx) + len(cont)))


def test_scores_equal_the_definition_for_mixed_lengths_in_one_batch(model):
    g = torch.Generator().manual_seed(1)
    ctxs = [torch.randint(0, 50, (n,), generator=g).tolist() for n in (1, 5, 9, 3)]
    conts = [torch.randint(0, 50, (n,), generator=g).tolist() for n in (4, 1, 6, 2)]
    got = score_continuations(model, ctxs, conts, batch_size=3)
    want = torch.tensor([definition(model, c, k) for c, k in zip(ctxs, conts, strict=True)], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    per_token = score_continuations(model, ctxs, conts, normalize="token")
    torch.testing.assert_close(per_token, want / torch.tensor([4.0, 1, 6, 2], dtype=torch.float64), atol=1e-5, rtol=0)


def test_long_sequences_lose_context_from_the_left(model):
    ctx, cont = list(range(1, 31)), [7, 8]  # 32 tokens; the model reads 24
    got = score_continuations(model, [ctx], [cont]).item()
    assert got == pytest.approx(definition(model, ctx[-22:], cont), abs=1e-5)


def test_empty_context_needs_a_start_token(model):
    with pytest.raises(ValueError, match="bos_id"):
        score_continuations(model, [[]], [[3]])
    got = score_continuations(model, [[]], [[3, 4]], bos_id=1).item()
    assert got == pytest.approx(definition(model, [1], [3, 4]), abs=1e-5)


def test_choose_picks_the_highest_scoring_candidate(model):
    ctx = [[5, 6, 7], [1, 2]]
    cands = [[[1], [2, 3], [4]], [[9], [10]]]
    picks, scores = choose(model, ctx, cands)
    for i in range(2):
        want = [definition(model, ctx[i], c) for c in cands[i]]
        assert scores[i] == pytest.approx(want, abs=1e-5)
        assert picks[i] == max(range(len(want)), key=want.__getitem__)


def test_generate_batched_equals_one_prompt_at_a_time_and_cuts_at_the_stop_token(model):
    prompts = [[1, 2, 3], [4], [5, 6, 7], [8, 9]]
    out = generate_batched(model, prompts, 6, batch_size=2)
    for p, o in zip(prompts, out, strict=True):
        assert o == model.generate(torch.tensor([p]), 6)[0, len(p) :].tolist()
    stop = out[0][2]
    cut = generate_batched(model, prompts[:1], 6, stop_token=stop)[0]
    assert cut == out[0][: out[0].index(stop)]


def test_lm_perplexity_equals_the_trainers_validation_perplexity(model):
    blocks = torch.randint(0, 50, (10, 25), generator=torch.Generator().manual_seed(2))
    got = lm_perplexity(model, blocks, batch_size=4, chars_per_token=2.5)
    ref = evaluate_lm(model, blocks, batch_size=4)
    assert got["perplexity"] == pytest.approx(ref["val_ppl"], rel=1e-5)
    assert got["tokens"] == ref["val_tokens"] == 240
    assert got["nats_per_char"] == pytest.approx(ref["val_loss"] / 2.5, rel=1e-5)
    assert lm_perplexity(model, blocks, batch_size=4, max_batches=1)["tokens"] == 96


def test_a_uniform_scorer_has_perplexity_equal_to_the_vocabulary_size():
    blocks = torch.randint(0, 50, (3, 9))
    assert lm_perplexity(lambda x: torch.zeros(*x.shape, 50), blocks)["perplexity"] == pytest.approx(50, rel=1e-5)


def test_classification_report_counts_and_averages():
    y = ["a", "a", "a", "b", "c", "c"]
    p = ["a", "a", "b", "b", "c", "a"]
    r = classification_report(y, p, labels=["a", "b", "c"])
    assert r.accuracy == pytest.approx(4 / 6)
    assert r.confusion == [[2, 1, 0], [0, 1, 0], [1, 0, 1]]
    f1 = {"a": 2 * 2 / (2 * 2 + 1 + 1), "b": 2 * 1 / (2 * 1 + 1 + 0), "c": 2 * 1 / (2 * 1 + 0 + 1)}
    assert r.macro_f1 == pytest.approx(sum(f1.values()) / 3)
    with pytest.raises(ValueError, match="not in labels"):
        classification_report(["a"], ["z"], labels=["a"])


def test_macro_f1_punishes_ignoring_a_class_that_accuracy_hides():
    y = ["a"] * 9 + ["b"]
    r = classification_report(y, ["a"] * 10, labels=["a", "b"])
    assert r.accuracy == 0.9 and r.macro_f1 == pytest.approx((2 * 9 / (2 * 9 + 1)) / 2)


def test_accuracy_interval_contains_the_estimate_and_narrows_with_n():
    lo, hi = accuracy_interval(30, 100)
    assert lo < 0.3 < hi
    lo2, hi2 = accuracy_interval(300, 1000)
    assert hi2 - lo2 < hi - lo
    # Wilson interval, by its formula
    z, p, n = 1.959963984540054, 0.3, 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (lo, hi) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_exact_match_strips_whitespace_only_when_asked():
    assert exact_match([" 十 ", "一百"], ["十", "一百零"]) == 0.5
    assert exact_match([" 十 "], ["十"], strip=False) == 0.0


def test_bleu_is_100_for_identical_text_and_needs_zh_tokenization_for_chinese():
    refs = ["一千二百三十四", "五万零六"]
    assert bleu(refs, refs, tokenize="zh") == pytest.approx(100.0)
    hyp = ["一千二百三十五", "五万零六"]
    import sacrebleu

    assert bleu(hyp, refs, tokenize="zh") == pytest.approx(sacrebleu.corpus_bleu(hyp, [refs], tokenize="zh").score)
    # Without Chinese tokenization each number is one "word": a one-character error loses the whole sentence.
    assert bleu(hyp, refs, tokenize="13a") < bleu(hyp, refs, tokenize="zh")


def test_metrics_refuse_mismatched_lengths():
    for fn in (exact_match, bleu):
        with pytest.raises(ValueError, match="one prediction per reference"):
            fn(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="one prediction per example"):
        classification_report(["a"], [])


def test_progress_shows_one_bar_over_the_evaluation_batches_and_changes_no_number(capsys):
    from palmbook.evaluate import evaluate_lm

    torch.manual_seed(0)
    model = PaLM(PaLMConfig.preset("palm-tiny").replace(max_seq_len=8))
    blocks = torch.randint(0, model.config.vocab_size, (6, 9))
    quiet = evaluate_lm(model, blocks, batch_size=2)
    assert "evaluating" not in capsys.readouterr().err
    shown = evaluate_lm(model, blocks, batch_size=2, progress=True)
    assert "evaluating" in capsys.readouterr().err and shown == quiet
