r"""The infinite-width NNGP and NTK of the paper's fully connected networks, LayerNorm included.

Chapter "Neural tangent kernels" derives the recursion; chapters "Explosion without LayerNorm",
"One LayerNorm bounds the kernel" and "Beyond ReLU" use it. For an :class:`~companion.arch.MLPSpec`
with weight scales $w_1, \dots, w_{L+1}$ (:attr:`~companion.arch.MLPSpec.weight_scales`), bias
scale $\sigma_b$ and NTK parametrisation (Jacot et al. 2018; Arora et al. 2019; the paper's
Prop. E.2):

.. math::

    \Sigma^{(1)}(x, x') = w_1^2 \, x \cdot x' / n_0 + \sigma_b^2, \qquad \Theta^{(1)} = \Sigma^{(1)}

and for each hidden layer $h = 1, \dots, L$, first the LayerNorm if $h$ carries one (the paper's
App. D and F: it divides every quantity of the layer by
$\sqrt{(\Sigma^{(h)}(x, x) + \epsilon)(\Sigma^{(h)}(x', x') + \epsilon)}$, so the normalised
pre-activations have unit variance and correlation $\rho$; at $h = 1$ that correlation is the
soft-cosine $S(w_1 x, w_1 x'; \sigma_b^2)$, Thm C.1), then the activation and the next linear map:

.. math::

    \Sigma^{(h+1)} &= w_{h+1}^2 \, \E[\phi(u) \phi(v)] + \sigma_b^2 \\
    \Theta^{(h+1)} &= \Sigma^{(h+1)} + w_{h+1}^2 \, \E[\phi'(u) \phi'(v)] \, \Theta^{(h)}

with $(u, v)$ centred Gaussian with the (normalised) covariance of layer $h$
(:mod:`companion.kernels.duals`). The scalar output has NNGP $\Sigma^{(L+1)}$ and NTK
$\Theta^{(L+1)}$. With the paper's own constants (:func:`companion.arch.theory_spec`) this is the
recursion of its App. A and E.

Numerics. The first layer divides each input by a power of two (exactly) before anything is
squared, and later layers carry variances, standard deviations and a correlation clipped to
``[-1, 1]``, never products of two large numbers. So with a LayerNorm in the first hidden layer the
kernels are finite for every finite input of the dtype (the result depends only on the soft-cosine);
without one they grow like $\|x\|^2$ and a :class:`ValueError` says so when they overflow the dtype
(from $\|x\|$ of about $10^{154}$ in float64 and $10^{19}$ in float32). Accuracy in float64: a few ulp
on the diagonal and for pairs whose correlations stay away from $\pm 1$ (the tests check closed forms
and neural-tangents to 1e-10). Near $\pm 1$ the error is bounded relative to the entry's natural scale
$\sqrt{K(x, x) K(x', x')}$, not to the entry: the correlation is rounded to about 1e-16 (1e-7 in
float32), and the ReLU-type derivative kernel $(\pi - \arccos \rho) / 2\pi$ has infinite slope at
$\rho = \pm 1$, so the error is up to about 1e-8 (1e-4 in float32) of that scale. This is a property
of computing from the correlation, shared by every implementation; for distinct inputs within 1e-8
of each other, or antipodal inputs so large that $\sigma_b^2$ is below the rounding of $x \cdot x'$
(e.g. $x = 10^8$, $x' = -10^8$: an entry of about $-6 \cdot 10^6$ against a scale of $2 \cdot 10^{16}$
comes out as $\sigma_b^2$), an entry smaller than this bound can have the wrong sign. The recursion is
``jax.jit``-compiled per architecture; :func:`kernel` evaluates it block by block over every device
JAX sees (:mod:`companion.kernels.blocks`), each block as one program over all its tiles.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from companion.arch import MLPSpec
from companion.kernels import blocks, duals
from companion.kernels.blocks import DEFAULT_BLOCK_SIZE, TILE, devices
from companion.kernels.cosine import augmented_unit, soft_cosine
from companion.kernels.inputs import as_inputs, check_spec, checked_inputs, overflow_error

__all__ = ["DEFAULT_BLOCK_SIZE", "Kernels", "kernel", "kernel_diag", "kernel_fn", "kernel_pairs", "soft_cosine",
           "check_spec", "as_inputs", "augmented_unit", "available_memory", "devices"]


class Kernels(NamedTuple):
    r"""NNGP kernel $\Sigma(x_1, x_2)$ and NTK $\Theta(x_1, x_2)$ of a network's scalar output."""

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


