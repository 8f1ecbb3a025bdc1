"""Chapter 8, optimisers: paths of several optimisers on a 2-D loss surface, gradient clipping drawn as arrows, and
loss curves with a band over seeds.

| figure                   | shows                                                                          |
|--------------------------|--------------------------------------------------------------------------------|
| ``optimiser_paths_figure``| each optimiser's path on a contour plot and its loss per step; a slider over     |
|                          | steps moves a marker along every path, a menu picks the learning rate          |
| ``clipping_figure``      | a two-tensor gradient, globally and per-tensor clipped, as arrows in the plane  |
| ``seed_band_figure``     | loss per step of several runs: the mean over seeds and the band from min to max |
| ``lr_schedule_explorer`` | (live kernel) sliders redraw PaLM's schedule and warm-up + cosine as an SVG     |

The slider of ``optimiser_paths_figure`` restyles one marker per path (the paths themselves are drawn once), so
the page stays small however many steps there are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from ..optim import LRSchedule, lr_curve
from .common import BLUE, BROWN, GREEN, GREY, ORANGE, PURPLE, RED, slider, svg_curves

__all__ = ["clipping_figure", "lr_schedule_explorer", "optimiser_paths_figure", "seed_band_figure"]

# The ladder's colours, in the chapter's order (SGD, momentum, RMSProp, Adam, AdamW, PaLM).
_COLOURS = (GREY, ORANGE, GREEN, BLUE, PURPLE, RED, BROWN)


def _r(values: Tensor | Sequence[float]) -> list[float]:
    # 4 significant decimals are plenty for the eye and for hover, and keep the page small
    return [round(float(v), 4) for v in values]


def optimiser_paths_figure(
    surface: Callable[[Tensor], Tensor],
    paths: Mapping[str, Mapping[str, Tensor]],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    title: str = "",
    lr_labels: Mapping[str, Mapping[str, float]] | None = None,
    grid: int = 81,
) -> go.Figure:
    """Paths of several optimisers on a 2-D loss surface (left) and their loss per step (right, log scale).

    Args:
        surface: loss of points, (..., 2) -> (...) (e.g. :func:`palmbook.scratch.optimisers.valley`); drawn as
            contours over ``x_range`` x ``y_range`` and evaluated along every path.
        paths: setting -> optimiser name -> points (steps + 1, 2), step 0 first; every path has the same length.
            With several settings (e.g. learning rates) a menu shows one setting at a time (the first at start).
        x_range, y_range: the part of the plane to draw; points outside are drawn at its edge (a diverging path
            leaves the picture, it does not rescale it).
        lr_labels: setting -> optimiser name -> its learning rate, shown in the legend and on hover.
        grid: contour resolution per axis.

    A slider over steps moves a marker to every optimiser's point after k steps and a dashed line to step k on
    the right; the paths themselves stay drawn in full (faint). Hover for exact points and losses.
    """
    settings, names, n = _check_paths(paths)
    lo = torch.tensor([x_range[0], y_range[0]], dtype=torch.float64)
    hi = torch.tensor([x_range[1], y_range[1]], dtype=torch.float64)
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.09,
        subplot_titles=("the loss surface and each optimiser's path", "loss after each step"),
    )
    _add_contours(fig, surface, x_range, y_range, grid)
    markers: list[int] = []  # trace indices of the current-step markers, in (setting, name) order
    for si, s in enumerate(settings):
        for i, name in enumerate(names):
            lr = lr_labels[s][name] if lr_labels else None
            label = f"{name} (lr {lr:g})" if lr is not None else name
            style = dict(colour=_COLOURS[i % len(_COLOURS)], group=f"{s}/{name}", visible=si == 0)
            markers.append(_add_path(fig, surface, paths[s][name], label, lo, hi, **style))
    steps = [_slider_step(k, _points_at(paths, settings, names, k, lo, hi), markers) for k in range(n)]
    fig.add_vline(x=0, line=dict(color="#555", dash="dash", width=1), row=1, col=2)
    menus = [_setting_menu(settings, 3 * len(names))] if len(settings) > 1 else []
    _lay_out(fig, x_range, y_range, n, title, steps, menus)
    return fig


def _check_paths(paths: Mapping[str, Mapping[str, Tensor]]) -> tuple[list[str], list[str], int]:
    """The settings, the optimiser names and the number of points per path; refuses ragged ``paths``."""
    settings = list(paths)
    names = list(paths[settings[0]])
    lengths = {len(p) for s in settings for p in paths[s].values()}
    if len(lengths) != 1 or any(list(paths[s]) != names for s in settings):
        raise ValueError("every setting needs the same optimisers, and every path the same number of steps")
    return settings, names, lengths.pop()


def _clamp(pts: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Points (..., 2) pulled into the box [lo, hi]; NaN (a diverged path) goes to the far edge."""
    return torch.minimum(torch.maximum(torch.nan_to_num(pts, nan=1e9), lo), hi)


