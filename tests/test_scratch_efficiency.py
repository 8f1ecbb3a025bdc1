"""Specifications of chapter 13's from-scratch int8 quantisation, size accounting and distillation loss, and their
agreement with torch's dynamic quantisation and with palmbook's model."""

import copy
import warnings

import pytest
import torch
from torch import nn

from palmbook import PaLM, PaLMConfig, lm_loss
from palmbook.scratch import efficiency as S


def quantized(module: nn.Module) -> nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return quantize_dynamic(copy.deepcopy(module), {nn.Linear: per_channel_dynamic_qconfig})


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_per_channel_codes_and_scales_equal_torch_quantize_dynamic():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(96, 40, bias=False))
    lin[0].weight.data[3] *= 20  # one loud row: per-channel scales must differ
    qw = quantized(lin)[0].weight()
    codes, scale = S.quantize_symmetric(lin[0].weight)
    assert torch.equal(codes, qw.int_repr())
    torch.testing.assert_close(scale, qw.q_per_channel_scales().float(), rtol=0, atol=0)
    assert scale[3] > 10 * scale[4]


def test_dequantized_weights_are_within_half_a_step_of_the_originals():
    w = torch.randn(16, 64)
    for per_channel in (True, False):
        codes, scale = S.quantize_symmetric(w, per_channel=per_channel)
        err = (S.dequantize(codes, scale) - w).abs()
        step = scale[:, None] if per_channel else scale
        assert (err <= step * (0.5 + 1e-5)).all()  # half a step, up to float rounding
        assert codes.dtype == torch.int8 and codes.min() >= -128 and codes.max() <= 127


def test_per_channel_beats_per_tensor_when_rows_differ_in_size():
    w = torch.randn(32, 64) * torch.logspace(-2, 0, 32)[:, None]  # rows 100x apart in size
    errs = {}
    for per_channel in (True, False):
        codes, scale = S.quantize_symmetric(w, per_channel=per_channel)
        errs[per_channel] = (S.dequantize(codes, scale) - w).pow(2).mean().sqrt()
    assert errs[True] < errs[False] / 2


def test_fewer_bits_give_larger_errors():
    w = torch.randn(32, 64)
    errors = [(S.dequantize(*S.quantize_symmetric(w, bits=b)) - w).abs().mean() for b in (8, 6, 4, 2)]
    assert errors == sorted(errors)