def _correlation(c: jax.Array, s1: jax.Array, s2: jax.Array) -> jax.Array:
    r"""``c / (s1 s2)`` clipped to $[-1, 1]$, snapped to $\pm 1$ within 8 ulp, 0 where ``s1 s2 = 0``.

    The derivative kernels of ReLU-like activations have infinite slope at $\rho = \pm 1$
    ($\arccos$): a correlation one rounding error below 1 would move $\Theta(x, x)$ by about
    1e-8 relative in float64 (1e-4 in float32). Snapping makes identical inputs exact and changes
    pairs closer than that by no more than rounding already does.
    """
    # Reciprocals of the (vector) standard deviations: no division per pair.
    inv1 = jnp.where(s1 > 0, 1 / jnp.where(s1 > 0, s1, 1.0), 0.0)
    inv2 = jnp.where(s2 > 0, 1 / jnp.where(s2 > 0, s2, 1.0), 0.0)
    rho = jnp.clip(c * inv1 * inv2, -1.0, 1.0)
    tol = 8 * jnp.finfo(rho.dtype).eps
    return jnp.where(jnp.abs(rho) > 1 - tol, jnp.sign(rho), rho)


def _layernorm(q1, q2, c, ntk, eps1, eps2):
    r"""LayerNorm of one layer: every quantity divided by $\sqrt{(q_1 + \epsilon_1)(q_2 + \epsilon_2)}$."""
    inv1, inv2 = 1 / jnp.sqrt(q1 + eps1), 1 / jnp.sqrt(q2 + eps2)
    return q1 * inv1 * inv1, q2 * inv2 * inv2, c * inv1 * inv2, ntk * inv1 * inv2


