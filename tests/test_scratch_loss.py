"""Chapter 5's from-scratch output layer and loss agree with the package and with PyTorch."""

import math

import torch
import torch.nn.functional as F

from palmbook import PaLM, PaLMConfig, lm_loss
from palmbook.scratch.loss import cross_entropy, log_softmax, logsumexp, output_logits, palm_loss, softmax


def test_output_logits_equal_the_model_output_layer():
    torch.manual_seed(0)
    model = PaLM(PaLMConfig.preset("palm-tiny")).eval()
    idx = torch.randint(0, model.config.vocab_size, (2, 10))
    with torch.no_grad():
        h = model.hidden(idx)
        ours = output_logits(h, model.embed.weight)
        torch.testing.assert_close(ours, model.logits(h))
        torch.testing.assert_close(ours, model(idx))


def test_softmax_of_one_zero_zero():
    p = softmax(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    e = math.e
    torch.testing.assert_close(p, torch.tensor([e / (e + 2), 1 / (e + 2), 1 / (e + 2)], dtype=torch.float64))
    assert [round(x, 3) for x in p.tolist()] == [0.576, 0.212, 0.212]


def test_softmax_ignores_a_shift_but_log_z_moves_with_it():
    z = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(softmax(z + 5.0), softmax(z))
    torch.testing.assert_close(logsumexp(z + 5.0), logsumexp(z) + 5.0)


def test_logsumexp_and_log_softmax_equal_torch_and_do_not_overflow():
    z = torch.randn(3, 11) * 4
    torch.testing.assert_close(logsumexp(z), torch.logsumexp(z, -1))
    torch.testing.assert_close(log_softmax(z), F.log_softmax(z, -1))
    big = torch.tensor([1000.0, 999.0])
    assert torch.isfinite(logsumexp(big)) and math.isclose(
        logsumexp(big).item(), 1000 + math.log1p(math.exp(-1)), rel_tol=1e-6
    )


def test_cross_entropy_equals_torch():
    torch.manual_seed(0)
    logits, targets = torch.randn(13, 9), torch.randint(0, 9, (13,))
    torch.testing.assert_close(cross_entropy(logits, targets), F.cross_entropy(logits, targets))


def test_palm_loss_equals_package_lm_loss_parts():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 6, 17) * 3 + 2, torch.randint(0, 17, (2, 6))
    for coef in (0.0, 1e-4, 0.1):
        ours = palm_loss(logits, targets, coef)
        theirs = lm_loss(logits, targets, z_loss=coef, return_parts=True)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b)


def test_uniform_logits_give_loss_ln_v():
    V = 50
    _, ce, _, log_z = palm_loss(torch.zeros(4, V), torch.randint(0, V, (4,)), 0.0)
    assert math.isclose(ce.item(), math.log(V), rel_tol=1e-6)
    assert math.isclose(log_z.item(), math.log(V), rel_tol=1e-6)


def test_palm_loss_upcasts_bf16_and_keeps_float64():
    targets = torch.tensor([0, 1])
    assert palm_loss(torch.randn(2, 5).bfloat16(), targets)[0].dtype == torch.float32
    assert palm_loss(torch.randn(2, 5, dtype=torch.float64), targets)[0].dtype == torch.float64


def test_palm_loss_gradient_equals_package_lm_loss_gradient():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 4, 13) * 3 + 1, torch.randint(0, 13, (3, 4))
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    palm_loss(ours, targets)[0].backward()
    lm_loss(theirs, targets).backward()
    torch.testing.assert_close(ours.grad, theirs.grad)
