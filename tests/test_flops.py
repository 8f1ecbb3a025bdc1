"""FLOP counts and MFU against the paper's Appendix B / Table 22."""

from __future__ import annotations

import pytest
import torch

from palmbook import PaLM, PaLMConfig, lm_loss
from palmbook.flops import (
    PEAK_FLOPS,
    PEAK_PRECISION,
    flops_per_token,
    measure_matmul_peak,
    memory_estimate,
    mfu,
    peak_flops_for,
)


@pytest.mark.parametrize(("preset", "tflops"), [("palm-8b", 0.0550), ("palm-62b", 0.388), ("palm-540b", 3.28)])
def test_flops_per_token_reproduces_table_22(preset, tflops):
    cfg = PaLMConfig.preset(preset)
    assert round(flops_per_token(cfg) / 1e12, 4 if tflops < 0.1 else 3 if tflops < 1 else 2) == tflops


def test_table_22_needs_the_embedding_in_n():
    cfg = PaLMConfig.preset("palm-8b")
    without_embedding = cfg.num_parameters(include_norms=False) - cfg.vocab_size * cfg.d_model
    assert round(flops_per_token(cfg, n_params=without_embedding) / 1e12, 4) != 0.0550


def test_flops_formula_is_6n_plus_12_lhqt():
    cfg = PaLMConfig.preset("palm-tiny")
    n = cfg.num_parameters(include_norms=False)
    assert flops_per_token(cfg, seq_len=100) == 6 * n + 12 * 2 * 4 * 16 * 100
    assert flops_per_token(cfg, attention=False) == 6 * n


def test_mfu_of_palm_540b_is_46_2_percent():
    cfg = PaLMConfig.preset("palm-540b")
    peak = 6144 * 275e12
    assert round(mfu(238.3e3, flops_per_token(cfg), peak), 3) == 0.462
    assert round(mfu(238.3e3, flops_per_token(cfg, attention=False), peak), 3) == 0.457


def test_memory_estimate_counts_two_fp32_moments_and_grows_with_tokens():
    cfg = PaLMConfig.preset("palm-tiny")
    est = memory_estimate(cfg, optimizer="palm")
    n = PaLM(cfg).num_parameters()
    assert est.weights == 4 * n and est.gradients == 4 * n and est.optimizer == 8 * n
    assert est.total(256) - est.total(128) == 128 * est.activations_per_token
    assert memory_estimate(cfg, rematerialize=True).activations_per_token < est.activations_per_token


def test_memory_estimate_counts_the_one_vocabulary_sized_tensor_lm_loss_saves():
    cfg = PaLMConfig.preset("palm-tiny")
    est, remat = memory_estimate(cfg), memory_estimate(cfg, rematerialize=True)
    per_block = 2 * cfg.d_model + cfg.fused_dim + cfg.n_heads * cfg.head_dim + cfg.d_ff
    assert est.activations_per_token == cfg.n_layers * per_block * 2 + cfg.vocab_size * 4
    assert remat.activations_per_token == (cfg.n_layers * cfg.d_model + per_block) * 2 + cfg.vocab_size * 4
    # what lm_loss really saves for backward: exactly one (N, V) float32 tensor, the log-softmax
    n_tok = 6
    logits = torch.randn(n_tok, cfg.vocab_size, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        lm_loss(logits, torch.randint(0, cfg.vocab_size, (n_tok,)))
    big = [t for t in saved if t.numel() >= cfg.vocab_size]
    assert [(t.shape, t.dtype) for t in big] == [((n_tok, cfg.vocab_size), torch.float32)]


def test_peak_precision_is_fp16_only_where_there_is_no_bf16():
    assert PEAK_PRECISION.keys() == PEAK_FLOPS.keys()
    assert {k for k, v in PEAK_PRECISION.items() if v == "fp16"} == {"V100", "T4"}
    assert set(PEAK_PRECISION.values()) == {"bf16", "fp16"}


def test_matmul_peak_is_measured_in_flops_per_second():
    peak = measure_matmul_peak(n=128, repeats=3, warmup=1, device="cpu")
    assert len(peak.samples) == 3 and peak.best == max(peak.samples) and peak.best >= peak.median > 0
    assert peak.device == "cpu" and peak.dtype == "float32"
    # 2 n^3 FLOPs in a positive time: a CPU lands between a megaflop and a petaflop per second
    assert 1e6 < peak.best < 1e15
    assert torch.get_num_threads() >= 1


def test_peak_lookup_knows_data_center_gpus():
    assert peak_flops_for("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops_for("NVIDIA H100 PCIe") == 756e12
    assert peak_flops_for("Intel Xeon") is None


def test_a_model_too_large_for_ram_is_refused_before_allocation_naming_size_and_fix(monkeypatch):
    from palmbook import flops

    config = PaLMConfig(d_model=16384, n_layers=48, n_heads=128, vocab_size=512, max_seq_len=64)
    monkeypatch.setattr(flops, "available_memory", lambda: 64 * 2**30)
    with pytest.raises(ValueError, match=r"needs at least 2,691\.1 GiB .* 64\.0 GiB available: use a smaller model"):
        flops.check_fits_in_memory(config)
    flops.check_fits_in_memory(PaLMConfig.preset("palm-tiny"))  # fits
    monkeypatch.setattr(flops, "available_memory", lambda: None)
    flops.check_fits_in_memory(config)  # unknown: not checked


def test_available_memory_is_a_positive_byte_count_on_linux():
    from palmbook.flops import available_memory

    n = available_memory()
    assert n is None or n > 2**20
