"""Chapter 12, applications: how well the model does on tasks, next to baselines, with examples.

| figure                   | shows                                                                      |
|--------------------------|----------------------------------------------------------------------------|
| ``confusion_figure``     | confusion matrices (share of each true class), a menu over classifiers     |
| ``task_results_figure``  | one panel per task: model, control and baseline bars, with 95% intervals   |
| ``examples_table_figure``| a table of examples per task, a menu to switch task                        |
| ``interval_figure``      | a score against a count (labels, shots), one line per system, noise bands  |

``results_table`` is a table of strings (a pandas Styler without the index); ``summary_table`` the chapter's summary
table, built from the same list of tasks as ``task_results_figure``; ``task_explorer`` the live
"try your own input" widget: a menu of tasks, a text box, the chosen task's answer below.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import BLUE, one_at_a_time

__all__ = [
    "confusion_figure",
    "examples_table_figure",
    "interval_figure",
    "results_table",
    "summary_table",
    "task_explorer",
    "task_results_figure",
]

_PALETTE = (BLUE, "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
_CONTROL = "#ff7f0e"  # the random-weights control's bars


def confusion_figure(reports: dict, title: str = "Confusion matrix") -> go.Figure:
    """Confusion matrices with a dropdown over the classifiers (works without a kernel).

    reports: ``{name: ClassificationReport}`` (palmbook.evaluate) with the same labels. Colour = the share of each
    true class (row) predicted as each class, so rows of different sizes compare; hover gives the counts.
    """
    names = list(reports)
    if not names:
        raise ValueError("need at least one classification report")
    labels = reports[names[0]].labels
    fig = go.Figure()
    for i, name in enumerate(names):
        r = reports[name]
        if r.labels != labels:
            raise ValueError(f"report {name!r} has labels {r.labels}, not {labels}")
        rows = [[v / max(1, sum(row)) for v in row] for row in r.confusion]
        fig.add_trace(
            go.Heatmap(
                z=rows,
                x=labels,
                y=labels,
                zmin=0,
                zmax=1,
                colorscale="Blues",
                visible=i == 0,
                customdata=r.confusion,
                text=[[f"{v:.0%}" for v in row] for row in rows],
                texttemplate="%{text}",
                hovertemplate="true %{y}, predicted %{x}: %{customdata} (%{z:.0%} of the row)<extra></extra>",
                colorbar=dict(title="share of row", tickformat=".0%"),
            )
        )
    titles = [f"{title}: {name} ({r.accuracy:.0%} accuracy, macro-F1 {r.macro_f1:.2f})" for name, r in reports.items()]
    buttons = one_at_a_time(names, titles)
    fig.update_layout(
        title=titles[0],
        xaxis=dict(title="predicted"),
        yaxis=dict(title="true", autorange="reversed"),
        height=480,
        updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.16, yanchor="top")],
        margin=dict(t=100),
    )
    return fig


def task_results_figure(results: Sequence[dict]) -> go.Figure:
    """One panel per task, each with its own metric axis: bars for the baselines, the controls and the model(s).

    results: ``[{"task": str, "metric": str, "bars": {name: value or (value, low, high)}, "model": set of bar names
    that are models, "control": set of bar names that are controls, "lower_is_better": bool}, ...]``. A bar given
    as ``(value, low, high)`` gets an error bar from low to high (a 95% interval; clipped at the value, since a
    percentile-bootstrap interval can, rarely, leave its value out). Baselines are grey, controls
    orange, models blue; hover gives the exact value.
    """
    if not results:
        raise ValueError("need at least one task")
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=[r["task"] for r in results], horizontal_spacing=0.07)
    for col, r in enumerate(results, 1):
        names = list(r["bars"])
        bars = _bars(r)
        if any(len(v) != 3 or not v[1] <= v[2] for v in bars.values()):
            raise ValueError(f"{r['task']}: a bar is a value or (value, low, high) with low <= high")
        models, controls = set(r.get("model", ())), set(r.get("control", ()))
        fig.add_trace(
            go.Bar(
                x=names,
                y=[bars[n][0] for n in names],
                showlegend=False,
                marker_color=[BLUE if n in models else _CONTROL if n in controls else "#b0b0b0" for n in names],
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[max(bars[n][2] - bars[n][0], 0.0) for n in names],  # a bootstrap interval can
                    arrayminus=[max(bars[n][0] - bars[n][1], 0.0) for n in names],  # miss its value: clip
                    color="#404040",
                ),
                text=[f"{bars[n][0]:.3g}" for n in names],
                textposition="inside",
                hovertemplate="%{x}: %{y:.4g} " + r["metric"] + "<extra>" + r["task"] + "</extra>",
            ),
            row=1,
            col=col,
        )
        arrow = "lower is better" if r.get("lower_is_better") else "higher is better"
        title = r["metric"] if arrow in r["metric"] else f"{r['metric']} ({arrow})"  # never say it twice
        fig.update_yaxes(title_text=title, row=1, col=col, rangemode="tozero")
        fig.update_xaxes(tickangle=-45, row=1, col=col)
    fig.update_layout(
        height=520,
        title="Each task: the pretrained model (blue), its random-weights control (orange), baselines (grey)",
        margin=dict(t=90, b=170),
    )
    return fig


def examples_table_figure(
    tables: dict[str, dict[str, Sequence[str]]],
    height: int = 520,
    *,
    rows: int | None = None,
    max_chars: int | None = None,
) -> go.Figure:
    """A table of examples per task with a dropdown to switch task (works without a kernel).

    tables: ``{task: {column name: [cell, ...]}}``; every column of a task has the same number of cells.
    Newlines in cells are shown as line breaks. rows: show only each column's first ``rows`` cells; max_chars: cut
    each cell to its first ``max_chars`` characters ("..." marks a cut).
    """
    if not tables:
        raise ValueError("need at least one table")
    fig = go.Figure()
    for i, (task, cols) in enumerate(tables.items()):
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise ValueError(f"the columns of {task!r} have different lengths: {sorted(lengths)}")
        fig.add_trace(
            go.Table(
                header=dict(values=[f"<b>{c}</b>" for c in cols], align="left", fill_color="#e8eef7"),
                cells=dict(
                    values=[[_table_cell(v, max_chars) for v in list(vals)[:rows]] for vals in cols.values()],
                    align="left",
                    height=24,
                ),
                visible=i == 0,
            )
        )
    names = list(tables)
    buttons = one_at_a_time(names, [f"Examples: {t}" for t in names])
    fig.update_layout(
        title=f"Examples: {names[0]}",
        height=height,
        margin=dict(t=90, l=10, r=10, b=10),
        updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.14, yanchor="top")],
    )
    return fig


def _table_cell(value: object, max_chars: int | None = None) -> str:
    """A cell's text for a plotly table: cut to max_chars (if given), HTML-escaped, newlines as line breaks."""
    text = str(value)
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars] + "..."
    return html.escape(text).replace("\n", "<br>")


