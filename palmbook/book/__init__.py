"""What a chapter needs besides the model, written once: ``from palmbook.book import setup; P = setup()``.

:func:`setup` prepares a notebook for the book, the same way in Jupyter, in Colab and under the tests:

* plotly figures render as ``plotly_mimetype+palmbook`` (:mod:`palmbook.book.renderer`): drawn by JupyterLab,
  VS Code and the static book alike. In Colab the renderer is left alone: Colab's own one must stay.
* ``torch``, ``numpy`` and ``random`` are seeded, so a chapter gives the same numbers on every run;
* the run profile (``PALMBOOK_PROFILE`` = smoke / cpu / gpu, :mod:`palmbook.book.profiles`) and its device are
  picked and printed with the versions.

It installs nothing: in Colab the chapter's hidden first cell installs palmbook before this runs. The rest of a
chapter's plumbing lives beside it, so that a code cell shows the idea and not the scaffolding:

    machine(P.device)                  what a timing ran on, one line (palmbook.runtime.describe_machine)
    show_source(fn)                    a function's code without its docstring, comments kept (source.py)
    interleaved / paired_ratio / noise_band / rates    timing on a shared machine (timing.py)
    explorer / pre_html / bar_html     ipywidgets explorers and their HTML (widgets.py)
    book_data(name)                    a file a command wrote for a chapter, also in Colab (data.py)

``import palmbook`` imports this package (the run profiles live here), so nothing heavy is imported at the top:
plotly's renderer is loaded by :func:`setup` / :func:`use_book_renderer`, ipywidgets by :func:`explorer`.
"""

from __future__ import annotations

import dataclasses
import platform
import random
from typing import Any

import numpy as np
import torch

from ..runtime import describe_machine
from .colab import in_colab
from .data import book_data
from .edition import installed_version
from .profiles import ENV_PROFILE, PROFILES, Profile, default_profile_name, profile
from .source import show_source, source
from .timing import NoiseBand, Spread, Stopwatch, interleaved, medians, noise_band, paired_ratio, rates
from .widgets import bar_html, explorer, pre_html

__all__ = [
    "BOOK_RENDERER",
    "ENV_PROFILE",
    "PROFILES",
    "NoiseBand",
    "Profile",
    "Spread",
    "Stopwatch",
    "bar_html",
    "book_data",
    "default_profile_name",
    "explorer",
    "in_colab",
    "interleaved",
    "machine",
    "medians",
    "noise_band",
    "paired_ratio",
    "pre_html",
    "profile",
    "rates",
    "seed_everything",
    "setup",
    "show_source",
    "source",
    "use_book_renderer",
]

# What a chapter prints beside a timing: the GPU, or the CPU with threads, cores and load (one home: runtime.py).
machine = describe_machine


def __getattr__(name: str) -> Any:
    # The renderer imports plotly's renderer machinery (a fifth of a second): loaded when first asked for, so that
    # `import palmbook` (which imports this package for its run profiles) stays free of it.
    if name in ("BOOK_RENDERER", "use_book_renderer"):
        from . import renderer

        return getattr(renderer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(name: str | None = None, *, seed: int | None = None, verbose: bool = True) -> Profile:
    """Prepare a chapter: plotly renderer, seeds, profile and device; print what was chosen.

    Args:
        name: profile name (``"smoke"``, ``"cpu"``, ``"gpu"``); ``None`` reads ``$PALMBOOK_PROFILE``
            (default: ``gpu`` with CUDA, else ``cpu``).
        seed: overrides the profile's seed (0).
        verbose: print versions, device and profile (chapters keep this on so every run says what it ran).

    Returns:
        The :class:`~palmbook.book.profiles.Profile` the chapter reads its sizes from.
    """
    prof = profile(name)
    if seed is not None:
        prof = dataclasses.replace(prof, seed=seed)
    if not in_colab():
        from .renderer import use_book_renderer

        use_book_renderer()
    seed_everything(prof.seed)
    if verbose:
        print(_summary(prof))
    return prof


def _summary(prof: Profile) -> str:
    import plotly

    if prof.device.startswith("cuda") and torch.cuda.is_available():
        where = f"{prof.device} ({torch.cuda.get_device_name(torch.device(prof.device))})"
    else:
        where = f"{prof.device} ({torch.get_num_threads()} threads)"
    return (
        f"palmbook {installed_version()} | torch {torch.__version__} | plotly {plotly.__version__} | "
        f"Python {platform.python_version()}\n"
        f"device {where} | {prof}\n"
        f"(set {ENV_PROFILE}=smoke|cpu|gpu before starting the kernel to change the profile)"
    )
