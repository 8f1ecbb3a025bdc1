"""Chapter 7, backpropagation: a computation graph's backward pass step by step and gradient descent on a loss
surface; and the memory a training step holds, which chapter 14 (scaling up) measures.

| figure                  | shows                                                                        |
|-------------------------|------------------------------------------------------------------------------|
| ``backward_pass_figure``| a :class:`palmbook.scratch.autograd.Value` graph; a slider runs its backward pass |
| ``descent_figure``      | paths of (w, b) on a contour plot and their loss per step, one per learning rate  |
| ``memory_trace_figure`` | bytes held by tensors over one step, forward then backward                    |
| ``activation_memory_figure`` | saved activations per sequence length, with and without checkpointing    |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..scratch.autograd import topological_order
from .common import BLUE, GREEN, ORANGE, PURPLE, RED, slider

__all__ = ["activation_memory_figure", "backward_pass_figure", "descent_figure", "memory_trace_figure"]

# Descent paths and memory traces: red first (the chapter's figures have always drawn the first run red).
_PATH_COLOURS = (RED, BLUE, GREEN, PURPLE, ORANGE)


# ---- the backward pass
def _graph_layout(order: Sequence) -> dict[int, tuple[float, float]]:
    """Positions for a computation graph: the output at the right, each node one column left of its first consumer.

    ``order`` is topological (parents first, output last). Rows within a column follow the consumers' rows, so
    edges stay short and rarely cross.
    """
    col: dict[int, int] = {id(order[-1]): 0}
    for node in reversed(order):  # consumers before their parents
        for p in node.parents:
            col[id(p)] = min(col.get(id(p), 0), col[id(node)] - 1)
    columns: dict[int, list] = {}
    for node in reversed(order):
        columns.setdefault(col[id(node)], []).append(node)
    y: dict[int, float] = {}
    for c in sorted(columns, reverse=True):  # from the output leftwards
        nodes = columns[c]
        consumer_rows = {
            id(n): [y[id(m)] for m in order if id(m) in y and any(p is n for p in m.parents)] for n in nodes
        }
        nodes.sort(key=lambda n: sum(consumer_rows[id(n)]) / max(1, len(consumer_rows[id(n)])))
        for i, node in enumerate(nodes):
            y[id(node)] = i - (len(nodes) - 1) / 2
    leftmost = min(col.values())
    return {id(n): (float(col[id(n)] - leftmost), -y[id(n)]) for n in order}


@dataclass
class _BackwardRun:
    """One recorded backward pass through a graph of ``Value`` nodes.

    order: the nodes, parents first (topological); steps[k - 1]: the node that passed its gradient on at step k;
    snapshots[k]: every node's gradient (by ``id``) after k steps, snapshots[0] before the first.
    """

    order: list
    names: dict[int, str]
    steps: list = field(default_factory=list)
    snapshots: list[dict[int, float]] = field(default_factory=list)

    @classmethod
    def record(cls, root: Any) -> _BackwardRun:
        """Zero every gradient, then run ``root.backward()`` and keep the gradients after each of its steps."""
        order = topological_order(root)
        names = {}
        for i, node in enumerate(order):
            names[id(node)] = node.label or (f"{node.data:g}" if not node.parents else f"v{i}")
        for node in order:
            node.grad = 0.0
        run = cls(order, names, snapshots=[{id(n): (1.0 if n is root else 0.0) for n in order}])

        def on_step(node: Any) -> None:
            run.steps.append(node)
            run.snapshots.append({id(n): n.grad for n in order})

        root.backward(on_step=on_step)
        return run

    def op_text(self, n: Any) -> str:
        """How node n was computed, in its parents' names: "a * b", "tanh(c)", "d**2" or "input"."""
        if not n.parents:
            return "input"
        args = [self.names[id(p)] for p in n.parents]
        if n.op in ("+", "*"):
            return f" {n.op} ".join(args)
        if n.op.startswith("**"):
            return f"{args[0]}{n.op}"
        return f"{n.op}({args[0]})"

    def caption(self, k: int) -> str:
        """The figure title at slider step k: what the k-th node passed to whom."""
        if k == 0:
            return "Forward pass done: every node holds its value. Move the slider to run the backward pass."
        node, name = self.steps[k - 1], self.names[id(self.steps[k - 1])]
        before, after = self.snapshots[k - 1], self.snapshots[k]
        g = after[id(node)]
        if not node.parents:
            return f"Step {k}: {name} is an input; its gradient {g:.4g} is final"
        passed = ", ".join(
            f"{self.names[id(p)]} += {after[id(p)] - before[id(p)]:.4g}" for p in dict.fromkeys(node.parents)
        )
        return f"Step {k}: {name} = {self.op_text(node)} has ∂L/∂{name} = {g:.4g} and passes {passed}"

    def node_style(self, k: int) -> dict[str, list]:
        """The nodes at slider step k: labels, hover texts, fill (green: done), outline (red: the current node)."""
        grads = self.snapshots[k]
        done = {id(n) for n in self.steps[:k]}
        current = self.steps[k - 1] if k > 0 else None

        def label(n: Any) -> str:
            grad = f"<br><span style='color:#2c7fb8'>∂ {grads[id(n)]:.4g}</span>" if k > 0 else "<br> "
            return f"<b>{self.names[id(n)]}</b><br>{n.data:.4g}{grad}"

        def hover(n: Any) -> str:
            name = self.names[id(n)]
            text = f"<b>{name}</b> = {self.op_text(n)}<br>value {n.data:.6g}"
            return text + (f"<br>gradient ∂L/∂{name} = {grads[id(n)]:.6g}" if k > 0 else "")

        return {
            "text": [label(n) for n in self.order],
            "hovertext": [hover(n) for n in self.order],
            "marker.color": ["#c7e9c0" if id(n) in done else "#ffffff" for n in self.order],
            "marker.line.color": [RED if n is current else "#555" for n in self.order],
            "marker.line.width": [4 if n is current else 1.5 for n in self.order],
        }


