"""Chapters 9 and 13's figures: what each slider and menu changes, and the numbers they start with."""

import math

import pytest

from palmbook import viz
from palmbook.optim import LRSchedule


def test_schedule_sliders_restyle_their_own_curve_with_the_package_schedules():
    fig = viz.lr_schedule_figure(total_steps=50_000, plateaus=(1_000, 10_000), warmups=(0, 2_500), start=(10_000, 0))
    steps = list(fig.data[0].x)
    palm, cosine = fig.layout.sliders
    assert [list(s.args[1]) for s in palm.steps] == [[0], [0]] and [list(s.args[1]) for s in cosine.steps] == [[1], [1]]
    assert palm.active == 1 and cosine.active == 0
    i = min(range(len(steps)), key=lambda j: abs(steps[j] - 40_000))
    assert fig.data[0].y[i] == pytest.approx(1 / math.sqrt(steps[i]), rel=1e-4)  # the paper's: 1 / sqrt(step)
    short = palm.steps[0].args[0]["y"][0]
    assert short[i] == pytest.approx(LRSchedule("palm", 1e-2, constant_steps=1_000)(steps[i]), rel=1e-4)
    warm = cosine.steps[1].args[0]["y"][0]
    assert warm[0] == pytest.approx(1e-2 / 2_500, rel=1e-4) and fig.data[1].y[0] == pytest.approx(1e-2)
    assert fig.data[1].y[-1] == pytest.approx(1e-3, rel=1e-3)  # cosine ends at lr / 10
    axes = [b.args[0]["xaxis.type"] for b in fig.layout.updatemenus[0].buttons]
    assert axes == ["linear", "log"]


def test_training_runs_figure_draws_train_lines_and_validation_markers_per_run():
    runs = {"a": {"train": ([1, 2, 3], [5.0, 4.0, 3.5]), "validation": ([3], [3.9])}, "b": {"train": ([1], [6.0])}}
    fig = viz.training_runs_figure(runs, "t")
    assert [t.name for t in fig.data] == ["a (train)", "a (validation)", "b (train)"]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    assert list(fig.data[1].y) == [3.9]


def test_spike_figure_marks_the_spike_the_undone_steps_and_the_skipped_batches():
    attempts = [{"batch": b, "step": b, "loss": 3.0, "kept": b <= 4} for b in range(1, 7)]
    attempts += [{"batch": b, "step": b - 6, "loss": 2.9, "kept": True} for b in range(12, 14)]
    events = [{"event": "spike", "batches_seen": 7, "loss": 150.0, "median": 3.0},
              {"event": "rollback", "to_step": 4, "skipped_batches": 4, "batches_seen": 11}]  # fmt: skip
    fig = viz.spike_figure(attempts, events)
    kept, undone, spike = fig.data
    assert list(kept.x) == [1, 2, 3, 4, 12, 13] and list(undone.x) == [5, 6]
    assert list(spike.x) == [7] and list(spike.y) == [150.0]
    (rect,) = fig.layout.shapes
    assert (rect.x0, rect.x1) == (7.5, 11.5)  # batches 8..11 were skipped
    assert fig.layout.yaxis.type == "log"


def test_spike_figure_reads_the_trainers_skip_window_as_zero_based_indices():
    attempts = [{"batch": b, "step": b, "loss": 3.0, "kept": True} for b in range(1, 5)]
    events = [{"event": "spike", "batches_seen": 7, "loss": 150.0, "median": 3.0},
              {"event": "rollback", "to_step": 4, "skip_batches": [7, 11]}]  # fmt: skip
    fig = viz.spike_figure(attempts, events)
    (rect,) = fig.layout.shapes
    assert (rect.x0, rect.x1) == (7.5, 11.5)  # indices 7..10 are batches 8..11, counted from 1
    assert any(a.text == "4 batches skipped" for a in fig.layout.annotations)


def test_tradeoff_menus_switch_marker_speed_and_size_axis():
    rows = [
        dict(name="fp32", group="teacher", disk_mb=20.0, memory_mb=19.5, nats_per_char=1.5, forward_tok_s=1000.0,
             generate_tok_s=100.0),
        dict(name="int8", group="quantized", disk_mb=8.0, memory_mb=7.5, nats_per_char=1.52, forward_tok_s=250.0,
             generate_tok_s=400.0),
    ]  # fmt: skip
    fig = viz.tradeoff_figure(rows, "test machine")
    assert [t.name for t in fig.data] == ["teacher", "quantized"]
    assert list(fig.data[0].x) == [20.0] and list(fig.data[1].y) == [1.52]
    speed_menu, axis_menu = fig.layout.updatemenus
    fwd, gen = (b.args[0]["marker.size"] for b in speed_menu.buttons)
    assert fwd[0][0] == pytest.approx(50.0) and fwd[1][0] == pytest.approx(8 + 42 * math.sqrt(0.25))
    assert gen[1][0] == pytest.approx(50.0) and gen[0][0] < gen[1][0]  # the int8 model generates fastest here
    assert axis_menu.buttons[1].args[0]["x"] == [[19.5], [7.5]]
    assert "test machine" in fig.layout.title.text


def test_roofline_roof_is_bandwidth_times_intensity_up_to_the_peak():
    from palmbook.viz.efficiency import roofline_figure

    points = [
        dict(name="add", intensity=1 / 12, flops_per_s=1e9),
        dict(name="matmul", intensity=100.0, flops_per_s=9e10),
    ]
    fig = roofline_figure(points, peak_flops=1e11, bandwidth=1e10, machine="test machine")
    roof = fig.data[0]
    for x, y in zip(roof.x, roof.y, strict=True):
        assert y == pytest.approx(min(1e11, x * 1e10) / 1e9)
    assert [t.name for t in fig.data[1:]] == ["add", "matmul"] and list(fig.data[2].y) == [90.0]
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
    assert "ridge point 10.0" in fig.layout.annotations[0].text


def test_benchmark_figure_shows_ratios_first_and_tokens_per_second_in_its_menu():
    import json

    from palmbook.book import book_data
    from palmbook.viz.efficiency import benchmark_figure

    res = json.loads(book_data("benchmark.json").read_text())
    fig = benchmark_figure(res)
    peers = [k for k in res["ratios"] if not k.endswith("/palmbook")]
    assert [t.name for t in fig.data][: len(peers)] == [k.replace("/", " / ") for k in peers]
    ratio_view, speed_view = fig.layout.updatemenus[0].buttons
    assert ratio_view.args[0]["visible"] == [True] * len(peers) + [False] * len(res["results"])
    assert speed_view.args[1]["yaxis"]["type"] == "log"
    first = res["ratios"][peers[0]]["train"]
    assert fig.data[0].y[0] == first["median"] and fig.data[0].error_y.array[0] == first["max"] - first["median"]


def test_bf16_curve_figure_draws_both_curves_and_their_gap():
    from palmbook.viz.efficiency import bf16_curve_figure

    curve = {"steps": 3, "losses": {"fp32": [3.0, 2.5, 2.0], "bf16": [3.0, 2.6, 1.9]}, "machine": {"name": "cpu"}}
    fig = bf16_curve_figure(curve)
    assert [t.name for t in fig.data] == ["fp32", "bf16", "bf16 - fp32"]
    assert list(fig.data[2].y) == pytest.approx([0.0, 0.1, -0.1])
