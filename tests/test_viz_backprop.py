"""Chapter 7's figures: each slider step shows the state it claims to show, and nothing plays by itself."""

from __future__ import annotations

import pytest

from palmbook.scratch.activation_memory import MemoryTrace
from palmbook.scratch.autograd import Value, topological_order
from palmbook.viz import backward_pass_figure, descent_figure, memory_trace_figure


def _graph() -> tuple[Value, dict[str, Value]]:
    a, b, c, f = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c"), Value(-2.0, label="f")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    out = d * f + a  # a is used twice: its gradient accumulates over two steps
    out.label = "L"
    return out, dict(a=a, b=b, c=c, f=f, e=e, d=d)


def test_backward_pass_slider_has_one_step_per_node_and_ends_on_the_true_gradients() -> None:
    out, leaves = _graph()
    fig = backward_pass_figure(out)
    n_nodes = len(topological_order(out))
    steps = fig.layout.sliders[0].steps
    assert len(steps) == n_nodes + 1 and not fig.frames
    # the figure ran the backward pass: dL/da = b*f + 1, dL/db = a*f, dL/dc = f, dL/df = d
    assert (leaves["a"].grad, leaves["b"].grad, leaves["c"].grad, leaves["f"].grad) == (7.0, -4.0, -2.0, 4.0)
    final_hover = steps[-1].args[0]["hovertext"][0]
    for name in ("a", "b", "c", "f"):
        assert any(h.startswith(f"<b>{name}</b>") and h.endswith(f"= {leaves[name].grad:.6g}") for h in final_hover)
    assert all("gradient" not in h for h in steps[0].args[0]["hovertext"][0])  # step 0: forward values only
    assert list(steps[0].args[2]) == [1]  # only the node trace is restyled


def test_backward_pass_figure_outlines_exactly_one_node_per_step_and_can_run_twice() -> None:
    out, leaves = _graph()
    backward_pass_figure(out)
    fig = backward_pass_figure(out)  # grads are reset first, so they do not double
    assert leaves["a"].grad == 7.0
    for step in fig.layout.sliders[0].steps[1:]:
        assert step.args[0]["marker.line.color"][0].count("#d62728") == 1


def test_descent_slider_moves_every_path_to_step_k() -> None:
    paths = {
        "slow": [(0.0, 0.0, 3.0), (0.1, 0.1, 2.0), (0.2, 0.2, 1.0)],
        "fast": [(0.0, 0.0, 3.0), (1.0, 1.0, 1.5), (2, 2, 0.5)],
    }
    fig = descent_figure([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [[0.0] * 3] * 3, paths)
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 3 and not fig.frames
    update, traces = steps[1].args
    assert list(traces) == [1, 2, 3, 4]
    assert list(update["x"][2]) == [0.0, 1.0] and list(update["y"][3]) == [3.0, 1.5]  # "fast": path and loss
    with pytest.raises(ValueError, match="same number of steps"):
        descent_figure([0.0], [0.0], [[0.0]], {"a": paths["slow"], "b": paths["slow"][:2]})


def test_memory_trace_figure_draws_each_trace_in_mib_with_its_backward_mark() -> None:
    trace = MemoryTrace(
        [0.0, 1.0, 2.0], [2**20, 3 * 2**20, 2**19], {"forward": (0, 1), "backward": (1, 2)}, 3 * 2**20, 2**19
    )
    fig = memory_trace_figure({"run": trace}, levels={"parameters": 2**20})
    assert list(fig.data[0].y) == [1.0, 3.0, 0.5]
    assert {s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1} == {1}


def test_activation_memory_figure_draws_one_bar_set_per_way_over_the_same_lengths():
    from palmbook.viz.backprop import activation_memory_figure

    fig = activation_memory_figure({"full": {32: 4.0, 64: 8.0}, "checkpointed": {32: 1.0, 64: 2.0}}, 3.0, "t")
    assert [tuple(bar.x) for bar in fig.data] == [("32", "64"), ("32", "64")]
    assert [tuple(bar.y) for bar in fig.data] == [(4.0, 8.0), (1.0, 2.0)]
    with pytest.raises(ValueError, match="lengths"):
        activation_memory_figure({"full": {32: 4.0}, "other": {64: 1.0}}, 3.0, "t")
