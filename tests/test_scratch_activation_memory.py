"""Chapter 7's activation-memory tools: what they measure is right, and checkpointing trades memory for compute only."""

from __future__ import annotations

import pytest
import torch

from palmbook import PaLM, PaLMConfig, lm_loss
from palmbook.scratch.activation_memory import (
    block_activation_floats_per_token,
    hidden_with_checkpointing,
    memory_trace,
    saved_tensors,
)


def _model(cfg: PaLMConfig) -> PaLM:
    torch.manual_seed(0)
    return PaLM(cfg)


def _loss(model: PaLM, idx: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    h = hidden_with_checkpointing(model, idx) if checkpointing else model.hidden(idx)
    return lm_loss(model.logits(h[:, :-1]), idx[:, 1:])


def test_saved_tensors_counts_a_shared_storage_once_and_separates_parameters() -> None:
    w = torch.nn.Parameter(torch.randn(8, 8))
    module = torch.nn.Linear(8, 8, bias=False)
    module.weight = w
    x = torch.randn(4, 8, requires_grad=True)

    def fn():
        y = x * 2.0  # MulBackward(scalar) saves nothing
        a, b = y[:2], y[2:]  # two views of y's storage
        return (a * a).sum() + (b * b).sum() + module(y).sum()  # saves a, a, b, b, y (all one storage) and w

    _, record = saved_tensors(fn, module)
    assert record.activation_bytes == 4 * 8 * 4  # y's storage, once
    assert record.state_bytes == 8 * 8 * 4  # the weight: saved by reference, reported apart
    assert [s.kind for s in record.shapes].count("activation") == 1
    assert sorted(s.kind for s in record.shapes) == ["activation", "model state", "view", "view", "view", "view"]


@pytest.mark.parametrize(
    "overrides",
    [{}, dict(d_model=48, n_heads=2, head_dim=32, d_ff=160)],  # the second has n_heads * head_dim != d_model
)
def test_block_activation_formula_equals_what_autograd_saves(overrides: dict) -> None:
    cfg = PaLMConfig.preset("palm-tiny", **overrides)
    model = _model(cfg)
    B, T = 2, 24
    x = torch.randn(B, T, cfg.d_model, requires_grad=True)
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    _, record = saved_tensors(lambda: model.blocks[0](x, cos, sin), model)
    assert record.activation_bytes == block_activation_floats_per_token(cfg) * B * T * 4


def test_checkpointing_gives_bit_identical_gradients(tiny_config: PaLMConfig) -> None:
    model = _model(tiny_config)
    idx = torch.randint(0, tiny_config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    grads = []
    for checkpointing in (False, True):
        model.zero_grad(set_to_none=True)
        _loss(model, idx, checkpointing).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name


def test_checkpointing_keeps_only_block_inputs_between_forward_and_backward(tiny_config: PaLMConfig) -> None:
    model = _model(tiny_config)
    B, T = 2, 48
    idx = torch.randint(0, tiny_config.vocab_size, (B, T), generator=torch.Generator().manual_seed(2))
    _, full = saved_tensors(lambda: _loss(model, idx, False), model)
    _, ckpt = saved_tensors(lambda: _loss(model, idx, True), model)
    per_block = block_activation_floats_per_token(tiny_config) * B * T * 4
    block_inputs = B * T * tiny_config.d_model * 4
    # Everything outside the blocks (embedding, final norm, logits, loss) is saved in both runs; inside the blocks,
    # checkpointing replaces n_layers x (a block's activations) by n_layers x (its input).
    assert full.activation_bytes - ckpt.activation_bytes == tiny_config.n_layers * (per_block - block_inputs)


def _traced_step(model: PaLM, idx: torch.Tensor, checkpointing: bool):
    box = {}
    forward = lambda: box.update(loss=_loss(model, idx, checkpointing))
    return memory_trace({"forward": forward, "backward": lambda: box["loss"].backward()})


def test_memory_trace_peaks_lower_with_checkpointing_and_ends_holding_only_gradients(tiny_config: PaLMConfig) -> None:
    model = _model(tiny_config)
    idx = torch.randint(0, tiny_config.vocab_size, (4, 64), generator=torch.Generator().manual_seed(3))
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    peaks = []
    for checkpointing in (False, True):
        model.zero_grad(set_to_none=True)
        trace = _traced_step(model, idx, checkpointing)
        assert trace.phases["forward"][1] <= trace.phases["backward"][0]
        assert trace.times_ms == sorted(trace.times_ms)
        # after the step, the tensors still alive are the new .grad of every parameter (and the scalar loss)
        assert abs(trace.final - grad_bytes) <= 64
        peaks.append(trace.peak)
    assert peaks[1] < 0.8 * peaks[0]
