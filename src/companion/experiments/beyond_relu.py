r"""Chapter "Beyond ReLU": GELU and SiLU behave like ReLU far away (Thm C.2); tanh does not (App. C).

* :func:`doubly_scaled_ratio`: $\Theta_\phi(\lambda x, \lambda x') / \Theta_\text{ReLU}(\lambda x, \lambda x')$ for
  asymptotically ReLU activations (Def. C.2, Remark C.4): tends to 1.
* :func:`growth`: along rays through the training points of the positive-orthant set of chapter
  "Explosion without LayerNorm", the growth exponents of the diagonal $\Theta(x, x)$ and of the
  mean prediction, and the constant ``C``, for each activation and LayerNorm placement.
* :func:`quadrature_comparison`: the book's SiLU kernel (Gaussian scale mixture of GELU kernels)
  against neural-tangents' Gauss-Hermite quadrature as the input norm grows.
* :func:`checks`: the chapter's kernel claims as asserts, with neural-tangents' closed-form GELU
  kernels as an independent reference (the chapter's last cell and the fault-injection test call it).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from companion import profile
from companion.arch import MLPSpec, theory_spec
from companion.experiments.explosion import loglog_slope, orthant_data
from companion.kernels import (
    diagonal_profile,
    diagonal_sup,
    kernel,
    kernel_pairs,
    output_bound,
    stax_model,
)
from companion.kernels.regression import PROFILE_GRID

__all__ = [
    "Config",
    "CONFIGS",
    "config",
    "ACTIVATIONS",
    "PLACEMENTS",
    "doubly_scaled_ratio",
    "Growth",
    "growth",
    "quadrature_comparison",
    "scales",
    "spec_for",
    "checks",
]

#: The activations compared: ReLU, two asymptotically-ReLU ones, and a 0-homogeneous one.
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
#: LayerNorm placements compared (the paper's two-hidden-layer network).
PLACEMENTS = ("none", "first", "second")


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the chapter's computations; one instance per profile in :data:`CONFIGS`."""

    n_train: int
    n_scales: int
    nt_degrees: tuple[int, ...]
    dim: int = 3
    depth: int = 2
    scale_max: float = 1e12
    nt_points: int = 4
    seed: int = 0
    activations: tuple[str, ...] = ACTIVATIONS