def interval_figure(
    curves: Mapping[str, Mapping[float, tuple[float, float, float]]],
    *,
    x_title: str,
    y_title: str,
    title: str,
    log_x: bool = False,
    reference: Mapping[str, float] | None = None,
) -> go.Figure:
    """A score against a count, one line per system, each point with its noise band (an error bar).

    curves: ``{system: {x: (value, low, high)}}`` (e.g. accuracy against the number of labels, with the range
    over seeds or a 95% interval). reference: horizontal dashed lines (``{name: y}``: chance, a baseline).
    """
    if not curves:
        raise ValueError("need at least one curve")
    fig = go.Figure()
    for i, (name, points) in enumerate(curves.items()):
        xs = sorted(points)
        ys = [points[x][0] for x in xs]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=name,
                mode="lines+markers",
                line=dict(color=_PALETTE[i % len(_PALETTE)]),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[points[x][2] - points[x][0] for x in xs],
                    arrayminus=[points[x][0] - points[x][1] for x in xs],
                ),
                hovertemplate=f"{name}<br>{x_title} %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    for name, y in (reference or {}).items():
        fig.add_hline(y=y, line_dash="dash", line_color="#808080", annotation_text=name)
    fig.update_layout(
        title=title,
        height=420,
        xaxis=dict(title=x_title, type="log" if log_x else "linear"),
        yaxis=dict(title=y_title),
    )
    return fig


