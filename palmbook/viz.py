"""The book's reusable figures: one function per picture, each returning a plotly ``Figure``.

Every interactive control here (sliders, buttons, dropdowns) is plotly's own, so it keeps working on the static
book page, with no kernel. Chapters append their functions under a banner naming the chapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from torch import Tensor

__all__ = [
    "TOKEN_KINDS",
    "activation_figure",
    "attention_map_figure",
    "backward_pass_figure",
    "compute_budget_figure",
    "confusion_figure",
    "descent_figure",
    "embedding_map_figure",
    "examples_table_figure",
    "gated_unit_figure",
    "generation_speed_figure",
    "logit_scale_figure",
    "logit_shift_figure",
    "loss_and_log_z_figure",
    "lr_schedule_figure",
    "memory_trace_figure",
    "prediction_steps_figure",
    "repetition_figure",
    "rope_rotation_figure",
    "sampling_filters_figure",
    "show_with_script",
    "softmax_temperature_figure",
    "spike_figure",
    "svg_curves",
    "swish_beta_figure",
    "task_results_figure",
    "timing_figure",
    "token_grid_figure",
    "token_spans_html",
    "tradeoff_figure",
    "training_runs_figure",
]


# --------------------------------------------------------------------------------------------- chapter 3: attention
def softmax_temperature_figure(
    scores: Sequence[float],
    labels: Sequence[str],
    temperatures: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
    start: float = 1.0,
) -> go.Figure:
    """Bar chart of ``softmax(scores / t)`` with a slider over the temperature t (works without a kernel).

    scores: one raw score (logit) per candidate; labels: their names. The slider's steps restyle the bars.
    """
    if len(scores) != len(labels):
        raise ValueError(f"need one label per score; got {len(scores)} scores and {len(labels)} labels")
    s = torch.as_tensor(scores, dtype=torch.float64)
    probs = [torch.softmax(s / t, -1).tolist() for t in temperatures]
    first = min(range(len(temperatures)), key=lambda i: abs(temperatures[i] - start))
    bar = go.Bar(
        x=list(labels),
        y=probs[first],
        text=[f"{p:.3f}" for p in probs[first]],
        textposition="outside",
        hovertemplate="%{x}: p = %{y:.4f}<extra></extra>",
    )
    steps = [
        dict(method="restyle", label=f"{t:g}", args=[{"y": [p], "text": [[f"{x:.3f}" for x in p]]}, [0]])
        for t, p in zip(temperatures, probs, strict=True)
    ]
    fig = go.Figure(bar)
    fig.update_layout(
        sliders=[dict(active=first, steps=steps, currentvalue=dict(prefix="temperature t = "), pad=dict(t=40))],
        yaxis=dict(range=[0, 1.1], title="probability softmax(s / t)"),
        xaxis=dict(title="candidate"),
        title="Softmax with temperature: small t sharpens, large t flattens",
        margin=dict(t=60),
        height=450,
    )
    return fig


def rope_rotation_figure(
    head_dim: int = 16, pairs: Sequence[int] = (0, 1, 2, 4), positions: int = 32, base: float = 10_000.0
) -> go.Figure:
    """RoPE as clock hands: pair i of a head turns by ``position * base^(-2i/head_dim)`` radians.

    Each chosen pair is drawn as a hand of its own length (so hands do not overlap) starting at angle 0, with faint
    dots where it points at every position; a slider moves the position 0 .. positions-1.
    Works without a kernel.
    """
    if not pairs or max(pairs) >= head_dim // 2 or min(pairs) < 0:
        raise ValueError(f"pairs must be indices in 0..{head_dim // 2 - 1} for head_dim={head_dim}; got {pairs}")
    theta = (base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))[list(pairs)]
    radii = [1.0 + k for k in range(len(pairs))]
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

    every = torch.arange(positions, dtype=torch.float64)
    dots = [  # where each hand points at every position: drawn once, faint
        go.Scatter(
            x=(r * (every * th).cos()).numpy(),
            y=(r * (every * th).sin()).numpy(),
            mode="markers",
            marker=dict(size=4, color=colors[k % len(colors)], opacity=0.3),
            hoverinfo="skip",
            showlegend=False,
        )
        for k, (r, th) in enumerate(zip(radii, theta.tolist(), strict=True))
    ]

    def hand(k: int, m: int) -> dict:
        """Pair k's hand at position m: a line from the origin, and its hover text."""
        a = m * theta[k].item()
        x, y = [0.0, radii[k] * math.cos(a)], [0.0, radii[k] * math.sin(a)]
        return dict(
            x=x, y=y, hovertemplate=f"pair {pairs[k]}<br>angle = {m} x {theta[k]:.4g} = {a:.3f} rad<extra></extra>"
        )

    hands = [
        go.Scatter(
            **hand(k, 0),
            mode="lines+markers",
            line=dict(color=colors[k % len(colors)], width=3),
            marker=dict(size=[0, 10], color=colors[k % len(colors)]),
            name=f"pair {i}: {theta[k]:.3g} rad/position",
        )
        for k, i in enumerate(pairs)
    ]
    # Slider steps restyle the hands (trace indices after the dots). Deliberately no animation frames: exported
    # HTML starts playing frames on page load, and a slider is all the reader needs.
    moving = list(range(len(pairs), 2 * len(pairs)))
    steps = []
    for m in range(positions):
        now = [hand(k, m) for k in range(len(pairs))]
        update = {key: [h[key] for h in now] for key in ("x", "y", "hovertemplate")}
        steps.append(dict(method="restyle", label=str(m), args=[update, moving]))
    lim = radii[-1] + 0.3
    fig = go.Figure(data=dots + hands)
    fig.update_layout(
        xaxis=dict(range=[-lim, lim], zeroline=True, showgrid=False, title="first dimension of the pair"),
        yaxis=dict(range=[-lim, lim], scaleanchor="x", zeroline=True, showgrid=False, title="second dimension"),
        title=f"RoPE: each pair of a head's dimensions rotates with the position (head_dim={head_dim})",
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="position m = "), pad=dict(t=40))],
        height=560,
        legend=dict(x=1.02, y=1),
        plot_bgcolor="white",
    )
    return fig


def attention_map_figure(
    maps: Tensor, tokens: Sequence[str], title: str | None = None, layer: int = 0, head: int = 0
) -> go.Figure:
    """Attention weights of every layer and head, with a layer slider and a head slider (no kernel needed).

    maps: (n_layers, n_heads, T, T), row = query position, column = key position (e.g. one sequence of
    ``model.attention_maps(idx)[:, 0]``); tokens: the T token strings, used as axis labels; layer, head: the
    map shown first.

    How two sliders work on a static page: all maps are tiled into ONE heatmap, layers down and heads across.
    The layer slider only moves the y-axis window and the head slider only the x-axis window, so each keeps
    the other's choice. Masked (future) positions are left blank, so the causal triangle shows.
    """
    maps = torch.as_tensor(maps, dtype=torch.float32)
    if maps.dim() != 4 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"maps must be (n_layers, n_heads, T, T); got {tuple(maps.shape)}: pick one sequence")
    L, H, T, _ = maps.shape
    if len(tokens) != T:
        raise ValueError(f"need one token label per position: maps have T={T}, got {len(tokens)} tokens")
    if not (0 <= layer < L and 0 <= head < H):
        raise ValueError(f"layer must be in 0..{L - 1} and head in 0..{H - 1}; got layer={layer}, head={head}")
    visible = torch.ones(T, T, dtype=torch.bool).tril()
    tiles = maps.masked_fill(~visible, float("nan")).permute(0, 2, 1, 3).reshape(L * T, H * T)
    labels = [t.replace(" ", "\u2423").replace("\n", "\u21b5") or "\u2205" for t in tokens]  # show spaces, newlines
    # Category axes, so that hover names the tokens without a (large) per-cell text array. Every tile repeats the
    # same T tokens, and categories must be unique: tile k's names end in k zero-width spaces (invisible).
    xcats = [f"{labels[j]} ({j})" + "\u200b" * k for k in range(H) for j in range(T)]
    ycats = [f"{labels[i]} ({i})" + "\u200b" * k for k in range(L) for i in range(T)]
    heat = go.Heatmap(
        z=tiles.numpy(),  # float32, sent to the page as a compact binary array; NaN (masked) cells stay blank
        x=xcats,
        y=ycats,
        colorscale="Blues",
        zmin=0.0,
        zmax=1.0,
        colorbar=dict(title="weight"),
        hovertemplate="query %{y} \u2190 key %{x}<br>weight %{z:.3f}<extra></extra>",
    )
    fig = go.Figure(heat)

    def window(k: int) -> list[float]:
        return [k * T - 0.5, (k + 1) * T - 0.5]

    layer_steps = [dict(method="relayout", label=str(i), args=[{"yaxis.range": window(i)[::-1]}]) for i in range(L)]
    head_steps = [dict(method="relayout", label=str(h), args=[{"xaxis.range": window(h)}]) for h in range(H)]
    fig.update_layout(
        title=title or "Attention weights (row: query token, column: the key token it looks at)",
        xaxis=dict(
            range=window(head),
            type="category",
            showgrid=False,
            tickvals=xcats,
            ticktext=labels * H,
            tickangle=-60,
            title="key (attended-to) token",
            constrain="domain",
        ),
        yaxis=dict(
            range=window(layer)[::-1],
            type="category",
            showgrid=False,
            tickvals=ycats,
            ticktext=labels * L,
            title="query token",
            scaleanchor="x",
        ),
        sliders=[
            dict(
                active=layer,
                steps=layer_steps,
                currentvalue=dict(prefix="layer "),
                y=-0.18,
                len=0.45,
                x=0,
                pad=dict(t=30),
            ),
            dict(
                active=head,
                steps=head_steps,
                currentvalue=dict(prefix="head "),
                y=-0.18,
                len=0.45,
                x=0.55,
                pad=dict(t=30),
            ),
        ],
        height=640,
        margin=dict(b=160),
        plot_bgcolor="white",  # masked (blank) cells show the background
    )
    return fig


