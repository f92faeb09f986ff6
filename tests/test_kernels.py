"""companion.kernels: closed forms, structure, extreme norms, precision and error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from companion.arch import ACTIVATIONS, MLPSpec, theory_spec
from companion.kernels import kernel, kernel_diag, kernel_fn, soft_cosine

RNG = np.random.default_rng(20250514)
X1 = RNG.normal(size=(9, 3))
X2 = 2.5 * RNG.normal(size=(6, 3))
NORMS = np.array([0.0, 1e-8, 1e-4, 1.0, 25.0, 1e4, 1e8, 1e12])
LAYERNORMS = [frozenset(), frozenset({1}), frozenset({2}), frozenset({1, 2, 3})]
DTYPES = [(np.float64, 1e-13), (np.float32, 2e-6)]


@pytest.mark.parametrize("dtype, rtol", DTYPES)
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_relu_closed_forms_of_the_notes(depth: int, dtype: type, rtol: float) -> None:
    # Paper's constants (theory_spec): Theta(x, x) = (L+1) q + sigma_b^2 L (L+1) / 2 with
    # q = |x|^2 / n0 + sigma_b^2 without LayerNorm, and (L+1) + sigma_b^2 L (L+1) / 2 with one in
    # the first layer: 3.03 for L = 2, at every input norm.
    x = np.stack([NORMS, -NORMS], axis=1)
    b2 = 0.01
    q = NORMS**2 + b2  # |x|^2 / n0 with n0 = 2
    plain = kernel_diag(x, theory_spec(depth=depth), dtype=dtype).ntk
    np.testing.assert_allclose(plain, (depth + 1) * q + b2 * depth * (depth + 1) / 2, rtol=rtol)
    with_ln = kernel(x, None, theory_spec(depth=depth, layernorm="first"), dtype=dtype).ntk
    np.testing.assert_allclose(np.diag(with_ln), (depth + 1) + b2 * depth * (depth + 1) / 2, rtol=rtol)
    if depth == 2:
        np.testing.assert_allclose(np.diag(with_ln), 3.03, rtol=rtol)


# Every activation, every kind of LayerNorm placement, without compiling all 24 combinations.
COMBINATIONS = [(a, LAYERNORMS[i % 4]) for i, a in enumerate(ACTIVATIONS)] + [
    ("relu", LAYERNORMS[2]), ("relu", LAYERNORMS[3]), ("gelu", LAYERNORMS[0]), ("leaky_relu", LAYERNORMS[0])
]


@pytest.mark.parametrize("activation, layernorm", COMBINATIONS, ids=str)
def test_symmetric_positive_semidefinite_and_transposable(activation: str, layernorm: frozenset) -> None:
    spec = MLPSpec(depth=3, activation=activation, layernorm=layernorm, sigma_w=1.2, sigma_b=0.3)
    x = np.concatenate([X1, X2])
    k = kernel(x, None, spec)
    for matrix in k:
        assert matrix.dtype == np.float64 and matrix.shape == (15, 15)
        np.testing.assert_array_equal(matrix, matrix.T)
        eigenvalues = np.linalg.eigvalsh(matrix)
        assert eigenvalues[0] > -1e-12 * eigenvalues[-1]
    # The cross kernel is the matching block, and swapping the arguments transposes it.
    cross = kernel(X1, X2, spec)
    np.testing.assert_allclose(cross.ntk, k.ntk[:9, 9:], rtol=1e-12, atol=1e-14 * np.abs(cross.ntk).max())
    np.testing.assert_allclose(kernel(X2, X1, spec).nngp, cross.nngp.T, rtol=1e-12,
                               atol=1e-14 * np.abs(cross.nngp).max())
    # The diagonal alone agrees with the matrix.
    np.testing.assert_allclose(kernel_diag(x, spec).ntk, np.diag(k.ntk), rtol=1e-12)


def test_blocks_give_the_same_matrix() -> None:
    spec = theory_spec(depth=2, activation="gelu", layernorm={2})
    x = RNG.normal(size=(23, 4))
    whole = kernel(x, x[:17], spec)
    blocked = kernel(x, x[:17], spec, block_size=5)
    # Blocks change the padding, hence XLA's vectorisation and the last bits of each entry.
    np.testing.assert_allclose(blocked.ntk, whole.ntk, rtol=1e-13, atol=1e-15 * np.abs(whole.ntk).max())
    np.testing.assert_allclose(blocked.nngp, whole.nngp, rtol=1e-13, atol=1e-15 * np.abs(whole.nngp).max())


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(
    "layernorm, dtype",
    [(LAYERNORMS[0], np.float64), (LAYERNORMS[1], np.float64), (LAYERNORMS[2], np.float64), (LAYERNORMS[2], np.float32)],
    ids=str,
)
def test_extreme_norms_stay_finite(activation: str, layernorm: frozenset, dtype: type) -> None:
    directions = RNG.normal(size=(len(NORMS), 3))
    x = NORMS[:, None] * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    spec = theory_spec(depth=3, activation=activation, layernorm=layernorm)
    k = kernel(x, np.concatenate([x, -x]), spec, dtype=dtype)
    for matrix in k:
        assert np.all(np.isfinite(matrix)), f"{activation} {set(layernorm)} {dtype}"
    homogeneous = activation not in ("tanh", "erf")
    if 1 in layernorm or (layernorm and homogeneous):
        # Thm 3.2 / C.2 (LayerNorm anywhere, degree n > 0.5) and Thm C.1 (LayerNorm first).
        assert np.max(np.abs(k.ntk)) < 50, "with a LayerNorm the kernel is bounded"
    else:
        # Without LayerNorm, or for 0-homogeneous activations with a later one, Theta(x, x) grows.
        assert np.max(np.diag(k.ntk)) > 1e10


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_positive_homogeneity_without_layernorm(activation: str) -> None:
    # Cor. E.2: Theta(lambda x, x') / lambda^(n^L) converges (n = 1), and the diagonal is
    # 2-homogeneous up to the bias terms.
    spec = theory_spec(depth=3, activation=activation)
    x, x_other = X1[:1], X1[1:4]
    ratios = [kernel(lam * x, x_other, spec).ntk / lam for lam in (1e6, 1e9, 1e12)]
    np.testing.assert_allclose(ratios[1], ratios[2], rtol=1e-6)
    np.testing.assert_allclose(ratios[0], ratios[2], rtol=1e-3)
    diagonal = kernel_diag(np.array([[1e10, 0, 0], [1e11, 0, 0]]), spec).ntk
    np.testing.assert_allclose(diagonal[1] / diagonal[0], 100.0, rtol=1e-12)


def test_float32_agrees_with_float64() -> None:
    for activation in ("relu", "gelu"):
        spec = theory_spec(depth=2, activation=activation, layernorm={2})
        k64 = kernel(X1, X2, spec)
        k32 = kernel(X1, X2, spec, dtype=np.float32)
        assert k32.ntk.dtype == np.float32
        np.testing.assert_allclose(k32.ntk, k64.ntk, rtol=2e-4)
        np.testing.assert_allclose(k32.nngp, k64.nngp, rtol=2e-4)


def test_kernel_fn_is_the_jitted_recursion() -> None:
    import jax
    import jax.numpy as jnp

    spec = theory_spec(layernorm="every")
    fn = kernel_fn(spec)
    with jax.enable_x64(True):
        nngp, ntk = fn(jnp.asarray(X1), jnp.asarray(X2))
    np.testing.assert_allclose(np.asarray(ntk), kernel(X1, X2, spec).ntk, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(nngp), kernel(X1, X2, spec).nngp, rtol=1e-14)


def test_width_and_parametrisation_are_ignored() -> None:
    spec = MLPSpec(depth=2, layernorm="second")
    reference = kernel(X1, X2, spec).ntk
    for other in (spec.replace(width=7), spec.replace(parametrisation="ntk")):
        np.testing.assert_array_equal(kernel(X1, X2, other).ntk, reference)


def test_first_layer_layernorm_kernel_is_a_function_of_the_soft_cosine() -> None:
    # Thm C.1: Theta(x, x') = Theta~(S(x, x'; sigma_b^2)). Pairs in 3-D with norms from 1e-3 to
    # 1e6 and 2-D pairs of norm sqrt(2) r built to have the same soft-cosine give the same kernel.
    spec = theory_spec(depth=2, layernorm="first")
    scales = np.logspace(-3, 6, 9)[:, None]
    x = scales * RNG.normal(size=(9, 3))
    upper = np.triu_indices(9, 1)
    s = soft_cosine(x, None, 0.01)[upper]
    theta = kernel(x, None, spec).ntk[upper]
    # x = sqrt(2) r (1, 0), x' = sqrt(2) r (cos a, sin a): S = (r^2 cos a + 0.01) / (r^2 + 0.01).
    r = 100.0
    cos_a = (s * (r**2 + 0.01) - 0.01) / r**2
    pairs = [kernel(np.sqrt(2) * r * np.array([[1.0, 0.0]]),
                    np.sqrt(2) * r * np.array([[c, np.sqrt(1 - c * c)]]), spec).ntk[0, 0] for c in cos_a]
    np.testing.assert_allclose(soft_cosine(np.sqrt(2) * r * np.array([[1.0, 0.0]]),
                                           np.sqrt(2) * r * np.stack([cos_a, np.sqrt(1 - cos_a**2)], 1), 0.01)[0],
                               s, rtol=1e-12)
    np.testing.assert_allclose(theta, pairs, rtol=1e-9)


def test_soft_cosine_properties() -> None:
    s = soft_cosine(np.concatenate([X1, X2]), None, 0.01)
    np.testing.assert_allclose(np.diag(s), 1.0, rtol=1e-15)
    assert np.all(s > -1) and np.all(s <= 1)
    # sigma^2 = 0 is the ordinary cosine (Remark C.1).
    cos = X1 @ X2.T / np.outer(np.linalg.norm(X1, axis=1), np.linalg.norm(X2, axis=1))
    np.testing.assert_allclose(soft_cosine(X1, X2, 0.0), cos, rtol=1e-12)
    # Huge norms do not overflow.
    np.testing.assert_allclose(soft_cosine(1e200 * X1[:2], None, 0.01), soft_cosine(X1[:2], None, 0.0), rtol=1e-12)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: kernel(np.ones(3), None, MLPSpec()), ValueError, r"reshape 1-D inputs with x\[:, None\]"),
        (lambda: kernel(np.ones((2, 3)), np.ones((2, 4)), MLPSpec()), ValueError, "x2 has 4 features"),
        (lambda: kernel(np.array([[np.nan]]), None, MLPSpec()), ValueError, "NaN or infinite"),
        (lambda: kernel(np.array([[np.inf]]), None, MLPSpec()), ValueError, "NaN or infinite"),
        (lambda: kernel(np.zeros((0, 2)), None, MLPSpec()), ValueError, "is empty"),
        (lambda: kernel(np.array([["a"]]), None, MLPSpec()), ValueError, "numeric array"),
        (lambda: kernel(np.ones((2, 1)), None, "relu"), TypeError, "companion.arch.MLPSpec"),
        (lambda: kernel(np.ones((2, 1)), None, MLPSpec(layernorm="first", ln_affine=True)), ValueError, "ln_affine=False"),
        (lambda: kernel(np.ones((2, 1)), None, MLPSpec(), dtype=np.float16), ValueError, "float32 or float64"),
        (lambda: kernel(np.ones((2, 1)), None, MLPSpec(), block_size=0), ValueError, "block_size"),
        (
            lambda: kernel(np.zeros((2, 1)), None, MLPSpec(layernorm="first", sigma_b=0.0, ln_eps=0.0)),
            ValueError,
            "sigma_b > 0",
        ),
        (lambda: soft_cosine(np.zeros((1, 2)), None, 0.0), ValueError, "zero input"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_unknown_activation_is_a_clear_error() -> None:
    from companion.kernels.duals import dual

    with pytest.raises(ValueError, match="no infinite-width kernel for activation 'softplus'"):
        dual("softplus")


def test_zero_input_without_bias_and_without_layernorm_is_zero() -> None:
    spec = MLPSpec(depth=2, sigma_b=0.0)
    k = kernel(np.array([[0.0, 0.0], [1.0, 2.0]]), None, spec)
    assert k.ntk[0, 0] == 0.0 and k.ntk[0, 1] == 0.0 and k.ntk[1, 1] > 0


def test_theory_spec_weight_scales() -> None:
    spec = theory_spec(depth=3, activation="relu")
    assert spec.weight_scales == (1.0, math.sqrt(2.0), math.sqrt(2.0), math.sqrt(2.0))
    assert spec.parametrisation == "ntk" and spec.ln_eps == 0.0 and spec.sigma_b == 0.1
    assert theory_spec(activation="tanh").weight_scales[1] == 1.0
    assert MLPSpec(sigma_w=1.5).weight_scales == (1.5, 1.5, 1.5)
    with pytest.raises(ValueError, match="sigma_w_input must be a positive finite number"):
        MLPSpec(sigma_w_input=0.0)
    with pytest.raises(ValueError, match="unknown activation"):
        theory_spec(activation="softplus")


@pytest.mark.parametrize("parametrisation", ["ntk", "standard"])
def test_models_scale_the_first_layer_by_sigma_w_input(parametrisation: str) -> None:
    import jax
    import jax.numpy as jnp

    from companion.models import MLP

    # With the same parameters, scaling the first layer's weights by s is scaling the input by s
    # (biases aside, which are drawn identically): compare with zero biases.
    base = MLPSpec(width=16, sigma_b=0.0, parametrisation=parametrisation, sigma_w_input=1.0)
    scaled = base.replace(sigma_w_input=3.0)
    x = jnp.asarray(X1[:4], jnp.float32)
    p1 = MLP(base).init(jax.random.key(0), x)["params"]
    p3 = MLP(scaled).init(jax.random.key(0), x)["params"]
    np.testing.assert_allclose(MLP(scaled).apply({"params": p3}, x), MLP(base).apply({"params": p1}, 3 * x), rtol=1e-5)


def test_kernel_pairs_is_the_diagonal_of_the_cross_kernel() -> None:
    from companion.kernels import kernel_pairs

    spec = theory_spec(depth=2, activation="gelu", layernorm={2})
    pairs = kernel_pairs(X1[:6], X2, spec)
    full = kernel(X1[:6], X2, spec)
    np.testing.assert_allclose(pairs.ntk, np.diag(full.ntk), rtol=1e-12)
    np.testing.assert_allclose(pairs.nngp, np.diag(full.nngp), rtol=1e-12)
    with pytest.raises(ValueError, match="same number of rows"):
        kernel_pairs(X1, X2, spec)


# Numerical range (the docstring of companion.kernels.recursion): a regression test per fault.


@pytest.mark.parametrize("dtype, norms", [(np.float32, [1e20, 1e30, 3e38]), (np.float64, [1e154, 1e200, 1e307])])
def test_layernorm_first_is_finite_and_scale_free_at_any_norm(dtype: type, norms: list[float]) -> None:
    # With a LayerNorm in the first hidden layer (and the paper's eps = 0) the kernel depends on the
    # soft-cosine only (Thm C.1): at these norms sigma_b^2 / |x|^2 is negligible, so it equals the
    # kernel at |x| = 1e12, where nothing overflows. Squaring such inputs used to give NaN.
    spec = theory_spec(depth=2, layernorm={1, 2})
    directions = X1[:4] / np.linalg.norm(X1[:4], axis=1, keepdims=True)
    reference = kernel(1e12 * directions, np.concatenate([1e12 * directions, -1e12 * directions]), spec)
    for norm in norms:
        k = kernel(norm * directions, np.concatenate([norm * directions, -norm * directions]), spec, dtype=dtype)
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(k.ntk, reference.ntk, rtol=rtol, atol=rtol, err_msg=f"|x| = {norm:g}")
        np.testing.assert_allclose(kernel_diag(norm * directions, spec, dtype=dtype).ntk, np.diag(reference.ntk),
                                   rtol=rtol)


def test_overflowing_kernels_and_inputs_are_clear_errors() -> None:
    spec = theory_spec(depth=1)  # no LayerNorm: the kernel grows like |x|^2
    with pytest.raises(ValueError, match="overflows float32.*dtype=float64"):
        kernel(np.array([[1e20], [1.0]]), None, spec, dtype=np.float32)
    with pytest.raises(ValueError, match="overflows float32"):
        kernel_diag(np.array([[1e20]]), spec, dtype=np.float32)
    with pytest.raises(ValueError, match="overflows float64"):
        kernel(np.array([[1e160]]), None, spec)
    assert np.isfinite(kernel(np.array([[1e150]]), None, spec).ntk).all()
    with pytest.raises(ValueError, match="too large for float32"):
        kernel(np.array([[1e39]]), None, theory_spec(layernorm="every"), dtype=np.float32)


def test_antipodal_large_inputs_are_within_the_stated_error() -> None:
    # x = 1e8 and -1e8, depth 1, no LayerNorm, sigma_b = 0.1: the correlation is -1 + 2e-18, which
    # float64 cannot hold, so sigma_b^2 is lost and the entry (truly about -6.4e6) comes out as
    # sigma_b^2. The docstring states the error relative to sqrt(Theta(x, x) Theta(x', x')) instead;
    # this checks that bound against the closed form, evaluated through the angle directly.
    spec = theory_spec(depth=1).replace(sigma_b=0.1)
    w, v2, b2 = spec.weight_scales[0], spec.weight_scales[1] ** 2, spec.sigma_b**2
    x = 1e8
    delta = 2 * math.atan(spec.sigma_b / (w * x))  # pi - theta, exact in this form
    q = w**2 * x**2 + b2
    t = q * (delta**3 / 3 - delta**5 / 30) / (2 * math.pi)  # q (sin d - d cos d) / 2 pi, no cancellation
    nngp = v2 * t + b2
    ntk = nngp + v2 * delta / (2 * math.pi) * (b2 - w**2 * x**2)
    k = kernel(np.array([[x], [-x]]), None, spec)
    scale = math.sqrt(k.ntk[0, 0] * k.ntk[1, 1])
    assert ntk < 0 < k.ntk[0, 1] and abs(k.ntk[0, 1] - ntk) < 1e-8 * scale
    assert abs(k.nngp[0, 1] - nngp) < 1e-8 * math.sqrt(k.nngp[0, 0] * k.nngp[1, 1])


def test_size_guard_names_the_memory_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    from companion.kernels import recursion

    monkeypatch.setattr(recursion, "available_memory", lambda: 24 * 2**30)
    with pytest.raises(MemoryError, match=r"50,000 x 50,000 points in float64 needs about 37\.\d GiB.*only 24\.0 GiB"):
        kernel(np.zeros((50_000, 1)), None, theory_spec())
    monkeypatch.setattr(recursion, "available_memory", lambda: 0)
    with pytest.raises(MemoryError, match="block_size"):
        kernel(X1, None, theory_spec(), block_size=4)
    monkeypatch.setattr(recursion, "available_memory", lambda: None)  # unknown: no guard
    assert kernel(X1, None, theory_spec()).ntk.shape == (9, 9)


def test_symmetric_kernel_is_exactly_symmetric_and_equals_the_cross_kernel() -> None:
    spec = theory_spec(depth=2, activation="gelu", layernorm={2})
    x = RNG.normal(size=(600, 4))  # several tiles and, with block_size=300, several blocks
    for block in (None, 300):
        sym = kernel(x, None, spec, block_size=block)
        cross = kernel(x, x.copy(), spec, block_size=block)
        for a, b in zip(sym, cross):
            assert np.array_equal(a, a.T) and a.flags.writeable
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15 * np.abs(b).max())


@pytest.mark.parametrize("dtype, ulps", [(np.float64, 4), (np.float32, 2)])
def test_vectorised_arccos_is_accurate_to_a_few_ulp(dtype, ulps) -> None:
    """The arc-cosine duals' ``arccos`` (a Chebyshev interpolant of ``asin``) against NumPy's, in
    float64, over uniform correlations, both branch points and the ends, where angles are tiny."""
    import jax
    import jax.numpy as jnp

    from companion.kernels.duals import arccos

    rng = np.random.default_rng(0)
    ends = np.logspace(-16 if dtype == np.float64 else -7, 0, 4000)
    rho = np.concatenate([rng.uniform(-1, 1, 200_000), 1 - ends, ends - 1, np.linspace(0.499, 0.501, 2001),
                          np.linspace(-0.501, -0.499, 2001), [-1.0, -0.5, 0.0, 0.5, 1.0]]).astype(dtype)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(arccos)(jnp.asarray(rho)), np.float64)
    want = np.arccos(rho.astype(np.float64))
    assert got[-5:] == pytest.approx([np.pi, 2 * np.pi / 3, np.pi / 2, np.pi / 3, 0.0], rel=2 * float(np.finfo(dtype).eps))
    assert np.max(np.abs(got - want) / np.spacing(want.astype(dtype))) <= ulps
