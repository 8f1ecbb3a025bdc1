"""Chapters 4 and 5's figures show what their titles and controls claim."""

import math

import pytest
import torch
import torch.nn.functional as F

from palmbook import viz


def test_activation_figure_menu_shows_one_function_in_both_panels():
    fig = viz.activation_figure(points=11)
    assert len(fig.data) == 6  # 3 functions x (value, derivative)
    swish_button = next(b for b in fig.layout.updatemenus[0].buttons if b.label.startswith("Swish"))
    visible = swish_button.args[0]["visible"]
    assert [t.name for t, v in zip(fig.data, visible, strict=True) if v] == ["Swish (β = 1)"] * 2
    x = torch.tensor(fig.data[4].x)
    torch.testing.assert_close(torch.tensor(fig.data[4].y), F.silu(x))


def test_swish_beta_slider_steps_hold_swish_of_their_beta():
    fig = viz.swish_beta_figure(betas=(0.5, 2.0))
    x = torch.tensor(fig.data[2].x, dtype=torch.float64)
    for step, beta in zip(fig.layout.sliders[0].steps, (0.5, 2.0), strict=True):
        torch.testing.assert_close(torch.tensor(step.args[0]["y"][0], dtype=torch.float64), x * torch.sigmoid(beta * x))


def test_gated_unit_figure_opens_on_swiglu_values():
    fig = viz.gated_unit_figure(lim=2.0, points=5)
    a, b, z = torch.tensor(fig.data[0].x), torch.tensor(fig.data[0].y), torch.tensor(fig.data[0].z)
    torch.testing.assert_close(z, b[:, None] * F.silu(a)[None, :])
    assert [t.visible for t in fig.data] == [True, False, False, False, False]


def test_svg_curves_draws_one_polyline_per_curve():
    svg = viz.svg_curves([0, 1, 2], {"a": ([0, 1, 2], "red"), "b": ([2, 1, 0], "blue")}, y_range=(0, 2))
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and ">a<" in svg and ">b<" in svg


def test_logit_shift_figure_moves_log_z_but_not_probabilities():
    logits = [2.0, 1.0, 0.0]
    fig = viz.logit_shift_figure(logits, ["x", "y", "z"], shifts=(-1, 0, 3))
    probs = torch.tensor(logits, dtype=torch.float64).softmax(-1).tolist()
    for step, c in zip(fig.layout.sliders[0].steps, (-1, 0, 3), strict=True):
        new_logits, new_probs = step.args[0]["y"]
        assert new_probs == probs and new_logits == [v + c for v in logits]
        log_z = math.log(sum(math.exp(v + c) for v in logits))
        assert step.args[1]["shapes[0].y0"] == pytest.approx(log_z)
        assert f"log Z = {log_z:.3f}" in step.args[1]["title.text"]


def test_prediction_steps_figure_has_one_slider_step_per_snapshot_and_marks_the_target():
    snaps = [(0, ["a", "b"], [0.5, 0.2]), (10, ["b", "a"], [0.7, 0.1])]
    fig = viz.prediction_steps_figure(snaps, "ctx", target="b")
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "10"]
    assert fig.layout.sliders[0].steps[1].args[0]["marker.color"][0] == ["#d62728", "#1f77b4"]
    with pytest.raises(ValueError, match="at least one"):
        viz.prediction_steps_figure([], "ctx")


def test_loss_table_html_reports_the_cross_entropy_of_the_target_and_refuses_an_unknown_one():
    page = viz.loss.loss_table_html([2.0, 1.0, 0.0, -1.0], ["thee", "thou", "you", "ye"], "thou")
    log_z = math.log(math.exp(2) + math.exp(1) + 1 + math.exp(-1))
    assert f"log Z = {log_z:.3f}" in page and f"= {log_z - 1:.3f} nats" in page
    assert page.count("<tr>") == 5  # a header and one row per token
    with pytest.raises(ValueError, match="target"):
        viz.loss.loss_table_html([0.0], ["a"], "b")


def test_loss_and_log_z_figure_links_each_run_across_panels():
    runs = {
        "z-loss": {"step": [0, 1], "ce": [3.0, 2.0], "log_z": [4.0, 3.0]},
        "none": {"step": [0], "ce": [3.0], "log_z": [4.0]},
    }
    fig = viz.loss_and_log_z_figure(runs, ln_v=math.log(100))
    assert [t.legendgroup for t in fig.data] == ["z-loss", "z-loss", "none", "none"]
    assert [t.showlegend for t in fig.data] == [True, False, True, False]


def test_timing_figure_has_a_box_per_variant():
    fig = viz.timing_figure({"serial": [2.0, 3.0], "parallel": [1.0, 1.5]}, "t")
    assert [t.name for t in fig.data] == ["serial", "parallel"] and list(fig.data[0].y) == [2.0, 3.0]
