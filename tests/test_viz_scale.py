"""Chapter 11's figures ("What scale buys"): bands span the seeds, sliders and buttons change what they say."""

import numpy as np
import pytest

from palmbook.scaling_law import fit_power_law
from palmbook.viz import scale


def test_band_is_the_mean_and_the_range_over_seeds():
    mean, lo, hi = scale.band([[0.1, 0.5], [0.3, 0.9]])
    np.testing.assert_allclose(mean, [0.2, 0.7])
    np.testing.assert_allclose(lo, [0.1, 0.5]) and np.testing.assert_allclose(hi, [0.3, 0.9])
    with pytest.raises(ValueError, match="seeds, points"):
        scale.band(np.zeros((2, 2, 2)))


def test_shots_slider_moves_every_band_to_the_accuracies_of_its_step():
    shots, steps = [0, 1, 2], [0, 50, 100]
    two = np.zeros((3, 3, 3))
    two[:, 2] = [[0.1, 0.8, 0.9], [0.1, 0.9, 1.0], [0.1, 1.0, 1.0]]  # step 100, three seeds
    fig = scale.shots_figure(shots, steps, {"2 layers": two, "1 layer": np.zeros((3, 3, 3))}, chance=0.1)
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == ["0", "50", "100"] and slider.active == 2
    last = slider.steps[2]
    assert list(last.args[1]) == [0, 1, 2, 3]  # band + mean of each run; the chance line stays put
    np.testing.assert_allclose(last.args[0]["y"][1], [0.1, 0.9, 2.9 / 3])
    band_y = last.args[0]["y"][0]  # top edge then bottom edge, reversed
    assert band_y[:3] == [0.1, 1.0, 1.0] and band_y[3:] == [0.9, 0.8, 0.1]
    assert fig.data[4].name == "chance (10%)"
    with pytest.raises(ValueError, match="seeds, 3 steps, 3 shots"):
        scale.shots_figure(shots, steps, {"bad": np.zeros((3, 2, 3))})


def test_curves_have_one_band_and_one_mean_per_run():
    fig = scale.curves_figure([0, 10, 20], {"a": [[0, 1, 2], [2, 3, 4]]}, title="t", y_title="y", percent=False)
    assert [t.name for t in fig.data] == ["a band", "a"] and list(fig.data[1].y) == [1, 2, 3]
    with pytest.raises(ValueError, match="seeds, 3 steps"):
        scale.curves_figure([0, 10, 20], {"a": [[0, 1]]}, title="t", y_title="y")


def test_induction_slider_swaps_each_layers_map_for_that_steps():
    maps = np.random.default_rng(0).random((2, 2, 4, 4))
    fig = scale.induction_figure(maps, ["K1", "V2", "?", "K1"], [0, 100])
    assert len(fig.data) == 2 and fig.data[0].x[0] == "0:K1" and fig.data[0].x[3] == "3:K1"
    z0 = fig.layout.sliders[0].steps[0].args[0]["z"]
    np.testing.assert_allclose(z0[1], maps[0, 1].round(3))
    np.testing.assert_allclose(np.asarray(fig.data[1].z), maps[1, 1])  # starts at the last step
    with pytest.raises(ValueError, match="steps, layers, 4, 4"):
        scale.induction_figure(maps[:, :, :3], ["a", "b", "c", "d"], [0, 100])


def test_cot_bars_span_the_seeds_and_shade_the_unseen_lengths():
    fig = scale.cot_figure([3, 4, 5], {"direct": [[0.1, 0.0, 0.0], [0.3, 0.2, 0.0]]}, trained_max=4)
    bar = fig.data[0]
    np.testing.assert_allclose(bar.y, [0.2, 0.1, 0.0])
    np.testing.assert_allclose(bar.error_y.array, [0.1, 0.1, 0.0])
    np.testing.assert_allclose(bar.error_y.arrayminus, [0.1, 0.1, 0.0])
    (shade,) = fig.layout.shapes
    assert shade.x0 == 1.5 and shade.x1 == 2.5  # only the 5-term bar sits on the "unseen" background


def test_scaling_buttons_show_one_measure_and_its_fit():
    n = np.array([1e3, 1e4, 1e5, 1e6])
    loss = 1.5 + 20 * n**-0.3
    xs = {"parameters": n, "compute": 6 * n * 1e6}
    fits = {k: fit_power_law(v, loss, var=var) for (k, v), var in zip(xs.items(), "NC", strict=True)}
    fig = scale.scaling_figure(xs, [loss, loss * 1.01], fits)
    assert [t.visible for t in fig.data] == [True, True, False, False]
    second = fig.layout.updatemenus[0].buttons[1]
    assert list(second.args[0]["visible"]) == [False, False, True, True]
    assert second.args[1]["xaxis.title.text"] == "compute"
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
    np.testing.assert_allclose(fig.data[1].y[0], loss[0], rtol=1e-3)  # the fit passes through the points
    assert "L(N) = " in fig.data[1].name and "N^0.300" in fig.data[1].name
    assert "L(C) = " in fig.data[3].name and "C^0.300" in fig.data[3].name  # the compute fit's legend says C


def test_emergence_buttons_switch_the_accuracy_axis_between_linear_and_log():
    fig = scale.emergence_figure([1e3, 1e4], {"per token": [[0.5, 0.9]], "exact match": [[0.01, 0.6]]})
    assert [t.name for t in fig.data] == ["per token band", "per token", "exact match band", "exact match"]
    linear, log = fig.layout.updatemenus[0].buttons
    assert linear.args[0]["yaxis.type"] == "linear" and log.args[0]["yaxis.type"] == "log"


def test_curves_per_seed_adds_one_thin_line_per_seed_in_its_runs_group():
    fig = scale.curves_figure([0, 10, 20], {"a": [[0, 1, 2], [2, 3, 4]], "b": [[1, 1, 1]]}, title="t", y_title="y",
                              percent=False, per_seed=True)  # fmt: skip
    seeds = [t for t in fig.data if "seed" in (t.name or "")]
    assert [t.name for t in seeds] == ["a, seed 0", "a, seed 1", "b, seed 0"]
    assert list(seeds[1].y) == [2, 3, 4] and {t.legendgroup for t in seeds} == {"a", "b"}
    assert len(fig.data) == len(seeds) + 4  # a band and a mean per run
