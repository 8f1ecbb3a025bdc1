"""Specifications of chapter 14's from-scratch FLOP and memory counts and parallelism, against the package."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from palmbook import PaLM, PaLMAdafactor, PaLMConfig, lm_loss
from palmbook.flops import flops_per_token
from palmbook.scratch import scaling as S


@pytest.mark.parametrize("preset", ["palm-tiny", "palm-8b", "palm-62b", "palm-540b"])
def test_training_flops_from_the_shapes_equal_the_appendix_b_formula(preset):
    cfg = PaLMConfig.preset(preset)
    for T in (64, 2048):
        assert S.training_flops_per_token(cfg, T) == flops_per_token(cfg, seq_len=T)


def test_weight_matmuls_cost_two_flops_per_parameter_and_a_flop_counter_agrees(tiny_config):
    parts = S.forward_flops_per_token(tiny_config, 32)
    weights = sum(v for k, v in parts.items() if "attention scores" not in k and "weighted values" not in k)
    assert weights == 2 * tiny_config.num_parameters(include_norms=False)
    model, B, T = PaLM(tiny_config), 2, 32
    idx = torch.randint(0, tiny_config.vocab_size, (B, T + 1))
    with FlopCounterMode(display=False) as counter:  # counts aten matmuls (not the fused CPU attention kernel)
        lm_loss(model(idx[:, :-1]), idx[:, 1:]).backward()
    assert counter.get_total_flops() == 3 * weights * B * T  # forward 2N, backward 4N per token


def test_compute_optimal_spends_the_budget_at_twenty_tokens_per_parameter():
    n, d = S.compute_optimal(5.88e23)  # Chinchilla's own budget: 6 x 70B x 1.4T
    assert d == pytest.approx(20 * n) and 6 * n * d == pytest.approx(5.88e23)
    assert n == pytest.approx(70e9, rel=0.01)


def test_palm_optimizer_keeps_as_much_state_as_adam_and_factored_adafactor_far_less(tiny_model):
    shapes = [p.shape for p in tiny_model.parameters()]
    n = sum(p.numel() for p in tiny_model.parameters())
    assert S.optimizer_state_floats(shapes, "adam") == S.optimizer_state_floats(shapes, "palm") == 2 * n
    assert S.optimizer_state_floats(shapes, "adafactor") < n / 10
    assert S.optimizer_state_floats([(3, 5), (7,)], "adafactor") == 3 + 5 + 7
    opt = PaLMAdafactor(tiny_model.parameters(), lr=1e-2)
    for p in tiny_model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    kept = sum(t.numel() for s in opt.state.values() for k, t in s.items() if k != "step")
    assert kept == S.optimizer_state_floats(shapes, "palm")
    with pytest.raises(ValueError, match="unknown optimiser"):
        S.optimizer_state_floats(shapes, "lion")


@pytest.mark.parametrize("n", [1, 2, 4])
def test_column_and_row_parallel_matmuls_equal_the_single_device_product(n):
    torch.manual_seed(0)
    x, w = torch.randn(5, 8, dtype=torch.float64), torch.randn(8, 12, dtype=torch.float64)
    torch.testing.assert_close(S.column_parallel_matmul(x, w, n), x @ w)
    torch.testing.assert_close(S.row_parallel_matmul(x, w, n), x @ w)
    with pytest.raises(ValueError, match="equal shards"):
        S.column_parallel_matmul(x, w, 5)


def test_averaging_the_replicas_gradients_gives_the_full_batch_gradient(tiny_config):
    torch.manual_seed(0)
    model = PaLM(tiny_config).double()
    idx = torch.randint(0, tiny_config.vocab_size, (4, 17))
    x, y = idx[:, :-1], idx[:, 1:]

    def loss_fn(m, a, b):
        return lm_loss(m(a), b)

    full = S.data_parallel_gradients(model, loss_fn, x, y, 1)
    for n in (2, 4):
        split = S.data_parallel_gradients(model, loss_fn, x, y, n)
        assert split.keys() == full.keys()
        for name in full:
            torch.testing.assert_close(split[name], full[name])


def test_shards_are_equal_sized_and_gather_back_to_the_tensor():
    t = torch.arange(10.0).view(2, 5)
    shards = S.shard(t, 4)
    assert [s.numel() for s in shards] == [3, 3, 3, 3]
    assert torch.equal(S.unshard(shards, t.shape), t)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_a_tensor_parallel_block_equals_the_block_with_one_all_reduce(n):
    from palmbook.scratch.palm import ScratchBlock

    cfg = PaLMConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, head_dim=8, d_ff=64, max_seq_len=16)
    torch.manual_seed(0)
    block = ScratchBlock(cfg).double()
    x = torch.randn(2, 16, 32, dtype=torch.float64)
    out, all_reduces = S.tensor_parallel_block(block, x, n)
    torch.testing.assert_close(out, block(x))
    assert all_reduces == 1


def test_a_tensor_parallel_block_refuses_a_split_that_does_not_divide_the_heads():
    from palmbook.scratch.palm import ScratchBlock

    cfg = PaLMConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, head_dim=8, d_ff=64, max_seq_len=16)
    with pytest.raises(ValueError, match="query heads"):
        S.tensor_parallel_block(ScratchBlock(cfg), torch.randn(1, 4, 32), 3)
