"""Chapter 12's figures: one visible trace per menu entry, values as given, text escaped."""

import pytest

from palmbook.evaluate import classification_report
from palmbook.viz import (
    confusion_figure,
    examples_table_figure,
    interval_figure,
    results_table,
    task_explorer,
    task_results_figure,
)


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


def test_task_results_figure_has_one_panel_per_task_and_colours_models_and_controls():
    fig = task_results_figure([
        dict(task="t1", metric="acc", bars={"base": 0.5, "control": (0.55, 0.4, 0.7), "model": (0.7, 0.6, 0.8)},
             model={"model"}, control={"control"}),
        dict(task="t2", metric="bits", bars={"base": 3.0, "model": 2.0}, model={"model"}, lower_is_better=True),
    ])  # fmt: skip
    assert len(fig.data) == 2
    assert list(fig.data[1].y) == [3.0, 2.0]
    assert len(set(fig.data[0].marker.color)) == 3  # baseline, control and model each have their colour
    assert [round(v, 9) for v in fig.data[0].error_y.array] == [0.0, 0.15, 0.1]  # value to high
    assert [round(v, 9) for v in fig.data[0].error_y.arrayminus] == [0.0, 0.15, 0.1]  # low to value
    assert "lower is better" in fig.layout.yaxis2.title.text and "higher" in fig.layout.yaxis.title.text
    said = task_results_figure([dict(task="t", metric="bits (lower is better)", bars={"x": 1.0}, lower_is_better=True)])
    assert said.layout.yaxis.title.text == "bits (lower is better)"  # a metric that already says it is not repeated
    with pytest.raises(ValueError, match="low <= high"):
        task_results_figure([dict(task="t", metric="m", bars={"x": (0.5, 0.7, 0.6)})])
    clipped = task_results_figure([dict(task="t", metric="m", bars={"x": (0.5, 0.6, 0.7)})])
    assert list(clipped.data[0].error_y.arrayminus) == [0.0]


def test_examples_table_switches_tasks_and_escapes_text():
    fig = examples_table_figure({"one": {"x": ["<b>hi</b>\nthere"]}, "two": {"y": ["a"], "z": ["b"]}})
    assert [t.visible for t in fig.data] == [True, False]
    assert fig.data[0].cells.values[0][0] == "&lt;b&gt;hi&lt;/b&gt;<br>there"
    with pytest.raises(ValueError, match="different lengths"):
        examples_table_figure({"bad": {"x": ["a"], "y": []}})


def test_interval_figure_draws_each_point_with_its_band_and_reference_lines():
    fig = interval_figure(
        {"model": {1: (0.5, 0.4, 0.7), 4: (0.8, 0.6, 0.9)}, "rule": {1: (0.3, 0.3, 0.3)}},
        x_title="k",
        y_title="accuracy",
        title="T",
        reference={"chance": 0.25},
    )
    assert [t.name for t in fig.data] == ["model", "rule"]
    assert list(fig.data[0].x) == [1, 4] and list(fig.data[0].y) == [0.5, 0.8]
    assert [round(v, 9) for v in fig.data[0].error_y.array] == [0.2, 0.1]
    assert [round(v, 9) for v in fig.data[0].error_y.arrayminus] == [0.1, 0.2]
    assert fig.layout.shapes[0].y0 == 0.25


def test_results_table_has_no_index_and_checks_row_widths():
    html = results_table([("a", "1"), ("b", "2")], ["task", "score"]).to_html()
    assert "task" in html and ">b<" in html
    with pytest.raises(ValueError, match="every row needs 2 cells"):
        results_table([("a",)], ["task", "score"])


def test_task_explorer_answers_with_the_chosen_task_escaped():
    box = task_explorer({"shout": str.upper, "echo": lambda t: t}, "<hi>")
    assert "&lt;HI&gt;" in box.children[-1].value
    box.children[0].value = "echo"
    assert "&lt;hi&gt;" in box.children[-1].value


def test_examples_table_cuts_rows_and_long_cells():
    fig = examples_table_figure({"t": {"x": ["abcdef", "b", "c"], "y": ["1", "2", "3"]}}, rows=2, max_chars=3)
    assert list(fig.data[0].cells.values[0]) == ["abc...", "b"]
    assert list(fig.data[0].cells.values[1]) == ["1", "2"]


def test_summary_table_picks_the_best_of_each_column_with_its_interval():
    from palmbook.viz.applications import summary_table

    results = [
        dict(task="t1", metric="acc", bars={"chance": 0.9, "base": (0.5, 0.4, 0.6), "ctrl": (0.55, 0.45, 0.65),
             "m1": (0.7, 0.6, 0.8), "m2": (0.75, 0.7, 0.8)}, model={"m1", "m2"}, control={"ctrl"}, paper="p"),
        dict(task="t2", metric="bits", bars={"a": (3.0, 2.9, 3.1), "b": (2.5, 2.4, 2.6), "m": (2.0, 1.9, 2.1)},
             model={"m"}, lower_is_better=True, fmt=".2f", no_control="none"),
    ]  # fmt: skip
    df = summary_table(results).data
    assert list(df.iloc[0]) == ["t1", "acc", "base 50.0% [40.0%, 60.0%]", "55.0% [45.0%, 65.0%]",
                                "m2 75.0% [70.0%, 80.0%]", "p"]  # fmt: skip
    assert list(df.iloc[1]) == ["t2", "bits", "b 2.50 [2.40, 2.60]", "none", "2.00 [1.90, 2.10]", "—"]