def _node_trace(run: _BackwardRun, pos: dict[int, tuple[float, float]]) -> go.Scatter:
    """The nodes as labelled squares, styled as at slider step 0 (the forward pass)."""
    style = run.node_style(0)
    return go.Scatter(
        x=[pos[id(n)][0] for n in run.order],
        y=[pos[id(n)][1] for n in run.order],
        mode="markers+text",
        text=style["text"],
        textposition="middle center",
        textfont=dict(size=11),
        hovertext=style["hovertext"],
        hoverinfo="text",
        marker=dict(
            symbol="square",
            size=58,
            color=style["marker.color"],
            line=dict(color=style["marker.line.color"], width=style["marker.line.width"]),
        ),
        showlegend=False,
    )


def _edges(order: Sequence, pos: dict[int, tuple[float, float]]) -> tuple[go.Scatter, list[dict]]:
    """The graph's edges: faint lines (a trace) and arrowheads from each parent to its consumer (annotations)."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    arrows = []
    for node in order:
        for p in node.parents:
            (x0, y0), (x1, y1) = pos[id(p)], pos[id(node)]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
            arrows.append(
                dict(
                    x=x1,
                    y=y1,
                    ax=x0,
                    ay=y0,
                    xref="x",
                    yref="y",
                    axref="x",
                    ayref="y",
                    showarrow=True,
                    arrowhead=2,
                    arrowsize=1.2,
                    arrowwidth=1.2,
                    arrowcolor="#888",
                    standoff=30,
                    startstandoff=30,
                    text="",
                )
            )
    lines = go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#bbb", width=1), hoverinfo="skip", showlegend=False)
    return lines, arrows


def backward_pass_figure(root: Any) -> go.Figure:
    """The computation graph of a :class:`palmbook.scratch.autograd.Value`, with a slider through its backward pass.

    Runs ``root.backward()`` (after zeroing every gradient in the graph). Step 0 shows the forward pass (values);
    step k shows the gradients after the k-th node has passed its gradient to its parents, with that node outlined
    in red and the title saying what it passed to whom. Hover a node for its value and gradient. Works without a
    kernel (each slider step restyles the nodes).
    """
    run = _BackwardRun.record(root)
    pos = _graph_layout(run.order)
    edges, arrows = _edges(run.order, pos)
    fig = go.Figure(data=[edges, _node_trace(run, pos)])
    # Each slider step restyles the node trace (index 1) and retitles the figure
    steps = [
        dict(
            method="update",
            label=str(k) if k else "fwd",
            args=[{key: [v] for key, v in run.node_style(k).items()}, {"title.text": run.caption(k)}, [1]],
        )
        for k in range(len(run.steps) + 1)
    ]
    xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
    fig.update_layout(
        title=dict(text=run.caption(0), font=dict(size=13)),
        annotations=arrows,
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="backward step ", font=dict(size=12)))],
        xaxis=dict(visible=False, range=[min(xs) - 0.5, max(xs) + 0.5]),
        yaxis=dict(visible=False, range=[min(ys) - 0.8, max(ys) + 0.6]),
        height=380 + 40 * max(0, int(max(ys) - min(ys)) - 2),
        margin=dict(l=10, r=10, t=60, b=90),
    )
    return fig


# ---- gradient descent
def descent_figure(
    w_grid: Sequence[float],
    b_grid: Sequence[float],
    loss_grid: Sequence[Sequence[float]],
    paths: dict[str, Sequence[tuple[float, float, float]]],
    axis_titles: tuple[str, str] = ("w", "b"),
) -> go.Figure:
    """Gradient descent on a 2-parameter loss surface: contours on the left, loss per step on the right.

    loss_grid[i][j] is the loss at (w_grid[j], b_grid[i]). ``paths`` maps a label (e.g. a learning rate) to the
    (w, b, loss) after each step, step 0 first; all paths have the same length. A slider moves every path to step k
    (it restyles the traces, so it works on a static page).
    """
    lengths = {len(p) for p in paths.values()}
    if len(lengths) != 1:
        raise ValueError(f"every path needs the same number of steps; got lengths {sorted(lengths)}")
    n = lengths.pop()
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.58, 0.42],
        horizontal_spacing=0.1,
        subplot_titles=("the loss surface and the path of (w, b)", "loss after each step"),
    )
    fig.add_trace(_loss_contours(w_grid, b_grid, loss_grid), row=1, col=1)
    for i, t in enumerate(_path_traces(paths, 0)):  # path on the surface (left), its loss (right), per label
        fig.add_trace(t, row=1, col=1 + i % 2)
    all_losses = [p[2] for path in paths.values() for p in path]
    fig.update_xaxes(title_text=axis_titles[0], row=1, col=1)
    fig.update_yaxes(title_text=axis_titles[1], row=1, col=1)
    fig.update_xaxes(title_text="step", range=[-0.5, n - 0.5], row=1, col=2)
    fig.update_yaxes(title_text="mean loss", range=[0, max(all_losses) * 1.05], row=1, col=2)
    ids = list(range(1, 1 + 2 * len(paths)))  # every trace after the contours
    steps = []
    for k in range(n):
        ts = _path_traces(paths, k)
        restyle = {"x": [t.x for t in ts], "y": [t.y for t in ts], "marker.size": [t.marker.size for t in ts]}
        steps.append(dict(method="restyle", label=str(k), args=[restyle, ids]))
    fig.update_layout(
        sliders=[slider(steps, 0, "gradient-descent step ", pad=dict(t=50))],
        legend=dict(title="learning rate", orientation="h", y=1.22, x=0.0),
        height=480,
        margin=dict(t=110, b=90),
    )
    return fig


def _loss_contours(w_grid: Sequence[float], b_grid: Sequence[float], loss_grid: Sequence[Sequence[float]]):
    """The loss surface as filled contours, loss_grid[i][j] at (w_grid[j], b_grid[i])."""
    return go.Contour(
        x=list(w_grid),
        y=list(b_grid),
        z=torch.as_tensor(loss_grid, dtype=torch.float32).numpy(),  # compact binary float32 in the page
        colorscale="Viridis",
        ncontours=30,
        showscale=False,
        hovertemplate="w=%{x:.2f}<br>b=%{y:.2f}<br>loss=%{z:.4f}<extra></extra>",
        line=dict(width=0.5),
    )


def _path_traces(paths: dict[str, Sequence[tuple[float, float, float]]], k: int) -> list[go.Scatter]:
    """Each path's first k + 1 steps: its (w, b) (the last one large) and its loss per step, two traces per path."""
    out = []
    for i, (label, path) in enumerate(paths.items()):
        c = _PATH_COLOURS[i % len(_PATH_COLOURS)]
        # 4 decimals are plenty for the eye and for hover, and keep the slider's copies of the paths small
        w, b, loss = ([round(float(v), 4) for v in col] for col in zip(*path[: k + 1], strict=True))
        out.append(
            go.Scatter(
                x=w,
                y=b,
                mode="lines+markers",
                line=dict(color=c, width=2),
                marker=dict(size=[4] * k + [11]),  # the current (w, b) stands out
                name=label,
                legendgroup=label,
                hovertemplate=f"{label}<br>w=%{{x:.3f}}<br>b=%{{y:.3f}}<extra></extra>",
            )
        )
        out.append(
            go.Scatter(
                x=list(range(k + 1)),
                y=loss,
                mode="lines+markers",
                line=dict(color=c),
                marker=dict(size=4),
                name=label,
                legendgroup=label,
                showlegend=False,
                hovertemplate=f"{label}<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>",
            )
        )
    return out


