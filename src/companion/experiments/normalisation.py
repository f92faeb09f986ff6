r"""Chapter "Which normalisations bound the kernel?": LayerNorm's relatives, in theory and in training.

The paper proves its guarantee for one layer: a parameter-free LayerNorm between a linear map and
its activation (Theorems 3.2, 3.3), or right after the first linear map of any architecture
(Theorems C.1, C.3). This module asks the same two questions of its relatives (RMSNorm, LayerNorm
with affine parameters, LayerNorm with a large ``eps``, LayerNorm after the activation, and Dynamic
Tanh), in the two-hidden-layer ReLU network of the toy study with the normalisation in the first
hidden layer:

1. **Is the NTK diagonal bounded?** :func:`infinite_width_diagonal` gives the derived closed form
   of $\Theta(x, x)$ at infinite width (NTK parametrisation) for every row, and
   :func:`kernel_measurements` measures the empirical NTK at initialisation
   (:func:`companion.kernels.empirical_ntk_fn`, mean over seeds) on and off the diagonal as $\|x\|$ grows.
2. **Does the trained network's extrapolation stay bounded?** The networks are trained on the toy
   sine of the first chapter (:func:`companion.experiments.first_look.run`, standard
   parametrisation, Adam) and evaluated up to :attr:`Config.reach` training half-widths away.

The derivation (chapter, section "The kernel of each variant"): with
$q = \sigma_\text{in}^2 \|x\|^2 / n_0 + \sigma_b^2$ the variance of a first-layer pre-activation
(``sigma_in`` the first weight scale) and, for ReLU in the NTK parametrisation, $D = \sigma_w^2 / 2$
the factor each later layer contributes to the backward pass,

.. math::

    \Theta(x, x) &= T_1(x) + \sum_{h=2}^{L+1} \Sigma^{(h-1)}(x, x) \, D^{L+1-h}, \\
    \Sigma^{(h)} &= D \, \Sigma^{(h-1)} + \sigma_b^2 \quad (h \geq 2),

where $T_1$ (the gradient of the first layer and of the normalisation's own parameters) and
$\Sigma^{(1)}$ depend on the normalisation (:func:`first_layer_terms`). Where
:mod:`companion.kernels` covers a row (no normalisation, LayerNorm with any ``eps``, RMSNorm), its
general recursion gives the same numbers (:attr:`Result.reference`, checked in the chapter).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

from companion import kernels, profile
from companion.arch import MLPSpec, theory_spec
from companion.experiments import first_look
from companion.kernels import empirical_ntk_fn
from companion.models import MLP
from companion.normalisation import DYT_ALPHA0

__all__ = [
    "Config", "CONFIGS", "config", "ROWS", "variants", "first_layer_terms", "infinite_width_diagonal",
    "dyt_slope", "kernel_measurements", "Result", "run",
]

#: Each row of the chapter's table: the change to the LayerNorm network and what the paper says.
ROWS: dict[str, tuple[dict, str]] = {
    "no LN": ({"layernorm": "none"}, "Thm 3.1: can explode"),
    "LN first": ({}, "Thms 3.2, 3.3: bounded"),
    "RMSNorm first": ({"norm": "rmsnorm"}, "not covered (derived: = LN)"),
    "LN first + affine": ({"ln_affine": True}, "Thms C.1, C.3: bounded"),
    "LN first, eps 100": ({"ln_eps": 100.0}, "not covered (theory: eps = 0)"),
    "LN first after ReLU": ({"norm_position": "post"}, "not covered"),
    "DyT first": ({"norm": "dyt", "ln_affine": True}, "not covered"),
}
#: Variance of ReLU(u) for u ~ N(0, 1): the scale LayerNorm divides by when it follows the ReLU.
RELU_VARIANCE = 0.5 - 1.0 / (2.0 * math.pi)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(first_look.Config):
    """Sizes of the experiment (the shared toy problem of :class:`first_look.Config
    <companion.experiments.first_look.Config>`, reaching further, and the NTK measurement); one
    instance per profile in :data:`CONFIGS`."""

    ntk_width: int
    ntk_seeds: int
    reach: float = 250.0
    ntk_x: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
    anchor: float = 0.5  # the second argument of the off-diagonal kernel, inside the training range


CONFIGS = {
    "ci": Config(seeds=3, epochs=2000, grid_points=1001, ntk_width=1024, ntk_seeds=8),
    # width 2048: the 16 seeds' Jacobians (10 inputs x 4.2M parameters) fit a 16 GB GPU at once
    "full": Config(seeds=5, epochs=3000, grid_points=2001, ntk_width=2048, ntk_seeds=16),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def variants(cfg: Config, theory: bool = False) -> dict[str, MLPSpec]:
    """One spec per row of :data:`ROWS`: the toy study's networks (standard parametrisation, as the
    paper's experiments), or with ``theory`` the paper's theoretical network
    (:func:`companion.arch.theory_spec`, NTK parametrisation) at width ``cfg.ntk_width``."""
    if theory:
        spec = theory_spec(depth=cfg.depth, layernorm="first", width=cfg.ntk_width)
    else:
        spec = MLPSpec(depth=cfg.depth, width=cfg.width, activation="relu", layernorm="first")
    return {name: spec.replace(**changes) for name, (changes, _) in ROWS.items()}


def _half_mean(g, q: float, alpha: float) -> float:
    r"""$\E[g(u) 1(u > 0)]$ for ``u ~ N(0, q)``, by quadrature (``g`` may peak sharply near 0)."""
    density = lambda u: math.exp(-u * u / (2 * q)) / math.sqrt(2 * math.pi * q)  # noqa: E731
    edge = 12.0 * math.sqrt(q)
    split = min(40.0 / alpha, edge)
    inner = integrate.quad(lambda u: g(u) * density(u), 0.0, split, limit=200)[0]
    outer = integrate.quad(lambda u: g(u) * density(u), split, edge, limit=200)[0] if split < edge else 0.0
    return inner + outer


def first_layer_terms(spec: MLPSpec, q: float) -> tuple[float, float]:
    r"""$(T_1, \Sigma^{(1)})$ of the module docstring at first-layer variance ``q`` (derived).

    * none: $T_1 = q D^L$, $\Sigma^{(1)} = D q + \sigma_b^2$ (grows with ``q``).
    * LayerNorm or RMSNorm before the ReLU: at infinite width both divide by $\sqrt{q + \epsilon}$
      (the mean of the pre-activations across units tends to 0), so with $r = q / (q + \epsilon)$,
      $T_1 = r D^L$ and $\Sigma^{(1)} = D r + \sigma_b^2$; affine parameters add $(r + 1) D^L$.
    * LayerNorm after the ReLU divides by the ReLU's standard deviation $\sqrt{s_2 q + \epsilon}$,
      $s_2 = 1/2 - 1/(2 \pi)$: $T_1 = (q/2) P / (s_2 q + \epsilon)$ and
      $\Sigma^{(1)} = \sigma_w^2 s_2 q / (s_2 q + \epsilon) + \sigma_b^2$, with $P = \sigma_w^2 D^{L-1}$.
    * DyT, $\gamma \tanh(\alpha u) + \beta$ at initialisation (``gamma = 1``, ``beta = 0``):
      $T_1 = P \E[1(u>0) (q \alpha^2 \operatorname{sech}^4(\alpha u) + u^2 \operatorname{sech}^4(\alpha u) + \tanh^2(\alpha u) + 1)]$
      (first layer, ``alpha``, ``gamma``, ``beta``) and $\Sigma^{(1)} = \sigma_w^2 \E[1(u>0) \tanh^2] + \sigma_b^2$.
      The first term grows like $\sqrt{q}$: the diagonal is unbounded (:func:`dyt_slope`).
    """
    sw2, sb2, depth = spec.sigma_w**2, spec.sigma_b**2, spec.depth  # sigma_w: the layers after the first
    d = sw2 / 2.0
    p = sw2 * d ** (depth - 1)
    eps = spec.ln_eps
    if not spec.layernorm:
        return q * d**depth, d * q + sb2
    if spec.norm in ("layernorm", "rmsnorm") and spec.norm_position == "pre":
        r = q / (q + eps)
        return r * d**depth + (r + 1.0) * d**depth * spec.ln_affine, d * r + sb2
    if spec.norm == "layernorm" and not spec.ln_affine:
        return 0.5 * q * p / (RELU_VARIANCE * q + eps), sw2 * RELU_VARIANCE * q / (RELU_VARIANCE * q + eps) + sb2
    if spec.norm == "dyt" and spec.norm_position == "pre":
        a = DYT_ALPHA0
        sech4 = lambda u: (2.0 * math.exp(-abs(a * u)) / (1.0 + math.exp(-2.0 * abs(a * u)))) ** 4  # noqa: E731
        tanh2 = _half_mean(lambda u: math.tanh(a * u) ** 2, q, a)
        grads = _half_mean(lambda u: (q * a * a + u * u) * sech4(u), q, a)
        return p * (grads + (tanh2 + 0.5) * spec.ln_affine), sw2 * tanh2 + sb2
    raise ValueError(f"no closed form derived for {spec.label} with ln_affine={spec.ln_affine}")


def infinite_width_diagonal(spec: MLPSpec, x: np.typing.ArrayLike) -> np.ndarray:
    r"""Derived $\Theta(x, x)$ of the infinite-width NTK at each row of ``x`` (shape ``(n, n0)``).

    For ReLU networks in the NTK parametrisation with the normalisation (if any) in hidden layer 1.
    """
    if spec.activation != "relu" or spec.parametrisation != "ntk" or not spec.layernorm <= {1}:
        raise ValueError("the closed forms are derived for ReLU, the NTK parametrisation and a normalisation in layer 1")
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    d, sb2 = spec.sigma_w**2 / 2.0, spec.sigma_b**2
    out = []
    for norm2 in np.sum(x**2, axis=1) / x.shape[1]:
        total, sigma = first_layer_terms(spec, spec.weight_scales[0] ** 2 * norm2 + sb2)
        for h in range(2, spec.depth + 2):
            total += sigma * d ** (spec.depth + 1 - h)
            sigma = d * sigma + sb2
        out.append(total)
    return np.asarray(out)


def dyt_slope(spec: MLPSpec, n0: int = 1) -> float:
    r"""$\lim \Theta(x, x) / \|x\|$ for DyT in layer 1: $P (2 \alpha / 3) \sigma_\text{in} / \sqrt{2 \pi n_0}$.

    From $\E[\alpha^2 \operatorname{sech}^4(\alpha u) 1(u>0)] \sim (2 \alpha / 3) / \sqrt{2 \pi q}$ (the integral of
    $\operatorname{sech}^4$ is 4/3) times $q \sim \sigma_\text{in}^2 \|x\|^2 / n_0$.
    """
    p = spec.sigma_w**2 * (spec.sigma_w**2 / 2.0) ** (spec.depth - 1)
    return p * (2.0 * DYT_ALPHA0 / 3.0) * spec.weight_scales[0] / math.sqrt(2.0 * math.pi * n0)


def kernel_measurements(cfg: Config) -> dict[str, dict[str, np.ndarray]]:
    r"""Empirical NTK at initialisation, NTK parametrisation, width ``cfg.ntk_width``.

    Returns ``{row: {"diagonal": (seeds, n), "anchor": (seeds, n)}}``: $\Theta(x, x)$ and
    $\Theta(x, \text{anchor})$ at ``x`` in ``cfg.ntk_x``, one row per seed (``jax.vmap`` over seeds).
    """
    x = jnp.asarray(np.r_[cfg.ntk_x, cfg.anchor][:, None], jnp.float32)
    keys = jax.vmap(jax.random.key)(jnp.arange(cfg.ntk_seeds, dtype=jnp.uint32))
    out = {}
    for name, spec in variants(cfg, theory=True).items():
        model = MLP(spec)
        ntk = empirical_ntk_fn(lambda p, xs, model=model: model.apply({"params": p}, xs))
        params = jax.vmap(lambda k, model=model: model.init(k, x[:1])["params"])(keys)
        kernels = np.asarray(jax.jit(jax.vmap(lambda p, ntk=ntk: ntk(x, None, p)))(params))
        out[name] = {"diagonal": np.diagonal(kernels, axis1=1, axis2=2)[:, :-1], "anchor": kernels[:, :-1, -1]}
    return out


@dataclasses.dataclass
class Result:
    """Everything the chapter plots, tabulates and checks."""

    config: Config
    kernel: dict[str, dict[str, np.ndarray]]
    theory: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    trained: first_look.Result

    @property
    def names(self) -> list[str]:
        """The normalisation variants compared, in table order."""
        return list(self.kernel)

    def measured(self, name: str, key: str = "diagonal") -> np.ndarray:
        """Mean over seeds of the empirical ``diagonal`` or ``anchor`` kernel along ``cfg.ntk_x``."""
        return self.kernel[name][key].mean(axis=0)

    def kernel_growth(self, name: str, key: str = "diagonal", start: float = 10.0, stop: float = 100.0) -> float:
        r"""Measured kernel at $\|x\|$ = ``stop`` over its value at $\|x\|$ = ``start``."""
        x = np.asarray(self.config.ntk_x)
        values = self.measured(name, key)
        return float(values[x == stop][0] / values[x == start][0])

    def extrapolation_growth(self, name: str) -> float:
        """Mean $|f|$ of the trained networks at 200-250 over 100-125 training half-widths (2: linear)."""
        far = first_look.shell_mean_abs(self.trained, name, 0.8 * self.config.reach, self.config.reach)
        near = first_look.shell_mean_abs(self.trained, name, 0.4 * self.config.reach, 0.5 * self.config.reach)
        return far / near


def run(cfg: Config | None = None) -> Result:
    """Measure every row's kernel, derive its infinite-width diagonal, and train it on the toy sine."""
    cfg = cfg or config()
    kernel = kernel_measurements(cfg)
    x = np.asarray(cfg.ntk_x)[:, None]
    specs = variants(cfg, theory=True)
    theory = {name: infinite_width_diagonal(spec, x) for name, spec in specs.items()}
    reference = {}
    for name, spec in specs.items():
        try:
            reference[name] = kernels.kernel_diag(x, spec).ntk
        except ValueError:  # a row companion.kernels does not cover (affine, after ReLU, DyT)
            continue
    return Result(cfg, kernel, theory, reference, first_look.run(cfg, variants(cfg)))