# ------------------------------------------------------------------------------------------ chapter 6: backpropagation
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


def backward_pass_figure(root) -> go.Figure:
    """The computation graph of a :class:`palmbook.scratch.autograd.Value`, with a slider through its backward pass.

    Runs ``root.backward()`` (after zeroing every gradient in the graph). Step 0 shows the forward pass (values);
    step k shows the gradients after the k-th node has passed its gradient to its parents, with that node outlined
    in red and the title saying what it passed to whom. Hover a node for its value and gradient. Works without a
    kernel (each slider step restyles the nodes).
    """
    from .scratch.autograd import topological_order

    order = topological_order(root)
    pos = _graph_layout(order)
    names = {}
    for i, node in enumerate(order):
        names[id(node)] = node.label or (f"{node.data:g}" if not node.parents else f"v{i}")
    for node in order:
        node.grad = 0.0
    snapshots = [{id(n): (1.0 if n is root else 0.0) for n in order}]
    steps: list = []

    def record(node) -> None:
        steps.append(node)
        snapshots.append({id(n): n.grad for n in order})

    root.backward(on_step=record)

    xs = [pos[id(n)][0] for n in order]
    ys = [pos[id(n)][1] for n in order]
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for node in order:
        for p in node.parents:
            edge_x += [pos[id(p)][0], pos[id(node)][0], None]
            edge_y += [pos[id(p)][1], pos[id(node)][1], None]
    arrows = [
        dict(
            x=pos[id(node)][0],
            y=pos[id(node)][1],
            ax=pos[id(p)][0],
            ay=pos[id(p)][1],
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
        for node in order
        for p in node.parents
    ]

    def op_text(n) -> str:
        if not n.parents:
            return "input"
        args = [names[id(p)] for p in n.parents]
        if n.op in ("+", "*"):
            return f" {n.op} ".join(args)
        if n.op.startswith("**"):
            return f"{args[0]}{n.op}"
        return f"{n.op}({args[0]})"

    def node_trace(k: int) -> go.Scatter:
        grads = snapshots[k]
        done = {id(n) for n in steps[:k]}
        current = steps[k - 1] if k > 0 else None
        fill = ["#c7e9c0" if id(n) in done else "#ffffff" for n in order]
        line = ["#d62728" if n is current else "#555" for n in order]
        width = [4 if n is current else 1.5 for n in order]

        def label(n) -> str:
            grad = f"<br><span style='color:#2c7fb8'>∂ {grads[id(n)]:.4g}</span>" if k > 0 else "<br> "
            return f"<b>{names[id(n)]}</b><br>{n.data:.4g}{grad}"

        def hover(n) -> str:
            text = f"<b>{names[id(n)]}</b> = {op_text(n)}<br>value {n.data:.6g}"
            return text + (f"<br>gradient ∂L/∂{names[id(n)]} = {grads[id(n)]:.6g}" if k > 0 else "")

        nodes = go.Scatter(
            x=xs,
            y=ys,
            mode="markers+text",
            text=[label(n) for n in order],
            textposition="middle center",
            textfont=dict(size=11),
            hovertext=[hover(n) for n in order],
            hoverinfo="text",
            marker=dict(symbol="square", size=58, color=fill, line=dict(color=line, width=width)),
            showlegend=False,
        )
        return nodes

    def caption(k: int) -> str:
        if k == 0:
            return "Forward pass done: every node holds its value. Move the slider to run the backward pass."
        node = steps[k - 1]
        before, after = snapshots[k - 1], snapshots[k]
        g = after[id(node)]
        if not node.parents:
            return f"Step {k}: {names[id(node)]} is an input; its gradient {g:.4g} is final"
        passed = ", ".join(f"{names[id(p)]} += {after[id(p)] - before[id(p)]:.4g}" for p in dict.fromkeys(node.parents))
        return f"Step {k}: {names[id(node)]} = {op_text(node)} has ∂L/∂{names[id(node)]} = {g:.4g} and passes {passed}"

    edges = go.Scatter(
        x=edge_x, y=edge_y, mode="lines", line=dict(color="#bbb", width=1), hoverinfo="skip", showlegend=False
    )
    fig = go.Figure(data=[edges, node_trace(0)])
    # Each slider step restyles the node trace (index 1) and retitles the figure: no animation frames, which
    # exported HTML would autoplay on load.
    slider_steps = []
    for k in range(len(steps) + 1):
        t = node_trace(k)
        restyle = {
            "text": [t.text],
            "hovertext": [t.hovertext],
            "marker.color": [t.marker.color],
            "marker.line.color": [t.marker.line.color],
            "marker.line.width": [t.marker.line.width],
        }
        slider_steps.append(
            dict(method="update", label=str(k) if k else "fwd", args=[restyle, {"title.text": caption(k)}, [1]])
        )
    fig.update_layout(
        title=dict(text=caption(0), font=dict(size=13)),
        annotations=arrows,
        sliders=[dict(active=0, steps=slider_steps, currentvalue=dict(prefix="backward step ", font=dict(size=12)))],
        xaxis=dict(visible=False, range=[min(xs) - 0.5, max(xs) + 0.5]),
        yaxis=dict(visible=False, range=[min(ys) - 0.8, max(ys) + 0.6]),
        height=380 + 40 * max(0, int(max(ys) - min(ys)) - 2),
        margin=dict(l=10, r=10, t=60, b=90),
    )
    return fig


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
    from plotly.subplots import make_subplots

    lengths = {len(p) for p in paths.values()}
    if len(lengths) != 1:
        raise ValueError(f"every path needs the same number of steps; got lengths {sorted(lengths)}")
    n = lengths.pop()
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.58, 0.42],
        horizontal_spacing=0.1,
        subplot_titles=("the loss surface and the path of (w, b)", "loss after each step"),
    )
    fig.add_trace(
        go.Contour(
            x=list(w_grid),
            y=list(b_grid),
            z=torch.as_tensor(loss_grid, dtype=torch.float32).numpy(),  # compact binary float32 in the page
            colorscale="Viridis",
            ncontours=30,
            showscale=False,
            hovertemplate="w=%{x:.2f}<br>b=%{y:.2f}<br>loss=%{z:.4f}<extra></extra>",
            line=dict(width=0.5),
        ),
        row=1,
        col=1,
    )

    def traces(k: int) -> list[go.Scatter]:
        out = []
        for i, (label, path) in enumerate(paths.items()):
            c = colors[i % len(colors)]
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

    for i, t in enumerate(traces(0)):
        fig.add_trace(t, row=1, col=1 + i % 2)
    ids = list(range(1, 1 + 2 * len(paths)))
    all_losses = [p[2] for path in paths.values() for p in path]
    fig.update_xaxes(title_text=axis_titles[0], row=1, col=1)
    fig.update_yaxes(title_text=axis_titles[1], row=1, col=1)
    fig.update_xaxes(title_text="step", range=[-0.5, n - 0.5], row=1, col=2)
    fig.update_yaxes(title_text="mean loss", range=[0, max(all_losses) * 1.05], row=1, col=2)
    # Each slider step restyles the path traces: no animation frames, which exported HTML would autoplay on load.
    steps = []
    for k in range(n):
        ts = traces(k)
        restyle = {"x": [t.x for t in ts], "y": [t.y for t in ts], "marker.size": [t.marker.size for t in ts]}
        steps.append(dict(method="restyle", label=str(k), args=[restyle, ids]))
    fig.update_layout(
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="gradient-descent step "), pad=dict(t=50))],
        legend=dict(title="learning rate", orientation="h", y=1.22, x=0.0),
        height=480,
        margin=dict(t=110, b=90),
    )
    return fig


def memory_trace_figure(traces: dict, levels: dict[str, float] | None = None) -> go.Figure:
    """Memory held by tensors over one training step, one line per run, from :func:`...activation_memory.memory_trace`.

    traces: label -> MemoryTrace. A dotted vertical line marks where each run's backward pass starts. ``levels``
    draws horizontal reference lines (label -> bytes), e.g. the parameters' size. Hover for exact MiB.
    """
    mib = 2.0**-20
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    fig = go.Figure()
    for i, (label, tr) in enumerate(traces.items()):
        c = colors[i % len(colors)]
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


