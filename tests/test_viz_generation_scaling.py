"""Chapters 10 and 14's figures: what each slider changes, and the numbers they start with."""

import math

import pytest
import torch

from palmbook import viz
from palmbook.book import Spread
from palmbook.flops import training_time


def test_sampling_filter_sliders_each_restyle_their_own_panel_with_renormalised_bars():
    torch.manual_seed(0)
    logits = torch.randn(200) * 2
    fig = viz.sampling_filters_figure(logits, [f"t{i}" for i in range(200)], ks=(1, 5), top_n=10)
    assert len(fig.data) == 6 and len(fig.layout.sliders) == 3
    for i, slider in enumerate(fig.layout.sliders):
        for step in slider.steps:
            assert list(step.args[2]) == [2 * i + 1] and f"annotations[{i}].text" in step.args[1]
    k1 = fig.layout.sliders[1].steps[0].args[0]["y"][0]  # top-k with k = 1: all mass on the top token
    assert k1[0] == 1.0 and sum(k1[1:]) == 0
    model = fig.data[0].y  # grey bars: the model's own probabilities, most likely first
    assert list(model) == sorted(model, reverse=True)
    torch.testing.assert_close(torch.tensor(model[:3]), logits.softmax(-1).sort(descending=True).values[:3],
                               atol=1e-5, rtol=0)  # fmt: skip


def test_budget_figure_starts_at_the_training_time_of_its_starting_values():
    hw = {"one chip": 100e12, "PaLM": 6144 * 275e12}
    fig, script = viz.compute_budget_figure(
        hw, [1e9, 540.35e9], [1e10, 780e9], [0.1, 0.462], (540.35e9, 780e9, "PaLM", 0.462)
    )
    days = training_time(780e9, 6 * 540.35e9, 6144 * 275e12, 0.462) / 86_400
    assert f"{days:,.1f} days" in fig.layout.title.text and "46.2% MFU" in fig.layout.title.text
    assert math.isclose(fig.data[1].y[0], days, rel_tol=1e-12)
    assert [s.name for s in fig.layout.sliders] == ["n", "d", "hw", "mfu"]
    assert all(step.method == "skip" for s in fig.layout.sliders for step in s.steps)  # the script does the work
    assert "{plot_id}" in script and "plotly_sliderchange" in script


def test_show_with_script_sends_the_plotly_mimetype_and_self_contained_html(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append((obj, raw)))
    fig, script = viz.compute_budget_figure({"a": 1e12}, [1e9], [1e10], [0.5], (1e9, 1e10, "a", 0.5))
    viz.show_with_script(fig, script, "palmbook-fig-test")
    ((bundle, raw),) = shown
    assert raw and "application/vnd.plotly.v1+json" in bundle
    html = bundle["text/html"]
    assert 'id="palmbook-fig-test"' in html and "Plotly.newPlot" in html and "plotly_sliderchange" in html
    assert "<script src=" not in html and "{plot_id}" not in html


@pytest.mark.parametrize("n", [1, 3])
def test_speed_and_repetition_figures_have_one_line_per_method(n):
    rates = {f"m{i}": {8: (10.0, 8.0, 12.0), 16: (9.0, 7.0, 11.0)} for i in range(n)}
    fig = viz.generation_speed_figure(rates, "test machine")
    assert len(fig.data) == n and list(fig.data[0].error_y.array) == [2.0, 2.0]
    spreads = {name: {k: Spread(*r) for k, r in per.items()} for name, per in rates.items()}
    same = viz.generation_speed_figure(spreads, "test machine")  # palmbook.book.rates' Spread draws the same
    assert list(same.data[0].y) == [10.0, 9.0] and list(same.data[0].error_y.arrayminus) == [2.0, 2.0]
    rep = viz.repetition_figure({f"f{i}": [(0.0, 0.2, "a b"), (1.0, 0.9, "c d")] for i in range(n)})
    assert len(rep.data) == n and list(rep.data[0].y) == [0.2, 0.9]


def test_parse_launch_reads_torchrun_and_palmbook_flags_with_their_own_parsers():
    from palmbook.viz.scaling import parse_launch

    one = parse_launch("palmbook train --preset palm-small --out-dir runs/small")
    assert (one.nodes, one.processes_per_node, one.args.command, one.args.out_dir) == (1, 1, "train", "runs/small")
    many = parse_launch(
        "torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint H:29500 --rdzv_id R "
        "-m palmbook train --preset palm-1b --distributed fsdp --out-dir /shared/1b"
    )
    assert (many.nodes, many.processes_per_node, many.args.distributed) == (4, 8, "fsdp")
    with pytest.raises(SystemExit):
        parse_launch("palmbook train --no-such-flag 1")
    with pytest.raises(ValueError, match="palmbook"):
        parse_launch("python train.py")


def test_memory_parts_buttons_restyle_only_the_last_part():
    from palmbook.viz.scaling import memory_parts_figure

    parts = {"weights": {"a": 1.0, "b": 2.0}, "activations": {"a": 10.0, "b": 20.0}}
    alternatives = {"without": {"a": 10.0, "b": 20.0}, "with": {"a": 3.0, "b": 4.0}}
    fig = memory_parts_figure(parts, alternatives, "t")
    assert [tuple(bar.y) for bar in fig.data] == [(1.0, 2.0), (10.0, 20.0)]
    buttons = fig.layout.updatemenus[0].buttons
    assert [(b.args[0]["y"], list(b.args[1])) for b in buttons] == [([[10.0, 20.0]], [1]), ([[3.0, 4.0]], [1])]
