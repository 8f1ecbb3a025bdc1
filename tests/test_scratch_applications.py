"""Chapter 12's from-scratch pieces: they agree with the package and do what their docstrings promise."""

import math

import pytest
import torch

from palmbook import PaLM, PaLMConfig
from palmbook.evaluate import lm_perplexity, score_continuations
from palmbook.scratch.applications import (
    NGramLM,
    PooledClassifier,
    continuation_logprob,
    finetune_classifier,
    layer_states,
    mean_pool,
    pad_batch,
    target_collate,
    top_states,
    train_on_targets,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = PaLMConfig(vocab_size=40, d_model=32, n_layers=3, n_heads=2, head_dim=16, max_seq_len=32)
    return PaLM(cfg).eval()


def test_continuation_logprob_equals_the_package_score(model):
    ctx, cont = [3, 1, 4, 1, 5], [9, 2, 6]
    want = score_continuations(model, [ctx], [cont]).item()
    assert continuation_logprob(model, ctx, cont) == pytest.approx(want, abs=1e-5)


def test_continuation_logprob_is_the_log_of_a_product_of_next_token_probabilities(model):
    ctx, cont = [7, 7], [1, 2]
    with torch.no_grad():
        p1 = model(torch.tensor([ctx]))[0, -1].softmax(-1)[1].item()
        p2 = model(torch.tensor([[*ctx, 1]]))[0, -1].softmax(-1)[2].item()
    assert continuation_logprob(model, ctx, cont) == pytest.approx(math.log(p1 * p2), abs=1e-5)


def test_unigram_is_add_one_counts():
    ids = torch.tensor([0, 1, 1, 2, 1])
    lm = NGramLM.fit(ids, vocab_size=4, order=1)
    want = torch.tensor([2, 4, 2, 1], dtype=torch.float64) / (5 + 4)
    torch.testing.assert_close(lm.log_probs.exp().double(), want)
    assert lm(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 3, 4)


def test_bigram_rows_are_distributions_that_mix_pair_counts_and_unigram():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (2000,), generator=g)
    ids[::2] = 5  # token 5 is always followed by something random, others by 5
    lm = NGramLM.fit(ids, vocab_size=8, order=2)
    probs = lm.log_probs.exp().double()
    torch.testing.assert_close(probs.sum(-1), torch.ones(8, dtype=torch.float64), atol=1e-6, rtol=0)
    assert 0 < lm.lam < 1
    # token 7 never occurs: its row is the unigram distribution, and no probability is zero
    uni = NGramLM.fit(ids, vocab_size=8, order=1).log_probs.exp().double()
    torch.testing.assert_close(probs[7], uni, atol=1e-6, rtol=0)
    assert probs.min() > 0
    # after any token but 5 the next one is 5 in the data: the bigram has learned it
    assert probs[0, 5] > 0.9


def test_bigram_beats_unigram_on_text_with_local_structure():
    pattern = torch.tensor([0, 1, 2, 3] * 500)
    uni, bi = NGramLM.fit(pattern, 4, order=1), NGramLM.fit(pattern, 4, order=2)
    blocks = pattern[:400].view(20, 20)
    assert lm_perplexity(bi, blocks)["perplexity"] < 1.2 < 3.9 < lm_perplexity(uni, blocks)["perplexity"]


def test_bigram_generate_follows_its_table():
    lm = NGramLM.fit(torch.tensor([0, 1, 2, 3] * 200), 4, order=2)
    out = lm.generate(torch.tensor([[0]]), 8, seed=0)
    assert out.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 0]]  # lambda ~ 1: the pairs are certain


def test_layer_states_and_top_states_join_into_the_models_hidden_states(model):
    idx = torch.randint(0, 40, (2, 11))
    with torch.no_grad():
        for k in range(len(model.blocks) + 1):
            torch.testing.assert_close(top_states(model, layer_states(model, idx, k), k), model.hidden(idx))


def test_mean_pool_ignores_padding():
    h = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    torch.testing.assert_close(mean_pool(h, mask), torch.tensor([[1.0, 2.0], [6.0, 7.0]]))


def test_pad_batch_right_pads_and_masks():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_pooled_classifier_copies_the_top_blocks_and_leaves_the_model_alone(model):
    clf = PooledClassifier(model, n_classes=3, n_blocks=2, dropout=0.1)
    assert clf.start == 1 and len(clf.blocks) == 2 and all(b.dropout == 0.1 for b in clf.blocks)
    assert all(b.dropout == 0.0 for b in model.blocks)
    idx = torch.randint(0, 40, (4, 9))
    mask = torch.ones(4, 9, dtype=torch.bool)
    x = layer_states(model, idx, clf.start).detach()
    with torch.no_grad():
        clf.head.weight.normal_()
        want = clf.head(mean_pool(model.hidden(idx), mask))
        torch.testing.assert_close(clf.eval()(x, mask), want)
    before = model.blocks[2].in_proj.weight.clone()
    finetune_classifier(clf, x, mask, torch.tensor([0, 1, 2, 0]), steps=3, batch_size=4)
    assert torch.equal(model.blocks[2].in_proj.weight, before)
    assert not torch.equal(clf.blocks[1].in_proj.weight, before)
    with pytest.raises(ValueError, match="between 0 and"):
        PooledClassifier(model, 3, n_blocks=4)


