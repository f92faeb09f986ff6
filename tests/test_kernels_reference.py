"""companion.kernels against independent references: neural-tangents, adaptive quadrature, finite networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

from companion.arch import MLPSpec, theory_spec
from companion.kernels import empirical_ntk, kernel, stax_model
from companion.kernels import duals
from companion.kernels.scale_mixture import kolmogorov_rule, sigmoid_error

RNG = np.random.default_rng(7)
X1 = RNG.normal(size=(7, 3))
X2 = 3.0 * RNG.normal(size=(5, 3))


def _stax_kernels(spec: MLPSpec, x1: np.ndarray, x2: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    _, _, kernel_fn = stax_model(spec, **kwargs)
    with jax.enable_x64(True):
        k = kernel_fn(jnp.asarray(x1), jnp.asarray(x2), ("nngp", "ntk"))
        return np.asarray(k.nngp), np.asarray(k.ntk)


# neural-tangents has closed forms for these; every LayerNorm placement it supports (after Dense).
CLOSED = [
    ("relu", frozenset()), ("relu", frozenset({1})), ("relu", frozenset({2})), ("relu", frozenset({1, 2, 3})),
    ("leaky_relu", frozenset({3})), ("leaky_relu", frozenset()),
    ("gelu", frozenset({1})), ("gelu", frozenset({2, 3})),
    ("erf", frozenset()), ("erf", frozenset({2})),
]


@pytest.mark.parametrize("activation, layernorm", CLOSED, ids=str)
def test_agrees_with_neural_tangents_to_1e_10(activation: str, layernorm: frozenset) -> None:
    spec = MLPSpec(depth=3, activation=activation, layernorm=layernorm, sigma_w=1.3, sigma_w_input=0.8,
                   sigma_b=0.2, ln_eps=1e-3)
    ours = kernel(X1, X2, spec)
    nngp, ntk = _stax_kernels(spec, X1, X2)
    np.testing.assert_allclose(ours.nngp, nngp, rtol=1e-10)
    np.testing.assert_allclose(ours.ntk, ntk, rtol=1e-10)
    # Float32 kernels agree with the float64 reference to single precision.
    ours32 = kernel(X1, X2, spec, dtype=np.float32)
    np.testing.assert_allclose(ours32.ntk, ntk, rtol=1e-4)


@pytest.mark.parametrize("activation", ["silu", "tanh"])
def test_numerical_activations_agree_with_neural_tangents_quadrature(activation: str) -> None:
    # neural-tangents integrates these by Gauss-Hermite quadrature, accurate only at moderate
    # pre-activation variances: compare there (LayerNorm first keeps every variance near 1). At
    # degree 256 its quadrature has converged (degree 64: 2e-8, 128: 1e-12, 256: 5e-15 for tanh).
    spec = theory_spec(depth=2, activation=activation, layernorm={1})
    ours = kernel(X1, X2, spec)
    nngp, ntk = _stax_kernels(spec, X1, X2, numerical_degree=256)
    np.testing.assert_allclose(ours.nngp, nngp, rtol=1e-10, atol=1e-12 * np.abs(nngp).max())
    np.testing.assert_allclose(ours.ntk, ntk, rtol=1e-10, atol=1e-12 * np.abs(ntk).max())


ACTIVATIONS = {
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.01 * x), lambda x: np.where(x > 0, 1.0, 0.01)),
    "gelu": (lambda x: x * special.ndtr(x), lambda x: special.ndtr(x) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)),
    "silu": (lambda x: x * special.expit(x), lambda x: special.expit(x) * (1 + x * special.expit(-x))),
    "tanh": (np.tanh, lambda x: 1 / np.cosh(x) ** 2),
    "erf": (special.erf, lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x)),
}


def _gaussian_expectation(f, s1: float, s2: float, rho: float) -> float:
    """E[f(u) f(v)] by adaptive quadrature in (z1, z2), split along both kinks of ReLU-like f."""
    c = np.sqrt(1 - rho * rho)

    def integrand(z2: float, z1: float) -> float:
        return f(s1 * z1) * f(s2 * (rho * z1 + c * z2)) * np.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * np.pi)

    def kink(z1: float) -> float:
        return float(np.clip(-rho * z1 / c, -12, 12))

    total = 0.0
    for a, b in ((-12.0, 0.0), (0.0, 12.0)):
        total += integrate.dblquad(integrand, a, b, lambda z: -12.0, kink, epsabs=1e-14, epsrel=1e-12)[0]
        total += integrate.dblquad(integrand, a, b, kink, lambda z: 12.0, epsabs=1e-14, epsrel=1e-12)[0]
    return total


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_gaussian_expectations_match_adaptive_quadrature(name: str) -> None:
    f, df = ACTIVATIONS[name]
    with jax.enable_x64(True):
        for s1, s2, rho in [(0.3, 1.0, -0.7), (1.0, 1.0, 0.0), (2.5, 0.7, 0.6)]:
            t, tdot = duals.dual(name)(jnp.float64(s1), jnp.float64(s2), jnp.float64(rho))
            assert abs(float(t) - _gaussian_expectation(f, s1, s2, rho)) < 1e-10 * s1 * s2
            assert abs(float(tdot) - _gaussian_expectation(df, s1, s2, rho)) < 1e-10


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_gelu_and_silu_become_relu_at_large_scale(name: str) -> None:
    # Remark C.4: both are asymptotically ReLU; the expectations converge at rate 1/s.
    with jax.enable_x64(True):
        s = jnp.asarray([1e4, 1e8, 1e12])
        for rho in (-1.0, -0.4, 0.3, 1.0):
            r = jnp.full_like(s, rho)
            t, tdot = duals.dual(name)(s, s, r)
            t_relu, tdot_relu = duals.relu(s, s, r)
            assert np.all(np.abs(np.asarray((t - t_relu) / s**2)) < 1 / np.asarray(s))
            assert np.all(np.abs(np.asarray(tdot - tdot_relu)) < 1 / np.asarray(s))


def test_kolmogorov_rule_reproduces_the_sigmoid() -> None:
    k, w = kolmogorov_rule()
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-15)
    np.testing.assert_allclose(np.sum(w * k**2), np.pi**2 / 12, rtol=1e-12)  # E[K^2] of Kolmogorov
    assert sigmoid_error() < 1e-12
    assert sigmoid_error(16) < 1e-10
    with pytest.raises(ValueError, match="nodes must be an integer"):
        kolmogorov_rule(0)


def test_empirical_ntk_converges_to_the_analytic_one() -> None:
    # Finite networks of the same spec (flax, NTK parametrisation) at initialisation: the relative
    # error of the empirical NTK shrinks like width^(-1/2).
    x = np.array([[-3.0], [-0.5], [0.2], [1.0], [5.0]])
    spec = theory_spec(depth=2, layernorm={1})
    analytic = kernel(x, None, spec).ntk
    errors = {}
    for width in (64, 1024):
        empirical = empirical_ntk(x, None, spec.replace(width=width), seeds=range(6))
        assert empirical.shape == (6, 5, 5)
        errors[width] = np.mean(np.linalg.norm(empirical - analytic, axis=(1, 2))) / np.linalg.norm(analytic)
    # 16x the width: the error falls by about 4 (width^-1/2); demand at least 2.
    assert errors[1024] < errors[64] / 2, errors
    assert errors[1024] < 0.1, errors
    # Float32 networks (other random draws) approach the same kernel.
    single = empirical_ntk(x, None, spec.replace(width=1024), seeds=range(6), dtype=np.float32)
    assert single.dtype == np.float32
    error32 = np.mean(np.linalg.norm(single - analytic, axis=(1, 2))) / np.linalg.norm(analytic)
    assert error32 < 0.1, error32


def test_stax_model_builds_the_same_finite_network() -> None:
    spec = theory_spec(depth=2, layernorm={2}, width=16)
    init_fn, apply_fn, _ = stax_model(spec)
    _, params = init_fn(jax.random.key(0), (3, 2))
    assert len(params) == 6  # Dense, Dense, LayerNorm, Dense and two activations; LN has no params
    assert apply_fn(params, jnp.ones((3, 2))).shape == (3, 1)
