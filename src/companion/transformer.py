r"""The small decoder-only transformer of the paper's Fig. 7 (App. M), with and without one LayerNorm.

The paper's Theorem C.1 reaches beyond fully connected networks: any architecture that *starts*
with a linear map followed by a LayerNorm has, at infinite width, a neural tangent kernel that
depends on its inputs only through soft-cosine similarities, so its diagonal is bounded and
(Theorem C.3) the trained network's predictions are bounded everywhere. The paper checks this on a
transformer that reads a sequence of numbers and predicts the next one; the chapter
*A transformer that stops exploding* (``book/experiments/transformer``) reproduces it.

The network, for a sequence of scalar tokens $x_1, \dots, x_T$ (shape ``(n, T, 1)``), with the
defaults of :class:`TransformerSpec` (the choices the paper leaves open are fields, so that the
ablation study of :mod:`companion.experiments.transformer_ablation` can vary them):

1. **Embedding.** Each token separately: $e_t = W x_t + b$ (:class:`companion.models.Dense`,
   standard parametrisation, bias $\N(0, \sigma_b^2)$; the theory needs $\sigma_b \neq 0$).
2. **The variable.** With ``layernorm=True``, $e_t \leftarrow \LN(e_t)$, right after the embedding: the
   network then starts Linear -> LN, as Theorem C.1 asks. Everything else is identical.
   (``ln_input="sum"`` normalises $e_t + p_t$ instead, after the positions are added.)
3. **Positions.** $h_t = e_t + p_t$ with the fixed sinusoidal code of Vaswani et al. (2017),
   $p_t[2k] = \sin(t w_k)$, $p_t[2k+1] = \cos(t w_k)$, $w_k = \text{max_period}^{-2k/\text{width}}$. It is
   bounded (every entry in [-1, 1]) whatever the position, so it cannot make predictions grow, and
   it has no learned entries that positions beyond the training length would leave untrained.
   (``positions="learned"``: a learned table of ``max_positions`` rows, ``N(0, 1)`` like PyTorch's
   ``nn.Embedding``; ``"none"``: no position code, the causal mask alone orders the tokens.)
4. **Blocks** (``layers`` of them), *without* normalisation in either variant, so that the only
   LayerNorm is the one under test: ``h <- h + MHA(h)`` with causal multi-head dot-product
   attention (``heads`` heads, ``width`` features), then ``h <- h + MLP(h)`` with a ReLU MLP of
   hidden width ``mlp_ratio * width``. (``blocks="pre-LN"``: ``h <- h + MHA(LN(h))``,
   ``h <- h + MLP(LN(h))`` and one more LN before the read-out, as in GPT-2; the "no LN" variant
   then has LayerNorms too.)
5. **Read-out.** A linear map of each position to one number: the prediction of the next token.

The layers after the embedding use flax's defaults (LeCun-normal weights, zero biases), or with
``init="kaiming"`` the initialisation the paper states for its experiments (App. J): weights of
variance ``2 / fan_in`` (uniform), biases ``N(0, 0.01)``.

Causality: the output at position ``t`` depends on $x_1, \dots, x_t$ only (tested).
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

__all__ = ["TransformerSpec", "Transformer", "CHOICES", "check_sequences", "sinusoidal_positions", "stax_transformer"]

#: The allowed values of the spec's string fields that describe a design choice.
CHOICES = {
    "ln_input": ("value", "sum"),
    "positions": ("sinusoidal", "learned", "none"),
    "blocks": ("plain", "pre-LN"),
    "init": ("flax", "kaiming"),
}


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
    ln_input:
        What the LayerNorm of the ``layernorm`` variant normalises: ``"value"`` (the token's
        embedding, before positions are added) or ``"sum"`` (embedding plus position code).
    positions:
        ``"sinusoidal"`` (fixed), ``"learned"`` (a table of ``max_positions`` rows) or ``"none"``.
    blocks:
        ``"plain"`` (no normalisation inside the blocks) or ``"pre-LN"`` (a LayerNorm before the
        attention and the MLP of every block and before the read-out).
    init:
        Initialisation of the layers after the embedding: ``"flax"`` defaults or ``"kaiming"``.
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
    ln_input: str = "value"
    positions: str = "sinusoidal"
    blocks: str = "plain"
    init: str = "flax"
    max_positions: int = 128

    def __post_init__(self) -> None:
        for name in ("layers", "heads", "width", "mlp_ratio", "max_positions"):
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
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {getattr(self, name)!r}")

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
        spec, dtype, length = self.spec, x.dtype, x.shape[1]
        h = Dense(spec.width, "standard", spec.sigma_w, spec.sigma_b, name="embed")(x)
        if spec.layernorm and spec.ln_input == "value":
            h = self._norm("input_norm")(h)
        h = h + self._positions(length, dtype)
        if spec.layernorm and spec.ln_input == "sum":
            h = self._norm("input_norm")(h)
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2], dtype=bool))
        pre = spec.blocks == "pre-LN"
        inits = self._inits()
        for layer in range(spec.layers):
            inner = self._norm(f"block_{layer}_norm_attention")(h) if pre else h
            h = h + nn.MultiHeadDotProductAttention(
                num_heads=spec.heads, qkv_features=spec.width, out_features=spec.width,
                param_dtype=dtype, name=f"attention_{layer}", **inits,
            )(inner, mask=mask)
            inner = self._norm(f"block_{layer}_norm_mlp")(h) if pre else h
            hidden = nn.relu(nn.Dense(spec.mlp_ratio * spec.width, param_dtype=dtype, name=f"mlp_{layer}_in", **inits)(inner))
            h = h + nn.Dense(spec.width, param_dtype=dtype, name=f"mlp_{layer}_out", **inits)(hidden)
        if pre:
            h = self._norm("final_norm")(h)
        return nn.Dense(1, param_dtype=dtype, name="readout", **inits)(h)

    def _norm(self, name: str) -> nn.Module:
        return normalisation.make(self.spec.norm, eps=self.spec.ln_eps, affine=self.spec.ln_affine, name=name)

    def _positions(self, length: int, dtype) -> jax.Array | float:
        spec = self.spec
        if spec.positions == "sinusoidal":
            return sinusoidal_positions(length, spec.width, spec.max_period, dtype)
        if spec.positions == "none":
            return 0.0
        if length > spec.max_positions:
            raise ValueError(
                f"sequences of length {length} are longer than the learned position table "
                f"({spec.max_positions} rows); raise max_positions"
            )
        table = self.param("positions", nn.initializers.normal(1.0), (spec.max_positions, spec.width), dtype)
        return table[:length]

    def _inits(self) -> dict[str, object]:
        if self.spec.init == "flax":
            return {}
        return {"kernel_init": nn.initializers.variance_scaling(2.0, "fan_in", "uniform"),
                "bias_init": nn.initializers.normal(0.1)}


def stax_transformer(layernorm: bool, *, layers: int = 2, heads: int = 4, width: int = 64, sigma_b: float = 1.0):
    """neural-tangents' ``(init_fn, apply_fn, kernel_fn)`` of the transformer at infinite width.

    The same layout as :class:`Transformer` in the NTK parametrisation, so that ``kernel_fn`` is
    the infinite-width limit (Theorem C.1's object): a per-token ``Dense`` embedding with bias
    ``sigma_b``, optionally a LayerNorm of its features, then ``layers`` residual blocks of
    multi-head self-attention and a ReLU MLP, and a linear read-out of the positions' average.
    Differences forced by what has a closed-form limit: neural-tangents' attention
    (``stax.GlobalSelfAttention``, Hron et al. 2020) scales the query-key products by the width
    and ties queries to keys, it has no causal mask, and positions enter through its learned
    positional embedding (``pos_emb_type="SUM"``) rather than an added sinusoidal code; the
    read-out averages the positions instead of taking the last one.
    """
    from companion.nt import stax

    def residual(*branch):
        return stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.serial(*branch)), stax.FanInSum())

    layer_list = [stax.Dense(width, W_std=1.0, b_std=sigma_b)]
    if layernorm:
        layer_list.append(stax.LayerNorm(axis=-1))
    for _ in range(layers):
        layer_list.append(residual(stax.GlobalSelfAttention(
            n_chan_out=width, n_chan_key=width, n_chan_val=width, n_heads=heads, linear_scaling=True,
            pos_emb_type="SUM", n_chan_pos_emb=width)))
        layer_list.append(residual(stax.Dense(4 * width, W_std=2**0.5), stax.Relu(), stax.Dense(width)))
    layer_list += [stax.GlobalAvgPool(), stax.Dense(1)]
    return stax.serial(*layer_list)
