"""The infinite-width NNGP and NTK of the paper's fully connected networks, LayerNorm included.

Chapter "Neural tangent kernels" derives the recursion; chapters "Explosion without LayerNorm",
"One LayerNorm bounds the kernel" and "Beyond ReLU" use it. For an :class:`~companion.arch.MLPSpec`
with weight scales ``w_1, ..., w_{L+1}`` (:attr:`~companion.arch.MLPSpec.weight_scales`), bias
scale ``sigma_b`` and NTK parametrisation (Jacot et al. 2018; Arora et al. 2019; the paper's
Prop. E.2):

    Sigma^(1)(x, x') = w_1^2 x.x' / n0 + sigma_b^2,            Theta^(1) = Sigma^(1)

and for each hidden layer ``h = 1..L``, first the LayerNorm if ``h`` carries one (the paper's
App. D and F: it divides every quantity of the layer by ``sqrt((Sigma^(h)(x, x) + eps)
(Sigma^(h)(x', x') + eps))``, so the normalised pre-activations have unit variance and correlation
``rho``; at ``h = 1`` that correlation is the soft-cosine ``S(w_1 x, w_1 x'; sigma_b^2)``, Thm C.1),
then the activation and the next linear map:

    Sigma^(h+1) = w_{h+1}^2 E[phi(u) phi(v)] + sigma_b^2
    Theta^(h+1) = Sigma^(h+1) + w_{h+1}^2 E[phi'(u) phi'(v)] Theta^(h)

with ``(u, v)`` centred Gaussian with the (normalised) covariance of layer ``h``
(:mod:`companion.kernels.duals`). The scalar output has NNGP ``Sigma^(L+1)`` and NTK
``Theta^(L+1)``. With the paper's own constants (:func:`companion.arch.theory_spec`) this is the
recursion of its App. A and E.

Numerics: quantities are carried as variances, standard deviations and a correlation clipped to
``[-1, 1]``, never as products of two large numbers, so inputs with norms from 1e-8 to 1e12 (and
beyond) give finite kernels. In float64 the relative error is a few ulp on the diagonal and for
pairs whose correlations stay away from +-1 (the tests check closed forms at those norms and
neural-tangents to 1e-10). For distinct inputs whose correlation is within about 1e-8 of +-1
the ReLU-type derivative kernel ``(pi - arccos rho) / 2 pi`` has infinite slope, and rounding in
``rho`` becomes a relative error up to about 1e-8 (1e-4 in float32): a property of the kernel,
shared by every implementation. The recursion is ``jax.jit``-compiled per architecture and
evaluated in blocks of at most ``block_size`` rows and columns.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from companion.arch import MLPSpec
from companion.kernels import duals

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "Kernels",
    "kernel",
    "kernel_diag",
    "kernel_fn",
    "kernel_pairs",
    "soft_cosine",
    "check_spec",
    "as_inputs",
    "augmented_unit",
]

#: Rows and columns per compiled evaluation of :func:`kernel` (4096^2 pairs: 128 MiB per float64
#: matrix); larger inputs are processed block by block.
DEFAULT_BLOCK_SIZE = 4096


class Kernels(NamedTuple):
    """NNGP kernel ``Sigma(x1, x2)`` and NTK ``Theta(x1, x2)`` of a network's scalar output."""

    nngp: np.ndarray
    ntk: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Arch:
    """What the infinite-width kernel depends on (width and parametrisation do not)."""

    depth: int
    activation: str
    scales: tuple[float, ...]
    sigma_b: float
    layernorm: tuple[int, ...]
    ln_eps: float

    @classmethod
    def of(cls, spec: MLPSpec) -> "_Arch":
        return cls(spec.depth, spec.activation, spec.weight_scales, float(spec.sigma_b),
                   tuple(sorted(spec.layernorm)), float(spec.ln_eps))


