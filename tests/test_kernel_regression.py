"""NTK regression (the trained network's mean) and the output bound of Thm 3.3."""

from __future__ import annotations

import math

import numpy as np
import pytest

from companion.arch import MLPSpec, theory_spec
from companion.kernels import diagonal_sup, kernel, kernel_diag, ntk_regression, output_bound

RNG = np.random.default_rng(3)
X = np.sort(RNG.uniform(-3, 3, size=12))[:, None]
Y = np.sin(2 * X[:, 0])
FAR = np.concatenate([-np.logspace(-1, 8, 40), np.logspace(-1, 8, 40)])[:, None]


def test_regression_is_the_kernel_solve_and_interpolates() -> None:
    spec = theory_spec(layernorm="first")
    fit = ntk_regression(X, Y, np.concatenate([X, FAR]), spec)
    assert fit.jitter == 0.0 and fit.mean.shape == (len(X) + len(FAR),)
    gram = kernel(X, None, spec).ntk
    np.testing.assert_allclose(fit.alpha, np.linalg.solve(gram, Y), rtol=1e-8)
    np.testing.assert_allclose(fit.mean[: len(X)], Y, atol=1e-8)
    # A column target gives the same answer.
    np.testing.assert_allclose(ntk_regression(X, Y[:, None], FAR, spec).mean, fit.mean[len(X):], rtol=1e-12)


def test_notes_posterior_means_far_away() -> None:
    # An independent numpy implementation (notes, section 5.3) found, for 20 points of sin(2x) on
    # [-3, 3] and x = -1000, -100, -10, 0.1, 10, 100, 1000, these posterior means (3 digits).
    x = np.linspace(-3, 3, 20)[:, None]
    y = np.sin(2 * x[:, 0])
    test = np.array([-1000.0, -100.0, -10.0, 0.1, 10.0, 100.0, 1000.0])[:, None]
    plain = ntk_regression(x, y, test, theory_spec()).mean
    np.testing.assert_allclose(plain, [160.4, 15.9, 1.41, 0.21, -1.41, -15.9, -160.4], rtol=5e-3, atol=5e-3)
    with_ln = ntk_regression(x, y, test, theory_spec(layernorm="first")).mean
    np.testing.assert_allclose(with_ln, [0.307, 0.307, 0.299, 0.266, -0.299, -0.307, -0.307], atol=1e-3)


def test_duplicate_inputs_get_a_reported_jitter_or_a_clear_error() -> None:
    spec = theory_spec(layernorm="first")
    x = np.concatenate([X, X[:3]])
    y = np.concatenate([Y, Y[:3]])
    fit = ntk_regression(x, y, FAR, spec)
    assert fit.jitter > 0
    with pytest.raises(ValueError, match="numerically singular"):
        ntk_regression(x, y, FAR, spec, jitter=0.0)
    explicit = ntk_regression(x, y, FAR, spec, jitter=1e-6)
    assert explicit.jitter == 1e-6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"y_train": np.zeros(3)}, r"targets must have shape \(12,\)"),
        ({"y_train": np.full(12, np.nan)}, "NaN or infinite"),
        ({"x_test": np.ones((2, 3))}, "x_test has 3 features"),
        ({"jitter": -1.0}, "jitter must be"),
    ],
)
def test_bad_regression_arguments(kwargs: dict, message: str) -> None:
    args = {"x_train": X, "y_train": Y, "x_test": FAR, "spec": theory_spec()} | kwargs
    with pytest.raises(ValueError, match=message):
        ntk_regression(**args)


@pytest.mark.parametrize("layernorm", ["first", "second", "every"])
def test_output_bound_holds_and_its_chain_is_ordered(layernorm: str) -> None:
    spec = theory_spec(layernorm=layernorm)
    result = output_bound(X, Y, spec)
    mean = ntk_regression(X, Y, np.concatenate([X, FAR]), spec).mean
    # C is the largest diagonal: never exceeded, and attained up to the search's tolerance.
    diagonal = kernel_diag(np.concatenate([X, FAR, [[0.0]]]), spec).ntk
    assert np.all(diagonal <= result.C * (1 + 1e-12))
    assert np.max(np.abs(mean)) <= result.rkhs_bound <= result.bound <= result.max_bound
    np.testing.assert_allclose(result.y_norm, np.linalg.norm(Y))
    np.testing.assert_allclose(result.lambda_min, np.linalg.eigvalsh(kernel(X, None, spec).ntk)[0])
    np.testing.assert_allclose(result.bound, math.sqrt(result.C / result.lambda_min) * result.y_norm)


def test_constant_for_layernorm_first_is_the_closed_form() -> None:
    np.testing.assert_allclose(diagonal_sup(theory_spec(layernorm="first")), 3.03, rtol=1e-13)
    # For a later LayerNorm the diagonal varies with |x| and its supremum is found numerically.
    later = theory_spec(layernorm="second")
    r = np.logspace(-6, 12, 400)
    assert diagonal_sup(later) >= np.max(kernel_diag(np.sqrt(r)[:, None], later).ntk)


def test_no_layernorm_has_no_finite_bound() -> None:
    result = output_bound(X, Y, theory_spec())
    assert math.isinf(result.C) and math.isinf(result.bound)
    assert math.isinf(diagonal_sup(MLPSpec(activation="tanh")))


def test_output_bound_rejects_a_singular_gram_matrix() -> None:
    x = np.concatenate([X, X[:1]])
    with pytest.raises(ValueError, match="Assumption 3.3"):
        output_bound(x, np.concatenate([Y, Y[:1]]), theory_spec(layernorm="first"))
