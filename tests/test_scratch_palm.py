"""Chapter 6's whole PaLM from scratch computes the same function as palmbook.PaLM, with the same parameters."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from palmbook import PaLM, PaLMConfig, pretrained
from palmbook.model import LayerNorm
from palmbook.scratch.palm import PaLMFromScratch, layer_norm, scratch_state_dict, weight_map

# head_dim * n_heads != d_model, as at 540B (48 x 256 = 12,288 != 18,432): the mapping must not assume they match
ODD = PaLMConfig(vocab_size=97, d_model=40, n_layers=3, n_heads=3, head_dim=8, d_ff=56, max_seq_len=32)


def _package_and_scratch(config: PaLMConfig, seed: int = 0) -> tuple[PaLM, PaLMFromScratch]:
    torch.manual_seed(seed)
    model = PaLM(config).eval()
    with torch.no_grad():  # LayerNorm scales of 1 would hide a norm mapped to the wrong place
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name == "norm_f.weight":
                p.uniform_(0.5, 1.5)
    mine = PaLMFromScratch(config)
    mine.load_state_dict(scratch_state_dict(model.state_dict(), config))
    return model, mine


def test_layer_norm_equals_torch_and_the_package():
    x = torch.randn(2, 5, 16) * 3 + 2
    w = torch.rand(16) + 0.5
    torch.testing.assert_close(layer_norm(x, w), F.layer_norm(x, (16,), w, None, 1e-5))
    norm = LayerNorm(16)
    with torch.no_grad():
        norm.weight.copy_(w)
    torch.testing.assert_close(layer_norm(x, w), norm(x))


def test_layer_norm_subtracts_the_mean_unlike_rmsnorm():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]]) + 10
    out = layer_norm(x, torch.ones(4))
    torch.testing.assert_close(out.mean(-1), torch.zeros(1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.pow(2).mean(-1), torch.ones(1), atol=1e-4, rtol=0)


def test_layer_norm_refuses_a_scale_of_the_wrong_size():
    with pytest.raises(ValueError, match="one scale per feature"):
        layer_norm(torch.randn(2, 8), torch.ones(7))


@pytest.mark.parametrize("config", [PaLMConfig.preset("palm-tiny"), ODD], ids=["palm-tiny", "heads-not-d_model"])
def test_scratch_logits_equal_the_package(config):
    model, mine = _package_and_scratch(config)
    ids = torch.randint(0, config.vocab_size, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(mine(ids), model(ids))


def test_shipped_model_loaded_into_the_scratch_model_gives_its_logits():
    model, tok = pretrained("shakespeare-small")
    mine = PaLMFromScratch(model.config)
    mine.load_state_dict(scratch_state_dict(model.state_dict(), model.config))
    ids = torch.tensor([tok.encode("ROMEO:\nBut soft, what light through yonder window breaks?\n")])
    with torch.no_grad():
        torch.testing.assert_close(mine(ids), model(ids))


def test_mapping_uses_every_package_number_exactly_once():
    model, mine = _package_and_scratch(ODD)
    state = model.state_dict()
    mapped = scratch_state_dict(state, ODD)
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in mine.state_dict().items()}
    assert sum(v.numel() for v in mapped.values()) == sum(v.numel() for v in state.values())
    # the row bands of in_proj tile it without gaps or overlaps
    bands = sorted(m.rows for m in weight_map(ODD) if m.package == "blocks.{i}.in_proj.weight")
    assert bands[0][0] == 0 and bands[-1][1] == ODD.fused_dim
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))


def test_mapped_weights_are_copies_not_views_of_the_package():
    model, _ = _package_and_scratch(ODD)
    mapped = scratch_state_dict(model.state_dict(), ODD)
    before = model.blocks[0].in_proj.weight.detach().clone()
    mapped["blocks.0.w_q"].zero_()
    torch.testing.assert_close(model.blocks[0].in_proj.weight.detach(), before)


@pytest.mark.parametrize("config", [PaLMConfig.preset("palm-tiny"), ODD], ids=["palm-tiny", "heads-not-d_model"])
def test_scratch_model_has_exactly_the_package_parameter_count(config):
    model, mine = _package_and_scratch(config)
    assert sum(p.numel() for p in mine.parameters()) == model.num_parameters() == config.num_parameters()


def test_scratch_540b_on_the_meta_device_has_table_1_parameter_count():
    with torch.device("meta"):
        mine = PaLMFromScratch(PaLMConfig.preset("palm-540b"))
    kernels = sum(p.numel() for p in mine.parameters() if p.dim() > 1)  # Table 1 leaves out the LayerNorm scales
    assert kernels == 540_354_281_472
