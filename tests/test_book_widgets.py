"""palmbook.book.widgets: the explorer chapters build (controls above an HTML panel) and its HTML helpers."""

from __future__ import annotations

import ipywidgets as widgets
import pytest

from palmbook.book import bar_html, explorer, pre_html


def test_explorer_draws_the_panel_now_and_again_on_every_change():
    a, b = widgets.IntSlider(value=2), widgets.Text(value="x")
    box = explorer(lambda n, word: f"<b>{word * n}</b>", {"n": a, "word": b})
    panel = box.children[-1]
    assert isinstance(panel, widgets.HTML) and panel.value == "<b>xx</b>"
    a.value = 3
    assert panel.value == "<b>xxx</b>"
    b.value = "y"
    assert panel.value == "<b>yyy</b>"
    assert list(box.children[:-1]) == [a, b]  # one control per row by default


def test_explorer_rows_put_controls_side_by_side_and_must_place_each_once():
    a, b, c = widgets.IntSlider(), widgets.IntSlider(), widgets.IntSlider()
    box = explorer(lambda a, b, c: "", {"a": a, "b": b, "c": c}, rows=[["a"], ["b", "c"]])
    assert box.children[0] is a and isinstance(box.children[1], widgets.HBox)
    assert list(box.children[1].children) == [b, c]
    with pytest.raises(ValueError, match="exactly once"):
        explorer(lambda a, b, c: "", {"a": a, "b": b, "c": c}, rows=[["a", "b"]])


def test_pre_html_escapes_text_and_bolds_the_emphasis():
    assert pre_html("<KING>:", "a & b") == "<pre style='white-space: pre-wrap'>&lt;KING&gt;:<b>a &amp; b</b></pre>"
    assert "<b>" not in pre_html("plain")


def test_bar_html_is_the_fraction_of_the_width():
    assert "width:150px" in bar_html(0.5) and "background:#d62728" in bar_html(1.0, "#d62728", width=10)
    assert "width:10px" in bar_html(1.0, width=10)
