"""Specifications of chapter 9's from-scratch data packing, optimisers and clipping, and their agreement with the
package (palmbook.data.pack, palmbook.PaLMAdafactor) and with torch (AdamW, clip_grad_norm_)."""

import math

import pytest
import torch

from palmbook import PaLM, PaLMAdafactor, PaLMConfig, lm_loss, pack
from palmbook.scratch import training as S


def test_packing_joins_documents_with_end_tokens_and_never_pads():
    docs = [[1, 2, 3], [], [4, 5], [6, 7, 8, 9]]
    rows = S.pack_documents(docs, block_size=4, eod_id=0)
    # stream: 1 2 3 0 4 5 0 6 7 8 9 0 -> three full rows; the empty document adds no end token
    assert rows == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert S.pack_documents(docs, block_size=5, eod_id=0) == [[1, 2, 3, 0, 4], [5, 0, 6, 7, 8]]  # tail dropped


def test_packing_equals_the_package():
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(1, 50, (int(n),), generator=g).tolist() for n in torch.randint(0, 40, (30,), generator=g)]
    assert pack(docs, 17, eod_id=0).tolist() == S.pack_documents(docs, 17, eod_id=0)


def test_padding_fraction_counts_the_unused_places_of_one_padded_row_per_document():
    # 3 tokens + end = 4 of 8 places; 10 + end = 11 of 16 places -> 24 places, 15 used
    assert S.padding_fraction([3, 10], seq_len=8) == pytest.approx(1 - 15 / 24)
    assert S.padding_fraction([7, 15], seq_len=8) == 0.0  # exact fits waste nothing


def test_adamw_step_equals_torch_adamw():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3))
    opt = torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    x, m, v = p.detach().clone(), torch.zeros(5, 3), torch.zeros(5, 3)
    for k in range(1, 6):
        g = torch.randn(5, 3)
        p.grad = g.clone()
        opt.step()
        x, m, v = S.adamw_step(x, g, m, v, k, lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
        torch.testing.assert_close(x, p.detach())


def test_beta2_starts_at_zero_and_follows_one_minus_k_to_the_minus_0_8():
    assert S.beta2_schedule(1) == 0.0
    assert S.beta2_schedule(10_000) == pytest.approx(1 - 10_000**-0.8)
    assert 1 / (1 - S.beta2_schedule(10_000)) == pytest.approx(10_000**0.8)  # ~1585 steps of memory


def test_first_palm_step_moves_every_weight_by_a_tenth_of_lr_times_rms_against_the_gradient_sign():
    # k = 1: beta2 = 0 so v = g^2 and u = sign(g); RMS(u) = 1 (no clipping); m = 0.1 * lr * RMS(x) * sign(g)
    x = torch.tensor([[3.0, -4.0], [0.0, 5.0]], dtype=torch.float64)
    g = torch.tensor([[0.5, -2.0], [1e-3, -7.0]], dtype=torch.float64)
    lr = 0.01
    new, _, v = S.palm_adafactor_step(x, g, torch.zeros_like(x), torch.zeros_like(x), 1, lr)
    step = 0.1 * lr * math.sqrt((9 + 16 + 0 + 25) / 4)
    torch.testing.assert_close(new, (1 - lr**2) * x - step * g.sign())
    torch.testing.assert_close(v, g * g + 1e-30)


def test_update_clipping_caps_the_rms_of_the_normalised_update():
    # A gradient that jumps after a quiet history makes u = g / sqrt(v) large; clipping rescales it to RMS 1.
    x = torch.ones(4, 4, dtype=torch.float64)
    v = torch.full((4, 4), 1e-6, dtype=torch.float64)
    g = torch.ones(4, 4, dtype=torch.float64)
    zeros = torch.zeros_like(x)
    _, m1, _ = S.palm_adafactor_step(x, g, zeros, v, 2, lr=0.01, beta1=0.0)
    _, m2, _ = S.palm_adafactor_step(x, g, zeros, v, 2, lr=0.01, beta1=0.0, clip_threshold=None)
    assert S.rms(m1).item() == pytest.approx(0.01 * 1.0)  # a = lr * RMS(x) = 0.01, times RMS(u) = 1 after clipping
    assert S.rms(m2).item() > 1.3 * S.rms(m1).item()


def test_palm_adafactor_step_equals_the_package_optimiser_on_a_model():
    torch.manual_seed(0)
    model = PaLM(PaLMConfig.preset("palm-tiny", max_seq_len=16))
    opt = PaLMAdafactor(model.parameters(), lr=1e-2)
    ours = {n: (p.detach().clone(), torch.zeros_like(p), torch.zeros_like(p)) for n, p in model.named_parameters()}
    idx = torch.randint(0, 1024, (4, 17), generator=torch.Generator().manual_seed(1))
    for k in range(1, 4):
        loss = lm_loss(model(idx[:, :-1]), idx[:, 1:])
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        opt.step()
        opt.zero_grad()
        for n, (x, m, v) in ours.items():
            ours[n] = S.palm_adafactor_step(x, grads[n], m, v, k, lr=1e-2)
        for n, p in model.named_parameters():
            torch.testing.assert_close(ours[n][0], p.detach(), msg=n)


def test_global_norm_clipping_equals_torch_and_keeps_the_direction():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in ((3, 4), (7,), (2, 2, 2))]
    grads = [torch.randn_like(p) * 3 for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    torch_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    clipped, norm = S.clip_by_global_norm(grads, 1.0)
    torch.testing.assert_close(norm, torch_norm)
    for p, c in zip(params, clipped, strict=True):
        torch.testing.assert_close(c, p.grad)
    flat, flat_clipped = torch.cat([g.flatten() for g in grads]), torch.cat([c.flatten() for c in clipped])
    assert torch.cosine_similarity(flat, flat_clipped, dim=0).item() == pytest.approx(1.0)
    assert flat_clipped.norm().item() == pytest.approx(1.0, rel=1e-5)
    small = [g * 1e-3 for g in grads]  # under the threshold: untouched
    for a, b in zip(S.clip_by_global_norm(small, 1.0)[0], small, strict=True):
        torch.testing.assert_close(a, b)