# ---- memory over a training step
def activation_memory_figure(bars: dict[str, dict[int, float]], parameters_mib: float, title: str) -> go.Figure:
    """Grouped bars: MiB of activations saved for the backward pass at each sequence length, one bar per way.

    bars: label -> {sequence length -> MiB}; every label must give the same lengths. A dashed line marks the
    parameters' size for scale. Hover for exact MiB.
    """
    lengths = list(next(iter(bars.values())))
    fig = go.Figure()
    for i, (label, by_length) in enumerate(bars.items()):
        if list(by_length) != lengths:
            raise ValueError(f"every bar set must give the lengths {lengths}; {label!r} gives {list(by_length)}")
        fig.add_bar(
            x=[str(t) for t in lengths],
            y=list(by_length.values()),
            name=label,
            marker_color=_PATH_COLOURS[i % len(_PATH_COLOURS)],
            hovertemplate="T = %{x}: %{y:.1f} MiB<extra></extra>",
        )
    fig.add_hline(y=parameters_mib, line_dash="dash", annotation_text="parameters", annotation_position="top left")
    fig.update_layout(
        barmode="group",
        xaxis_title="sequence length T",
        yaxis_title="MiB",
        title=title,
        height=420,
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def memory_trace_figure(traces: dict, levels: dict[str, float] | None = None) -> go.Figure:
    """Memory held by tensors over one training step, one line per run, from :func:`...activation_memory.memory_trace`.

    traces: label -> MemoryTrace. A dotted vertical line marks where each run's backward pass starts. ``levels``
    draws horizontal reference lines (label -> bytes), e.g. the parameters' size. Hover for exact MiB.
    """
    mib = 2.0**-20
    fig = go.Figure()
    for i, (label, tr) in enumerate(traces.items()):
        c = _PATH_COLOURS[i % len(_PATH_COLOURS)]
        fig.add_trace(
            go.Scatter(
                x=tr.times_ms,
                y=[a * mib for a in tr.allocated],
                mode="lines",
                name=label,
                line=dict(color=c, shape="hv"),
                hovertemplate=f"{label}<br>%{{x:.0f}} ms: %{{y:.1f}} MiB<extra></extra>",
            )
        )
        start = tr.phases["backward"][0] if "backward" in tr.phases else None
        if start is not None:
            fig.add_vline(x=start, line=dict(color=c, dash="dot", width=1))
            fig.add_annotation(
                x=start,
                y=tr.peak * mib,
                text="backward starts",
                showarrow=False,
                yshift=10,
                font=dict(color=c, size=10),
            )
    for label, value in (levels or {}).items():
        fig.add_hline(
            y=value * mib,
            line=dict(color="#555", dash="dash", width=1),
            annotation_text=label,
            annotation_position="top left",
        )
    fig.update_layout(
        xaxis_title="time since the forward pass began (ms)",
        yaxis_title="memory held by tensors (MiB)",
        height=420,
        legend=dict(orientation="h", y=1.12),
        hovermode="closest",
    )
    return fig
