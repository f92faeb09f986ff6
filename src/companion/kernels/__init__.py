r"""Infinite-width kernels of the paper's networks: the reference for the whole book.

The theory chapters ("Neural tangent kernels", "Explosion without LayerNorm", "One LayerNorm
bounds the kernel", "Bounded outputs", "Beyond ReLU") state the paper's theorems and check them
with these functions. Everything takes an :class:`~companion.arch.MLPSpec`, the same object the
flax models of later chapters are built from.

Entry points
------------

- :func:`kernel`: ``kernel(x1, x2, spec) -> Kernels(nngp, ntk)``, float64 ``(n1, n2)`` matrices,
  blocks spread over every device JAX sees; ``x2=None`` computes half the pairs
- :func:`kernel_diag`: the diagonals $\Sigma(x, x)$, $\Theta(x, x)$ only
- :func:`kernel_pairs`: $\Sigma(x_{1,i}, x_{2,i})$, $\Theta(x_{1,i}, x_{2,i})$ for matching rows only
- :func:`kernel_fn`: a jit-compiled kernel on JAX arrays (no checks, no blocking)
- :func:`ntk_regression`: the trained network's mean prediction $\Theta(x, X) \Theta(X, X)^{-1} y$
- :func:`output_bound`: the bound of Thm 3.3 and its components
- :func:`soft_cosine`: the soft-cosine $S(x, x'; \sigma^2)$ of Def. C.1
- :func:`stax_model`: the same network in neural-tangents (reference kernels, finite networks)
- :func:`empirical_ntk`: the finite-width NTK of a flax network at initialisation
- :func:`empirical_ntk_fn`: the finite-width NTK of any ``f(params, x)`` (JAX transforms only)
- :mod:`companion.kernels.ensemble`: mean and variance over initialisations of the linearised
  infinitely wide network after gradient descent

Conventions: NTK parametrisation with the weight scales of :attr:`MLPSpec.weight_scales` and bias
scale $\sigma_b$ in every layer, scalar output, parameter-free LayerNorm between a hidden layer's
linear map and its activation (epsilon ``spec.ln_eps``). :func:`companion.arch.theory_spec` gives
the paper's constants (``sigma_w_input`` $= 1$, ``sigma_w`` $= \sqrt{c_\phi}$, $\sigma_b^2 = 0.01$).
"""

from companion.kernels.duals import DUALS
from companion.kernels.recursion import Kernels, kernel, kernel_diag, kernel_fn, kernel_pairs, soft_cosine
from companion.kernels.reference import empirical_ntk, empirical_ntk_fn, stax_model
from companion.kernels.regression import (
    OutputBound,
    Regression,
    diagonal_profile,
    diagonal_sup,
    ntk_regression,
    output_bound,
)

#: Activation names the kernels support (all of :data:`companion.arch.ACTIVATIONS`).
SUPPORTED_ACTIVATIONS = tuple(DUALS)

__all__ = [
    "Kernels",
    "OutputBound",
    "Regression",
    "SUPPORTED_ACTIVATIONS",
    "diagonal_profile",
    "diagonal_sup",
    "empirical_ntk",
    "empirical_ntk_fn",
    "kernel",
    "kernel_diag",
    "kernel_fn",
    "kernel_pairs",
    "ntk_regression",
    "output_bound",
    "soft_cosine",
    "stax_model",
]
