"""Chapter 2's from-scratch embedding pieces, checked against torch and palmbook.PaLM."""

import math

import pytest
import torch
from sklearn.decomposition import PCA

from palmbook import PaLM, PaLMConfig
from palmbook.scratch.embeddings import (
    cosine_neighbours,
    embed_by_lookup,
    embed_by_one_hot,
    initial_loss_estimate,
    one_hot,
    pca,
    piece_category,
)


def test_one_hot_has_a_single_one_in_the_id_column():
    ids = torch.tensor([[2, 0], [1, 2]])
    oh = one_hot(ids, 3)
    assert oh.shape == (2, 2, 3)
    assert torch.equal(oh.sum(-1), torch.ones(2, 2))
    assert torch.equal(oh.argmax(-1), ids)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        one_hot(torch.tensor([3]), 3)
    with pytest.raises(TypeError, match="long"):
        one_hot(torch.tensor([1.0]), 3)


def test_one_hot_times_matrix_is_a_row_lookup_and_equals_palm_embed(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 7))
    weight = tiny_model.embed.weight.detach()
    by_matmul = embed_by_one_hot(ids, weight)
    torch.testing.assert_close(by_matmul, embed_by_lookup(ids, weight), rtol=0, atol=0)
    torch.testing.assert_close(by_matmul, tiny_model.embed(ids).detach(), rtol=0, atol=0)


def test_initial_loss_estimate_limits():
    V = 4096
    # No self logit: every logit ~N(0,1) -> ln(V-1) + 1/2.
    assert initial_loss_estimate(0.0, V) == pytest.approx(math.log(V - 1) + 0.5, abs=1e-3)
    # A dominant self logit s: the loss is about s.
    assert initial_loss_estimate(40.0, V) == pytest.approx(40.0, abs=1e-6)
    assert initial_loss_estimate(16.0, V) > max(16.0, math.log(V))


def test_initial_loss_estimate_predicts_embedding_layernorm_tied_output():
    """A PaLM with no blocks: E[x] -> LayerNorm -> logits h E^T / sqrt(d). Its loss on random targets ~ estimate."""
    torch.manual_seed(0)
    V, d = 2048, 256
    E = torch.randn(V, d)
    x = torch.randint(0, V, (4096,))
    y = torch.randint(0, V, (4096,))
    h = torch.nn.functional.layer_norm(E[x], (d,))
    logits = h @ E.T / math.sqrt(d)
    self_logit = logits.gather(1, x[:, None]).mean().item()
    assert self_logit == pytest.approx(math.sqrt(d), rel=0.05)
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    assert loss == pytest.approx(initial_loss_estimate(math.sqrt(d), V), rel=0.03)


def test_a_fresh_palm_logit_for_the_input_token_is_of_order_sqrt_d():
    torch.manual_seed(0)
    cfg = PaLMConfig.preset("palm-tiny")
    model = PaLM(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (4, 64))
    with torch.no_grad():
        logits = model(idx)
    own = logits.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    others = logits.mean().item()
    assert own.mean().item() > 0.5 * math.sqrt(cfg.d_model)  # blocks add to the residual stream, diluting it
    assert abs(others) < 0.5


def test_cosine_neighbours_match_brute_force():
    torch.manual_seed(0)
    W = torch.randn(50, 8)
    sims, nbrs = cosine_neighbours(W, [3, 7], k=4)
    for row, i in enumerate([3, 7]):
        brute = torch.nn.functional.cosine_similarity(W[i : i + 1], W, dim=-1)
        brute[i] = -2
        values, order = brute.sort(descending=True)
        assert nbrs[row].tolist() == order[:4].tolist()
        torch.testing.assert_close(sims[row], values[:4])
    assert 3 not in nbrs[0].tolist()


def test_cosine_neighbours_finds_a_planted_near_duplicate():
    torch.manual_seed(0)
    W = torch.randn(100, 16)
    W[42] = 3 * W[5] + 0.01 * torch.randn(16)  # same direction, different length
    _, nbrs = cosine_neighbours(W, [5], k=1)
    assert nbrs.item() == 42


def test_pca_matches_sklearn_up_to_sign_and_is_deterministic():
    torch.manual_seed(0)
    x = torch.randn(200, 10) @ torch.randn(10, 10)
    coords, ratio = pca(x, k=3)
    ref = PCA(n_components=3).fit(x.numpy())
    ref_coords = torch.from_numpy(ref.transform(x.numpy())).float()
    for j in range(3):
        sign = torch.sign((coords[:, j] * ref_coords[:, j]).sum())
        torch.testing.assert_close(coords[:, j], sign * ref_coords[:, j], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ratio, torch.from_numpy(ref.explained_variance_ratio_).float())
    torch.testing.assert_close(pca(x, 3)[0], coords, rtol=0, atol=0)
    assert ratio[0] >= ratio[1] >= ratio[2]


@pytest.mark.parametrize(
    ("piece", "category"),
    [
        ("7", "digit"),
        ("▁,", "punctuation"),
        ("?", "punctuation"),
        ("HAMLET", "speaker name"),
        ("▁HAMLET", "speaker name"),
        ("HAM", "capitalised word"),
        ("The", "capitalised word"),
        ("▁King", "capitalised word"),
        ("▁love", "word"),
        ("ing", "word piece"),
        ("<0xE6>", "byte"),
        ("\n", "space / newline / special"),
        ("▁▁", "space / newline / special"),
        ("</s>", "space / newline / special"),
    ],
)
def test_piece_category(piece, category):
    assert piece_category(piece, {"HAMLET", "HORATIO"}) == category