# --------------------------------------------------------------------------------------------- chapter 1: tokens
TOKEN_KINDS = ("letters after a space", "letters", "digit", "punctuation", "space / newline", "byte (fallback)")
_KIND_COLOURS = ("#8ecae6", "#d8e9a8", "#ffb703", "#cdb4db", "#e5e5e5", "#fb8500")
_PASTELS = ("#fde2e4", "#dbe7f5", "#e2f0cb", "#fff1c1", "#e8dff5", "#d7f2ee")


def _token_kind(piece: str, is_byte: bool) -> str:
    """One of :data:`TOKEN_KINDS` for a SentencePiece piece (its text with "▁" for a space)."""
    if is_byte:
        return "byte (fallback)"
    text = piece.replace("\u2581", "")
    if not text or text.isspace():
        return "space / newline"
    if text.isdigit():
        return "digit"
    if not any(c.isalnum() for c in text):
        return "punctuation"
    return "letters after a space" if piece.startswith("\u2581") else "letters"


def _show_piece(piece: str) -> str:
    """A piece as the figures print it: "▁" kept, newline and tab made visible."""
    return piece.replace("\n", "\u21b5").replace("\t", "\u21e5")


def token_spans_html(pieces: Sequence[str], ids: Sequence[int] | None = None, byte_ids: Sequence[bool] = ()) -> str:
    """The token boundaries of a text as HTML: one coloured box per token, in reading order.

    pieces: the tokens as SentencePiece prints them ("▁" for a space, "<0xE6>" for a byte piece); ids: their ids,
    shown on hover; byte_ids: for each token whether it is a byte-fallback piece (default: pieces named <0x..>).
    Neighbouring tokens get different colours; byte pieces get an orange dashed frame. Newlines break the line.
    """
    import html

    if ids is not None and len(ids) != len(pieces):
        raise ValueError(f"need one id per piece; got {len(pieces)} pieces and {len(ids)} ids")
    if not byte_ids:
        byte_ids = [p.startswith("<0x") and p.endswith(">") for p in pieces]
    spans = []
    for i, piece in enumerate(pieces):
        hover = html.escape(f"#{i}" + (f" id {ids[i]}" if ids is not None else "") + f": {piece!r}", quote=True)
        if byte_ids[i]:
            style = "border:1px dashed #fb8500;background:#fff3e0;font-size:0.8em"
            label = html.escape(piece[1:-1])  # "0xE6"
        else:
            style = f"background:{_PASTELS[i % len(_PASTELS)]}"
            label = html.escape(piece).replace("\u2581", '<span style="color:#999">\u2581</span>')
            label = label.replace("\t", '<span style="color:#999">\u21e5</span>')
            label = label.replace("\n", '<span style="color:#999">\u21b5</span>')
        spans.append(
            f'<span title="{hover}" style="{style};padding:1px 2px;margin:1px;border-radius:3px">{label}</span>'
        )
        if piece == "\n" or piece.endswith("\n"):
            spans.append("<br>")
    return (
        '<div style="font-family:monospace;line-height:2.1;font-size:0.95em;word-break:break-all">'
        + "".join(spans)
        + f'<div style="color:#666;font-size:0.85em">{len(pieces)} tokens; hover a token for its id</div></div>'
    )


def token_grid_figure(examples: dict[str, tuple[Sequence[str], Sequence[int], Sequence[bool]]], columns: int = 12):
    """Several texts cut into tokens, one grid of coloured cells per text, with a dropdown to pick the text.

    examples: {name: (pieces, ids, is_byte)}. Each cell is one token, read left to right, top to bottom, coloured
    by kind (:data:`TOKEN_KINDS`); hovering shows its position, id, piece and UTF-8 bytes. Works without a kernel:
    the dropdown only switches which grid is visible.
    """
    if not examples:
        raise ValueError("examples is empty: give at least one {name: (pieces, ids, is_byte)}")
    kind_index = {k: i for i, k in enumerate(TOKEN_KINDS)}
    n = len(TOKEN_KINDS)
    # A discrete colour scale: kind i fills the band [i/n, (i+1)/n].
    scale = [c for i, col in enumerate(_KIND_COLOURS) for c in ([i / n, col], [(i + 1) / n, col])]
    fig = go.Figure()
    titles, max_rows = [], 1
    for k, (name, (pieces, ids, is_byte)) in enumerate(examples.items()):
        rows = max(1, math.ceil(len(pieces) / columns))
        max_rows = max(max_rows, rows)
        z = [[None] * columns for _ in range(rows)]
        text = [[""] * columns for _ in range(rows)]
        hover = [[""] * columns for _ in range(rows)]
        for i, (piece, tid, byte) in enumerate(zip(pieces, ids, is_byte, strict=True)):
            r, c = divmod(i, columns)
            kind = _token_kind(piece, byte)
            z[r][c] = kind_index[kind] + 0.5
            text[r][c] = _show_piece(piece)
            raw = bytes([int(piece[3:5], 16)]) if byte else piece.replace("\u2581", " ").encode("utf-8")
            hover[r][c] = f"#{i} id {tid} {_show_piece(piece)!r}<br>{kind}<br>UTF-8: {raw.hex(' ').upper()}"
        fig.add_heatmap(
            z=z,
            text=text,
            customdata=hover,
            texttemplate="%{text}",
            textfont=dict(size=11),
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=scale,
            zmin=0,
            zmax=n,
            showscale=False,
            xgap=2,
            ygap=2,
            visible=(k == 0),
            name=name,
        )
        titles.append(f"{name}: {len(pieces)} tokens")
    for kind, colour in zip(TOKEN_KINDS, _KIND_COLOURS, strict=True):  # a legend for the colours
        fig.add_scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker=dict(size=12, color=colour, symbol="square"),
            name=kind,
            showlegend=True,
            hoverinfo="skip",
        )
    m = len(examples)
    buttons = [
        dict(
            label=name,
            method="update",
            args=[{"visible": [j == k for j in range(m)] + [True] * n}, {"title.text": titles[k]}],
        )
        for k, name in enumerate(examples)
    ]
    fig.update_layout(
        title=titles[0],
        updatemenus=[dict(buttons=buttons, active=0, x=0, xanchor="left", y=1.18, yanchor="top")],
        xaxis=dict(visible=False, range=[-0.5, columns - 0.5]),
        yaxis=dict(visible=False, autorange="reversed"),
        height=160 + 34 * max_rows,
        margin=dict(t=100, l=10, r=10, b=10),
        legend=dict(orientation="h", y=-0.02, yanchor="top"),
    )
    return fig


# --------------------------------------------------------------------------------------------- chapter 2: embeddings
def _density(values: Tensor, width: float) -> tuple[list[float], list[float]]:
    """A histogram as (bin centres, densities), only the non-empty bins: compact enough for a static page."""
    bins, counts = torch.unique(torch.floor(values.double() / width), return_counts=True)
    return ((bins + 0.5) * width).tolist(), (counts.double() / (len(values) * width)).tolist()


def logit_scale_figure(samples: dict[int, tuple[Tensor, Tensor]], bin_width: float = 0.25) -> go.Figure:
    """Histograms of a fresh model's logits, with a slider over the model width d (works without a kernel).

    samples: {d: (logits of the input token itself (n,), logits of other tokens (m,))}. With N(0, 1)
    embeddings and the 1/sqrt(d) scale, the other logits stay near N(0, 1) whatever d is, while the input token's
    own logit sits near sqrt(d) (a dashed line): the wider the model, the more a fresh one expects its input to
    repeat. The histograms are binned here (``bin_width``), so the page holds bins, not samples.
    """
    if not samples:
        raise ValueError("samples is empty: give {d_model: (self_logits, other_logits)}")
    fig = go.Figure()
    ds = sorted(samples)
    ranges = []
    for i, d in enumerate(ds):
        own, others = (torch.as_tensor(t, dtype=torch.float32).flatten() for t in samples[d])
        for values, name, colour in ((others, "other tokens", "#8ecae6"), (own, "the input token", "#fb8500")):
            x, y = _density(values, bin_width)
            fig.add_bar(
                x=x,
                y=y,
                width=bin_width,
                name=name,
                marker_color=colour,
                opacity=0.8,
                visible=(i == 0),
                hovertemplate="logit %{x:.2f}<br>density %{y:.3f}<extra>" + name + "</extra>",
            )
        root = math.sqrt(d)
        fig.add_scatter(
            x=[root, root],
            y=[0, 0.8],
            mode="lines",
            line=dict(dash="dash", color="#333"),
            name="sqrt(d)",
            visible=(i == 0),
            hovertemplate=f"sqrt({d}) = {root:.2f}<extra></extra>",
        )
        ranges.append([min(-4.0, others.min().item() - 0.5), max(own.max().item(), root) + 2.0])
    titles = [f"A fresh model, d = {d}: the input token's own logit is near sqrt(d) = {d**0.5:.1f}" for d in ds]
    steps = [
        dict(
            method="update",
            label=str(d),
            args=[
                {"visible": [j // 3 == i for j in range(3 * len(ds))]},
                {"title.text": titles[i], "xaxis.range": ranges[i]},
            ],
        )
        for i, d in enumerate(ds)
    ]
    fig.update_layout(
        title=titles[0],
        barmode="overlay",
        bargap=0,
        xaxis=dict(title="logit = h · e_j / sqrt(d)", range=ranges[0]),
        yaxis=dict(title="density", range=[0, 0.8]),
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="d_model = "), pad=dict(t=50))],
        legend=dict(x=0.98, xanchor="right", y=0.98),
        height=460,
    )
    return fig


