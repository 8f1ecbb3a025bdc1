import dataclasses
import math

import pytest
import torch

from palmbook import PaLM, PaLMConfig, TrainConfig

# Table 1 of the paper, counted as dense kernels + the 256,000 x d_model embedding.
PAPER_COUNTS = {"palm-8b": 8_631_877_632, "palm-62b": 62_495_129_600, "palm-540b": 540_354_281_472}
PAPER_BILLIONS = {"palm-8b": 8.63, "palm-62b": 62.50, "palm-540b": 540.35}


@pytest.mark.parametrize("name", list(PAPER_COUNTS))
def test_presets_reproduce_the_papers_parameter_counts_on_the_meta_device(name):
    with torch.device("meta"):
        model = PaLM(PaLMConfig.preset(name))
    assert model.embed.weight.is_meta
    assert model.num_parameters(include_norms=False) == PAPER_COUNTS[name]
    assert round(model.num_parameters(include_norms=False) / 1e9, 2) == PAPER_BILLIONS[name]
    # The LayerNorm scales are a rounding error at this scale (< 0.01%).
    extra = model.num_parameters() - PAPER_COUNTS[name]
    assert 0 < extra / PAPER_COUNTS[name] < 1e-4


@pytest.mark.parametrize("name", PaLMConfig.presets())
def test_config_parameter_formula_matches_the_module(name):
    cfg = PaLMConfig.preset(name)
    with torch.device("meta"):
        model = PaLM(cfg)
    assert cfg.num_parameters() == model.num_parameters()
    assert cfg.num_parameters(include_norms=False) == model.num_parameters(include_norms=False)


def test_paper_presets_use_head_size_256_and_4x_feed_forward():
    for name in PAPER_COUNTS:
        cfg = PaLMConfig.preset(name)
        assert cfg.head_dim == 256 and cfg.d_ff == 4 * cfg.d_model and cfg.vocab_size == 256_000
    big = PaLMConfig.preset("palm-540b")
    assert big.n_heads * big.head_dim != big.d_model  # why head_dim is its own field


def test_head_dim_defaults_to_d_model_over_heads_and_d_ff_to_four_d():
    cfg = PaLMConfig(vocab_size=100, d_model=96, n_layers=1, n_heads=3, max_seq_len=8)
    assert cfg.head_dim == 32 and cfg.d_ff == 384


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(d_model=0), "d_model must be a positive integer"),
        (dict(n_heads=-1), "n_heads must be a positive integer"),
        (dict(n_layers=2.5), "n_layers must be a positive integer"),
        (dict(vocab_size=True), "vocab_size must be a positive integer"),
        (dict(vocab_size=1), "vocab_size must be at least 2"),
        (dict(head_dim=15), "head_dim must be even"),
        (dict(d_model=100, n_heads=3, head_dim=None), "pass head_dim explicitly"),
        (dict(dropout=1.0), "dropout must be in [0, 1)"),
        (dict(rope_base=0), "rope_base must be a number > 1"),
        (dict(norm_eps=0), "norm_eps must be in (0, 1)"),
        (dict(max_seq_len=0), "max_seq_len must be a positive integer"),
    ],
)
def test_bad_config_raises_a_value_error_naming_the_field(kwargs, message):
    base = dict(vocab_size=64, d_model=32, n_layers=1, n_heads=2, head_dim=16, max_seq_len=16)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        PaLMConfig(**{**base, **kwargs})


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match="palm-540b"):
        PaLMConfig.preset("palm-2")


def test_config_round_trips_through_json(tmp_path):
    cfg = PaLMConfig.preset("palm-mini", dropout=0.1)
    cfg.save(tmp_path / "config.json")
    again = PaLMConfig.load(tmp_path / "config.json")
    assert again == cfg and again.name == "palm-mini"
    with pytest.raises(ValueError, match="unknown PaLMConfig field"):
        PaLMConfig.from_dict({**cfg.to_dict(), "n_kv_heads": 8})


def test_config_is_immutable():
    cfg = PaLMConfig.preset("palm-tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 3
    assert cfg.replace(n_layers=3).n_layers == 3


# ---- replace re-derives what follows from the changed fields (reliability review, defect 16)
def test_replace_d_model_re_derives_d_ff_and_head_dim():
    small = PaLMConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=256)
    assert (small.d_ff, small.head_dim) == (256, 16)
    wide = small.replace(d_model=128)
    assert (wide.d_ff, wide.head_dim) == (512, 32)
    assert wide == PaLMConfig(d_model=128, n_layers=2, n_heads=4, vocab_size=256)
    assert small.replace(n_heads=8).head_dim == 8


def test_replace_keeps_derived_fields_that_were_set_by_hand_or_given():
    custom = PaLMConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=256, d_ff=100, head_dim=8)
    assert (custom.replace(d_model=128).d_ff, custom.replace(d_model=128).head_dim) == (100, 8)
    assert PaLMConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=256).replace(d_model=128, d_ff=300).d_ff == 300


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lr", math.inf, "lr must be a finite number > 0"),
        ("z_loss", math.inf, "z_loss must be a finite number >= 0"),
        ("spike_factor", math.inf, "spike_factor must be a finite number > 0"),
        ("weight_decay", math.nan, "weight_decay must be a finite number >= 0"),
        ("seed", 2**70, "seed must be below 2\\*\\*63"),
    ],
)
def test_train_config_refuses_infinite_or_out_of_range_numbers(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_a_cosine_min_lr_above_the_peak_is_refused():
    with pytest.raises(ValueError, match=r"min_lr=1\.0 exceeds the peak lr 0\.01"):
        TrainConfig(schedule="cosine", lr=0.01, min_lr=1.0)
    assert TrainConfig(schedule="cosine", lr=0.01, min_lr=0.001).min_lr == 0.001
