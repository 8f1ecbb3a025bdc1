"""Fitting a scaling law with an irreducible term: L(N) = E + A / N^alpha.

Kaplan et al. (2020, arXiv 2001.08361) fit loss against parameters N (or compute C) as a pure power law;
Hoffmann et al. (2022, "Chinchilla", arXiv 2203.15556) add the constant E, the loss no model size removes (the
entropy of the text, plus whatever the data budget leaves). With E the curve bends away from a straight line on
log-log axes, which a handful of small models already show.

The fit needs no optimiser library: for a fixed alpha the model is linear in (E, A), so least squares gives them
in closed form, and alpha is found by a scan over a log-spaced grid refined by golden-section search on the
residual. Residuals are relative, ``(prediction - L) / L``, so every point counts the same whether its loss is
5.7 or 4.6 nats. E and A are kept >= 0 (a negative irreducible loss has no meaning); when the unconstrained E
would be negative the fit sets E = 0 and says so through ``E == 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["PowerLawFit", "fit_power_law", "power_law"]


def power_law(n: np.ndarray | Sequence[float] | float, E: float, A: float, alpha: float) -> np.ndarray:
    """L(N) = E + A * N^(-alpha), elementwise."""
    return E + A * np.asarray(n, dtype=float) ** (-alpha)


class PowerLawFit(NamedTuple):
    """A fitted L(N) = E + A / N^alpha and its root-mean-square relative residual ``rel_rmse``.

    ``var`` is the size's letter in the printed formula: "N" for parameters, "C" for compute (FLOPs), "D" for tokens.
    """

    E: float
    A: float
    alpha: float
    rel_rmse: float
    var: str = "N"

    def __call__(self, n: np.ndarray | Sequence[float] | float) -> np.ndarray:
        return power_law(n, self.E, self.A, self.alpha)

    def __str__(self) -> str:
        v = self.var
        return (
            f"L({v}) = {self.E:.3f} + {self.A:.4g} / {v}^{self.alpha:.3f}  (rms relative residual {self.rel_rmse:.2%})"
        )


def _solve_linear(x: np.ndarray, y: np.ndarray, w: np.ndarray, irreducible: bool) -> tuple[float, float, float]:
    """Weighted least squares of y ~ E + A x with E, A >= 0; returns (E, A, sum of squared weighted residuals)."""
    candidates = []
    if irreducible:
        design = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
        (E, A), *_ = np.linalg.lstsq(design, y * w, rcond=None)
        if E >= 0 and A >= 0:
            candidates.append((E, A))
        candidates.append((max(float(np.sum(w**2 * y) / np.sum(w**2)), 0.0), 0.0))  # A = 0: a flat line
    A0 = float(np.sum(w**2 * x * y) / np.sum(w**2 * x * x))  # E = 0: a pure power law
    candidates.append((0.0, max(A0, 0.0)))
    best = min(candidates, key=lambda ea: float(np.sum((w * (ea[0] + ea[1] * x - y)) ** 2)))
    E, A = float(best[0]), float(best[1])
    return E, A, float(np.sum((w * (E + A * x - y)) ** 2))


def fit_power_law(
    n: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    irreducible: bool = True,
    alpha_range: tuple[float, float] = (1e-3, 3.0),
    var: str = "N",
) -> PowerLawFit:
    """Fit L(N) = E + A / N^alpha to points (N, L); N may be parameters or compute (FLOPs).

    Args:
        n: (k,) positive sizes. Rescaled internally by their geometric mean, so 1e3 and 1e21 fit equally well.
        loss: (k,) positive losses.
        irreducible: fit E (default); False fixes E = 0, Kaplan et al.'s pure power law.
        alpha_range: the exponents searched.
        var: the size's letter when the fit is printed: "N" (parameters, the default), "C" for compute, ...

    Returns:
        A :class:`PowerLawFit` in the units of ``n`` (``fit(n)`` predicts the loss).

    Raises:
        ValueError: fewer points than parameters, non-positive values, or mismatched lengths.
    """
    N = np.asarray(n, dtype=float).reshape(-1)
    L = np.asarray(loss, dtype=float).reshape(-1)
    need = 3 if irreducible else 2
    if N.shape != L.shape:
        raise ValueError(f"n and loss need one value per model; got {N.size} sizes and {L.size} losses")
    if N.size < need:
        raise ValueError(f"fitting {need} parameters needs at least {need} points; got {N.size}: train more sizes")
    if not (np.all(np.isfinite(N)) and np.all(np.isfinite(L)) and np.all(N > 0) and np.all(L > 0)):
        raise ValueError("sizes and losses must be finite and positive (a loss of NaN means a run diverged)")
    scale = float(np.exp(np.mean(np.log(N))))
    u, w = N / scale, 1.0 / L  # relative residuals: weight each point by 1 / L

    def sse(alpha: float) -> float:
        return _solve_linear(u ** (-alpha), L, w, irreducible)[2]

    lo, hi = math.log(alpha_range[0]), math.log(alpha_range[1])
    grid = np.linspace(lo, hi, 400)
    errors = [sse(math.exp(a)) for a in grid]
    i = int(np.argmin(errors))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):  # golden-section search between the grid neighbours of the best point
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if sse(math.exp(c)) < sse(math.exp(d)):
            b = d
        else:
            a = c
    alpha = math.exp((a + b) / 2)
    E, A, err = _solve_linear(u ** (-alpha), L, w, irreducible)
    # back to the caller's units: A u^-alpha = A (N / scale)^-alpha = (A scale^alpha) N^-alpha
    return PowerLawFit(E, A * scale**alpha, alpha, math.sqrt(err / N.size), var)