def embedding_map_figure(
    coords: Tensor,
    pieces: Sequence[str],
    categories: Sequence[str],
    ids: Sequence[int] | None = None,
    title: str = "The embedding matrix, one point per token",
    axis_titles: Sequence[str] | None = None,
    colours: dict[str, str] | None = None,
) -> go.Figure:
    """A 2-D or 3-D scatter of token embeddings (e.g. their principal components), one colour per category.

    coords: (N, 2) or (N, 3); pieces, categories: N strings (hover shows the piece, its id and category; clicking a
    legend entry hides or shows a category); colours: {category: CSS colour} (default: plotly's palette).
    In 3-D, drag to turn the cloud, scroll to zoom.
    """
    coords = torch.as_tensor(coords, dtype=torch.float32)
    if coords.dim() != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"coords must be (N, 2) or (N, 3); got {tuple(coords.shape)}")
    N, k = coords.shape
    if len(pieces) != N or len(categories) != N:
        raise ValueError(
            f"need one piece and one category per point: {N} points, {len(pieces)} pieces, {len(categories)} categories"
        )
    ids = list(range(N)) if ids is None else list(ids)
    axis_titles = list(axis_titles or [f"component {i + 1}" for i in range(k)])
    fig = go.Figure()
    for cat in dict.fromkeys(categories):  # first-seen order
        rows = [i for i, c in enumerate(categories) if c == cat]
        pts = coords[rows].double().mul(1000).round().div(1000)  # 3 decimals: a smaller page, the same picture
        custom = [[_show_piece(pieces[i]), ids[i]] for i in rows]
        common = dict(
            mode="markers",
            name=f"{cat} ({len(rows)})",
            customdata=custom,
            hovertemplate="%{customdata[0]} (id %{customdata[1]})<extra>" + cat + "</extra>",
        )
        colour = (colours or {}).get(cat)
        if k == 3:
            fig.add_scatter3d(
                x=pts[:, 0].tolist(),
                y=pts[:, 1].tolist(),
                z=pts[:, 2].tolist(),
                marker=dict(size=3, opacity=0.8, color=colour),
                **common,
            )
        else:
            marker = dict(size=6, opacity=0.8, color=colour)
            fig.add_scatter(x=pts[:, 0].tolist(), y=pts[:, 1].tolist(), marker=marker, **common)
    if k == 3:
        fig.update_layout(
            scene=dict(xaxis_title=axis_titles[0], yaxis_title=axis_titles[1], zaxis_title=axis_titles[2])
        )
    else:
        fig.update_layout(xaxis_title=axis_titles[0], yaxis_title=axis_titles[1])
    fig.update_layout(title=title, height=600, legend=dict(itemsizing="constant"))
    return fig


# --------------------------------------------------------------------------------------------- chapter 4: feed-forward
def activation_figure(lo: float = -5.0, hi: float = 5.0, points: int = 201) -> go.Figure:
    """ReLU, GELU and Swish (left) and their derivatives (right), with a menu to show one curve or all.

    Clicking a legend entry hides a curve in both panels (the two traces of a function share a legend group).
    The derivatives come from :mod:`palmbook.scratch.feed_forward` (hand-written, tested against autograd).
    """
    from plotly.subplots import make_subplots

    from .scratch import feed_forward as ff

    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    curves = {
        "ReLU": (ff.relu, ff.d_relu, "#7f7f7f"),
        "GELU": (ff.gelu, ff.d_gelu, "#1f77b4"),
        "Swish (β = 1)": (ff.swish, ff.d_swish, "#d62728"),
    }
    fig = make_subplots(rows=1, cols=2, subplot_titles=("f(x)", "f′(x): the slope gradients flow through"))
    for name, (f, df, color) in curves.items():
        for col, fn in ((1, f), (2, df)):
            fig.add_scatter(
                x=x.float().numpy(),  # float32 arrays travel as compact binary in the page
                y=fn(x).float().numpy(),
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                row=1,
                col=col,
                line=dict(color=color, width=2.5),
                hovertemplate=f"{name}<br>x = %{{x:.2f}}<br>y = %{{y:.4f}}<extra></extra>",
            )
    names = list(curves)
    buttons = [dict(label="all three", method="restyle", args=[{"visible": [True] * 2 * len(names)}])]
    buttons += [
        dict(label=n, method="restyle", args=[{"visible": [m == n for m in names for _ in (0, 1)]}]) for n in names
    ]
    fig.update_layout(
        title="Activation functions and their derivatives",
        updatemenus=[dict(buttons=buttons, direction="down", x=0.0, xanchor="left", y=1.22, yanchor="top")],
        height=420,
        margin=dict(t=110),
        legend=dict(orientation="h", y=-0.15),
    )
    fig.update_xaxes(title_text="x", zeroline=True)
    fig.update_yaxes(zeroline=True)
    return fig


def swish_beta_figure(betas: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 1.702, 2.0, 4.0, 10.0), start: float = 1.0):
    """Swish_beta(x) = x * sigmoid(beta x) with a slider over beta, against ReLU and x/2 (its two limits).

    beta = 1.702 is the sigmoid approximation of GELU, x * sigmoid(1.702 x) (Hendrycks & Gimpel, 2016).
    """
    from .scratch.feed_forward import relu, swish

    x = torch.linspace(-5, 5, 201, dtype=torch.float64)
    ys = [swish(x, b).tolist() for b in betas]
    first = min(range(len(betas)), key=lambda i: abs(betas[i] - start))
    fig = go.Figure()
    fig.add_scatter(x=x.tolist(), y=relu(x).tolist(), name="ReLU (β → ∞)", line=dict(color="#7f7f7f", dash="dot"))
    fig.add_scatter(x=x.tolist(), y=(x / 2).tolist(), name="x / 2 (β = 0)", line=dict(color="#bcbd22", dash="dot"))
    fig.add_scatter(x=x.tolist(), y=ys[first], name="Swish_β", line=dict(color="#d62728", width=3))
    steps = [dict(method="restyle", label=f"{b:g}", args=[{"y": [y]}, [2]]) for b, y in zip(betas, ys, strict=True)]
    fig.update_layout(
        title="Swish_β(x) = x·σ(βx) slides from a line (β = 0) to ReLU (β → ∞)",
        sliders=[dict(active=first, steps=steps, currentvalue=dict(prefix="β = "), pad=dict(t=40))],
        xaxis_title="x",
        yaxis=dict(title="Swish_β(x)", range=[-2.6, 5.2]),
        height=440,
    )
    return fig


def gated_unit_figure(lim: float = 3.0, points: int = 41) -> go.Figure:
    """The gated linear units of Shazeer (2020) as maps: f(a) * b over the gate a = x·w and the value b = x·v.

    A menu switches f: sigmoid (GLU, Dauphin et al. 2017), identity (bilinear), ReLU (ReGLU), GELU (GEGLU),
    Swish (SwiGLU, PaLM's choice). Hover shows the exact value.
    """
    from .scratch.feed_forward import gelu, relu, swish

    a = torch.linspace(-lim, lim, points, dtype=torch.float64)
    b = torch.linspace(-lim, lim, points, dtype=torch.float64)
    variants = {
        "SwiGLU: Swish(a)·b": swish,
        "GEGLU: GELU(a)·b": gelu,
        "ReGLU: ReLU(a)·b": relu,
        "GLU: σ(a)·b": torch.sigmoid,
        "bilinear: a·b": lambda t: t,
    }
    fig = go.Figure()
    for i, (name, f) in enumerate(variants.items()):
        z = (b[:, None] * f(a)[None, :]).float().numpy()  # rows: b, columns: a; float32 binary in the page
        fig.add_heatmap(
            x=a.tolist(),
            y=b.tolist(),
            z=z,
            zmid=0,
            colorscale="RdBu_r",
            visible=i == 0,
            name=name,
            hovertemplate="gate a = %{x:.2f}<br>value b = %{y:.2f}<br>output = %{z:.3f}<extra></extra>",
        )
    names = list(variants)
    buttons = [
        dict(label=n, method="update", args=[{"visible": [m == n for m in names]}, {"title.text": n}]) for n in names
    ]
    fig.update_layout(
        title=names[0],
        xaxis_title="gate a = x·w (one column of W)",
        yaxis_title="value b = x·v (one column of V)",
        updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.18, yanchor="top")],
        height=460,
        margin=dict(t=90),
    )
    return fig


