"""Chapter 3's figures: what each slider shows must be the data it claims to show."""

import math

import pytest
import torch

from palmbook.viz import attention_map_figure, rope_rotation_figure, softmax_temperature_figure


def test_temperature_slider_steps_show_softmax_of_scores_over_temperature():
    scores, temps = [2.0, 1.0, 0.5, 0.0], (0.5, 1.0, 4.0)
    fig = softmax_temperature_figure(scores, list("abcd"), temps, start=1.0)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0.5", "1", "4"]
    for t, step in zip(temps, steps, strict=True):
        expected = torch.softmax(torch.tensor(scores, dtype=torch.float64) / t, -1)
        torch.testing.assert_close(torch.tensor(step.args[0]["y"][0], dtype=torch.float64), expected)
    assert fig.layout.sliders[0].active == 1
    torch.testing.assert_close(
        torch.tensor(fig.data[0].y, dtype=torch.float64), torch.softmax(torch.tensor(scores, dtype=torch.float64), -1)
    )
    with pytest.raises(ValueError, match="one label per score"):
        softmax_temperature_figure([1.0, 2.0], ["a"])


def test_rope_slider_turns_pair_i_by_position_times_theta_i():
    head_dim, pairs, base = 16, (0, 3), 10_000.0
    fig = rope_rotation_figure(head_dim, pairs, positions=12, base=base)
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 12 and not fig.frames  # no frames: nothing plays by itself on page load
    for m in (0, 5, 11):
        update, traces = steps[m].args
        assert list(traces) == [2, 3]  # the hands; traces 0 and 1 are the static dots
        for k, i in enumerate(pairs):
            x, y = update["x"][k][1], update["y"][k][1]
            angle = m * base ** (-2 * i / head_dim)
            assert math.isclose(math.atan2(y, x) % (2 * math.pi), angle % (2 * math.pi), abs_tol=1e-9)
            assert math.isclose(math.hypot(x, y), 1.0 + k)
            dots = fig.data[k]
            assert math.isclose(dots.x[m], x) and math.isclose(dots.y[m], y)  # the dot of position m
    with pytest.raises(ValueError, match="pairs must be indices"):
        rope_rotation_figure(8, (4,))


def test_attention_map_sliders_select_the_layer_and_head_shown():
    torch.manual_seed(0)
    L, H, T = 3, 2, 5
    maps = torch.rand(L, H, T, T).tril()
    maps = maps / maps.sum(-1, keepdim=True)
    fig = attention_map_figure(maps, [f"t{i}" for i in range(T)])
    z = fig.data[0].z
    layer_slider, head_slider = fig.layout.sliders
    assert len(layer_slider.steps) == L and len(head_slider.steps) == H
    for layer, lstep in enumerate(layer_slider.steps):
        y_hi, y_lo = lstep.args[0]["yaxis.range"]  # reversed axis: first query at the top
        for head, hstep in enumerate(head_slider.steps):
            x_lo, x_hi = hstep.args[0]["xaxis.range"]
            rows = range(math.ceil(y_lo), math.floor(y_hi) + 1)
            cols = range(math.ceil(x_lo), math.floor(x_hi) + 1)
            shown = [[z[r][c] for c in cols] for r in rows]
            for i in range(T):
                for j in range(T):
                    if j > i:
                        assert math.isnan(shown[i][j])  # the causal mask: blank
                    else:
                        assert math.isclose(shown[i][j], maps[layer, head, i, j].item(), abs_tol=1e-4)
    assert list(fig.layout.yaxis.ticktext[:T]) == [f"t{i}" for i in range(T)]
    assert len(set(fig.data[0].x)) == H * T and len(set(fig.data[0].y)) == L * T  # categories must be unique


def test_attention_map_figure_refuses_wrong_shapes():
    with pytest.raises(ValueError, match="n_layers, n_heads, T, T"):
        attention_map_figure(torch.rand(2, 1, 3, 4, 4), list("abcd"))
    with pytest.raises(ValueError, match="one token label per position"):
        attention_map_figure(torch.rand(1, 1, 4, 4), list("abc"))


def test_attention_map_figure_opens_on_the_requested_layer_and_head():
    L, H, T = 3, 4, 6
    fig = attention_map_figure(torch.rand(L, H, T, T), list("abcdef"), layer=2, head=3)
    assert fig.layout.sliders[0].active == 2 and fig.layout.sliders[1].active == 3
    assert tuple(fig.layout.yaxis.range) == (3 * T - 0.5, 2 * T - 0.5)
    assert tuple(fig.layout.xaxis.range) == (3 * T - 0.5, 4 * T - 0.5)
    with pytest.raises(ValueError, match=r"layer must be in 0\.\.2"):
        attention_map_figure(torch.rand(L, H, T, T), list("abcdef"), layer=3)
