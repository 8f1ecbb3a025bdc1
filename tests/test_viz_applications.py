"""Chapter 12's figures: one visible trace per menu entry, values as given, text escaped."""

import pytest

from palmbook.evaluate import classification_report
from palmbook.viz import confusion_figure, examples_table_figure, task_results_figure


def test_confusion_figure_shows_one_classifier_at_a_time_with_row_shares():
    labels = ["a", "b"]
    reports = {
        "first": classification_report(["a", "a", "b"], ["a", "b", "b"], labels),
        "second": classification_report(["a", "a", "b"], ["a", "a", "a"], labels),
    }
    fig = confusion_figure(reports, "T")
    assert [t.visible for t in fig.data] == [True, False]
    assert list(fig.data[0].z[0]) == [0.5, 0.5] and list(fig.data[1].z[1]) == [1.0, 0.0]  # rows sum to one
    assert [list(r) for r in fig.data[1].customdata] == [[2, 0], [1, 0]]  # hover shows the counts
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.args[0]["visible"] for b in buttons] == [[True, False], [False, True]]
    assert "67% accuracy" in buttons[1].args[1]["title.text"]


def test_confusion_figure_refuses_reports_with_other_labels():
    a = classification_report(["x"], ["x"], ["x", "y"])
    b = classification_report(["x"], ["x"], ["x", "z"])
    with pytest.raises(ValueError, match="labels"):
        confusion_figure({"a": a, "b": b})


def test_task_results_figure_has_one_panel_per_task_and_colours_models_only():
    fig = task_results_figure([
        dict(task="t1", metric="acc", bars={"base": 0.5, "model": 0.7}, model={"model"}),
        dict(task="t2", metric="bits", bars={"base": 3.0, "model": 2.0}, model={"model"}, lower_is_better=True),
    ])  # fmt: skip
    assert len(fig.data) == 2
    assert list(fig.data[1].y) == [3.0, 2.0]
    assert fig.data[0].marker.color[0] != fig.data[0].marker.color[1]
    assert "lower is better" in fig.layout.yaxis2.title.text and "higher" in fig.layout.yaxis.title.text


def test_examples_table_switches_tasks_and_escapes_text():
    fig = examples_table_figure({"one": {"x": ["<b>hi</b>\nthere"]}, "two": {"y": ["a"], "z": ["b"]}})
    assert [t.visible for t in fig.data] == [True, False]
    assert fig.data[0].cells.values[0][0] == "&lt;b&gt;hi&lt;/b&gt;<br>there"
    with pytest.raises(ValueError, match="different lengths"):
        examples_table_figure({"bad": {"x": ["a"], "y": []}})