def _add_contours(
    fig: go.Figure,
    surface: Callable[[Tensor], Tensor],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    grid: int,
) -> None:
    """log10 of the loss on a grid x grid lattice over the box, as contours on the left (trace 0)."""
    xs = torch.linspace(*x_range, grid, dtype=torch.float64)
    ys = torch.linspace(*y_range, grid, dtype=torch.float64)
    z = surface(torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1))
    fig.add_contour(
        x=_r(xs),
        y=_r(ys),
        z=torch.log10(z.clamp(min=1e-4)).float().numpy(),
        colorscale="Viridis",
        ncontours=24,
        showscale=False,
        line=dict(width=0.5),
        hoverinfo="skip",
        row=1,
        col=1,
    )


def _add_path(
    fig: go.Figure,
    surface: Callable[[Tensor], Tensor],
    path: Tensor,
    label: str,
    lo: Tensor,
    hi: Tensor,
    colour: str,
    group: str,
    visible: bool,
) -> int:
    """One optimiser's three traces: its path (left), its loss per step (right) and the marker the slider moves.

    ``path``: (steps + 1, 2). Returns the marker's trace index.
    """
    pts = path.detach().double()
    shown = _clamp(pts, lo, hi)
    loss = surface(pts.clamp(-1e6, 1e6))
    n = len(pts)
    common = dict(legendgroup=group, visible=visible)
    hover = f"{label}<br>step %{{customdata}}<br>(%{{x:.3f}}, %{{y:.3f}})<extra></extra>"
    fig.add_scatter(
        x=_r(shown[:, 0]),
        y=_r(shown[:, 1]),
        customdata=list(range(n)),
        mode="lines",
        line=dict(color=colour, width=1.5),
        opacity=0.55,
        name=label,
        hovertemplate=hover,
        **common,
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=list(range(n)),
        y=[float(f"{v:.4g}") for v in loss],
        mode="lines",
        showlegend=False,
        line=dict(color=colour, width=2),
        name=label,
        **common,
        row=1,
        col=2,
        hovertemplate=f"{label}<br>step %{{x}}: loss %{{y:.4g}}<extra></extra>",
    )
    fig.add_scatter(
        x=_r(shown[:1, 0]),
        y=_r(shown[:1, 1]),
        mode="markers",
        showlegend=False,
        marker=dict(color=colour, size=12, line=dict(color="white", width=1.5)),
        hoverinfo="skip",
        **common,
        row=1,
        col=1,
    )
    return len(fig.data) - 1


def _points_at(
    paths: Mapping[str, Mapping[str, Tensor]], settings: list[str], names: list[str], k: int, lo: Tensor, hi: Tensor
) -> list[Tensor]:
    """Every path's point after k steps, in (setting, name) order, clamped into the drawn box."""
    return [_clamp(paths[s][name][k].detach().double(), lo, hi) for s in settings for name in names]