def svg_curves(
    x: Sequence[float],
    curves: dict[str, tuple[Sequence[float], str]],
    y_range: tuple[float, float],
    width: int = 460,
    height: int = 260,
) -> str:
    """A small line chart as an inline SVG string: for ipywidgets ``HTML`` explorers.

    An ``HTML`` widget's saved state is plain markup, so the chart is drawn on the static book page too (a plotly
    figure inside a widget would need a kernel). curves: name -> (y values, CSS colour); y values are clipped.
    """
    pad, x0, x1 = 30, min(x), max(x)
    y0, y1 = y_range

    def px(v: float) -> float:
        return pad + (v - x0) / (x1 - x0) * (width - 2 * pad)

    def py(v: float) -> float:
        v = min(max(v, y0), y1)
        return height - pad - (v - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="12">']
    parts.append(f'<line x1="{pad}" y1="{py(0):.1f}" x2="{width - pad}" y2="{py(0):.1f}" stroke="#bbb"/>')
    parts.append(f'<line x1="{px(0):.1f}" y1="{pad}" x2="{px(0):.1f}" y2="{height - pad}" stroke="#bbb"/>')
    for (name, (ys, color)), row in zip(curves.items(), range(len(curves)), strict=True):
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, ys, strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        parts.append(f'<text x="{pad + 6}" y="{pad + 14 * row}" fill="{color}">{name}</text>')
    parts.append(f'<text x="{width - pad}" y="{py(0) + 14:.1f}" text-anchor="end" fill="#777">x = {x1:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def timing_figure(times_ms: dict[str, Sequence[float]], title: str) -> go.Figure:
    """Box plots of repeated timings (ms), one per variant, every repetition shown as a point (hover for it)."""
    fig = go.Figure()
    for name, ts in times_ms.items():
        fig.add_box(y=list(ts), name=name, boxpoints="all", jitter=0.4, pointpos=0, hovertemplate="%{y:.1f} ms")
    fig.update_layout(title=title, yaxis_title="milliseconds per forward + backward", showlegend=False, height=420)
    return fig


# --------------------------------------------------------------------------------------------- chapter 5: loss
def logit_shift_figure(
    logits: Sequence[float], labels: Sequence[str], shifts: Sequence[float] = tuple(range(-4, 7))
) -> go.Figure:
    """Add the same constant c to every logit (slider): the probabilities do not move, log Z moves by c.

    Left: the logits z + c. Right: softmax(z + c). The title reports log Z and the z-loss 1e-4 (log Z)^2, the only
    quantities the shift changes; this is why cross-entropy alone leaves log Z free and z-loss pins it near 0.
    """
    from plotly.subplots import make_subplots

    z = torch.as_tensor(logits, dtype=torch.float64)
    p = torch.softmax(z, -1).tolist()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("logits z + c (dashed: log Z)", "probabilities softmax(z + c)"))
    start = list(shifts).index(0) if 0 in shifts else 0
    log_zs = [torch.logsumexp(z + c, -1).item() for c in shifts]
    fig.add_shape(
        type="line",
        xref="x domain",
        x0=0,
        x1=1,
        yref="y",
        y0=log_zs[start],
        y1=log_zs[start],
        line=dict(color="#d62728", dash="dash"),
    )
    fig.add_bar(x=list(labels), y=(z + shifts[start]).tolist(), row=1, col=1, marker_color="#1f77b4")
    fig.add_bar(x=list(labels), y=p, row=1, col=2, marker_color="#2ca02c", text=[f"{v:.3f}" for v in p])

    def title(c: float) -> str:
        log_z = torch.logsumexp(z + c, -1).item()
        return f"c = {c:+g}: log Z = {log_z:.3f}, z-loss = 1e-4·(log Z)² = {1e-4 * log_z**2:.2e}"

    steps = [
        dict(
            method="update",
            label=f"{c:+g}",
            args=[{"y": [(z + c).tolist(), p]}, {"title.text": title(c), "shapes[0].y0": lz, "shapes[0].y1": lz}],
        )
        for c, lz in zip(shifts, log_zs, strict=True)
    ]
    lo, hi = float(z.min()) + min(shifts), max(log_zs)
    fig.update_layout(
        title=title(shifts[start]),
        showlegend=False,
        height=420,
        margin=dict(t=90),
        sliders=[dict(active=start, steps=steps, currentvalue=dict(prefix="shift c = "), pad=dict(t=50))],
    )
    fig.update_yaxes(range=[min(lo, 0) - 0.5, hi + 0.5], row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    return fig


def loss_and_log_z_figure(runs: dict[str, dict[str, Sequence[float]]], ln_v: float) -> go.Figure:
    """Cross-entropy (left, with the ln V of a uniform guess) and mean log Z (right) per step, for several runs.

    runs: name -> {"step": [...], "ce": [...], "log_z": [...]}. Legend clicks hide a run in both panels.
    """
    from plotly.subplots import make_subplots

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("cross-entropy (nats per token)", "mean log Z"))
    for (name, r), color in zip(runs.items(), colors, strict=False):
        for col, key in ((1, "ce"), (2, "log_z")):
            fig.add_scatter(
                x=list(r["step"]),
                y=list(r[key]),
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                row=1,
                col=col,
                line=dict(color=color),
                hovertemplate=f"{name}<br>step %{{x}}: %{{y:.3f}}<extra></extra>",
            )
    fig.add_hline(y=ln_v, line_dash="dot", line_color="#555", annotation_text=f"ln V = {ln_v:.2f}", row=1, col=1)
    fig.add_hline(y=0, line_color="#bbb", row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=430, legend=dict(orientation="h", y=-0.2), title="Training with and without z-loss")
    return fig


def prediction_steps_figure(
    snapshots: Sequence[tuple[int, Sequence[str], Sequence[float]]], context: str, target: str | None = None
) -> go.Figure:
    """The model's top predictions for one fixed context, with a slider over training steps.

    snapshots: (step, token labels, probabilities) for each saved step, each the top-k tokens at that step.
    ``target``, if given, is highlighted when it appears among the top-k.
    """
    if not snapshots:
        raise ValueError("need at least one (step, labels, probabilities) snapshot")

    def colors(labels: Sequence[str]) -> list[str]:
        return ["#d62728" if lab == target else "#1f77b4" for lab in labels]

    _, labels0, probs0 = snapshots[0]
    fig = go.Figure(
        go.Bar(
            x=list(probs0),
            y=list(labels0),
            orientation="h",
            marker_color=colors(labels0),
            text=[f"{p:.3f}" for p in probs0],
            textposition="outside",
            hovertemplate="%{y}: p = %{x:.4f}<extra></extra>",
        )
    )
    steps = [
        dict(
            method="restyle",
            label=str(s),
            args=[{"x": [list(p)], "y": [list(lab)], "text": [[f"{v:.3f}" for v in p]], "marker.color": [colors(lab)]}],
        )
        for s, lab, p in snapshots
    ]
    fig.update_layout(
        title=f"What comes after “{context}”?" + (f" (the text continues with {target!r}, in red)" if target else ""),
        xaxis=dict(range=[0, 1.05], title="predicted probability"),
        yaxis=dict(autorange="reversed", type="category"),
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="after training step "), pad=dict(t=50))],
        height=460,
        margin=dict(l=140),
    )
    return fig