def results_table(rows: Sequence[Sequence[str]], columns: Sequence[str]) -> Any:
    """The rows as a table without an index (a pandas Styler: rendered as HTML in the book)."""
    import pandas as pd

    widths = {len(r) for r in rows}
    if widths - {len(columns)}:
        raise ValueError(f"every row needs {len(columns)} cells; got rows of {sorted(widths)}")
    return pd.DataFrame(list(rows), columns=list(columns)).style.hide(axis="index")


def _bars(result: dict) -> dict[str, tuple]:
    """A task's bars as ``{name: (value, low, high)}``; a bare value v becomes (v, v, v)."""
    return {n: tuple(v) if isinstance(v, (tuple, list)) else (v, v, v) for n, v in result["bars"].items()}


def summary_table(results: Sequence[dict], columns: Sequence[str] | None = None) -> Any:
    """The chapter's summary: one row per task, from the same list of tasks as :func:`task_results_figure`.

    Each task dict has, besides ``task``, ``metric``, ``bars``, ``model``, ``control`` and ``lower_is_better``:
    ``fmt`` (the values' format, default ``".1%"``), ``baselines`` (the bar names that count as baselines; default
    every bar that is neither a model, nor a control, nor "chance"), ``paper`` (the paper's nearest result, a
    string) and ``no_control`` (the text of the control column when a task has none). Each column shows the best
    of its bars (the lowest where ``lower_is_better``), as ``value [low, high]``, with the bar's name in front when
    the column had more than one bar to choose from (always for the baselines).
    """
    columns = list(columns or ["task", "metric", "best baseline [95% interval]", "PaLM, random weights",
                               "PaLM, pretrained", "PaLM 540B in the paper"])  # fmt: skip
    rows = []
    for r in results:
        bars = _bars(r)
        models, controls = set(r.get("model", ())), set(r.get("control", ()))
        baselines = r.get("baselines") or [n for n in bars if n not in models | controls and n != "chance"]
        sign = -1 if r.get("lower_is_better") else 1

        def best(names: Sequence[str], name_it: bool, r=r, bars=bars, sign=sign) -> str:
            names = [n for n in bars if n in set(names)]  # in the bars' order, so ties go to the first
            if not names:
                return r.get("no_control", "—")
            n = max(names, key=lambda n: sign * bars[n][0])
            f = r.get("fmt", ".1%")
            text = f"{bars[n][0]:{f}} [{bars[n][1]:{f}}, {bars[n][2]:{f}}]"
            return f"{n} {text}" if name_it or len(names) > 1 else text

        rows.append((r["task"], r["metric"], best(baselines, True), best(list(controls), False),
                     best(list(models), False), r.get("paper", "—")))  # fmt: skip
    return results_table(rows, columns)


def task_explorer(tasks: Mapping[str, Callable[[str], str]], text: str) -> Any:
    """A live widget: a menu of ``tasks`` (name -> function from the typed text to an answer), a text box
    holding ``text``, and the chosen task's answer below them (HTML-escaped, in a <pre> block)."""
    import ipywidgets as widgets

    from ..book import explorer

    if not tasks:
        raise ValueError("need at least one task")
    task_w = widgets.Dropdown(options=list(tasks), description="task")
    text_w = widgets.Textarea(value=text, layout=widgets.Layout(width="95%"))
    return explorer(
        lambda task, text: f"<pre style='white-space: pre-wrap'>{html.escape(tasks[task](text))}</pre>",
        {"task": task_w, "text": text_w},
    )
