"""Chapters 1-2 figures: token boundaries, the token grid explorer, the logit-scale slider, the embedding map."""

import math
import re

import pytest
import torch

from palmbook.viz import (
    TOKEN_KINDS,
    embedding_map_figure,
    logit_scale_figure,
    token_grid_figure,
    token_spans_html,
)


def test_token_spans_html_has_one_box_per_token_and_escapes_text():
    pieces = ["To", "▁be", ",", "\n", "<0xE6>", "<b>"]
    html = token_spans_html(pieces, ids=[10, 11, 12, 3, 234, 99])
    assert html.count("<span title=") == len(pieces)
    assert "<b>" not in html and "&lt;b&gt;" in html  # a piece that looks like a tag is shown as text
    assert "dashed #fb8500" in html and html.count("dashed #fb8500") == 1  # exactly the byte piece is framed
    assert "0xE6" in html and "<br>" in html  # bytes shown by value; the newline breaks the line
    assert re.search(r'title="#4 id 234', html)
    assert "6 tokens" in html


def test_token_spans_html_rejects_mismatched_ids():
    with pytest.raises(ValueError, match="one id per piece"):
        token_spans_html(["a", "b"], ids=[1])


def _examples():
    return {
        "first": (["▁To", "1", ",", "<0xE6>"], [5, 6, 7, 234], [False, False, False, True]),
        "second": (["ab"] * 30, list(range(30)), [False] * 30),
    }


def test_token_grid_figure_dropdown_shows_one_text_at_a_time():
    fig = token_grid_figure(_examples(), columns=8)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2
    assert [t.visible for t in heatmaps] == [True, False]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["first", "second"]
    n_legend = len(TOKEN_KINDS)
    assert buttons[1].args[0]["visible"] == [False, True] + [True] * n_legend
    assert buttons[1].args[1]["title.text"] == "second: 30 tokens"
    # 30 tokens in rows of 8 -> 4 rows, the last one partly empty.
    z = heatmaps[1].z
    assert len(z) == 4 and all(len(row) == 8 for row in z) and z[3][6] is None


def test_token_grid_figure_colours_cells_by_kind_and_hovers_bytes():
    fig = token_grid_figure(_examples(), columns=8)
    first = fig.data[0]
    kinds = [TOKEN_KINDS[int(v)] for v in first.z[0][:4]]
    assert kinds == ["letters after a space", "digit", "punctuation", "byte (fallback)"]
    assert "id 234" in first.customdata[0][3] and "UTF-8: E6" in first.customdata[0][3]
    assert "UTF-8: E2 96 81 54 6F" not in first.customdata[0][0]  # "▁" is shown as the space it stands for
    assert "UTF-8: 20 54 6F" in first.customdata[0][0]
    with pytest.raises(ValueError, match="empty"):
        token_grid_figure({})


def test_logit_scale_figure_bins_are_densities_and_slider_switches_widths():
    torch.manual_seed(0)
    samples = {d: (math.sqrt(d) + torch.randn(300) * 0.7, torch.randn(5000)) for d in (64, 1024)}
    fig = logit_scale_figure(samples, bin_width=0.25)
    assert len(fig.data) == 6  # per width: others, own, the sqrt(d) line
    for bars in fig.data[:2]:
        assert sum(bars.y) * 0.25 == pytest.approx(1.0)  # a density integrates to 1
    own_centre = sum(x * y for x, y in zip(fig.data[1].x, fig.data[1].y, strict=True)) * 0.25
    assert own_centre == pytest.approx(8.0, abs=0.2)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["64", "1024"]
    assert steps[1].args[0]["visible"] == [False] * 3 + [True] * 3
    assert steps[1].args[1]["xaxis.range"][1] > math.sqrt(1024)


def test_embedding_map_figure_one_trace_per_category_in_2d_and_3d():
    coords = torch.arange(12.0).view(4, 3)
    fig = embedding_map_figure(
        coords, ["a", "b", "1", "c"], ["word", "word", "digit", "word"], colours={"digit": "red"}
    )
    assert [t.type for t in fig.data] == ["scatter3d", "scatter3d"]
    assert [t.name for t in fig.data] == ["word (3)", "digit (1)"]
    assert fig.data[1].marker.color == "red"
    assert list(fig.data[1].customdata[0]) == ["1", 2]
    flat = embedding_map_figure(coords[:, :2], ["a", "b", "1", "c"], ["w", "w", "d", "w"])
    assert {t.type for t in flat.data} == {"scatter"}
    with pytest.raises(ValueError, match="one piece and one category per point"):
        embedding_map_figure(coords, ["a"], ["w"])
    with pytest.raises(ValueError, match=r"\(N, 2\) or \(N, 3\)"):
        embedding_map_figure(torch.zeros(4, 5), ["a"] * 4, ["w"] * 4)