# --------------------------------------------------------------------------------------------- chapter 8: generation
def sampling_filters_figure(
    logits: Tensor,
    labels: Sequence[str],
    temperatures: Sequence[float] = (0.25, 0.5, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0),
    ks: Sequence[int] = (1, 2, 3, 5, 10, 20, 50, 100),
    ps: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
    top_n: int = 25,
    start: tuple[float, int, float] = (1.0, 10, 0.9),
) -> go.Figure:
    """How temperature, top-k and top-p reshape ONE next-token distribution: three panels, one slider each.

    logits: (V,) the model's scores for the next token; labels: (V,) how to print each token. The panels show the
    ``top_n`` most likely tokens (model order). Grey bars: the model's own probabilities (t = 1, nothing cut);
    coloured bars: what the sampler draws from. Every probability is computed over the whole vocabulary, so the
    bars show the renormalisation after a cut. Each slider restyles only its own panel (works without a kernel);
    the panel titles report the kept tokens and the entropy (log2 of the effective number of choices).
    """
    from plotly.subplots import make_subplots

    from .generate import filter_logits

    z = torch.as_tensor(logits, dtype=torch.float32).reshape(-1)
    if len(labels) != z.numel():
        raise ValueError(f"need one label per logit; got {len(labels)} labels for {z.numel()} logits")
    base = z.softmax(-1)
    order = base.argsort(descending=True)[:top_n]
    x = [f"{i + 1}. {_show_piece(labels[j])}" for i, j in enumerate(order.tolist())]

    def summary(p: Tensor) -> str:
        kept = int((p > 0).sum())
        h = max(0.0, float(-(p[p > 0] * p[p > 0].log2()).sum()))
        return f"{kept:,} tokens can be drawn; top token {float(p.max()):.0%}; entropy {h:.2f} bits"

    def variants(kind: str, values: Sequence) -> list[tuple[list[float], str]]:
        out = []
        for v in values:
            if kind == "t":
                p, name = (z / v).softmax(-1), f"temperature t = {v:g}"
            elif kind == "k":
                p, name = filter_logits(z[None], top_k=int(v))[0].softmax(-1), f"top-k, k = {v}"
            else:
                p, name = filter_logits(z[None], top_p=float(v))[0].softmax(-1), f"top-p, p = {v:g}"
            out.append(([round(float(q), 5) for q in p[order]], f"{name}: {summary(p)}"))
        return out

    panels = [("t", temperatures, start[0], "#4c78a8"), ("k", ks, start[1], "#f58518"), ("p", ps, start[2], "#54a24b")]
    data = [variants(kind, values) for kind, values, _, _ in panels]
    firsts = [min(range(len(v)), key=lambda i, v=v, s=s: abs(v[i] - s)) for _, v, s, _ in panels]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=[d[f][1] for d, f in zip(data, firsts, strict=True)])  # fmt: skip
    model_p = [round(float(q), 5) for q in base[order]]
    for row, ((_, _, _, color), d, f) in enumerate(zip(panels, data, firsts, strict=True), start=1):
        fig.add_trace(
            go.Bar(
                x=x,
                y=model_p,
                marker_color="rgba(0,0,0,0.18)",
                name="the model's own (t = 1)",
                hovertemplate="%{x}: %{y:.4f}<extra>model</extra>",
                showlegend=row == 1,
            ),
            row,
            1,
        )
        sampler = go.Bar(x=x, y=d[f][0], marker_color=color, name="what the sampler draws from", opacity=0.85,
                         hovertemplate="%{x}: %{y:.4f}<extra>sampler</extra>", showlegend=row == 1)  # fmt: skip
        fig.add_trace(sampler, row, 1)
    sliders = []
    for i, ((kind, values, _, _), d, f) in enumerate(zip(panels, data, firsts, strict=True)):
        # "update" restyles this panel's sampler bars (trace 2i + 1) and rewrites its title (annotation i) only
        steps = [dict(method="update", label=f"{v:g}",
                      args=[{"y": [ys]}, {f"annotations[{i}].text": title}, [2 * i + 1]])
                 for v, (ys, title) in zip(values, d, strict=True)]  # fmt: skip
        prefix = {"t": "temperature t = ", "k": "top-k: k = ", "p": "top-p: p = "}[kind]
        sliders.append(dict(active=f, steps=steps, currentvalue=dict(prefix=prefix), y=-0.08 - 0.17 * i,
                            len=0.9, x=0.05, pad=dict(t=10, b=10)))  # fmt: skip
    fig.update_layout(sliders=sliders, barmode="overlay", height=900, margin=dict(t=60, b=260),
                      legend=dict(orientation="h", y=1.1, x=0, yanchor="bottom"),
                      title=dict(text="One next-token distribution, three ways to reshape it", y=0.99))  # fmt: skip
    fig.update_yaxes(range=[0, max(1e-9, max(max(ys) for d in data for ys, _ in d)) * 1.05], title="probability")
    fig.update_xaxes(tickangle=-60, row=3, col=1)
    return fig


def generation_speed_figure(rates: dict[str, dict[int, tuple[float, float, float]]], machine: str) -> go.Figure:
    """Tokens per second against the number of generated tokens, one line per method (log scale).

    rates: ``{method: {n: (median, slowest, fastest)}}`` as :func:`palmbook.scratch.sampling.median_rate` gives;
    the error bars span the slowest and fastest repetition.
    """
    fig = go.Figure()
    for name, per in rates.items():
        ns = sorted(per)
        med = [per[n][0] for n in ns]
        fig.add_trace(go.Scatter(
            x=ns, y=med, mode="lines+markers", name=name,
            error_y=dict(type="data", symmetric=False, array=[per[n][2] - per[n][0] for n in ns],
                         arrayminus=[per[n][0] - per[n][1] for n in ns]),
            hovertemplate="%{x} tokens: %{y:,.0f} tokens/s<extra>" + name + "</extra>",
        ))  # fmt: skip
    fig.update_layout(title=f"Generation speed: median of interleaved repetitions<br><sup>measured on {machine}</sup>",
                      xaxis=dict(title="tokens generated (after an 8-token prompt)", type="log"),
                      yaxis=dict(title="tokens per second", type="log"), hovermode="x unified")  # fmt: skip
    return fig


def repetition_figure(points: dict[str, list[tuple[float, float, str]]]) -> go.Figure:
    """Distinct-n fraction against the sampling setting, one line per family; hover shows the sample's start.

    points: ``{family: [(x, distinct_fraction, sample_text), ...]}``.
    """
    fig = go.Figure()
    for name, pts in points.items():
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=name,
            customdata=[p[2][:90].replace("\n", " / ") for p in pts],
            hovertemplate="%{x}: %{y:.0%} distinct<br>%{customdata}<extra>" + name + "</extra>",
        ))  # fmt: skip
    fig.update_layout(
        title="How much of a sample repeats itself: distinct 3-grams",
        xaxis=dict(title="temperature (0 = greedy)"),
        yaxis=dict(title="fraction of 3-grams that are distinct", range=[0, 1.05], tickformat=".0%"),
    )
    return fig


# --------------------------------------------------------------------------------------------- chapter 11: scaling up
def compute_budget_figure(
    hardware: dict[str, float],
    sizes: Sequence[float],
    tokens: Sequence[float],
    mfus: Sequence[float],
    start: tuple[float, float, str, float],
) -> tuple[go.Figure, str]:
    """Training days = 6 N D / (peak x MFU) as a figure with four sliders: model size, tokens, hardware, MFU.

    Returns ``(figure, post_script)``. The figure alone is correct for its starting values; the script (run by the
    static page after the figure is drawn, see :func:`show_with_script`) recomputes the curve, the marker and the
    readout whenever any slider moves, so the four sliders combine without a kernel. hardware maps a label to the
    summed peak FLOP/s of all its chips. The curve is days against tokens for the chosen size; the dotted line
    marks Chinchilla's ~20 tokens per parameter (Hoffmann et al., 2022).
    """
    import json

    n0, d0, hw0, m0 = start
    names = list(hardware)
    curve_d = [10 ** (8 + i * 0.1) for i in range(61)]  # 1e8 .. 1e14 tokens

    def days(n: float, d: float, peak: float, mfu: float) -> float:
        return 6.0 * n * d / (peak * mfu) / 86_400

    def readout(n: float, d: float, hw: str, mfu: float) -> str:
        c = 6.0 * n * d
        t = days(n, d, hardware[hw], mfu)
        when = f"{t * 24:,.1f} hours" if t < 2 else f"{t:,.1f} days" if t < 730 else f"{t / 365.25:,.1f} years"
        return (f"N = {n:.2e} parameters, D = {d:.2e} tokens: 6ND = {c:.2e} FLOPs<br>"
                f"on {hw} at {_pct(mfu)} MFU: <b>{when}</b>")  # fmt: skip

    peak0 = hardware[hw0]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=curve_d,
            y=[days(n0, d, peak0, m0) for d in curve_d],
            mode="lines",
            name="days for this model size",
            hovertemplate="%{x:.3g} tokens: %{y:.3g} days<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[d0],
            y=[days(n0, d0, peak0, m0)],
            mode="markers",
            marker=dict(size=14),
            name="your run",
            hovertemplate="%{x:.3g} tokens: %{y:.3g} days<extra></extra>",
        )
    )
    fig.add_trace(go.Scatter(x=[20 * n0, 20 * n0], y=[1e-6, 1e7], mode="lines", line=dict(dash="dot"),
                             name="20 tokens per parameter (Chinchilla)", hoverinfo="skip"))  # fmt: skip
    for label, level in (("1 hour", 1 / 24), ("1 day", 1), ("1 month", 30.4), ("1 year", 365.25)):
        fig.add_hline(y=level, line=dict(color="#bbb", width=1))
        # on a log axis an annotation's y is log10 of the value (add_hline's own label would land at 10^level)
        fig.add_annotation(x=0, xref="x domain", xanchor="left", y=math.log10(level), yanchor="bottom",
                           text=label, showarrow=False, font=dict(color="#888"))  # fmt: skip

    def slider(name: str, values: Sequence, labels: Sequence[str], active: int, y: float, prefix: str) -> dict:
        steps = [dict(method="skip", label=lab, value=str(i), args=[]) for i, lab in enumerate(labels)]
        return dict(name=name, active=active, steps=steps, y=y, x=0.05, len=0.9, pad=dict(t=5, b=5),
                    currentvalue=dict(prefix=prefix))  # fmt: skip

    def idx(values: Sequence, v) -> int:
        return min(range(len(values)), key=lambda i: abs(math.log(values[i]) - math.log(v)) if v else 0)

    fig.update_layout(
        sliders=[
            slider("n", sizes, [f"{v:.3g}" for v in sizes], idx(sizes, n0), -0.12, "model size N = "),
            slider("d", tokens, [f"{v:.3g}" for v in tokens], idx(tokens, d0), -0.30, "tokens D = "),
            slider("hw", names, names, names.index(hw0), -0.48, "hardware: "),
            slider("mfu", mfus, [_pct(v) for v in mfus], idx(mfus, m0), -0.66, "MFU = "),
        ],
        height=820, margin=dict(t=90, b=330),
        title=dict(text=readout(n0, d0, hw0, m0), font=dict(size=14)),
        xaxis=dict(title="training tokens D", type="log", range=[8, 14]),
        yaxis=dict(title="training time (days)", type="log", range=[-4, 7]),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0),
    )  # fmt: skip
    params = dict(sizes=list(sizes), tokens=list(tokens), names=names, peaks=[hardware[k] for k in names],
                  mfus=list(mfus), curve=curve_d)  # fmt: skip
    script = (
        "(function(){var gd=document.getElementById('{plot_id}');if(!gd||!gd.on)return;"
        f"var P={json.dumps(params)};"
        "var S={};(gd.layout.sliders||[]).forEach(function(s){S[s.name]=s.active;});"
        "function fmt(v){return v.toExponential(2);}"
        "function num(v){return v.toLocaleString('en-US',{minimumFractionDigits:1,maximumFractionDigits:1});}"
        "function days(n,d,peak,m){return 6*n*d/(peak*m)/86400;}"
        "function update(){var n=P.sizes[S.n],d=P.tokens[S.d],peak=P.peaks[S.hw],m=P.mfus[S.mfu];"
        "var t=days(n,d,peak,m);var when=t<2?num(t*24)+' hours':t<730?num(t)+' days':num(t/365.25)+' years';"
        "Plotly.restyle(gd,{y:[P.curve.map(function(x){return days(n,x,peak,m);})]},[0]);"
        "Plotly.restyle(gd,{x:[[d]],y:[[t]]},[1]);Plotly.restyle(gd,{x:[[20*n,20*n]]},[2]);"
        "Plotly.relayout(gd,{'title.text':'N = '+fmt(n)+' parameters, D = '+fmt(d)+' tokens: 6ND = '+"
        "fmt(6*n*d)+' FLOPs<br>on '+P.names[S.hw]+' at '+(100*m).toFixed(1).replace(/\\.0$/,'')+'% MFU: '+"
        "'<b>'+when+'</b>'});}"
        "gd.on('plotly_sliderchange',function(e){S[e.slider.name]=parseInt(e.step.value);update();});})();"
    )
    return fig, script