def _propagate(
    q1: jax.Array, q2: jax.Array, c: jax.Array, arch: _Arch, diagonal: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Run the recursion from the first hidden layer's variances ``q1, q2`` and covariance ``c``.

    These come from :func:`_first_layer`, which has already applied a LayerNorm of layer 1.
    ``diagonal=True`` computes $x = x'$ (``q1 = q2 = c``) with the correlation exactly 1.
    """
    dual = duals.dual(arch.activation)
    b2 = arch.sigma_b**2
    ntk = c
    for h in range(1, arch.depth + 1):
        if h in arch.layernorm and h > 1:
            q1, q2, c, ntk = _layernorm(q1, q2, c, ntk, arch.ln_eps, arch.ln_eps)
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
    r"""$\E[\phi(u) \phi(v)]$, $\E[\phi'(u) \phi'(v)]$ and $\E[\phi(u)^2]$, $\E[\phi(v)^2]$ of one layer.

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


def _row_scales(x: jax.Array) -> jax.Array:
    r"""Powers of two $m \geq 1$ with $|x / m| < 2$ in every row: exact to divide by, and after the
    division no square overflows (inputs up to the largest float of the dtype)."""
    _, exponent = jnp.frexp(jnp.max(jnp.abs(x), axis=1))
    top = jnp.finfo(x.dtype).maxexp - 1
    return jnp.ldexp(jnp.ones((), x.dtype), jnp.clip(exponent, 0, top).astype(jnp.int32))


def _first_layer(
    x1: jax.Array, x2: jax.Array, arch: _Arch, mode: str = "matrix"
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Variances ``q1, q2`` and covariance ``c`` of the first hidden layer, after its LayerNorm if any.

    ``mode`` is ``"matrix"`` (all pairs: shapes ``(n1, 1)``, ``(1, n2)``, ``(n1, n2)``), ``"pairs"``
    (matching rows) or ``"diagonal"`` (``x2`` is ignored; ``c = q1 = q2``). Rows are first divided
    by powers of two (:func:`_row_scales`), so $\|x\|^2$ is never formed: with a LayerNorm in layer
    1 the result depends on the scaled rows only (and is finite for every finite input); without
    one the scales are multiplied back, and the result overflows only where the kernel itself does.
    """
    w2 = arch.scales[0] ** 2 / x1.shape[1]
    b2 = arch.sigma_b**2
    m1 = _row_scales(x1)
    u1 = x1 / m1[:, None]
    q1 = w2 * jnp.sum(u1 * u1, axis=1) + b2 / m1 / m1
    if mode == "diagonal":
        m2, q2 = m1, q1
        c = q1
    else:
        m2 = _row_scales(x2)
        u2 = x2 / m2[:, None]
        q2 = w2 * jnp.sum(u2 * u2, axis=1) + b2 / m2 / m2
        if mode == "pairs":
            c = w2 * jnp.sum(u1 * u2, axis=1) + b2 / m1 / m2
        else:
            m1, q1 = m1[:, None], q1[:, None]
            m2, q2 = m2[None, :], q2[None, :]
            c = w2 * jnp.matmul(u1, u2.T, precision=jax.lax.Precision.HIGHEST) + b2 / m1 / m2
    if 1 in arch.layernorm:  # scale-free: LayerNorm divides the scales out again
        eps1, eps2 = arch.ln_eps / m1 / m1, arch.ln_eps / m2 / m2
        q1, q2, c, _ = _layernorm(q1, q2, c, c, eps1, eps2)
        return q1, q2, c
    return q1 * m1 * m1, q2 * m2 * m2, c * m1 * m2


@functools.partial(jax.jit, static_argnums=2)
def _matrix(x1: jax.Array, x2: jax.Array, arch: _Arch) -> tuple[jax.Array, jax.Array]:
    return _unpacked(_packed(x1, x2, arch))


def _packed(x1: jax.Array, x2: jax.Array, arch: _Arch, mode: str = "matrix") -> jax.Array:
    """NNGP and NTK as the real and imaginary parts of one complex array.

    One output lets XLA evaluate the whole recursion in a single fused pass per entry. Asked for two
    outputs, it splits the recursion into several passes that recompute the arc-cosine and write
    and re-read intermediate matrices: about three times slower on a CPU (``benchmarks/``). Packing
    is exact: the parts are the float results themselves.
    """
    nngp, ntk = _propagate(*_first_layer(x1, x2, arch, mode), arch, diagonal=mode == "diagonal")
    return jax.lax.complex(nngp, ntk)


def _unpacked(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(nngp, ntk)`` from :func:`_packed`; the barrier keeps XLA from fusing the recursion twice."""
    z = jax.lax.optimization_barrier(z)
    return jnp.real(z), jnp.imag(z)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _tiled(
    x1: jax.Array, x2: jax.Array, rows: jax.Array, cols: jax.Array, arch: _Arch, tiles: tuple[int, int],
) -> tuple[jax.Array, jax.Array]:
    """The kernel matrices of the tiles ``(rows[p], cols[p])`` of ``x1`` against ``x2``, in one program.

    Tile ``p`` pairs rows ``rows[p] * t1 ...`` with columns ``cols[p] * t2 ...``; all tiles are
    computed together (vmapped), so every layer is one vectorised pass over the tiles. Returns the
    tiles packed by :func:`_packed` (NNGP real, NTK imaginary), of shape ``(len(rows), t1, t2)``,
    and whether all are finite; placing them (and mirroring them for a symmetric result) is
    :func:`companion.kernels.blocks.place`'s work, on the host.
    """
    t1, t2 = tiles
    a = x1.reshape(-1, t1, x1.shape[1])[rows]
    b = x2.reshape(-1, t2, x2.shape[1])[cols]
    # The barrier: the finiteness check reads the result rather than fusing the recursion again.
    packed = jax.lax.optimization_barrier(jax.vmap(lambda u, v: _packed(u, v, arch))(a, b))
    return packed, jnp.all(jnp.isfinite(packed))


@functools.partial(jax.jit, static_argnums=2)
def _paired(x1: jax.Array, x2: jax.Array, arch: _Arch) -> tuple[jax.Array, jax.Array]:
    return _unpacked(_packed(x1, x2, arch, "pairs"))


@functools.partial(jax.jit, static_argnums=1)
def _diagonal(x: jax.Array, arch: _Arch) -> tuple[jax.Array, jax.Array]:
    return _unpacked(_packed(x, x, arch, "diagonal"))


def available_memory() -> int | None:
    """Bytes of host memory available to new allocations (Linux ``MemAvailable``), or ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@functools.cache
def _placing() -> ThreadPoolExecutor:
    """Two threads that write the NNGP and NTK results side by side, created once per process."""
    return ThreadPoolExecutor(2, thread_name_prefix="companion-kernel-place")


def _run_block(a: np.ndarray, b: np.ndarray, padded: tuple[int, int], mirror: bool, arch: _Arch,
               dt: np.dtype, device: jax.Device) -> blocks.Block:
    """Dispatch one block to ``device`` (asynchronously): rows ``a`` against columns ``b``; with
    ``mirror`` (``a`` is ``b``) only the tiles on and above the diagonal."""
    t1, t2 = blocks.tile_size(padded[0]), blocks.tile_size(padded[1])
    if mirror:
        rows, cols = np.triu_indices(padded[0] // t1)
    else:
        rows, cols = (g.ravel() for g in np.indices((padded[0] // t1, padded[1] // t2)))
    put = functools.partial(jax.device_put, device=device)
    packed, finite = _tiled(put(jnp.asarray(blocks.pad_rows(a, padded[0]), dt)),
                            put(jnp.asarray(blocks.pad_rows(b, padded[1]), dt)),
                            put(jnp.asarray(rows, jnp.int32)), put(jnp.asarray(cols, jnp.int32)), arch, (t1, t2))
    return blocks.Block(packed, finite, rows, cols, (t1, t2), mirror)


def kernel(
    x1: object,
    x2: object | None,
    spec: MLPSpec,
    *,
    block_size: int | None = None,
    dtype: object = np.float64,
) -> Kernels:
    r"""Infinite-width NNGP and NTK matrices of the network ``spec`` between ``x1`` and ``x2``.

    Parameters
    ----------
    x1, x2:
        Inputs of shapes ``(n1, d)`` and ``(n2, d)``; ``x2=None`` means ``x1``: only the pairs on
        and above the diagonal are computed, and the result is exactly symmetric.
    spec:
        The architecture: depth, activation, weight scales (:attr:`MLPSpec.weight_scales`),
        ``sigma_b``, LayerNorm positions and ``ln_eps``. ``width`` and ``parametrisation`` are
        ignored: this is the infinite-width kernel in the NTK parametrisation (the paper's theory).
        Use :func:`companion.arch.theory_spec` for the paper's own constants.
    block_size:
        Largest number of rows and columns evaluated in one compiled call (default
        :data:`DEFAULT_BLOCK_SIZE`); lower it to save memory. Blocks are spread over every device
        JAX sees (:func:`devices`), one block per device at a time.
    dtype:
        ``float64`` (default) or ``float32`` (faster on accelerators; relative error about 1e-6,
        up to 1e-4 for nearly identical inputs).

    Returns
    -------
    Kernels
        ``(nngp, ntk)``, writable NumPy arrays of shape ``(n1, n2)`` and the requested dtype.

    Raises
    ------
    MemoryError
        Before any work, when the two results and the blocks in flight need more memory than the
        host has available (the message names the amount).
    ValueError
        For bad input, and when the kernel overflows ``dtype`` (possible only without a LayerNorm in
        the first hidden layer, whose kernel grows like $\|x\|^2$).
    """
    a, b, dt = checked_inputs(x1, x2, spec, dtype)
    block = DEFAULT_BLOCK_SIZE if block_size is None else block_size
    if isinstance(block, (bool, np.bool_)) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    block = int(block)
    symmetric = x2 is None
    pool = devices()
    n1, n2 = a.shape[0], b.shape[0]
    if len(pool) > 1 and max(n1, n2) > TILE:  # at least one block per device
        block = min(block, max(TILE, -(-max(n1, n2) // (2 if symmetric else len(pool)) // TILE) * TILE))
    blocks.check_memory(n1, n2, block, dt, len(pool), available_memory())
    arch = _Arch.of(spec)
    rows, cols = blocks.block_grid(n1, block), blocks.block_grid(n2, block)
    jobs = [(r, c) for i, r in enumerate(rows) for j, c in enumerate(cols) if not symmetric or j >= i]
    nngp = np.empty((n1, n2), dt)
    ntk = np.empty_like(nngp)
    placing = _placing()
    with jax.enable_x64(dt == np.float64):
        for wave in range(0, len(jobs), len(pool)):
            running = [(job, _run_block(a[job[0][0]: job[0][0] + job[0][1]], b[job[1][0]: job[1][0] + job[1][1]],
                                        (job[0][2], job[1][2]), symmetric and job[0][0] == job[1][0], arch, dt, device))
                       for job, device in zip(jobs[wave: wave + len(pool)], pool)]
            for ((i, m, _), (j, k, _)), done in running:
                if not bool(done.finite):
                    raise overflow_error(dt, a, b)
                packed = np.asarray(done.packed)
                # NumPy releases the GIL while copying: the two matrices are written side by side.
                list(placing.map(lambda part: blocks.place(*part, done, (i, j), (m, k), symmetric and i != j),
                                 ((nngp, packed.real), (ntk, packed.imag))))
    return Kernels(nngp, ntk)


def kernel_diag(x: object, spec: MLPSpec, *, dtype: object = np.float64) -> Kernels:
    r"""The diagonals $\Sigma(x_i, x_i)$ and $\Theta(x_i, x_i)$, shape ``(n,)``, without the full matrix.

    For these networks the diagonal depends on $x$ only through $\|x\|^2 / n_0$ (chapter "One
    LayerNorm bounds the kernel", Thm 3.2 and Cor. C.2). The rows are sharded over every device.
    """
    a, _, dt = checked_inputs(x, None, spec, dtype)
    return Kernels(*blocks.rowwise(_diagonal, [a], _Arch.of(spec), dt))


def kernel_pairs(x1: object, x2: object, spec: MLPSpec, *, dtype: object = np.float64) -> Kernels:
    r"""$\Sigma(x_{1,i}, x_{2,i})$ and $\Theta(x_{1,i}, x_{2,i})$ for matching rows, shape ``(n,)``: the diagonal of
    ``kernel(x1, x2)`` without the rest of the matrix. The rows are sharded over every device."""
    a, b, dt = checked_inputs(x1, x2, spec, dtype)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x1 and x2 must have the same number of rows, got {a.shape[0]} and {b.shape[0]}")
    return Kernels(*blocks.rowwise(_paired, [a, b], _Arch.of(spec), dt))


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