def test_finetune_classifier_learns_a_separable_task(model):
    torch.manual_seed(0)
    idx = torch.randint(0, 40, (64, 8))
    labels = (idx[:, 0] < 20).long()  # the class is written in the first token
    clf = PooledClassifier(model, 2, n_blocks=1)
    x = layer_states(model, idx, clf.start).detach()
    mask = torch.ones(64, 8, dtype=torch.bool)
    losses = finetune_classifier(clf, x, mask, labels, steps=40, batch_size=32, lr=3e-3, head_lr=3e-2)
    assert sum(losses[-10:]) / 10 < 0.5 * losses[0]
    with torch.no_grad():
        assert (clf(x, mask).argmax(-1) == labels).float().mean() > 0.9


def test_train_on_targets_ignores_the_prompt():
    torch.manual_seed(0)
    cfg = PaLMConfig(vocab_size=12, d_model=32, n_layers=1, n_heads=2, head_dim=16, max_seq_len=16)
    net = PaLM(cfg)
    # Prompts are random noise; the target (after token 10) is the prompt's first token, then 11.
    g = torch.Generator().manual_seed(1)
    seqs, starts = [], []
    for _ in range(64):
        p = torch.randint(0, 10, (4,), generator=g).tolist()
        seqs.append([*p, 10, p[0], 11])
        starts.append(5)
    losses = train_on_targets(net, seqs, starts, steps=60, batch_size=32, lr=2e-2, seed=0)
    assert sum(losses[-10:]) / 10 < 0.5 < 2.0 < losses[0]
    out = net.generate(torch.tensor([[7, 3, 3, 1, 10]]), 2)
    assert out[0, -2:].tolist() == [7, 11]
    # The noise in the prompt was never a target: its loss stays near the uniform guess ln(12)
    with torch.no_grad():
        from palmbook import lm_loss

        x = torch.tensor([s[:-1] for s in seqs])
        prompt_loss = lm_loss(net(x)[:, :3], x[:, 1:4], z_loss=0.0).item()
    assert prompt_loss > 1.5


def test_target_collate_ignores_prompt_and_padding_and_shifts_by_one():
    inputs, targets = target_collate([[5, 6, 7, 8], [1, 2, 3]], [2, 1], pad_id=0)
    assert inputs.tolist() == [[5, 6, 7], [1, 2, 3]]
    # sequence 0: prompt [5, 6], target [7, 8]; sequence 1: prompt [1], target [2, 3], then one padding position
    assert targets.tolist() == [[-100, 7, 8], [2, 3, -100]]
    with pytest.raises(ValueError, match="one start per sequence"):
        target_collate([[1, 2]], [])


def test_train_on_targets_checks_its_arguments():
    cfg = PaLMConfig(vocab_size=12, d_model=16, n_layers=1, n_heads=1, head_dim=16, max_seq_len=8)
    with pytest.raises(ValueError, match="one start per sequence"):
        train_on_targets(PaLM(cfg), [[1, 2]], [], steps=1)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_init_head_reproduces_a_scikit_learn_probe(model, n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(1)
    idx = torch.randint(0, 40, (30, 7))
    mask = torch.ones(30, 7, dtype=torch.bool)
    clf = PooledClassifier(model, n_classes, n_blocks=1).eval()
    x = layer_states(model, idx, clf.start).detach()
    with torch.no_grad():
        pooled = mean_pool(model.hidden(idx), mask).numpy()
    y = [i % n_classes for i in range(30)]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(pooled, y)
    scaler, logreg = pipe.steps[0][1], pipe.steps[1][1]
    clf.init_head(logreg.coef_, logreg.intercept_, scaler.mean_, scaler.scale_)
    with torch.no_grad():
        probs = clf(x, mask).softmax(-1).double()
    torch.testing.assert_close(probs, torch.tensor(pipe.predict_proba(pooled)).double(), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="the head needs"):
        clf.init_head(torch.zeros(5, 32), torch.zeros(5))


def test_macro_f1_equals_scikit_learn():
    from sklearn.metrics import f1_score

    from palmbook.scratch.applications import macro_f1

    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 6):
        t, p = torch.randint(0, n, (50,), generator=g), torch.randint(0, n, (50,), generator=g)
        p[:5] = 0  # some classes may never be predicted
        want = f1_score(t.numpy(), p.numpy(), average="macro", labels=list(range(n)), zero_division=0)
        assert macro_f1(t.tolist(), p.tolist(), n) == pytest.approx(want, abs=1e-12)
