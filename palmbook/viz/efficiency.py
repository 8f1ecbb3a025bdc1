"""Chapter 13, efficiency, and Appendix A, measuring speed: what a variant costs, and where speed comes from.

| figure               | shows                                                                              |
|----------------------|------------------------------------------------------------------------------------|
| ``tradeoff_figure``  | size against validation loss, marker area for speed; menus switch size and speed   |
| ``roofline_figure``  | measured operations on the roofline: attainable FLOP/s against arithmetic intensity |
| ``benchmark_figure`` | ``palmbook bench`` results: speed ratios against the peers, or tokens per second    |
| ``bf16_curve_figure``| float32 and bf16 loss curves from one start on the same batches, and their gap      |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from .common import SERIES

__all__ = ["benchmark_figure", "bf16_curve_figure", "roofline_figure", "tradeoff_figure"]


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
    for g, s, color in zip(groups, forward, SERIES * 4, strict=False):
        pts = by_group[g]
        fig.add_scatter(
            x=[r["disk_mb"] for r in pts],
            y=[r["nats_per_char"] for r in pts],
            name=g,
            mode="markers+text",
            text=[r["name"] for r in pts],
            textposition="top center",
            marker=dict(size=s, color=color, opacity=0.7, line=dict(color="black", width=1)),
            customdata=[
                [r["disk_mb"], r["memory_mb"], r["forward_tok_s"], r["generate_tok_s"], r.get("detail", "")]
                for r in pts
            ],
            hovertemplate="<b>%{text}</b><br>file %{customdata[0]:.2f} MB, memory %{customdata[1]:.2f} MB<br>"
            "forward %{customdata[2]:,.0f} tok/s, generate %{customdata[3]:,.0f} tok/s<br>"
            "validation loss %{y:.4f} nats/char<br>%{customdata[4]}<extra></extra>",
        )
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
        updatemenus=menus,
        height=560,
        margin=dict(t=130),
        legend=dict(title="family"),
    )
    return fig


def roofline_figure(points: Sequence[dict], peak_flops: float, bandwidth: float, machine: str) -> go.Figure:
    """The roofline model (Williams et al., 2009) with measured operations placed on it, both axes logarithmic.

    points: ``{"name", "intensity" (FLOPs per byte moved), "flops_per_s" (measured)}``. The roof is
    ``min(peak_flops, intensity * bandwidth)``: the slanted part is memory-bandwidth bound, the flat part compute
    bound, and they meet at the ridge point ``peak_flops / bandwidth`` FLOPs per byte.
    """
    lo = min([p["intensity"] for p in points] + [peak_flops / bandwidth]) / 4
    hi = max([p["intensity"] for p in points] + [peak_flops / bandwidth]) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    fig = go.Figure()
    fig.add_scatter(x=xs, y=[min(peak_flops, x * bandwidth) / 1e9 for x in xs], name="roof", mode="lines",
                    line=dict(color="black", width=2), hovertemplate="intensity %{x:.3g}: at most %{y:,.1f} "
                    "GFLOP/s<extra>roof</extra>")  # fmt: skip
    ridge = peak_flops / bandwidth
    fig.add_vline(x=ridge, line_dash="dot", annotation_text=f"ridge point {ridge:.1f} FLOP/byte")
    for p, color in zip(points, SERIES * 4, strict=False):
        fig.add_scatter(x=[p["intensity"]], y=[p["flops_per_s"] / 1e9], name=p["name"], mode="markers",
                        marker=dict(size=13, color=color, line=dict(color="black", width=1)),
                        hovertemplate=f"<b>{p['name']}</b><br>%{{x:.3g}} FLOP/byte, %{{y:,.1f}} GFLOP/s"
                        "<extra></extra>")  # fmt: skip
    fig.update_layout(
        title=f"The roofline of this machine, measured ({machine})",
        xaxis=dict(title="arithmetic intensity (FLOPs per byte moved)", type="log"),
        yaxis=dict(title="GFLOP/s", type="log"),
        height=460,
    )
    return fig


_BENCH_METRICS = (
    ("train", "train_tokens_per_s", "training"),
    ("forward", "forward_tokens_per_s", "forward"),
    ("generate", "generate_tokens_per_s", "generation"),
)


def _bars(fig: go.Figure, name: str, stats: Sequence[tuple[str, dict]], visible: bool, fmt: str) -> None:
    fig.add_bar(
        name=name,
        x=[label for label, _ in stats],
        y=[s["median"] for _, s in stats],
        visible=visible,
        error_y=dict(type="data", symmetric=False, array=[s["max"] - s["median"] for _, s in stats],
                     arrayminus=[s["median"] - s["min"] for _, s in stats]),
        hovertemplate="%{x}: %{y:" + fmt + "}<extra>%{fullData.name}</extra>",
    )  # fmt: skip


def benchmark_figure(res: dict) -> go.Figure:
    """Bars of a ``palmbook bench`` result (its JSON as a dict), whiskers from the slowest to the fastest round.

    The first view shows ``palmbook`` (eager and compiled) divided by each peer, round by round (above 1:
    palmbook is faster); the menu switches to every contestant's tokens per second, on a log axis.
    """
    fig = go.Figure()
    peers = [k for k in res["ratios"] if not k.endswith("/palmbook")]  # palmbook and palmbook+compile vs each peer
    for key in peers:
        r = res["ratios"][key]
        _bars(fig, key.replace("/", " / "), [(label, r[m]) for m, _, label in _BENCH_METRICS if m in r], True, ".2f")
    names = list(res["results"])
    for name in names:
        r = res["results"][name]
        _bars(fig, name, [(label, r[k]) for _, k, label in _BENCH_METRICS if k in r], False, ",.0f")
    n_peers, n_names = len(peers), len(names)
    views = [("ratios", [True] * n_peers + [False] * n_names, "speed ratio (palmbook / peer)", "linear"),
             ("tokens per second", [False] * n_peers + [True] * n_names, "tokens per second (log)", "log")]  # fmt: skip
    m = res["machine"]
    fig.update_layout(
        barmode="group",
        height=420,
        yaxis_title=views[0][2],
        title=f"palmbook and its peers, {res['precision']}, {m['threads']} threads ({m['name']})",
        updatemenus=[dict(type="dropdown", x=1.0, y=1.15, buttons=[
            dict(label=label, method="update",
                 args=[{"visible": vis}, {"yaxis": {"title": {"text": title}, "type": kind}}])
            for label, vis, title, kind in views])],
    )  # fmt: skip
    return fig


def bf16_curve_figure(curve: dict) -> go.Figure:
    """The two loss curves of ``palmbook bench --bf16-curve`` (float32 and bf16 autocast, one start, the same
    batches) and their difference on a second axis."""
    steps = list(range(1, curve["steps"] + 1))
    fig = go.Figure()
    for name, color in (("fp32", SERIES[0]), ("bf16", SERIES[1])):
        fig.add_scatter(x=steps, y=curve["losses"][name], name=name, line=dict(color=color, width=1.5))
    gap = [a - b for a, b in zip(curve["losses"]["bf16"], curve["losses"]["fp32"], strict=True)]
    fig.add_scatter(x=steps, y=gap, name="bf16 - fp32", yaxis="y2", line=dict(color="gray", width=1))
    fig.update_layout(
        height=420,
        xaxis_title="step",
        yaxis_title="training loss (nats per byte)",
        yaxis2=dict(title="gap (nats)", overlaying="y", side="right", showgrid=False),
        title=f"Same start, same batches: float32 and bf16 autocast ({curve['machine']['name']})",
    )
    return fig