def _slider_step(k: int, at_k: list[Tensor], markers: list[int]) -> dict:
    """Slider step k: every marker (trace indices ``markers``) to its point ``at_k`` (each (2,)), the dashed line
    (shapes[0]) to step k. Only the markers are restyled, so the page stays small however many steps there are."""
    xk, yk = [_r(p[:1]) for p in at_k], [_r(p[1:]) for p in at_k]
    return dict(
        method="update",
        label=str(k),
        args=[{"x": xk, "y": yk}, {"shapes[0].x0": k, "shapes[0].x1": k}, markers],
    )


def _setting_menu(settings: list[str], per_setting: int) -> dict:
    """A dropdown with one button per setting that shows the contours and only that setting's traces."""
    buttons = []
    for si, s in enumerate(settings):
        visible = [True] + [j // per_setting == si for j in range(per_setting * len(settings))]
        buttons.append(dict(label=s, method="restyle", args=[{"visible": visible}]))
    return dict(
        type="dropdown",
        buttons=buttons,
        x=0.0,
        xanchor="left",
        y=1.2,
        yanchor="bottom",
        active=0,
        showactive=True,
    )


def _lay_out(
    fig: go.Figure,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    n: int,
    title: str,
    steps: list[dict],
    menus: list[dict],
) -> None:
    """Axes (the box on the left, n steps and a log loss on the right), the title clear of the menu, the slider."""
    fig.update_xaxes(range=list(x_range), title_text="x", row=1, col=1)
    fig.update_yaxes(range=list(y_range), title_text="y", row=1, col=1)
    fig.update_xaxes(title_text="step", range=[-0.5, n - 0.5], row=1, col=2)
    fig.update_yaxes(title_text="loss (log scale)", type="log", row=1, col=2)
    fig.update_layout(
        title=dict(text=title, x=0.5 if not menus else 0.62, y=0.98),
        sliders=[slider(steps, 0, "step ", pad=dict(t=50))],
        updatemenus=menus,
        legend=dict(orientation="h", y=-0.62, x=0.0),
        height=600,
        margin=dict(t=110, b=210),
    )


def clipping_figure(
    gradient: Sequence[float],
    clipped: Mapping[str, Sequence[float]],
    threshold: float,
    axis_titles: tuple[str, str] = ("tensor A", "tensor B"),
) -> go.Figure:
    """A gradient made of two tensors drawn as one arrow per version, in the plane (||part A||, ||part B||).

    Each clipping rule scales each tensor's gradient by a positive factor, so every version lies in that plane,
    and the angle between two arrows is the angle between the whole updates. ``gradient``: (||g_A||, ||g_B||);
    ``clipped``: name -> the same for a clipped version. The dotted quarter circle is the global-norm threshold.
    """
    fig = go.Figure()
    arrows = {"gradient (not clipped)": tuple(gradient), **{k: tuple(v) for k, v in clipped.items()}}
    colours = (GREY, BLUE, RED, GREEN)
    top = max(max(v) for v in arrows.values()) * 1.12
    t = torch.linspace(0, torch.pi / 2, 60)
    fig.add_scatter(
        x=_r(threshold * t.cos()),
        y=_r(threshold * t.sin()),
        mode="lines",
        name=f"norm {threshold:g}",
        line=dict(color="#999", dash="dot"),
        hoverinfo="skip",
    )
    for (name, (a, b)), colour in zip(arrows.items(), colours, strict=False):
        angle = float(torch.atan2(torch.tensor(b), torch.tensor(a)).rad2deg())
        hover = f"{name}<br>A part {a:.3f}, B part {b:.3f}<br>length {(a * a + b * b) ** 0.5:.3f}, angle {angle:.1f}°"
        fig.add_scatter(
            x=[0, a],
            y=[0, b],
            mode="lines+markers",
            name=name,
            line=dict(color=colour, width=3),
            marker=dict(size=[0, 10], symbol="arrow", angleref="previous", color=colour),
            hovertemplate=hover + "<extra></extra>",
        )
    fig.update_xaxes(range=[0, top], title_text=f"size of the {axis_titles[0]} part of the update", scaleanchor="y")
    fig.update_yaxes(range=[0, top], title_text=f"size of the {axis_titles[1]} part")
    fig.update_layout(height=480, legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0), margin=dict(t=60))
    return fig


