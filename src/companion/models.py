r"""Flax networks built from an :class:`~companion.arch.MLPSpec`.

The model is the paper's fully connected network (App. A): ``depth`` hidden layers, each a linear
map, an optional parameter-free LayerNorm, and an activation, then a linear read-out to a scalar.
``MLPSpec.norm`` and ``MLPSpec.norm_position`` swap the LayerNorm for RMSNorm or Dynamic Tanh, or
move it after the activation (:mod:`companion.normalisation`; the transformer of the paper's
Fig. 7 is in :mod:`companion.transformer`).

Two parametrisations (:attr:`~companion.arch.MLPSpec.parametrisation`):

* ``standard`` (the paper's experiments, App. J): $y = W x + b$ with
  $W \sim U(-a, a)$, $a = \sigma_w \sqrt{3 / \text{fan_in}}$ (Kaiming/He-uniform for $\sigma_w = \sqrt{2}$)
  and $b \sim \N(0, \sigma_b^2)$.
* ``ntk`` (the paper's theory, App. A.1): $y = \sigma_w W x / \sqrt{\text{fan_in}} + \sigma_b b$ with
  $W_{ij}, b_i \sim \N(0, 1)$. Same function class at initialisation, different training dynamics.

The first linear map uses ``spec.sigma_w_input`` when it is set (:attr:`MLPSpec.weight_scales`).

Outputs have shape ``(n, 1)``, the convention of neural-tangents.

With ``spec.norm == "batchnorm"`` the normalised layers are flax ``nn.BatchNorm`` (the paper's
App. L): each feature is standardised over the *batch* while training (``train=True``, with
``mutable=["batch_stats"]``) and with running averages at evaluation (``train=False``, the
default), as PyTorch's ``model.train()`` / ``model.eval()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from companion import normalisation
from companion.arch import LEAKY_RELU_SLOPE, MLPSpec

__all__ = ["MLP", "Dense", "activation_fn", "check_inputs", "BATCHNORM_MOMENTUM"]

#: Weight of the old value in BatchNorm's running averages (PyTorch's ``momentum=0.1`` is 0.9 here).
BATCHNORM_MOMENTUM = 0.9


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """The elementwise nonlinearity called ``name`` (see :data:`companion.arch.ACTIVATIONS`)."""
    table: dict[str, Callable[[jax.Array], jax.Array]] = {
        "relu": jax.nn.relu,
        "leaky_relu": lambda z: jax.nn.leaky_relu(z, negative_slope=LEAKY_RELU_SLOPE),
        "gelu": lambda z: jax.nn.gelu(z, approximate=False),
        "silu": jax.nn.silu,
        "tanh": jnp.tanh,
        "erf": jax.scipy.special.erf,
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(table)}")
    return table[name]


def check_inputs(x: jax.Array, n_features: int | None = None) -> None:
    """Raise a clear error unless ``x`` is a finite-shaped 2-D array ``(n_points, n_features)``."""
    if getattr(x, "ndim", None) != 2:
        raise ValueError(
            f"inputs must be a 2-D array of shape (n_points, n_features), got shape "
            f"{getattr(x, 'shape', type(x).__name__)}; reshape 1-D inputs with x[:, None]"
        )
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"inputs have {x.shape[1]} features but the model expects {n_features}")


class Dense(nn.Module):
    """A linear layer in the ``standard`` or ``ntk`` parametrisation (see the module docstring)."""

    features: int
    parametrisation: str = "standard"
    sigma_w: float = math.sqrt(2.0)
    sigma_b: float = 0.1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        shape = (fan_in, self.features)
        if self.parametrisation == "standard":
            bound = self.sigma_w * math.sqrt(3.0 / fan_in)
            kernel = self.param(
                "kernel", lambda key: jax.random.uniform(key, shape, x.dtype, -bound, bound)
            )
            bias = self.param(
                "bias", lambda key: self.sigma_b * jax.random.normal(key, (self.features,), x.dtype)
            )
            return x @ kernel + bias
        if self.parametrisation == "ntk":
            kernel = self.param("kernel", lambda key: jax.random.normal(key, shape, x.dtype))
            bias = self.param("bias", lambda key: jax.random.normal(key, (self.features,), x.dtype))
            return (self.sigma_w / math.sqrt(fan_in)) * (x @ kernel) + self.sigma_b * bias
        raise ValueError(f"unknown parametrisation {self.parametrisation!r}; choose 'standard' or 'ntk'")


class MLP(nn.Module):
    """The paper's fully connected network, described by ``spec``.

    ``MLP(spec).apply({"params": p}, x)`` maps ``x`` of shape ``(n, d)`` to ``(n, 1)``.

    ``ln_mask`` (a boolean array of shape ``(depth,)``) overrides ``spec.layernorm`` with *data*:
    hidden layer ``h`` is normalised where ``ln_mask[h - 1]`` is true. Parameter-free LayerNorms
    (``ln_affine=False``) add no parameters, so networks that differ only in where their
    LayerNorms sit share one parameter tree, and ``jax.vmap`` over ``ln_mask`` trains all of them
    in one compiled program (:func:`companion.train.fit_variants`).
    """

    spec: MLPSpec

    @nn.compact
    def __call__(self, x: jax.Array, ln_mask: jax.Array | None = None, train: bool = False) -> jax.Array:
        check_inputs(x)
        spec = self.spec
        if ln_mask is not None and spec.norm != "layernorm":
            raise ValueError("ln_mask is for LayerNorm networks; BatchNorm positions come from spec.layernorm")
        if ln_mask is not None:
            if spec.ln_affine or spec.norm == "dyt":
                raise ValueError("ln_mask needs parameter-free LayerNorms (ln_affine=False, and not DyT)")
            if jnp.shape(ln_mask) != (spec.depth,):
                raise ValueError(f"ln_mask must have shape ({spec.depth},), got {jnp.shape(ln_mask)}")
        phi = activation_fn(spec.activation)
        scales = spec.weight_scales
        h = x
        for layer in range(1, spec.depth + 1):
            h = Dense(spec.width, spec.parametrisation, scales[layer - 1], spec.sigma_b, name=f"dense_{layer}")(h)
            norm = None
            if spec.norm == "batchnorm":
                if layer in spec.layernorm:
                    norm = nn.BatchNorm(
                        use_running_average=not train,
                        momentum=BATCHNORM_MOMENTUM,
                        epsilon=spec.ln_eps,
                        use_bias=spec.ln_affine,
                        use_scale=spec.ln_affine,
                        name=f"batchnorm_{layer}",
                    )
            elif ln_mask is not None or layer in spec.layernorm:
                norm = normalisation.make(
                    spec.norm, eps=spec.ln_eps, affine=spec.ln_affine, name=f"{spec.norm}_{layer}"
                )
            if norm is not None and spec.norm_position == "pre":
                h = _normalise(norm, h, ln_mask, layer)
            h = phi(h)
            if norm is not None and spec.norm_position == "post":
                h = _normalise(norm, h, ln_mask, layer)
        return Dense(1, spec.parametrisation, scales[-1], spec.sigma_b, name="readout")(h)


def _normalise(norm: nn.Module, h: jax.Array, ln_mask: jax.Array | None, layer: int) -> jax.Array:
    """``norm(h)``, or where ``ln_mask`` says so for this layer when the positions are data."""
    normalised = norm(h)
    return normalised if ln_mask is None else jnp.where(ln_mask[layer - 1], normalised, h)