def check_spec(spec: MLPSpec) -> None:
    """Raise a clear error unless ``spec`` describes a network these kernels cover."""
    if not isinstance(spec, MLPSpec):
        raise TypeError(f"spec must be a companion.arch.MLPSpec, got {type(spec).__name__}")
    duals.dual(spec.activation)
    # RMSNorm between a linear map and its activation *is* LayerNorm at infinite width (the mean of
    # the pre-activations across units tends to 0), so it shares these kernels.
    if spec.layernorm and spec.norm not in ("layernorm", "rmsnorm"):
        raise ValueError(
            f"the infinite-width kernels cover LayerNorm only (and RMSNorm, the same at infinite width), "
            f"not {spec.norm!r}; BatchNorm at evaluation is a fixed per-feature affine map, so use the "
            f"network without it; companion.experiments.normalisation derives DyT's kernel diagonal"
        )
    if spec.layernorm and spec.ln_affine:
        raise ValueError(
            "the infinite-width kernels cover LayerNorm without affine parameters (the paper's); "
            "use ln_affine=False"
        )
    if spec.layernorm and spec.norm_position == "post":
        raise ValueError(
            f"the infinite-width kernels cover LayerNorm between a linear map and its activation, "
            f"not {spec.label}; companion.experiments.normalisation derives its diagonal"
        )


def as_inputs(x: object, name: str = "x", n_features: int | None = None) -> np.ndarray:
    """``x`` as a finite float64 array of shape ``(n, n_features)``, or a clear ``ValueError``."""
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array of shape (n_points, n_features)") from None
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_points, n_features), got shape {array.shape}; "
            f"reshape 1-D inputs with x[:, None]"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); it needs at least one point and one feature")
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(f"{name} has {array.shape[1]} features but the other inputs have {n_features}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; the kernels need finite inputs")
    return array


def _correlation(c: jax.Array, s1: jax.Array, s2: jax.Array) -> jax.Array:
    """``c / (s1 s2)`` clipped to ``[-1, 1]``, snapped to +-1 within 8 ulp, 0 where ``s1 s2 = 0``.

    The derivative kernels of ReLU-like activations have infinite slope at ``rho = +-1``
    (``arccos``): a correlation one rounding error below 1 would move ``Theta(x, x)`` by about
    1e-8 relative in float64 (1e-4 in float32). Snapping makes identical inputs exact and changes
    pairs closer than that by no more than rounding already does.
    """
    # Reciprocals of the (vector) standard deviations: no division per pair.
    inv1 = jnp.where(s1 > 0, 1 / jnp.where(s1 > 0, s1, 1.0), 0.0)
    inv2 = jnp.where(s2 > 0, 1 / jnp.where(s2 > 0, s2, 1.0), 0.0)
    rho = jnp.clip(c * inv1 * inv2, -1.0, 1.0)
    tol = 8 * jnp.finfo(rho.dtype).eps
    return jnp.where(jnp.abs(rho) > 1 - tol, jnp.sign(rho), rho)


