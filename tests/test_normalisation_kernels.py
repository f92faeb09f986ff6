"""Derived infinite-width NTK diagonals of the normalisation variants (chapter "Which normalisations...")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from companion import kernels
from companion.experiments import normalisation as experiment

CFG = experiment.config("ci")
SPECS = experiment.variants(CFG, theory=True)
X = np.array([[0.01], [0.3], [1.0], [7.0], [50.0], [1e3], [1e5]])


@pytest.mark.parametrize("name", ["no LN", "LN first", "RMSNorm first", "LN first, eps 100"])
def test_derived_diagonal_equals_the_reference_recursion(name: str) -> None:
    np.testing.assert_allclose(experiment.infinite_width_diagonal(SPECS[name], X), kernels.kernel_diag(X, SPECS[name]).ntk, rtol=1e-9)


def test_rmsnorm_has_the_layernorm_kernel_and_the_paper_constant() -> None:
    ln = experiment.infinite_width_diagonal(SPECS["LN first"], X)
    np.testing.assert_allclose(experiment.infinite_width_diagonal(SPECS["RMSNorm first"], X), ln)
    np.testing.assert_allclose(ln, 3.03, rtol=1e-6)  # (L + 1) + sigma_b^2 L (L + 1) / 2, L = 2


def test_bounded_rows_have_the_derived_constants() -> None:
    # affine: the scale and shift add (r + 1) D^L = 2; after ReLU: first layer 1 / s2 with s2 the ReLU's variance.
    np.testing.assert_allclose(experiment.infinite_width_diagonal(SPECS["LN first + affine"], X), 5.03, rtol=1e-6)
    after = 1 / experiment.RELU_VARIANCE + 2.01 + 2.02
    np.testing.assert_allclose(experiment.infinite_width_diagonal(SPECS["LN first after ReLU"], X), after, rtol=1e-6)
    eps = experiment.infinite_width_diagonal(SPECS["LN first, eps 100"], X)
    assert np.all(np.diff(eps) > 0) and np.all(eps <= 3.03), "eps only lowers the diagonal towards the constant"


def test_dyt_diagonal_grows_like_the_derived_slope() -> None:
    spec = SPECS["DyT first"]
    slope = experiment.dyt_slope(spec)
    np.testing.assert_allclose(slope, 2 * (2 * 0.5 / 3) / math.sqrt(2 * math.pi), rtol=1e-12)
    far = experiment.infinite_width_diagonal(spec, [[1e4], [1e5]])
    np.testing.assert_allclose(np.diff(far) / 9e4, slope, rtol=1e-3)
    near = experiment.infinite_width_diagonal(spec, [[0.0]])
    # At x = 0, u ~ N(0, sigma_b^2) is tiny: tanh is linear there and the DyT row is close to no LN's
    # first layer with slope alpha, plus the alpha-, gamma- and beta-gradients.
    assert 0.5 < near[0] < 2.0


def test_unsupported_rows_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="NTK parametrisation"):
        experiment.infinite_width_diagonal(experiment.variants(CFG)["LN first"], X)
    with pytest.raises(ValueError, match="no closed form"):
        experiment.first_layer_terms(SPECS["LN first after ReLU"].replace(ln_affine=True), 1.0)
    with pytest.raises(ValueError, match="not 'dyt'"):
        kernels.kernel_diag(X, SPECS["DyT first"].replace(ln_affine=False))


def test_the_kernels_refuse_what_they_do_not_cover() -> None:
    with pytest.raises(ValueError, match="LN first after act."):
        kernels.kernel_diag(X, SPECS["LN first after ReLU"])
