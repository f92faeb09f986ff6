r"""Independent references for the kernels: neural-tangents' ``stax`` and the empirical NTK.

:func:`stax_model` builds the same network with neural-tangents (through :mod:`companion.nt`):
its ``kernel_fn`` is the library's own infinite-width recursion, against which the tests check
:func:`companion.kernels.kernel` to 1e-10, and its ``apply_fn`` is a finite network of that
architecture. :func:`empirical_ntk` is the finite-width kernel $\nabla f(x) \cdot \nabla f(x')$ of a
flax :class:`~companion.models.MLP` at initialisation; it converges to the analytic NTK as the
width grows (chapter "Neural tangent kernels"). It and :func:`empirical_ntk_fn`, the same for
any function of parameters and inputs, use JAX's own transforms only (per-example Jacobians,
contracted over the parameters), so they work on every JAX the package admits; the tests check
them against neural-tangents' ``empirical_ntk_fn``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from companion.arch import LEAKY_RELU_SLOPE, MLPSpec
from companion.kernels.recursion import as_inputs, check_spec

__all__ = ["stax_model", "empirical_ntk", "empirical_ntk_fn", "NUMERICAL_DEGREE"]

#: Gauss-Hermite degree of neural-tangents' numerical kernels (used for SiLU and tanh only).
NUMERICAL_DEGREE = 64


def _numerical(fn: Any, df: Any, degree: int) -> Any:
    from companion.nt import stax

    # neural-tangents warns on every use that the kernel is numerical; that is the point here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Numerical Activation Layer with fn=", category=UserWarning)
        return stax.ElementwiseNumerical(fn, degree, df)


def _activation_layer(name: str, degree: int) -> Any:
    from companion.nt import stax

    if name == "relu":
        return stax.Relu()
    if name == "leaky_relu":
        return stax.LeakyRelu(LEAKY_RELU_SLOPE)
    if name == "gelu":
        return stax.Gelu(approximate=False)
    if name == "erf":
        return stax.Erf()
    if name == "silu":
        return _numerical(jax.nn.silu, lambda x: jax.nn.sigmoid(x) * (1 + x * (1 - jax.nn.sigmoid(x))), degree)
    if name == "tanh":
        return _numerical(jnp.tanh, lambda x: 1 - jnp.tanh(x) ** 2, degree)
    raise ValueError(f"no neural-tangents layer for activation {name!r}")


def stax_model(spec: MLPSpec, *, numerical_degree: int = NUMERICAL_DEGREE) -> tuple[Any, Any, Any]:
    """neural-tangents ``(init_fn, apply_fn, kernel_fn)`` of the network ``spec``.

    ``Dense(width, W_std=w_h, b_std=sigma_b, parameterization="ntk")`` for each hidden layer
    (``w_h`` from :attr:`MLPSpec.weight_scales`), then ``LayerNorm(eps=spec.ln_eps)`` where
    ``spec`` has one, the activation, and a ``Dense(1)`` read-out. Always the NTK parametrisation,
    whatever ``spec.parametrisation`` says, so that ``kernel_fn`` is the kernel that
    :func:`companion.kernels.kernel` computes. ReLU, Leaky ReLU, GELU and erf use the library's
    closed forms; SiLU and tanh its Gauss-Hermite quadrature of degree ``numerical_degree``.
    """
    from companion.nt import stax

    check_spec(spec)
    scales = spec.weight_scales
    layers = []
    for h in range(1, spec.depth + 1):
        layers.append(stax.Dense(spec.width, W_std=scales[h - 1], b_std=spec.sigma_b, parameterization="ntk"))
        if h in spec.layernorm:
            layers.append(stax.LayerNorm(axis=-1, eps=spec.ln_eps))
        layers.append(_activation_layer(spec.activation, numerical_degree))
    layers.append(stax.Dense(1, W_std=scales[-1], b_std=spec.sigma_b, parameterization="ntk"))
    return stax.serial(*layers)


def empirical_ntk_fn(
    f: Callable[[Any, jax.Array], jax.Array], *, diagonal: bool = False
) -> Callable[[jax.Array, jax.Array | None, Any], jax.Array]:
    r"""The empirical NTK of ``f(params, x)`` as a function ``ntk(x1, x2, params)``.

    ``ntk(x1, x2, params)[i, j]`` $= \frac{1}{K} \sum_k \nabla_\theta f(x_{1,i})_k \cdot \nabla_\theta f(x_{2,j})_k$: the
    per-example Jacobians ``J`` of ``f`` with respect to every leaf of ``params`` (reverse mode,
    ``jax.vmap`` of ``jax.jacrev`` over the examples), contracted as $J(x_1) J(x_2)^\top$ leaf by
    leaf and summed, and averaged over the ``K`` outputs of an example (as neural-tangents'
    ``trace_axes`` does; for the book's scalar networks ``K = 1``).
    ``x2=None`` means ``x1``. With ``diagonal=True`` only $\Theta(x_{1,i}, x_{1,i})$ is computed, a
    vector of length ``n1`` (``x2`` must be ``None``).

    ``f`` must treat the examples along the first axis of ``x`` independently (as neural-tangents'
    ``vmap_axes=0`` assumes): each example is passed as a batch of one. The result is traceable:
    ``jax.jit`` and ``jax.vmap`` it over parameters freely. The contraction uses the highest matrix
    precision, so a GPU's TF32 units do not round the float32 kernel.
    """

    def jacobian(params: Any, x: jax.Array) -> list[jax.Array]:
        def one(example: jax.Array) -> Any:
            return jax.jacrev(lambda p: f(p, example[None])[0])(params)

        leaves = jax.tree_util.tree_leaves(jax.vmap(one)(x))
        return [leaf.reshape(x.shape[0], -1) for leaf in leaves]  # (n, outputs * leaf size)

    def ntk(x1: jax.Array, x2: jax.Array | None, params: Any) -> jax.Array:
        outputs = math.prod(jax.eval_shape(f, params, x1[:1]).shape[1:])
        j1 = jacobian(params, x1)
        if diagonal:
            if x2 is not None:
                raise ValueError("diagonal=True computes Theta(x1[i], x1[i]) only; pass x2=None")
            return sum(jnp.sum(a * a, axis=1) for a in j1) / outputs
        j2 = j1 if x2 is None else jacobian(params, x2)
        highest = jax.lax.Precision.HIGHEST
        return sum(jnp.matmul(a, b.T, precision=highest) for a, b in zip(j1, j2, strict=True)) / outputs

    return ntk


def empirical_ntk(
    x1: object,
    x2: object | None,
    spec: MLPSpec,
    seeds: int | Sequence[int] = 0,
    *,
    dtype: object = np.float64,
) -> np.ndarray:
    r"""$\nabla_\theta f(x_1) \cdot \nabla_\theta f(x_2)$ of freshly initialised flax ``MLP(spec)`` networks.

    One network per seed (initialised with ``jax.random.key(seed)``); returns ``(n1, n2)`` for a
    single seed and ``(len(seeds), n1, n2)`` for a sequence. Computed by
    :func:`empirical_ntk_fn` (per-example Jacobians, contracted over the parameters) in one
    compiled program, looping over seeds with ``lax.map`` so that only one network is in memory at
    a time. Only the ``ntk`` parametrisation converges to :func:`companion.kernels.kernel` as
    ``spec.width`` grows; in the ``standard`` one the kernel scales with the width.
    """
    check_spec(spec)
    a = as_inputs(x1, "x1")
    b = None if x2 is None else as_inputs(x2, "x2", a.shape[1])
    single = isinstance(seeds, (int, np.integer))
    seed_list = [int(seeds)] if single else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds must contain at least one seed")
    dt = np.dtype(dtype)
    with jax.enable_x64(dt == np.float64):
        keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seed_list])
        out = _empirical(spec, jnp.asarray(a, dt), None if b is None else jnp.asarray(b, dt), keys)
        result = np.asarray(out)
    return result[0] if single else result


@functools.partial(jax.jit, static_argnums=0)
def _empirical(spec: MLPSpec, x1: jax.Array, x2: jax.Array | None, keys: jax.Array) -> jax.Array:
    from companion.models import MLP

    model = MLP(spec)
    ntk_fn = empirical_ntk_fn(lambda p, x: model.apply({"params": p}, x))

    def one(key_data: jax.Array) -> jax.Array:
        params = model.init(jax.random.wrap_key_data(key_data), x1[:1])["params"]
        return ntk_fn(x1, x2, params)

    return jax.lax.map(one, keys)
