r"""One description of a fully connected architecture, shared by every part of the book.

:class:`MLPSpec` says everything about a network of the paper's family: depth, width, activation,
weight and bias scales, the parametrisation, and **where the LayerNorms sit**. The flax models of
:mod:`companion.models` are built from it, and so are the infinite-width kernels of the theory
chapters, so a trained network and its kernel limit are never described twice.

Layer convention (paper, App. A and F): hidden layer $h$ (1-based, $1 \leq h \leq$ ``depth``) is

.. math::

    z = \mathrm{Linear}_h(\xi) \;\to\; [\LN(z) \text{ if } h \in \texttt{layernorm}] \;\to\; \xi = \phi(z)

and a final linear map gives the scalar output. LayerNorm sits *between the linear map and the
nonlinearity*, which is where the theorems place it.

Weight scales. ``sigma_w`` scales every linear map (as neural-tangents' ``Dense(W_std=...)``)
unless ``sigma_w_input`` is set, which then scales the first one only. The paper's theory
(App. A.1) uses unit-variance weights everywhere and multiplies each activation by
$\sqrt{c_\phi}$; moving that constant into the next linear map gives exactly the same network and
the same training dynamics, so the paper's network is ``sigma_w_input`` $= 1$,
``sigma_w`` $= \sqrt{c_\phi}$: :func:`theory_spec` builds it (chapter "Neural tangent kernels").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Literal

__all__ = [
    "ACTIVATIONS",
    "C_PHI",
    "LEAKY_RELU_SLOPE",
    "NORMS",
    "NORM_POSITIONS",
    "PARAMETRISATIONS",
    "PLACEMENTS",
    "MLPSpec",
    "placement",
    "theory_spec",
]

#: Activations the models know (the kernels may support fewer; they say so).
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "tanh", "erf")
#: Negative slope of ``leaky_relu`` (the paper's Remark C.3 uses 0.01, PyTorch's default).
LEAKY_RELU_SLOPE = 0.01
#: The paper's activation constant $c_\phi = (\lim_{s \to \infty} \E_{u \sim \N(0, s^2)}[\phi(u)^2] / s^{2n})^{-1}$
#: (its "Equation 19"), with $n$ the (asymptotic) degree of homogeneity of $\phi$: 2 for the ReLU
#: family and for GELU/SiLU (asymptotically ReLU), $2 / (1 + \text{slope}^2)$ for Leaky ReLU, and 1 for
#: the 0-homogeneous tanh and erf ($\E[\phi(u)^2] \to 1$).
C_PHI = {
    "relu": 2.0,
    "leaky_relu": 2.0 / (1.0 + LEAKY_RELU_SLOPE**2),
    "gelu": 2.0,
    "silu": 2.0,
    "tanh": 1.0,
    "erf": 1.0,
}
#: ``standard``: PyTorch-like, as the paper's experiments; ``ntk``: as the paper's theory.
PARAMETRISATIONS = ("standard", "ntk")
#: Named LayerNorm placements used in the paper's figures and tables.
PLACEMENTS = ("none", "first", "second", "last", "every")
#: Normalisation layers (:mod:`companion.normalisation`) at the positions ``layernorm`` lists; the
#: paper's theory is about ``layernorm``. ``batchnorm`` normalises each feature over the batch
#: (training) or with running averages (evaluation), the paper's App. L comparison.
NORMS = ("layernorm", "rmsnorm", "dyt", "batchnorm")
#: ``pre``: between a hidden layer's linear map and its activation (the paper's placement);
#: ``post``: after the activation (outside the paper's theorems).
NORM_POSITIONS = ("pre", "post")


def placement(name: str, depth: int) -> frozenset[int]:
    """Hidden layers that carry a LayerNorm for a named placement (``none/first/second/last/every``)."""
    if name not in PLACEMENTS:
        raise ValueError(
            f"unknown LayerNorm placement {name!r}; choose one of {', '.join(PLACEMENTS)} "
            f"or pass the set of hidden-layer indices (1..depth) directly"
        )
    if name == "second" and depth < 2:
        raise ValueError("placement 'second' needs at least two hidden layers")
    return frozenset(
        {"none": (), "first": (1,), "second": (2,), "last": (depth,), "every": range(1, depth + 1)}[name]
    )


@dataclasses.dataclass(frozen=True)
class MLPSpec:
    r"""A fully connected scalar-output network of the paper's family.

    Parameters
    ----------
    depth:
        Number of hidden layers ``L`` (the paper's experiments use 2).
    width:
        Hidden width (128 in the paper's experiments; ignored by infinite-width kernels).
    activation:
        One of :data:`ACTIVATIONS`.
    layernorm:
        Hidden layers (1-based) with a LayerNorm between their linear map and activation, or a
        placement name from :data:`PLACEMENTS`.
    sigma_w:
        Weight scale. ``standard``: weights uniform with variance ``sigma_w**2 / fan_in``
        ($\sqrt{2}$ is Kaiming/He-uniform). ``ntk``: weights $\N(0, 1)$, the layer computes
        $\sigma_w W x / \sqrt{\text{fan_in}}$.
    sigma_w_input:
        Weight scale of the first linear map only; ``None`` (default) means ``sigma_w``. The
        paper's theoretical network has ``sigma_w_input = 1`` (see :func:`theory_spec`).
    sigma_b:
        Bias scale: biases ``N(0, sigma_b**2)`` (``standard``) or ``sigma_b * b`` with ``b ~ N(0, 1)``
        (``ntk``). The paper uses ``sigma_b**2 = 0.01`` and its theory needs ``sigma_b != 0``.
    parametrisation:
        ``standard`` (the paper's experiments) or ``ntk`` (the paper's theory).
    ln_eps:
        LayerNorm epsilon of finite networks (PyTorch's default 1e-5; the theory has none).
    ln_affine:
        Whether LayerNorms learn a scale and shift (the theory's LayerNorm has none).
    norm:
        Which normalisation the layers listed in ``layernorm`` carry, one of :data:`NORMS`
        (``layernorm``, the default; ``rmsnorm``; ``dyt``, Dynamic Tanh; ``batchnorm``). ``ln_eps``
        and ``ln_affine`` apply to all of them (see :mod:`companion.normalisation`).
    norm_position:
        ``pre`` (default, the paper's placement) or ``post`` (after the activation).
    """

    depth: int = 2
    width: int = 128
    activation: str = "relu"
    layernorm: frozenset[int] | str = frozenset()
    sigma_w: float = math.sqrt(2.0)
    sigma_b: float = 0.1
    parametrisation: Literal["standard", "ntk"] = "standard"
    ln_eps: float = 1e-5
    ln_affine: bool = False
    sigma_w_input: float | None = None
    norm: str = "layernorm"
    norm_position: str = "pre"

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth must be a positive integer (number of hidden layers), got {self.depth!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"unknown parametrisation {self.parametrisation!r}; choose 'standard' or 'ntk'"
            )
        if self.norm not in NORMS:
            raise ValueError(f"unknown normalisation {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.norm_position not in NORM_POSITIONS:
            raise ValueError(
                f"unknown normalisation position {self.norm_position!r}; choose 'pre' (between the "
                f"linear map and the activation, as in the paper) or 'post' (after the activation)"
            )
        positions = self.layernorm
        if isinstance(positions, str):
            positions = placement(positions, self.depth)
        positions = frozenset(_as_indices(positions))
        bad = sorted(p for p in positions if not 1 <= p <= self.depth)
        if bad:
            raise ValueError(
                f"LayerNorm position(s) {bad} are not hidden layers of a depth-{self.depth} network; "
                f"use indices 1..{self.depth} (LayerNorm sits between a hidden layer's linear map "
                f"and its activation)"
            )
        object.__setattr__(self, "layernorm", positions)
        for name in ("sigma_w", "sigma_b", "ln_eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
        if self.sigma_w == 0:
            raise ValueError("sigma_w must be positive: with zero weights the network is constant")
        if self.sigma_w_input is not None:
            value = self.sigma_w_input
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(
                    f"sigma_w_input must be a positive finite number or None (= sigma_w), got {value!r}"
                )

    @property
    def weight_scales(self) -> tuple[float, ...]:
        """The weight scale of each linear map: ``depth`` hidden layers, then the read-out."""
        first = self.sigma_w if self.sigma_w_input is None else self.sigma_w_input
        return (float(first),) + (float(self.sigma_w),) * self.depth

    @property
    def has_layernorm(self) -> bool:
        """Whether any hidden layer carries a LayerNorm (the case of the paper's Theorem 3.2)."""
        return bool(self.layernorm)

    @property
    def label(self) -> str:
        """Short name used in legends and tables: ``no LN``, ``LN first``, ``LN every``, ...

        Other normalisations name themselves (``RMSNorm first``, ``DyT first``), and ``post``
        placement adds `` after act.``.
        """
        positions = self.layernorm
        if not positions:
            return "no LN"
        if self.norm == "batchnorm":
            return "BatchNorm" if positions == frozenset(range(1, self.depth + 1)) else "BatchNorm at " + ",".join(
                str(h) for h in sorted(positions))
        name = {"layernorm": "LN", "rmsnorm": "RMSNorm", "dyt": "DyT"}[self.norm]
        suffix = " after act." if self.norm_position == "post" else ""
        return self._placement_label(positions).replace("LN", name, 1) + suffix

    def _placement_label(self, positions: frozenset[int]) -> str:
        if positions == frozenset(range(1, self.depth + 1)) and self.depth > 1:
            return "LN every"
        if len(positions) == 1:
            (h,) = positions
            ordinal = {1: "first", 2: "second", 3: "third"}.get(h, f"{h}th")
            if h == self.depth and h > 2:
                ordinal = "last"
            return f"LN {ordinal}"
        return "LN at " + ",".join(str(h) for h in sorted(positions))

    def replace(self, **changes: object) -> "MLPSpec":
        """A copy with some fields changed (``spec.replace(layernorm="first")``)."""
        return dataclasses.replace(self, **changes)


def _as_indices(positions: Iterable[int]) -> Iterable[int]:
    try:
        values = list(positions)
    except TypeError:
        raise ValueError(
            f"layernorm must be a placement name or a set of hidden-layer indices, got {positions!r}"
        ) from None
    for p in values:
        if isinstance(p, bool) or not isinstance(p, int):
            raise ValueError(f"LayerNorm positions must be integers, got {p!r}")
    return values


def theory_spec(
    depth: int = 2,
    activation: str = "relu",
    layernorm: frozenset[int] | str | Iterable[int] = frozenset(),
    sigma_b: float = 0.1,
    width: int = 128,
) -> MLPSpec:
    r"""The network of the paper's theory (App. A.1) as an :class:`MLPSpec`.

    The paper writes every linear map with unit-variance weights, $z = W \xi / \sqrt{n} + \sigma_b b$,
    and scales every activation, $\xi = \sqrt{c_\phi} \, \phi(z)$. Moving $\sqrt{c_\phi}$ from the
    activation into the next linear map changes neither the function nor its gradients, so the
    paper's network is the NTK-parametrised :class:`MLPSpec` with ``sigma_w_input = 1``,
    ``sigma_w`` $= \sqrt{c_\phi}$ (:data:`C_PHI`), the paper's $\sigma_b^2 = 0.01$ and a LayerNorm
    without epsilon or affine parameters. For ReLU networks of depth $L$ its NTK diagonal is
    $(L + 1) q + \sigma_b^2 L (L + 1) / 2$ with $q = \|x\|^2 / n_0 + \sigma_b^2$ without LayerNorm
    and $(L + 1) + \sigma_b^2 L (L + 1) / 2$ with one in the first layer (3.03 for $L = 2$).
    """
    if activation not in C_PHI:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(C_PHI)}")
    return MLPSpec(
        depth=depth,
        width=width,
        activation=activation,
        layernorm=layernorm if isinstance(layernorm, str) else frozenset(layernorm),
        sigma_w=math.sqrt(C_PHI[activation]),
        sigma_w_input=1.0,
        sigma_b=sigma_b,
        parametrisation="ntk",
        ln_eps=0.0,
        ln_affine=False,
    )
