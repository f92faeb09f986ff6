"""The small decoder-only transformer of the paper's Fig. 7 (App. M), with and without one LayerNorm.

The paper's Theorem C.1 reaches beyond fully connected networks: any architecture that *starts*
with a linear map followed by a LayerNorm has, at infinite width, a neural tangent kernel that
depends on its inputs only through soft-cosine similarities, so its diagonal is bounded and
(Theorem C.3) the trained network's predictions are bounded everywhere. The paper checks this on a
transformer that reads a sequence of numbers and predicts the next one; the chapter
*A transformer that stops exploding* (``book/experiments/transformer``) reproduces it.

The network, for a sequence of scalar tokens ``x_1, ..., x_T`` (shape ``(n, T, 1)``):

1. **Embedding.** Each token separately: ``e_t = W x_t + b`` (:class:`companion.models.Dense`,
   standard parametrisation, bias ``N(0, sigma_b^2)``; the theory needs ``sigma_b != 0``).
2. **The variable.** With ``layernorm=True``, ``e_t <- LN(e_t)``, right after the embedding: the
   network then starts Linear -> LN, as Theorem C.1 asks. Everything else is identical.
3. **Positions.** ``h_t = e_t + p_t`` with the fixed sinusoidal code of Vaswani et al. (2017),
   ``p_t[2k] = sin(t w_k)``, ``p_t[2k+1] = cos(t w_k)``, ``w_k = max_period^(-2k/width)``. It is
   bounded (every entry in [-1, 1]) whatever the position, so it cannot make predictions grow, and
   it has no learned entries that positions beyond the training length would leave untrained.
4. **Blocks** (``layers`` of them), *without* normalisation in either variant, so that the only
   LayerNorm is the one under test: ``h <- h + MHA(h)`` with causal multi-head dot-product
   attention (``heads`` heads, ``width`` features), then ``h <- h + MLP(h)`` with a ReLU MLP of
   hidden width ``mlp_ratio * width``.
5. **Read-out.** A linear map of each position to one number: the prediction of the next token.

Causality: the output at position ``t`` depends on ``x_1, ..., x_t`` only (tested).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from companion import normalisation
from companion.arch import NORMS
from companion.models import Dense

__all__ = ["TransformerSpec", "Transformer", "check_sequences", "sinusoidal_positions"]


@dataclasses.dataclass(frozen=True)
class TransformerSpec:
    """A decoder-only transformer of the paper's Fig. 7 (2 layers, 4 heads, width 64 by default).

    Parameters
    ----------
    layers, heads, width:
        Number of blocks, attention heads and features (``width`` must be divisible by ``heads``).
    mlp_ratio:
        Hidden width of each block's MLP, in multiples of ``width``.
    layernorm:
        Whether one normalisation layer follows the input embedding (the paper's variable).
    norm, ln_eps, ln_affine:
        Which normalisation that is (:data:`companion.arch.NORMS`, LayerNorm by default), its
        epsilon and whether it learns a scale and shift, as in :class:`companion.arch.MLPSpec`.
    sigma_w, sigma_b:
        Embedding weights uniform with variance ``sigma_w**2`` (one input feature) and bias
        ``N(0, sigma_b**2)``. The other layers use flax's defaults (LeCun-normal weights, zero biases).
    max_period:
        Longest wavelength of the sinusoidal position code.
    """

    layers: int = 2
    heads: int = 4
    width: int = 64
    mlp_ratio: int = 4
    layernorm: bool = False
    norm: str = "layernorm"
    ln_eps: float = 1e-5
    ln_affine: bool = False
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    max_period: float = 10_000.0

    def __post_init__(self) -> None:
        for name in ("layers", "heads", "width", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by the number of heads ({self.heads})")
        if self.norm not in NORMS or self.norm == "batchnorm":
            choices = ", ".join(n for n in NORMS if n != "batchnorm")
            raise ValueError(f"unknown normalisation {self.norm!r} for the transformer's tokens; choose one of {choices}")
        for name in ("ln_eps", "sigma_b", "sigma_w", "max_period"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
        if self.sigma_w == 0 or self.max_period == 0:
            raise ValueError("sigma_w and max_period must be positive")

    @property
    def label(self) -> str:
        """``no LN`` or ``LN first`` (the normalisation right after the embedding), as for MLPs."""
        if not self.layernorm:
            return "no LN"
        return f"{normalisation.NORM_NAMES[self.norm]} first"

    def replace(self, **changes: object) -> "TransformerSpec":
        """A copy with some fields changed (``spec.replace(layernorm=True)``)."""
        return dataclasses.replace(self, **changes)


def check_sequences(x: jax.Array) -> None:
    """Raise a clear error unless ``x`` has shape ``(n_sequences, length, 1)`` (scalar tokens)."""
    shape = getattr(x, "shape", None)
    if getattr(x, "ndim", None) != 3 or shape[-1] != 1:
        raise ValueError(
            f"sequences must be a 3-D array of shape (n_sequences, length, 1) of scalar tokens, got "
            f"shape {shape if shape is not None else type(x).__name__}; add the token axis with x[..., None]"
        )
    if shape[1] < 1:
        raise ValueError("sequences must have at least one token")


def sinusoidal_positions(length: int, width: int, max_period: float = 10_000.0, dtype=jnp.float32) -> jax.Array:
    """The ``(length, width)`` sinusoidal code of positions ``1..length`` (Vaswani et al., 2017)."""
    position = jnp.arange(1, length + 1, dtype=dtype)[:, None]
    k = jnp.arange(0, width, 2, dtype=dtype)
    angle = position * jnp.exp(-math.log(max_period) * k / width)
    code = jnp.zeros((length, width), dtype)
    code = code.at[:, 0::2].set(jnp.sin(angle))
    return code.at[:, 1::2].set(jnp.cos(angle[:, : width // 2]))


class Transformer(nn.Module):
    """Decoder-only transformer for next-value prediction: ``(n, T, 1)`` tokens to ``(n, T, 1)``.

    Output ``[:, t, 0]`` is the prediction of token ``t + 1`` from tokens ``1..t+1`` (0-based ``t``).
    """

    spec: TransformerSpec

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_sequences(x)
        spec, dtype = self.spec, x.dtype
        h = Dense(spec.width, "standard", spec.sigma_w, spec.sigma_b, name="embed")(x)
        if spec.layernorm:
            h = normalisation.make(spec.norm, eps=spec.ln_eps, affine=spec.ln_affine, name="input_norm")(h)
        h = h + sinusoidal_positions(x.shape[1], spec.width, spec.max_period, dtype)
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2], dtype=bool))
        for layer in range(spec.layers):
            h = h + nn.MultiHeadDotProductAttention(
                num_heads=spec.heads, qkv_features=spec.width, out_features=spec.width,
                param_dtype=dtype, name=f"attention_{layer}",
            )(h, mask=mask)
            hidden = nn.relu(nn.Dense(spec.mlp_ratio * spec.width, param_dtype=dtype, name=f"mlp_{layer}_in")(h))
            h = h + nn.Dense(spec.width, param_dtype=dtype, name=f"mlp_{layer}_out")(hidden)
        return nn.Dense(1, param_dtype=dtype, name="readout")(h)