def _pct(v: float) -> str:
    """0.462 -> "46.2%", 0.4 -> "40%" (the same text the budget figure's script writes)."""
    return f"{100 * v:.1f}".removesuffix(".0") + "%"


def show_with_script(fig: go.Figure, post_script: str, div_id: str) -> None:
    """Display a plotly figure whose static-page HTML runs ``post_script`` after drawing (``{plot_id}`` = its div).

    Under a kernel the figure goes out as plotly's own mimetype (JupyterLab draws it; the script does not run
    there, so a live chapter pairs it with ipywidgets) plus the ``text/html`` the static book draws, without
    plotly.js, like every figure of the book. In Colab, which draws only HTML, plotly.js comes from its CDN.
    """
    import plotly.io as pio
    from IPython.display import HTML, display

    from .book import in_colab

    if in_colab():
        display(HTML(pio.to_html(fig, full_html=False, include_plotlyjs="cdn", post_script=post_script)))
        return
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    bundle["text/html"] = pio.to_html(
        fig, full_html=False, include_plotlyjs=False, include_mathjax=False, div_id=div_id,
        post_script=post_script, config={"displaylogo": False, "responsive": True},
    )  # fmt: skip
    display(bundle, raw=True)


# --------------------------------------------------------------------------------------------- chapter 7: training
def lr_schedule_figure(
    total_steps: int = 256_000,
    peak_lr: float = 1e-2,
    plateaus: Sequence[int] = (1_000, 2_500, 5_000, 10_000, 20_000, 50_000),
    warmups: Sequence[int] = (0, 1_000, 2_500, 5_000, 10_000, 25_000),
    start: tuple[int, int] = (10_000, 2_500),
    min_lr_fraction: float = 0.1,
    points: int = 160,
) -> go.Figure:
    """PaLM's schedule (constant, then 1/sqrt(step)) against linear warm-up + cosine decay, over a whole run.

    One slider sets PaLM's plateau (``constant_steps``; the paper: 10,000 steps), the other the cosine warm-up;
    buttons switch the step axis between linear and log. Both schedules peak at ``peak_lr``; the cosine one decays
    to ``min_lr_fraction * peak_lr`` at ``total_steps`` (default: about the steps PaLM 540B's batch schedule needs
    for its 780B tokens, 512 / 1024 / 2048 sequences of 2048 tokens, §5). Curves come from
    :class:`palmbook.optim.LRSchedule`, the schedules the trainer runs.
    """
    import numpy as np

    from .optim import LRSchedule, lr_curve

    last = total_steps - 1
    grid = np.unique(np.concatenate([np.linspace(0, last, points), np.geomspace(1, last, points)]))
    steps = np.unique(np.concatenate([grid.astype(int), np.array(list(plateaus) + list(warmups))]))
    steps = steps[steps < total_steps].tolist()

    def curve(schedule: LRSchedule) -> list[float]:
        return [float(f"{v:.5g}") for v in lr_curve(schedule, steps)[1]]

    palm = {c: curve(LRSchedule("palm", peak_lr, constant_steps=c)) for c in plateaus}
    cosine = {w: curve(LRSchedule("cosine", peak_lr, warmup_steps=w, total_steps=total_steps,
                                  min_lr=min_lr_fraction * peak_lr)) for w in warmups}  # fmt: skip
    p0, w0 = start
    fig = go.Figure()
    fig.add_scatter(x=steps, y=palm[p0], name="PaLM: constant, then 1/√step", line=dict(color="#d62728", width=3),
                    hovertemplate="step %{x:,}: lr %{y:.3g}<extra>PaLM</extra>")  # fmt: skip
    fig.add_scatter(x=steps, y=cosine[w0], name="linear warm-up + cosine", line=dict(color="#1f77b4", width=3),
                    hovertemplate="step %{x:,}: lr %{y:.3g}<extra>cosine</extra>")  # fmt: skip

    def slider(values: Sequence[int], curves: dict[int, list[float]], trace: int, prefix: str, y: float) -> dict:
        return dict(
            active=list(values).index(p0 if trace == 0 else w0), currentvalue=dict(prefix=prefix), y=y, pad=dict(t=10),
            steps=[dict(method="restyle", label=f"{v:,}", args=[{"y": [curves[v]]}, [trace]]) for v in values],
        )  # fmt: skip

    fig.update_layout(
        title=f"Learning-rate schedules over a {total_steps:,}-step run",
        xaxis=dict(title="optimiser step"), yaxis=dict(title="learning rate", rangemode="tozero"),
        height=560, margin=dict(b=200), hovermode="x unified",
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
        sliders=[slider(plateaus, palm, 0, "PaLM: constant for the first ", -0.2),
                 slider(warmups, cosine, 1, "cosine: warm-up steps = ", -0.48)],
        updatemenus=[dict(type="buttons", direction="right", x=1.0, xanchor="right", y=1.12, yanchor="bottom",
                          buttons=[dict(label="linear steps", method="relayout", args=[{"xaxis.type": "linear"}]),
                                   dict(label="log steps", method="relayout", args=[{"xaxis.type": "log"}])])],
    )  # fmt: skip
    return fig


_RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def training_runs_figure(
    runs: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]],
    title: str,
    y_title: str = "loss (nats per token)",
    x_title: str = "optimiser step",
) -> go.Figure:
    """Loss curves of several runs: ``{run: {"train": (steps, losses), "validation": (steps, losses)}}``.

    Each run gets one colour: its training loss as a line, its validation loss (optional) as dashed markers.
    Click a legend entry to hide a curve; hover compares the runs at a step.
    """
    fig = go.Figure()
    for (name, parts), color in zip(runs.items(), _RUN_COLORS * 4, strict=False):
        if "train" in parts:
            x, y = parts["train"]
            fig.add_scatter(x=list(x), y=list(y), name=f"{name} (train)", mode="lines", line=dict(color=color),
                            hovertemplate="%{y:.3f}<extra>" + name + " train</extra>")  # fmt: skip
        if "validation" in parts:
            x, y = parts["validation"]
            fig.add_scatter(x=list(x), y=list(y), name=f"{name} (validation)", mode="lines+markers",
                            line=dict(color=color, dash="dash"), marker=dict(size=8),
                            hovertemplate="%{y:.3f}<extra>" + name + " validation</extra>")  # fmt: skip
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=420, hovermode="x unified")
    return fig