def test_int8_linear_from_scratch_equals_torchs_dynamic_int8_linear():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(128, 48, bias=False))
    q = quantized(lin)
    codes, scale = S.quantize_symmetric(lin[0].weight)
    x = torch.randn(5, 128)
    torch.testing.assert_close(S.int8_linear(x, codes, scale), q(x), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(q(x), lin(x), atol=1e-6)  # int8 is an approximation, not the float result


def test_activation_codes_keep_zero_exact_and_use_seven_bits():
    x = torch.tensor([-1.0, 0.0, 0.5, 3.0])
    codes, scale, zp = S.quantize_activations(x)
    assert codes.min() >= 0 and codes.max() <= 127
    assert codes[1].item() == zp  # 0.0 is a code exactly
    assert scale == pytest.approx(4.0 / 127)


def test_int8_model_is_smaller_and_still_generates():
    torch.manual_seed(0)
    model = PaLM(PaLMConfig.preset("palm-tiny", max_seq_len=32)).eval()
    q = quantized(model)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    # Each Linear weight shrinks from 4 bytes to 1 (+16 bytes of scale and zero point per output row).
    saved = S.state_bytes(model) - S.state_bytes(q)
    assert 3 * linear - 16 * 2000 < saved <= 3 * linear
    assert S.saved_bytes(q) < S.saved_bytes(model)
    idx = torch.randint(0, 1024, (1, 5))
    out = q.generate(idx, 6)  # the KV-cache decoding path works on int8 layers
    with torch.no_grad():
        step = q(idx)[:, -1].argmax(-1)
    assert out.shape == (1, 11) and out[0, 5] == step[0]


def test_csr_storage_beats_dense_only_above_half_sparsity():
    w = torch.randn(64, 64)
    dense = w.numel() * 4
    w[:, :24] = 0  # 37.5% zeros: CSR is larger than dense
    assert S.csr_bytes(w) > dense
    w[:, :40] = 0  # 62.5% zeros: smaller
    assert S.csr_bytes(w) < dense


def test_distillation_loss_without_teacher_is_the_language_model_loss():
    s, y = torch.randn(2, 3, 7), torch.randint(0, 7, (2, 3))
    torch.testing.assert_close(S.distillation_loss(s, None, y, alpha=0.0), lm_loss(s, y))


def test_soft_term_is_zero_when_the_student_matches_the_teacher_and_positive_otherwise():
    t, y = torch.randn(2, 3, 7), torch.randint(0, 7, (2, 3))
    assert S.distillation_loss(t, t, y, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert S.distillation_loss(torch.randn(2, 3, 7), t, y, alpha=1.0).item() > 0


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_term_gradient_is_t_times_the_difference_of_softened_probabilities(temperature):
    s = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    t, y = torch.randn(2, 3, 7, dtype=torch.float64), torch.randint(0, 7, (2, 3))
    S.distillation_loss(s, t, y, temperature=temperature, alpha=1.0).backward()
    expected = temperature * ((s.detach() / temperature).softmax(-1) - (t / temperature).softmax(-1)) / 6
    torch.testing.assert_close(s.grad, expected.to(s.grad.dtype), rtol=1e-5, atol=1e-6)


def test_distilling_brings_the_student_closer_to_the_teacher_than_training_alone():
    torch.manual_seed(0)
    cfg = PaLMConfig.preset("palm-tiny", max_seq_len=16)
    teacher = PaLM(cfg).eval()
    blocks = torch.randint(0, 1024, (16, 17), generator=torch.Generator().manual_seed(1))
    x, y = blocks[:4, :-1], blocks[:4, 1:]
    kls = {}
    for alpha in (1.0, 0.0):
        torch.manual_seed(1)  # the same student initialisation for both
        student = PaLM(cfg.replace(d_model=32, n_heads=2, d_ff=128))
        with torch.no_grad():
            before = S.distillation_loss(student(x), teacher(x), y, alpha=1.0).item()
        losses = S.distill(student, teacher, blocks, steps=30, batch_size=4, lr=1e-2, alpha=alpha, progress=False)
        with torch.no_grad():
            kls[alpha] = S.distillation_loss(student(x), teacher(x), y, alpha=1.0).item()
        assert len(losses) == 30
    assert kls[1.0] < 0.75 * before and kls[1.0] < kls[0.0]
    with pytest.raises(ValueError, match="needs a teacher"):
        S.distill(student, None, blocks, steps=1, batch_size=4, alpha=0.5, progress=False)


def test_distilling_students_together_trains_each_exactly_as_distilling_it_alone():
    cfg = PaLMConfig.preset("palm-tiny", max_seq_len=16)
    torch.manual_seed(0)
    teacher = PaLM(cfg).eval()
    blocks = torch.randint(0, 1024, (16, 17), generator=torch.Generator().manual_seed(1))
    small = cfg.replace(d_model=32, n_heads=2, d_ff=128)
    inits = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        inits.append(PaLM(small).state_dict())

    def student(state):
        s = PaLM(small)
        s.load_state_dict(state)
        return s

    together = [student(st) for st in inits]
    losses = S.distill_together(together, teacher, blocks, steps=6, batch_size=4, lr=1e-2, seed=3, progress=False)
    for state, trained, history in zip(inits, together, losses, strict=True):
        alone = student(state)
        assert S.distill(alone, teacher, blocks, steps=6, batch_size=4, lr=1e-2, seed=3, progress=False) == history
        for a, b in zip(alone.parameters(), trained.parameters(), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="at least one student"):
        S.distill_together([], teacher, blocks, steps=1, batch_size=4, progress=False)