def seed_band_figure(
    curves: Mapping[str, Tensor], title: str, y_title: str = "training loss", smooth: int = 1
) -> go.Figure:
    """Loss per step of several runs, each (seeds, steps): the mean over seeds as a line, min..max as a band.

    ``smooth``: a moving average over that many steps first (training losses of single batches are noisy).
    """
    fig = go.Figure()
    for i, (name, c) in enumerate(curves.items()):
        c = torch.as_tensor(c, dtype=torch.float64)
        if smooth > 1:
            c = torch.nn.functional.avg_pool1d(c[:, None], smooth, stride=1)[:, 0]
        steps = list(range(smooth, smooth + c.shape[1]))
        colour = _COLOURS[i % len(_COLOURS)]
        fig.add_scatter(
            x=steps + steps[::-1],
            y=_r(c.max(0).values) + _r(c.min(0).values)[::-1],
            fill="toself",
            line=dict(width=0),
            fillcolor=colour,
            opacity=0.25,
            legendgroup=name,
            showlegend=False,
            hoverinfo="skip",
        )
        fig.add_scatter(
            x=steps,
            y=_r(c.mean(0)),
            name=name,
            legendgroup=name,
            line=dict(color=colour, width=2),
            hovertemplate=f"{name}<br>step %{{x}}: %{{y:.3f}} (mean of {c.shape[0]} seeds)<extra></extra>",
        )
    fig.update_layout(
        title=title, xaxis_title="step", yaxis_title=y_title, height=460, legend=dict(orientation="h", y=-0.2)
    )
    return fig


def schedules_html(peak: float, plateau: int, warmup: int, total: int, points: int = 200) -> str:
    """PaLM's schedule (``plateau`` steps at ``peak``, then decay as 1/sqrt(step)) and warm-up + cosine over
    ``total`` steps, as an inline SVG chart, with the average and final rate of each underneath."""
    steps = list(range(0, total, max(total // points, 1)))
    palm = lr_curve(LRSchedule("palm", peak, constant_steps=plateau), steps)[1]
    cosine = lr_curve(LRSchedule("cosine", peak, warmup_steps=warmup, total_steps=total), steps)[1]
    svg = svg_curves(
        steps, {"PaLM": (palm.tolist(), RED), "warm-up + cosine": (cosine.tolist(), BLUE)}, (0.0, 1.05 * peak)
    )
    return (
        f"{svg}<br>average lr over {total:,} steps: PaLM {palm.mean():.2e}, cosine {cosine.mean():.2e}; "
        f"final lr: PaLM {palm[-1]:.2e}, cosine {cosine[-1]:.2e}"
    )


def lr_schedule_explorer(total_steps: int, peak: float = 1e-2, plateau: int = 10_000, warmup: int = 2_500):
    """Sliders for the peak rate, PaLM's plateau, the cosine warm-up and the run length above
    :func:`schedules_html` (a live kernel redraws it; the static page keeps the first drawing)."""
    import ipywidgets as widgets  # heavy: only a chapter that draws the explorer pays for it

    from ..book import explorer

    return explorer(
        schedules_html,
        {
            "peak": widgets.FloatLogSlider(value=peak, base=10, min=-4, max=-1, step=0.25, description="peak lr"),
            "plateau": widgets.IntSlider(value=plateau, min=1_000, max=50_000, step=1_000, description="PaLM plateau"),
            "warmup": widgets.IntSlider(value=warmup, min=0, max=25_000, step=500, description="warm-up"),
            "total": widgets.IntSlider(
                value=total_steps, min=20_000, max=max(500_000, total_steps), step=4_000, description="total steps"
            ),
        },
    )