def spike_figure(attempts: Sequence[dict], events: Sequence[dict]) -> go.Figure:
    """A loss spike and its cure (§5.1), against the number of batches drawn from the data.

    attempts: one dict per optimiser step as it happened, ``{"batch", "step", "loss", "kept"}``; ``kept`` is False
    for steps a rollback later undid. events: the trainer's ``spike`` and ``rollback`` events. The spike is a red
    cross, the steps it undid are grey, the skipped batches are shaded; the loss axis is logarithmic.
    """
    fig = go.Figure()
    for kept, name, color in ((True, "steps kept", "#1f77b4"), (False, "steps undone by the rollback", "#aaaaaa")):
        pts = [a for a in attempts if a["kept"] == kept]
        fig.add_scatter(x=[a["batch"] for a in pts], y=[a["loss"] for a in pts], name=name, mode="markers",
                        marker=dict(color=color, size=7), customdata=[a["step"] for a in pts],
                        hovertemplate="batch %{x}, step %{customdata}: loss %{y:.3f}<extra></extra>")  # fmt: skip
    for e in events:
        if e["event"] == "spike":
            fig.add_scatter(x=[e["batches_seen"]], y=[e["loss"]], name="spike (update not applied)", mode="markers",
                            marker=dict(color="#d62728", size=14, symbol="x"),
                            hovertemplate="batch %{x}: loss %{y:.3g}, median of the window "
                                          f"{e['median']:.3g}<extra></extra>")  # fmt: skip
        elif e["event"] == "rollback":
            last = e["batches_seen"]
            first = last - e["skipped_batches"] + 1
            fig.add_vrect(x0=first - 0.5, x1=last + 0.5, fillcolor="#ff7f0e", opacity=0.15, line_width=0,
                          annotation_text=f"{e['skipped_batches']} batches skipped",
                          annotation_position="top left")  # fmt: skip
            fig.add_annotation(x=first - 0.5, y=0.5, yref="paper", ax=-60, ay=0, showarrow=True, arrowhead=2,
                               text=f"rolled back to step {e['to_step']}")  # fmt: skip
    fig.update_layout(title="An injected loss spike: detected, rolled back, its batches skipped",
                      xaxis_title="batches drawn from the data", yaxis=dict(title="training loss", type="log"),
                      height=420, legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0))  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------- chapter 10: efficiency
def tradeoff_figure(rows: Sequence[dict], machine: str) -> go.Figure:
    """Size against quality for model variants, marker area proportional to speed (a trade-off map).

    rows: ``{"name", "group", "disk_mb", "memory_mb", "nats_per_char", "forward_tok_s", "generate_tok_s"}``
    (+ optional ``"detail"``). One trace per group; menus switch the size axis (file / memory) and which speed
    sets the marker area (forward pass / generation). Lower and further left is better; bigger is faster.
    """
    groups = list(dict.fromkeys(r["group"] for r in rows))
    by_group = {g: [r for r in rows if r["group"] == g] for g in groups}

    def sizes(key: str) -> list[list[float]]:
        top = max(r[key] for r in rows)
        return [[8 + 42 * math.sqrt(r[key] / top) for r in by_group[g]] for g in groups]  # area ~ speed

    fig = go.Figure()
    forward = sizes("forward_tok_s")
    for g, s, color in zip(groups, forward, _RUN_COLORS * 4, strict=False):
        pts = by_group[g]
        fig.add_scatter(
            x=[r["disk_mb"] for r in pts], y=[r["nats_per_char"] for r in pts], name=g, mode="markers+text",
            text=[r["name"] for r in pts], textposition="top center",
            marker=dict(size=s, color=color, opacity=0.7, line=dict(color="black", width=1)),
            customdata=[[r["disk_mb"], r["memory_mb"], r["forward_tok_s"], r["generate_tok_s"], r.get("detail", "")]
                        for r in pts],
            hovertemplate="<b>%{text}</b><br>file %{customdata[0]:.2f} MB, memory %{customdata[1]:.2f} MB<br>"
                          "forward %{customdata[2]:,.0f} tok/s, generate %{customdata[3]:,.0f} tok/s<br>"
                          "validation loss %{y:.4f} nats/char<br>%{customdata[4]}<extra></extra>",
        )  # fmt: skip
    n = len(groups)
    x_of = {k: [[r[k] for r in by_group[g]] for g in groups] for k in ("disk_mb", "memory_mb")}
    menus = [
        dict(buttons=[dict(label="marker: forward speed", method="restyle",
                           args=[{"marker.size": forward}, list(range(n))]),
                      dict(label="marker: generation speed", method="restyle",
                           args=[{"marker.size": sizes("generate_tok_s")}, list(range(n))])],
             x=0.0, xanchor="left", y=1.14, yanchor="bottom"),
        dict(buttons=[dict(label="x: size of the file", method="update",
                           args=[{"x": x_of["disk_mb"]}, {"xaxis.title.text": "size of the saved model (MB)"}]),
                      dict(label="x: size in memory", method="update",
                           args=[{"x": x_of["memory_mb"]}, {"xaxis.title.text": "weights in memory (MB)"}])],
             x=0.45, xanchor="left", y=1.14, yanchor="bottom"),
    ]  # fmt: skip
    fig.update_layout(
        title=dict(text=f"Size, quality and speed of each variant ({machine})", y=0.98),
        xaxis=dict(title="size of the saved model (MB)", rangemode="tozero"),
        yaxis=dict(title="validation loss (nats per character; lower is better)"),
        updatemenus=menus, height=560, margin=dict(t=130), legend=dict(title="family"),
    )  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------- chapter 9: applications
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
        fig.add_trace(go.Heatmap(
            z=rows, x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues", visible=i == 0,
            customdata=r.confusion, text=[[f"{v:.0%}" for v in row] for row in rows], texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{customdata} (%{z:.0%} of the row)<extra></extra>",
            colorbar=dict(title="share of row", tickformat=".0%"),
        ))  # fmt: skip
    buttons = [
        dict(label=name, method="update", args=[
            {"visible": [j == i for j in range(len(names))]},
            {"title.text": f"{title}: {name} ({reports[name].accuracy:.0%} accuracy, macro-F1 "
                           f"{reports[name].macro_f1:.2f})"},
        ])
        for i, name in enumerate(names)
    ]  # fmt: skip
    first = reports[names[0]]
    fig.update_layout(
        title=f"{title}: {names[0]} ({first.accuracy:.0%} accuracy, macro-F1 {first.macro_f1:.2f})",
        xaxis=dict(title="predicted"), yaxis=dict(title="true", autorange="reversed"), height=480,
        updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.16, yanchor="top")], margin=dict(t=100),
    )  # fmt: skip
    return fig


def task_results_figure(results: Sequence[dict]) -> go.Figure:
    """One panel per task, each with its own metric axis: bars for the baselines and for the model(s).

    results: ``[{"task": str, "metric": str, "bars": {name: value}, "model": set of bar names that are models,
    "lower_is_better": bool}, ...]``. Baselines are grey, models coloured; hover gives the exact value.
    """
    from plotly.subplots import make_subplots

    if not results:
        raise ValueError("need at least one task")
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=[r["task"] for r in results],
                        horizontal_spacing=0.07)  # fmt: skip
    for col, r in enumerate(results, 1):
        names = list(r["bars"])
        models = set(r.get("model", ()))
        fig.add_trace(go.Bar(
            x=names, y=[r["bars"][n] for n in names], showlegend=False,
            marker_color=["#1f77b4" if n in models else "#b0b0b0" for n in names],
            text=[f"{r['bars'][n]:.3g}" for n in names], textposition="outside", cliponaxis=False,
            hovertemplate="%{x}: %{y:.4g} " + r["metric"] + "<extra>" + r["task"] + "</extra>",
        ), row=1, col=col)  # fmt: skip
        arrow = "lower is better" if r.get("lower_is_better") else "higher is better"
        fig.update_yaxes(title_text=f"{r['metric']} ({arrow})", row=1, col=col, rangemode="tozero")
        fig.update_xaxes(tickangle=-45, row=1, col=col)
    fig.update_layout(height=480, title="Each task: the model (blue) next to its baselines (grey)",
                      margin=dict(t=90, b=150))  # fmt: skip
    return fig


def examples_table_figure(tables: dict[str, dict[str, Sequence[str]]], height: int = 520) -> go.Figure:
    """A table of examples per task with a dropdown to switch task (works without a kernel).

    tables: ``{task: {column name: [cell, ...]}}``; every column of a task has the same number of cells.
    Newlines in cells are shown as line breaks.
    """
    if not tables:
        raise ValueError("need at least one table")
    fig = go.Figure()
    for i, (task, cols) in enumerate(tables.items()):
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise ValueError(f"the columns of {task!r} have different lengths: {sorted(lengths)}")
        fig.add_trace(go.Table(
            header=dict(values=[f"<b>{c}</b>" for c in cols], align="left", fill_color="#e8eef7"),
            cells=dict(values=[[_table_cell(v) for v in vals] for vals in cols.values()], align="left",
                       height=24),
            visible=i == 0,
        ))  # fmt: skip
    names = list(tables)
    buttons = [dict(label=t, method="update", args=[{"visible": [j == i for j in range(len(names))]},
                                                      {"title.text": f"Examples: {t}"}])
               for i, t in enumerate(names)]  # fmt: skip
    fig.update_layout(title=f"Examples: {names[0]}", height=height, margin=dict(t=90, l=10, r=10, b=10),
                      updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.14, yanchor="top")])  # fmt: skip
    return fig


def _table_cell(value: object) -> str:
    import html

    return html.escape(str(value)).replace("\n", "<br>")