CONFIGS = {
    "ci": Config(n_train=12, n_scales=25, nt_degrees=(64, 128)),
    "full": Config(n_train=40, n_scales=97, nt_degrees=(32, 64, 128, 256)),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def scales(cfg: Config) -> np.ndarray:
    """``lambda`` from 1 to ``cfg.scale_max``, evenly spaced in log."""
    return np.logspace(0, np.log10(cfg.scale_max), cfg.n_scales)


def spec_for(cfg: Config, activation: str, placement: str) -> MLPSpec:
    r"""The paper's network with this activation ($\sigma_w = \sqrt{c_\phi}$) and LayerNorm placement."""
    return theory_spec(depth=cfg.depth, activation=activation, layernorm=placement)


def doubly_scaled_ratio(cfg: Config, activation: str, x: np.ndarray, x_other: np.ndarray) -> np.ndarray:
    r"""$\Theta_\phi(\lambda x, \lambda x') / \Theta_\text{ReLU}(\lambda x, \lambda x')$ for each scale (no LayerNorm)."""
    lam = scales(cfg)[:, None]
    both, partner = lam * x.reshape(1, -1), lam * x_other.reshape(1, -1)
    ours = kernel_pairs(both, partner, spec_for(cfg, activation, "none")).ntk
    return ours / kernel_pairs(both, partner, spec_for(cfg, "relu", "none")).ntk


@dataclasses.dataclass
class Growth:
    r"""Growth exponents (log-log slopes for $\lambda \geq 10^4$) and constants per architecture."""

    diagonal_slope: dict[tuple[str, str], float]
    mean_slope: dict[tuple[str, str], float]
    largest_mean: dict[tuple[str, str], float]
    constant: dict[tuple[str, str], float]
    bound: dict[tuple[str, str], float]


def growth(cfg: Config) -> Growth:
    r"""Diagonal and mean-prediction growth along the rays through the training points.

    ``bound`` is Thm 3.3's $\sqrt{C / \lmin} \, \|y\|$ (infinite where ``C`` is).
    """
    x, y = orthant_data(cfg.n_train, cfg.dim, cfg.seed)
    lam = scales(cfg)
    diag_slope, mean_slope, largest, constant, bound = {}, {}, {}, {}, {}
    for activation in cfg.activations:
        for placement in PLACEMENTS:
            spec = spec_for(cfg, activation, placement)
            key = (activation, placement)
            # Theta(x, x) depends on |x|^2 / n0 only: its profile gives the growth along any ray.
            diag_slope[key] = loglog_slope(np.sqrt(PROFILE_GRID[1:]), diagonal_profile(spec)[1:], tail=1e4)
            rays = (lam[:, None, None] * x[None]).reshape(-1, x.shape[1])
            both = kernel(np.concatenate([x, rays]), x, spec).ntk  # Gram matrix and rays in one call
            gram = (both[: len(x)] + both[: len(x)].T) / 2
            means = (both[len(x) :] @ np.linalg.solve(gram, y)).reshape(len(lam), len(x))
            biggest = np.max(np.abs(means), axis=1)
            mean_slope[key] = loglog_slope(lam, biggest)
            largest[key] = float(biggest[-1])
            constant[key] = diagonal_sup(spec)
            bound[key] = output_bound(x, y, spec, C=constant[key], gram=gram).bound
    return Growth(diag_slope, mean_slope, largest, constant, bound)


def quadrature_comparison(cfg: Config, norms: np.ndarray) -> dict[int, np.ndarray]:
    r"""Largest relative difference between neural-tangents' Gauss-Hermite SiLU NTK and ours, per degree and norm.

    Inputs: ``cfg.nt_points`` random unit directions in $\R^\text{dim}$ scaled to each norm; the network
    has no LayerNorm, so the pre-activation variances grow with the norm.
    """
    rng = np.random.default_rng(cfg.seed)
    u = rng.normal(size=(cfg.nt_points, cfg.dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    spec = spec_for(cfg, "silu", "none")
    out = {}
    for degree in cfg.nt_degrees:
        _, _, kernel_fn = stax_model(spec, numerical_degree=degree)
        errors = []
        for r in norms:
            ours = kernel(r * u, None, spec).ntk
            with jax.enable_x64(True):
                theirs = np.asarray(kernel_fn(jnp.asarray(r * u), None, "ntk"))
            errors.append(float(np.max(np.abs(theirs / ours - 1))))
        out[degree] = np.array(errors)
    return out


def checks(cfg: Config | None = None) -> dict[str, float]:
    r"""Assert the chapter's kernel claims; return the largest deviations measured.

    * GELU's and SiLU's NTKs approach ReLU's (ratio within 1e-9 of 1 at ``lambda = scale_max``).
    * neural-tangents' closed-form GELU kernel (its own code) agrees with ours to 1e-10, without
      LayerNorm and with one in either layer, at the training points scaled by 1 and 1e6.
    * ReLU, GELU, SiLU without LayerNorm: the diagonal grows like $\|x\|^2$ and the mean prediction
      like $\|x\|$; with a LayerNorm in the first or second layer ``C`` is finite, the diagonal flat
      and the largest mean prediction within Thm 3.3's bound.
    * tanh: without LayerNorm the diagonal grows like $\|x\|$ and the prediction stays bounded; a
      second-layer LayerNorm does not bound the kernel, a first-layer one does.

    Raises ``AssertionError`` naming the claim that fails.
    """
    from companion.experiments.ntk_background import neural_tangents_gap

    cfg = config() if cfg is None else cfg
    x, _ = orthant_data(cfg.n_train, cfg.dim, cfg.seed)
    measured = {"ratio": 0.0, "nt_difference": 0.0}
    for activation in [a for a in ("gelu", "silu") if a in cfg.activations]:
        ratio = doubly_scaled_ratio(cfg, activation, x[0], x[1])[-1]
        assert abs(ratio - 1) < 1e-9, f"{activation}: the kernel should approach ReLU's (ratio {ratio:.12f})"
        measured["ratio"] = max(measured["ratio"], float(abs(ratio - 1)))
    probes = np.concatenate([x[:4], 1e6 * x[:4]])
    for placement in PLACEMENTS:
        gap = neural_tangents_gap(spec_for(cfg, "gelu", placement), probes, x)
        assert gap < 1e-10, f"gelu, LN {placement}: the kernel differs from neural-tangents' by {gap:.1e}"
        measured["nt_difference"] = max(measured["nt_difference"], gap)
    g = growth(cfg)
    for activation in [a for a in ("relu", "gelu", "silu") if a in cfg.activations]:
        slope = g.diagonal_slope[(activation, "none")]
        assert abs(slope - 2) < 1e-3, f"{activation}: without LayerNorm the diagonal should grow like |x|^2 (slope {slope:.4f})"
        slope = g.mean_slope[(activation, "none")]
        assert abs(slope - 1) < 1e-3, f"{activation}: without LayerNorm the prediction should grow like |x| (slope {slope:.4f})"
        for placement in ("first", "second"):
            key = (activation, placement)
            assert np.isfinite(g.constant[key]), f"{key}: C should be finite"
            assert abs(g.diagonal_slope[key]) < 1e-3, f"{key}: the diagonal should be flat far out"
            assert g.largest_mean[key] <= g.bound[key], f"{key}: Thm 3.3 must hold"
    slope = g.diagonal_slope[("tanh", "none")]
    assert abs(slope - 1) < 1e-2, f"tanh: the diagonal should grow like |x| (slope {slope:.4f})"
    assert abs(g.mean_slope[("tanh", "none")]) < 1e-3, "tanh: predictions should stay bounded without LayerNorm"
    assert np.isinf(g.constant[("tanh", "second")]), "tanh: a second-layer LayerNorm should not bound the kernel"
    assert np.isfinite(g.constant[("tanh", "first")]), "tanh: a first-layer LayerNorm should bound it"
    return measured
