"""Specifications of chapter 8's figures: what each one draws and what its controls change."""

import plotly.graph_objects as go
import pytest
import torch

from palmbook import viz
from palmbook.scratch import optimisers as O
from palmbook.viz.optimisers import clipping_figure, optimiser_paths_figure, seed_band_figure


def _paths():
    return {
        f"lr x {m}": {
            "SGD": O.trajectory(O.sgd_step, (-5, 1), 0.1 * m, 10),
            "Adam": O.trajectory(O.adam_step, (-5, 1), 0.3 * m, 10),
        }
        for m in (1, 3)
    }


def test_paths_figure_has_a_slider_step_per_point_and_a_menu_per_setting():
    fig = optimiser_paths_figure(O.valley, _paths(), (-6, 2), (-2, 2), "t")
    assert isinstance(fig, go.Figure)
    assert len(fig.layout.sliders[0].steps) == 11
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["lr x 1", "lr x 3"]
    # contour + (path, loss, marker) per optimiser per setting; only the first setting visible at start
    assert len(fig.data) == 1 + 3 * 2 * 2
    assert [t.visible for t in fig.data[1:]] == [True] * 6 + [False] * 6


def test_paths_slider_moves_each_marker_to_that_step_and_clamps_into_the_box():
    paths = _paths()
    fig = optimiser_paths_figure(O.valley, paths, (-6, 2), (-2, 2))
    data, layout, traces = fig.layout.sliders[0].steps[4].args
    assert data["x"][0] == [pytest.approx(float(paths["lr x 1"]["SGD"][4, 0]), abs=1e-4)]
    assert layout["shapes[0].x0"] == 4
    assert all(fig.data[i].mode == "markers" for i in traces)
    assert all(-6 <= x[0] <= 2 for x in data["x"])  # SGD at lr 0.3 diverges: drawn at the edge


def test_paths_figure_refuses_paths_of_different_lengths():
    with pytest.raises(ValueError, match="same number of steps"):
        optimiser_paths_figure(O.valley, {"a": {"SGD": torch.zeros(3, 2), "Adam": torch.zeros(4, 2)}}, (-1, 1), (-1, 1))


def test_clipping_figure_draws_one_arrow_per_version_and_the_threshold():
    fig = clipping_figure((3.0, 0.4), {"global": (0.99, 0.13), "per tensor": (1.0, 0.4)}, 1.0)
    assert [t.name for t in fig.data] == ["norm 1", "gradient (not clipped)", "global", "per tensor"]
    assert list(fig.data[3].x) == [0, 1.0] and list(fig.data[3].y) == [0, 0.4]


def test_seed_band_figure_draws_mean_and_min_max_band():
    curves = {"a": torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])}
    fig = seed_band_figure(curves, "t")
    band, mean = fig.data
    assert list(mean.y) == [2.0, 3.0, 4.0]
    assert list(band.y) == [3.0, 4.0, 5.0, 3.0, 2.0, 1.0]


@pytest.mark.skipif(not hasattr(viz, "optimiser_paths_figure"), reason="palmbook/viz/__init__.py re-exports them")
def test_figures_are_public_through_viz():
    assert viz.optimiser_paths_figure is optimiser_paths_figure
    assert viz.clipping_figure is clipping_figure and viz.seed_band_figure is seed_band_figure


def test_schedule_explorer_draws_both_schedules_and_redraws_on_a_slider_change():
    from palmbook.viz.optimisers import lr_schedule_explorer, schedules_html

    html = schedules_html(1e-2, 10_000, 2_500, 40_000)
    assert "<svg" in html and "final lr: PaLM 5.01e-03" in html  # 1 / sqrt(39,800), the last step drawn
    box = lr_schedule_explorer(total_steps=40_000)
    panel, total = box.children[-1], box.children[3]
    assert panel.value == html
    total.value = 160_000
    assert "final lr: PaLM 2.51e-03" in panel.value  # 1 / sqrt(159,200)