def _propagate(
    q1: jax.Array, q2: jax.Array, c: jax.Array, arch: _Arch, diagonal: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Run the recursion from the first layer's variances ``q1, q2`` and covariance ``c``.

    ``diagonal=True`` computes ``x = x'`` (``q1 = q2 = c``) with the correlation exactly 1.
    """
    dual = duals.dual(arch.activation)
    b2 = arch.sigma_b**2
    ntk = c
    for h in range(1, arch.depth + 1):
        if h in arch.layernorm:
            inv1, inv2 = 1 / jnp.sqrt(q1 + arch.ln_eps), 1 / jnp.sqrt(q2 + arch.ln_eps)
            c, ntk = c * inv1 * inv2, ntk * inv1 * inv2
            q1, q2 = q1 * inv1 * inv1, q2 * inv2 * inv2
        s1, s2 = jnp.sqrt(q1), jnp.sqrt(q2)
        t, tdot, t1, t2 = _expectations(dual, s1, s2, c, diagonal)
        w2 = arch.scales[h] ** 2
        c = w2 * t + b2
        ntk = c + w2 * tdot * ntk
        q1, q2 = w2 * t1 + b2, w2 * t2 + b2
    return c, ntk


def _expectations(
    dual: duals.Dual, s1: jax.Array, s2: jax.Array, c: jax.Array, diagonal: bool
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``E[phi(u) phi(v)]``, ``E[phi'(u) phi'(v)]`` and ``E[phi(u)^2]``, ``E[phi(v)^2]`` of one layer.

    For closed forms, three elementwise calls that XLA fuses. For the quadrature activations (SiLU,
    tanh), whose dual is a loop, all pairs and both diagonals go through one call on flattened
    arrays: one compiled loop per layer instead of three, which roughly halves compile time.
    """
    if diagonal:
        t, tdot = dual(s1, s1, jnp.ones_like(s1))
        return t, tdot, t, t
    rho = _correlation(c, s1, s2)
    if not getattr(dual, "is_quadrature", False):
        t, tdot = dual(s1, s2, rho)
        return t, tdot, dual(s1, s1, jnp.ones_like(s1))[0], dual(s2, s2, jnp.ones_like(s2))[0]
    shape = c.shape
    m, n1 = c.size, s1.size
    flat1 = jnp.concatenate([jnp.broadcast_to(s1, shape).ravel(), s1.ravel(), s2.ravel()])
    flat2 = jnp.concatenate([jnp.broadcast_to(s2, shape).ravel(), s1.ravel(), s2.ravel()])
    ones = jnp.ones(s1.size + s2.size, rho.dtype)
    t, tdot = dual(flat1, flat2, jnp.concatenate([rho.ravel(), ones]))
    return (t[:m].reshape(shape), tdot[:m].reshape(shape),
            t[m : m + n1].reshape(s1.shape), t[m + n1 :].reshape(s2.shape))


def _first_layer(x1: jax.Array, x2: jax.Array, arch: _Arch) -> tuple[jax.Array, jax.Array, jax.Array]:
    w2 = arch.scales[0] ** 2 / x1.shape[1]
    b2 = arch.sigma_b**2
    q1 = w2 * jnp.sum(x1 * x1, axis=1) + b2
    q2 = w2 * jnp.sum(x2 * x2, axis=1) + b2
    c = w2 * jnp.matmul(x1, x2.T, precision=jax.lax.Precision.HIGHEST) + b2
    return q1[:, None], q2[None, :], c


@functools.partial(jax.jit, static_argnums=2)
def _matrix(x1: jax.Array, x2: jax.Array, arch: _Arch) -> tuple[jax.Array, jax.Array]:
    return _propagate(*_first_layer(x1, x2, arch), arch)


@functools.partial(jax.jit, static_argnums=2)
def _paired(x1: jax.Array, x2: jax.Array, arch: _Arch) -> tuple[jax.Array, jax.Array]:
    w2 = arch.scales[0] ** 2 / x1.shape[1]
    b2 = arch.sigma_b**2
    q1 = w2 * jnp.sum(x1 * x1, axis=1) + b2
    q2 = w2 * jnp.sum(x2 * x2, axis=1) + b2
    return _propagate(q1, q2, w2 * jnp.sum(x1 * x2, axis=1) + b2, arch)


@functools.partial(jax.jit, static_argnums=1)
def _diagonal(x: jax.Array, arch: _Arch) -> tuple[jax.Array, jax.Array]:
    q = arch.scales[0] ** 2 / x.shape[1] * jnp.sum(x * x, axis=1) + arch.sigma_b**2
    return _propagate(q, q, q, arch, diagonal=True)


def _padded(n: int, block: int) -> int:
    """Pad ``n <= block`` rows to a few sizes so that repeated calls reuse compiled programs."""
    size = -(-n // 256) * 256 if n > 256 else max(64, 1 << (n - 1).bit_length())
    return min(size, block)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return x
    return np.concatenate([x, np.repeat(x[:1], rows - x.shape[0], axis=0)])


def _dtype(dtype: object) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_degenerate(x: np.ndarray, spec: MLPSpec) -> None:
    if spec.layernorm and spec.sigma_b == 0 and spec.ln_eps == 0 and np.any(np.all(x == 0, axis=1)):
        raise ValueError(
            "with sigma_b = 0 and no LayerNorm epsilon a zero input has zero pre-activations, which "
            "LayerNorm cannot normalise; use sigma_b > 0 (the paper's theory requires it)"
        )


def kernel(
    x1: object,
    x2: object | None,
    spec: MLPSpec,
    *,
    block_size: int | None = None,
    dtype: object = np.float64,
) -> Kernels:
    """Infinite-width NNGP and NTK matrices of the network ``spec`` between ``x1`` and ``x2``.

    Parameters
    ----------
    x1, x2:
        Inputs of shapes ``(n1, d)`` and ``(n2, d)``; ``x2=None`` means ``x1`` (the result is then
        exactly symmetric).
    spec:
        The architecture: depth, activation, weight scales (:attr:`MLPSpec.weight_scales`),
        ``sigma_b``, LayerNorm positions and ``ln_eps``. ``width`` and ``parametrisation`` are
        ignored: this is the infinite-width kernel in the NTK parametrisation (the paper's theory).
        Use :func:`companion.arch.theory_spec` for the paper's own constants.
    block_size:
        Largest number of rows and columns evaluated at once (default
        :data:`DEFAULT_BLOCK_SIZE`); lower it to save memory.
    dtype:
        ``float64`` (default) or ``float32`` (faster on accelerators; relative error about 1e-6,
        up to 1e-4 for nearly identical inputs).

    Returns
    -------
    Kernels
        ``(nngp, ntk)``, NumPy arrays of shape ``(n1, n2)`` and the requested dtype.
    """
    check_spec(spec)
    a = as_inputs(x1, "x1")
    b = a if x2 is None else as_inputs(x2, "x2", a.shape[1])
    dt = _dtype(dtype)
    block = DEFAULT_BLOCK_SIZE if block_size is None else block_size
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    _check_degenerate(a, spec)
    _check_degenerate(b, spec)
    arch = _Arch.of(spec)
    nngp = np.empty((a.shape[0], b.shape[0]), dt)
    ntk = np.empty_like(nngp)
    with jax.enable_x64(dt == np.float64):
        for i in range(0, a.shape[0], block):
            rows = a[i : i + block]
            pr = _padded(rows.shape[0], block)
            xa = jnp.asarray(_pad_rows(rows, pr), dt)
            for j in range(0, b.shape[0], block):
                cols = b[j : j + block]
                pc = _padded(cols.shape[0], block)
                k_nngp, k_ntk = _matrix(xa, jnp.asarray(_pad_rows(cols, pc), dt), arch)
                nngp[i : i + rows.shape[0], j : j + cols.shape[0]] = np.asarray(k_nngp)[: rows.shape[0], : cols.shape[0]]
                ntk[i : i + rows.shape[0], j : j + cols.shape[0]] = np.asarray(k_ntk)[: rows.shape[0], : cols.shape[0]]
    if x2 is None:  # exactly symmetric, in place (numpy buffers the overlapping transpose)
        for matrix in (nngp, ntk):
            np.add(matrix, matrix.T, out=matrix)
            matrix *= 0.5
    return Kernels(nngp, ntk)


def kernel_diag(x: object, spec: MLPSpec, *, dtype: object = np.float64) -> Kernels:
    """The diagonals ``Sigma(x_i, x_i)`` and ``Theta(x_i, x_i)``, shape ``(n,)``, without the full matrix.

    For these networks the diagonal depends on ``x`` only through ``|x|^2 / n0`` (chapter "One
    LayerNorm bounds the kernel", Thm 3.2 and Cor. C.2).
    """
    check_spec(spec)
    a = as_inputs(x, "x")
    dt = _dtype(dtype)
    _check_degenerate(a, spec)
    arch = _Arch.of(spec)
    n = a.shape[0]
    padded = _padded(n, 2**62)
    with jax.enable_x64(dt == np.float64):
        nngp, ntk = _diagonal(jnp.asarray(_pad_rows(a, padded), dt), arch)
        return Kernels(np.asarray(nngp)[:n], np.asarray(ntk)[:n])


def kernel_pairs(x1: object, x2: object, spec: MLPSpec, *, dtype: object = np.float64) -> Kernels:
    """``Sigma(x1_i, x2_i)`` and ``Theta(x1_i, x2_i)`` for matching rows, shape ``(n,)``: the diagonal of
    ``kernel(x1, x2)`` without the rest of the matrix."""
    check_spec(spec)
    a = as_inputs(x1, "x1")
    b = as_inputs(x2, "x2", a.shape[1])
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x1 and x2 must have the same number of rows, got {a.shape[0]} and {b.shape[0]}")
    dt = _dtype(dtype)
    _check_degenerate(a, spec)
    _check_degenerate(b, spec)
    n = a.shape[0]
    padded = _padded(n, 2**62)
    with jax.enable_x64(dt == np.float64):
        nngp, ntk = _paired(jnp.asarray(_pad_rows(a, padded), dt), jnp.asarray(_pad_rows(b, padded), dt), _Arch.of(spec))
        return Kernels(np.asarray(nngp)[:n], np.asarray(ntk)[:n])


def kernel_fn(spec: MLPSpec) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """A jit-compiled ``f(x1, x2) -> (nngp, ntk)`` on JAX arrays, for use inside JAX code.

    No validation, blocking or padding: the caller passes finite 2-D arrays and, for float64,
    enables x64 (``with jax.enable_x64(True):``). :func:`kernel` is the checked entry point.
    """
    check_spec(spec)
    arch = _Arch.of(spec)

    def fn(x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _matrix(x1, x2, arch)

    return fn


def soft_cosine(x1: object, x2: object | None = None, sigma2: float = 0.01) -> np.ndarray:
    """The soft-cosine similarity ``S(x, x'; sigma^2)`` of the paper's Def. C.1, shape ``(n1, n2)``.

    ``S = (x.x'/n0 + sigma^2) / sqrt((|x|^2/n0 + sigma^2)(|x'|^2/n0 + sigma^2))``, the cosine of the
    augmented vectors ``(x / sqrt(n0), sigma)`` and ``(x' / sqrt(n0), sigma)``. By Thm C.1 the NTK
    of a network that starts with Linear -> LayerNorm depends on its inputs only through ``S``
    (chapter "One LayerNorm bounds the kernel").
    """
    a = as_inputs(x1, "x1")
    b = a if x2 is None else as_inputs(x2, "x2", a.shape[1])
    if not (np.isfinite(sigma2) and sigma2 >= 0):
        raise ValueError(f"sigma2 must be a finite non-negative number, got {sigma2!r}")
    n0 = a.shape[1]
    # Unit augmented vectors (x / sqrt(n0), sigma) / norm, computed without squaring large numbers.
    ua, ub = augmented_unit(a, sigma2), augmented_unit(b, sigma2)
    return np.clip(ua @ ub.T, -1.0, 1.0)


def augmented_unit(x: np.ndarray, sigma2: float) -> np.ndarray:
    """Rows ``(x / sqrt(n0), sigma)`` scaled to unit length: the soft-cosine is their inner product."""
    augmented = np.concatenate([x / np.sqrt(x.shape[1]), np.full((x.shape[0], 1), np.sqrt(sigma2))], axis=1)
    largest = np.max(np.abs(augmented), axis=1, keepdims=True)
    if np.any(largest == 0):
        raise ValueError("the soft-cosine of a zero input is undefined when sigma2 = 0")
    scaled = augmented / largest  # entries in [-1, 1]: the norm cannot overflow
    return scaled / np.linalg.norm(scaled, axis=1, keepdims=True)
