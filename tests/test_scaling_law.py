"""Fitting L(N) = E + A / N^alpha: recovers known laws, in any units, and refuses fits it cannot make."""

import numpy as np
import pytest

from palmbook.scaling_law import fit_power_law, power_law


@pytest.mark.parametrize(
    "E, A, alpha, sizes",
    [
        (1.69, 406.4, 0.34, np.logspace(4, 8, 6)),  # Chinchilla's parameter term, on book-sized models
        (4.2, 30.0, 0.076, np.logspace(4.5, 6.8, 6)),  # Kaplan's exponent, a small range
        (2.0, 1e3, 0.05, np.logspace(12, 18, 5)),  # compute (FLOPs) instead of parameters
        (0.5, 3.0, 1.2, np.logspace(1, 3, 7)),
    ],
)
def test_fit_recovers_the_parameters_of_noiseless_data(E, A, alpha, sizes):
    fit = fit_power_law(sizes, power_law(sizes, E, A, alpha))
    assert pytest.approx(E, rel=1e-3) == fit.E and fit.alpha == pytest.approx(alpha, rel=1e-3)
    assert pytest.approx(A, rel=1e-2) == fit.A and fit.rel_rmse < 1e-6
    assert fit(sizes) == pytest.approx(power_law(sizes, E, A, alpha), rel=1e-6)


def test_fit_recovers_the_exponent_through_half_a_percent_of_noise():
    sizes = np.logspace(4, 8, 8)
    rng = np.random.default_rng(0)
    alphas = []
    for _ in range(20):
        losses = power_law(sizes, 1.7, 60.0, 0.3) * np.exp(rng.normal(0, 0.005, sizes.size))
        alphas.append(fit_power_law(sizes, losses).alpha)
    assert abs(np.median(alphas) - 0.3) < 0.03


def test_without_the_irreducible_term_it_fits_a_pure_power_law():
    sizes = np.logspace(3, 7, 5)
    fit = fit_power_law(sizes, 12.0 * sizes**-0.1, irreducible=False)
    assert fit.E == 0 and fit.alpha == pytest.approx(0.1, rel=1e-3) and pytest.approx(12.0, rel=1e-3) == fit.A


def test_the_printed_formula_names_the_size_it_was_fitted_against():
    sizes = np.logspace(3, 7, 5)
    assert str(fit_power_law(sizes, 12.0 * sizes**-0.1)).startswith("L(N) = ")
    against_compute = str(fit_power_law(6 * sizes, 12.0 * sizes**-0.1, var="C"))
    assert against_compute.startswith("L(C) = ") and "/ C^0.100" in against_compute


def test_irreducible_term_is_never_negative():
    sizes = np.logspace(3, 7, 6)
    fit = fit_power_law(sizes, 12.0 * sizes**-0.1 - 0.3)  # an exact fit would need E = -0.3
    assert fit.E >= 0 and fit.A > 0


@pytest.mark.parametrize(
    "n, loss, message",
    [
        ([1e4, 1e5], [5.0, 4.0], "at least 3 points"),
        ([1e4, 1e5, 1e6], [5.0, 4.0], "one value per model"),
        ([1e4, -1e5, 1e6], [5.0, 4.0, 3.0], "finite and positive"),
        ([1e4, 1e5, 1e6], [5.0, float("nan"), 3.0], "finite and positive"),
    ],
)
def test_bad_inputs_are_refused_with_the_fix(n, loss, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(n, loss)
