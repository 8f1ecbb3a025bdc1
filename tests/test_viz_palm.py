"""Chapter 6's parameter figure shows what it is given: shares that sum to 100% and the counts themselves."""

import pytest

from palmbook.viz.palm import parameter_breakdown_figure

PARTS = {"small": {"embedding": 30, "blocks": 70}, "big": {"embedding": 100, "blocks": 900}}


def test_each_model_bar_sums_to_one_hundred_percent():
    fig = parameter_breakdown_figure(PARTS)
    assert [t.name for t in fig.data] == ["embedding", "blocks"]
    for i, _ in enumerate(PARTS):
        assert sum(t.x[i] for t in fig.data) == pytest.approx(100)
    assert fig.data[0].x == pytest.approx((30.0, 10.0))


def test_the_menu_switches_to_counts_in_billions():
    fig = parameter_breakdown_figure(PARTS)
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["share of each model (%)", "parameters (billions)"]
    counts = fig.layout.updatemenus[0].buttons[1].args[0]["x"]
    assert counts[1] == pytest.approx([70e-9, 900e-9])


def test_models_with_different_parts_are_refused():
    with pytest.raises(ValueError, match="same parts"):
        parameter_breakdown_figure({"a": {"x": 1}, "b": {"y": 1}})
