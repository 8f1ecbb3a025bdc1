"""Chapter 0's family tree: every model drawn once, every lineage line joins two drawn models, facts in one place."""

import pytest

from palmbook.viz.overview import LANES, PALM_FAMILY, FamilyMember, family_tree_figure


def test_family_tree_draws_every_model_once_and_one_line_per_parent():
    fig = family_tree_figure()
    points = [t for t in fig.data if t.mode == "markers+text"]
    assert len(points) == 1 and list(points[0].text) == list(PALM_FAMILY)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == sum(m.parent is not None for m in PALM_FAMILY.values())
    assert set(fig.layout.yaxis.categoryarray) == set(LANES)


def test_gemma_summary_says_only_2b_keeps_multi_query():
    # the fidelity review: Gemma 2B uses MQA, Gemma 7B multi-head attention (Gemma report, Table 1)
    summary = PALM_FAMILY["Gemma"].summary
    assert "multi-query in Gemma 2B" in summary and "multi-head in 7B" in summary


def test_family_tree_rejects_a_missing_parent():
    family = {"child": FamilyMember("2020-01-01", 0, "nobody", "x")}
    with pytest.raises(ValueError, match="not in the family"):
        family_tree_figure(family)


def test_parameter_breakdown_cuts_in_proj_and_sums_to_the_count():
    import torch

    from palmbook import PaLM, PaLMConfig
    from palmbook.viz.overview import parameter_breakdown

    c = PaLMConfig.preset("palm-8b")
    with torch.device("meta"):
        model = PaLM(c)
    parts = parameter_breakdown(model)
    assert parts["embedding"] == c.vocab_size * c.d_model
    assert parts["attention"] == c.n_layers * (c.d_model * c.qkv_dim + c.n_heads * c.head_dim * c.d_model)
    assert parts["MLP"] == c.n_layers * 3 * c.d_model * c.d_ff
    assert sum(parts.values()) == model.num_parameters(include_norms=False)
