r"""Normalisation layers of the book: LayerNorm, RMSNorm and Dynamic Tanh, one constructor for all.

The paper's theorems are about one layer (App. A): the parameter-free LayerNorm

.. math::

    \LN(z) = \frac{z - \operatorname{mean}(z)}{\sqrt{\operatorname{var}(z) + \epsilon}}, \qquad
    \text{mean and var over the } n \text{ features},

with $\epsilon = 0$ in the theory and 1e-5 in PyTorch. The chapter *Which normalisations bound the
kernel?* (``book/beyond/normalisation``) asks which relatives keep its guarantee:

* **RMSNorm** (Zhang and Sennrich, 2019) drops the centring: $z / \sqrt{\operatorname{mean}(z^2) + \epsilon}$.
  At infinite width the pre-activations of a layer have mean zero across features, so
  $\operatorname{mean}(z^2) = \operatorname{var}(z)$ and RMSNorm *is* LayerNorm (same kernel, Theorems 3.2 and C.1 apply).
* **LayerNorm with affine parameters**: $\gamma \LN(z) + \beta$, per feature, initialised at 1 and 0.
* **Dynamic Tanh** (DyT, Zhu et al., 2025): $\gamma \tanh(\alpha z) + \beta$ with one learnable
  scalar ``alpha`` (initialised at :data:`DYT_ALPHA0`). It has no statistics at all: it bounds
  each feature separately. The paper speculates that it works by imposing at finite width the
  saturating map that LayerNorm imposes at infinite width (its Eq. 10).

:func:`make` builds any of them from the fields of :class:`companion.arch.MLPSpec`
(``norm``, ``ln_eps``, ``ln_affine``). LayerNorm is flax's own ``nn.LayerNorm``, so networks
described before these variants existed are unchanged, parameter names included.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from companion.arch import NORM_POSITIONS, NORMS

__all__ = ["NORMS", "NORM_POSITIONS", "NORM_NAMES", "DYT_ALPHA0", "RMSNorm", "DyT", "make"]

#: Short names used in labels and tables.
NORM_NAMES = {"layernorm": "LN", "rmsnorm": "RMSNorm", "dyt": "DyT"}
#: DyT's initial ``alpha``: 0.5, the default of Zhu et al. (2025) outside large language models.
DYT_ALPHA0 = 0.5


class RMSNorm(nn.Module):
    r"""$z / \sqrt{\operatorname{mean}(z^2) + \epsilon}$ over the last axis, times a learnable ``scale`` if ``affine``.

    No centring and no shift (Zhang and Sennrich, 2019). Parameters take the input's dtype, so
    float64 kernels stay float64.
    """

    epsilon: float = 1e-5
    affine: bool = False

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        out = z * jax.lax.rsqrt(jnp.mean(z**2, axis=-1, keepdims=True) + self.epsilon)
        if self.affine:
            out = out * self.param("scale", nn.initializers.ones, (z.shape[-1],), z.dtype)
        return out


class DyT(nn.Module):
    r"""Dynamic Tanh, $\tanh(\alpha z)$ with a learnable scalar ``alpha`` (Zhu et al., 2025).

    With ``affine`` the result is $\gamma \tanh(\alpha z) + \beta$ with per-feature ``gamma``
    (initialised at 1) and ``beta`` (at 0), as Zhu et al. define the layer; without it only
    ``alpha`` is learned, the counterpart of the theory's parameter-free LayerNorm.
    """

    alpha0: float = DYT_ALPHA0
    affine: bool = False

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        alpha = self.param("alpha", lambda key: jnp.asarray(self.alpha0, z.dtype))
        out = jnp.tanh(alpha * z)
        if self.affine:
            out = out * self.param("scale", nn.initializers.ones, (z.shape[-1],), z.dtype)
            out = out + self.param("bias", nn.initializers.zeros, (z.shape[-1],), z.dtype)
        return out


def make(kind: str, *, eps: float = 1e-5, affine: bool = False, name: str | None = None) -> nn.Module:
    """The normalisation layer ``kind`` (one of :data:`NORMS`) with LayerNorm's ``eps`` and ``affine``.

    ``eps`` is ignored by DyT, which divides by nothing.
    """
    if kind == "layernorm":
        return nn.LayerNorm(epsilon=eps, use_bias=affine, use_scale=affine, name=name)
    if kind == "rmsnorm":
        return RMSNorm(epsilon=eps, affine=affine, name=name)
    if kind == "dyt":
        return DyT(affine=affine, name=name)
    if kind == "batchnorm":
        raise ValueError("batchnorm needs batch statistics and a train/eval mode: companion.models.MLP builds it")
    raise ValueError(f"unknown normalisation {kind!r}; choose one of {', '.join(NORMS)}")
