"""Chapter 14, scaling up: how long a training run takes, as four sliders (model size, tokens, hardware, MFU).

| figure                   | shows                                                                          |
|--------------------------|--------------------------------------------------------------------------------|
| ``compute_budget_figure``| training days = 6 N D / (peak x MFU) against tokens; returns a page script too  |
| ``memory_parts_figure``  | training memory by part and model, log axis; buttons swap one part's values     |

and one helper that is plumbing, not a picture: ``parse_launch`` reads a launch command with ``torchrun``'s and
``palmbook``'s own argument parsers, so that a chapter can show commands that are known to parse.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import plotly.graph_objects as go

__all__ = ["Launch", "compute_budget_figure", "memory_parts_figure", "parse_launch"]

_CURVE_D = [10 ** (8 + i * 0.1) for i in range(61)]  # the curve's x: 1e8 .. 1e14 tokens
_TIME_MARKS = (("1 hour", 1 / 24), ("1 day", 1), ("1 month", 30.4), ("1 year", 365.25))


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
    n0, d0, hw0, m0 = start
    names = list(hardware)
    fig = _budget_traces(n0, d0, hardware[hw0], m0)
    fig.update_layout(
        sliders=[
            _slider("n", [f"{v:.3g}" for v in sizes], _nearest_log(sizes, n0), -0.12, "model size N = "),
            _slider("d", [f"{v:.3g}" for v in tokens], _nearest_log(tokens, d0), -0.30, "tokens D = "),
            _slider("hw", names, names.index(hw0), -0.48, "hardware: "),
            _slider("mfu", [_pct(v) for v in mfus], _nearest_log(mfus, m0), -0.66, "MFU = "),
        ],
        height=820,
        margin=dict(t=90, b=330),
        title=dict(text=_readout(n0, d0, hw0, hardware[hw0], m0), font=dict(size=14)),
        xaxis=dict(title="training tokens D", type="log", range=[8, 14]),
        yaxis=dict(title="training time (days)", type="log", range=[-4, 7]),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0),
    )
    params = dict(
        sizes=list(sizes),
        tokens=list(tokens),
        names=names,
        peaks=[hardware[k] for k in names],
        mfus=list(mfus),
        curve=_CURVE_D,
    )
    return fig, _SCRIPT.replace("__PARAMS__", json.dumps(params))


def _days(n: float, d: float, peak: float, mfu: float) -> float:
    """Training days for n parameters and d tokens: 6 N D FLOPs at ``mfu`` of ``peak`` FLOP/s."""
    return 6.0 * n * d / (peak * mfu) / 86_400


def _readout(n: float, d: float, hw: str, peak: float, mfu: float) -> str:
    """The title: N, D, 6ND and the time in the unit that reads best (the script writes the same text)."""
    t = _days(n, d, peak, mfu)
    when = f"{t * 24:,.1f} hours" if t < 2 else f"{t:,.1f} days" if t < 730 else f"{t / 365.25:,.1f} years"
    return (
        f"N = {n:.2e} parameters, D = {d:.2e} tokens: 6ND = {6.0 * n * d:.2e} FLOPs<br>"
        f"on {hw} at {_pct(mfu)} MFU: <b>{when}</b>"
    )


def _budget_traces(n: float, d: float, peak: float, mfu: float) -> go.Figure:
    """The figure's traces, in the order the script restyles them (0: the curve, 1: the run, 2: Chinchilla's
    line), and the hour / day / month / year marks."""
    fig = go.Figure()
    hover = "%{x:.3g} tokens: %{y:.3g} days<extra></extra>"
    fig.add_scatter(
        x=_CURVE_D,
        y=[_days(n, x, peak, mfu) for x in _CURVE_D],
        mode="lines",
        name="days for this model size",
        hovertemplate=hover,
    )
    fig.add_scatter(
        x=[d], y=[_days(n, d, peak, mfu)], mode="markers", marker=dict(size=14), name="your run", hovertemplate=hover
    )
    fig.add_scatter(
        x=[20 * n, 20 * n],
        y=[1e-6, 1e7],
        mode="lines",
        line=dict(dash="dot"),
        name="20 tokens per parameter (Chinchilla)",
        hoverinfo="skip",
    )
    for label, level in _TIME_MARKS:
        fig.add_hline(y=level, line=dict(color="#bbb", width=1))
        # on a log axis an annotation's y is log10 of the value (add_hline's own label would land at 10^level)
        fig.add_annotation(
            x=0,
            xref="x domain",
            xanchor="left",
            y=math.log10(level),
            yanchor="bottom",
            text=label,
            showarrow=False,
            font=dict(color="#888"),
        )
    return fig


def _slider(name: str, labels: Sequence[str], active: int, y: float, prefix: str) -> dict:
    """A slider that only moves: its ``skip`` steps change nothing, the page script reads its value by ``name``."""
    steps = [dict(method="skip", label=lab, value=str(i), args=[]) for i, lab in enumerate(labels)]
    return dict(
        name=name,
        active=active,
        steps=steps,
        y=y,
        x=0.05,
        len=0.9,
        pad=dict(t=5, b=5),
        currentvalue=dict(prefix=prefix),
    )


def _nearest_log(values: Sequence[float], v: float) -> int:
    """The index of the value nearest v on a log scale (the sliders' values span orders of magnitude)."""
    return min(range(len(values)), key=lambda i: abs(math.log(values[i]) - math.log(v)) if v else 0)


def _pct(v: float) -> str:
    """0.462 -> "46.2%", 0.4 -> "40%" (the same text the budget figure's script writes)."""
    return f"{100 * v:.1f}".removesuffix(".0") + "%"


# The page script: keeps every slider's position and, when one moves, recomputes what _budget_traces and _readout
# drew. __PARAMS__ becomes the sliders' values; plotly replaces {plot_id} with the figure's div.
_SCRIPT = (
    "(function(){var gd=document.getElementById('{plot_id}');if(!gd||!gd.on)return;"
    "var P=__PARAMS__;"
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


def memory_parts_figure(
    parts: Mapping[str, Mapping[str, float]], alternatives: Mapping[str, Mapping[str, float]], title: str
) -> go.Figure:
    """Grouped bars on a log axis: one group per model, one bar per part of the memory (in the unit given).

    ``parts``: part name -> {model -> value}; the LAST part is the one that ``alternatives`` replaces.
    ``alternatives``: button label -> {model -> value}: a button per entry restyles the last part's bars, so the
    page switches e.g. activations with and without rematerialisation without a kernel. The first entry should
    equal the last part's starting values.
    """
    names = list(next(iter(parts.values())))
    fig = go.Figure([go.Bar(name=part, x=names, y=[values[n] for n in names]) for part, values in parts.items()])
    last = len(parts) - 1
    buttons = [
        dict(label=label, method="restyle", args=[{"y": [[values[n] for n in names]]}, [last]])
        for label, values in alternatives.items()
    ]
    fig.update_layout(
        barmode="group",
        yaxis=dict(title="terabytes (log scale)", type="log"),
        height=450,
        title=title,
        updatemenus=[dict(type="buttons", direction="right", x=0, y=1.15, buttons=buttons)],
    )
    return fig


class Launch(NamedTuple):
    """What a launch command asks for, as the launchers themselves read it."""

    nodes: int  # machines
    processes_per_node: int  # one process per GPU
    args: Any  # palmbook's parsed arguments (an argparse.Namespace): .command, .out_dir, .distributed, ...


def parse_launch(command: str) -> Launch:
    """Parse ``palmbook ...`` or ``torchrun ... -m palmbook ...`` with the launchers' own argument parsers.

    Nothing is launched. A misspelt flag raises SystemExit, as it would on the cluster: that is the point of
    checking a command before a long run. torchrun's ``--nnodes`` accepts a range MIN:MAX; the maximum is used.
    """
    from torch.distributed.run import get_args_parser  # torchrun's own parser

    from ..cli import build_parser

    argv = shlex.split(command)
    nodes, per_node = 1, 1
    if argv and argv[0] == "torchrun":
        launch = get_args_parser().parse_args(argv[1:])
        if not (launch.module and launch.training_script == "palmbook"):
            raise ValueError(f"expected 'torchrun ... -m palmbook ...'; got {command!r}")
        nodes, per_node = int(launch.nnodes.split(":")[-1]), int(launch.nproc_per_node)
        argv = ["palmbook", *launch.training_script_args]
    if not argv or argv[0] != "palmbook":
        raise ValueError(f"expected a command that starts with 'palmbook' or 'torchrun'; got {command!r}")
    return Launch(nodes, per_node, build_parser().parse_args(argv[1:]))
