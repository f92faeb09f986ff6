"""Chapter "One LayerNorm bounds the kernel": the paper's Thm 3.2, Thm C.1 and Cor. C.2, computed.

* :func:`diagonals`: ``Theta(x, x)`` against ``|x|`` for every LayerNorm placement, and the constant
  ``C = sup_x Theta(x, x)`` of each (:func:`companion.kernels.diagonal_sup`).
* :func:`pre_layernorm_ratio`: the mechanism of the proof for a LayerNorm in layer ``h``: the NTK
  and the variance of the pre-activations ``z^(h)`` grow at the same rate, so their ratio, which
  is what the LayerNorm passes on, stays bounded.
* :func:`soft_cosine_collapse`: for a LayerNorm in the first layer, ``Theta(x, x')`` is a function
  of the soft-cosine ``S(x, x'; sigma_b^2)`` alone (Thm C.1).
* :func:`heatmaps`: the analytic NTK on ``[-25, 25]^2`` for 1-D inputs, the infinite-width
  counterpart of the paper's Fig. 2.
* :func:`plot_diagonals` and :func:`plot_heatmaps` draw the chapter's figures of them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from companion import profile
from companion.arch import MLPSpec, theory_spec
from companion.kernels import diagonal_sup, kernel, kernel_diag, kernel_pairs
from companion.kernels.recursion import augmented_unit

__all__ = [
    "Config",
    "CONFIGS",
    "config",
    "placements",
    "Diagonals",
    "diagonals",
    "pre_layernorm_ratio",
    "Collapse",
    "soft_cosine_collapse",
    "heatmaps",
    "plot_diagonals",
    "plot_heatmaps",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the chapter's computations; one instance per profile in :data:`CONFIGS`."""

    norm_points: int
    pairs: int
    heat_points: int
    depth: int = 3
    heat_depth: int = 2
    heat_reach: float = 25.0
    dim: int = 3
    seed: int = 0


CONFIGS = {
    "ci": Config(norm_points=161, pairs=400, heat_points=101),
    "full": Config(norm_points=641, pairs=4000, heat_points=401),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def placements(depth: int) -> dict[str, MLPSpec]:
    """The paper's ReLU network of this depth without LayerNorm, with one in each layer, and in every layer."""
    base = theory_spec(depth=depth)
    specs = [base] + [base.replace(layernorm=frozenset({h})) for h in range(1, depth + 1)]
    specs.append(base.replace(layernorm="every"))
    return {spec.label: spec for spec in specs}


@dataclasses.dataclass
class Diagonals:
    """``Theta(x, x)`` on a grid of norms for several architectures, and their constants ``C``."""

    norms: np.ndarray
    values: dict[str, np.ndarray]
    constants: dict[str, float]


def diagonals(cfg: Config, specs: dict[str, MLPSpec]) -> Diagonals:
    """Diagonals at ``|x|`` from 1e-4 to 1e12 (1-D inputs: ``|x|^2 / n0 = |x|^2``), and ``C`` of each spec."""
    norms = np.logspace(-4, 12, cfg.norm_points)
    values = {label: kernel_diag(norms[:, None], spec).ntk for label, spec in specs.items()}
    return Diagonals(norms, values, {label: diagonal_sup(spec) for label, spec in specs.items()})


def pre_layernorm_ratio(spec: MLPSpec, h: int, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Theta^(h)(x, x), Sigma^(h)(x, x), ratio)`` of the pre-activations of layer ``h`` (no LayerNorm before it).

    The network up to ``z^(h)`` is a depth-``h - 1`` network whose read-out is layer ``h``'s
    linear map, so its output kernels are those of ``z^(h)``; for ``h = 1`` they are the first
    layer's ``Sigma^(1) = Theta^(1)``. A LayerNorm in layer ``h`` divides the NTK by the variance
    on the diagonal, i.e. passes on the ratio.
    """
    x = norms[:, None]
    if h == 1:
        q = spec.weight_scales[0] ** 2 * norms**2 + spec.sigma_b**2
        return q, q, np.ones_like(q)
    upstream = spec.replace(depth=h - 1, layernorm=frozenset())
    nngp, ntk = kernel_diag(x, upstream)
    return ntk, nngp, ntk / nngp


@dataclasses.dataclass
class Collapse:
    """Pairs with norms spread over many decades: their soft-cosine and first-LayerNorm NTK."""

    s: np.ndarray
    theta: np.ndarray
    reference_s: np.ndarray
    reference_theta: np.ndarray
    deviation: float


def soft_cosine_collapse(cfg: Config, spec: MLPSpec) -> Collapse:
    """Compare ``Theta(x, x')`` of random pairs with ``Theta~(S)`` measured on pairs of fixed norm.

    The pairs have independent random directions in ``R^dim`` and norms ``10^u``, ``u`` uniform on
    ``[-3, 6]``. The reference curve uses pairs of norm ``sqrt(2) r`` in the plane with the angle
    chosen to give each soft-cosine exactly. ``deviation`` is the largest ``|Theta - Theta~(S)|``
    relative to ``Theta~(1)``.
    """
    rng = np.random.default_rng(cfg.seed)

    def sample(n: int) -> np.ndarray:
        directions = rng.normal(size=(n, cfg.dim))
        return 10 ** rng.uniform(-3, 6, size=(n, 1)) * directions / np.linalg.norm(directions, axis=1, keepdims=True)

    a, b = sample(cfg.pairs), sample(cfg.pairs)
    s = np.sum(augmented_unit(a, spec.sigma_b**2) * augmented_unit(b, spec.sigma_b**2), axis=1)
    theta = kernel_pairs(a, b, spec).ntk
    reference_s = np.linspace(-0.999, 1.0, 400)
    reference_theta = _at_soft_cosine(np.concatenate([reference_s, s]), spec)
    deviation = np.max(np.abs(theta - reference_theta[len(reference_s):])) / reference_theta[len(reference_s) - 1]
    return Collapse(s, theta, reference_s, reference_theta[: len(reference_s)], float(deviation))


def _at_soft_cosine(s: np.ndarray, spec: MLPSpec, r: float = 100.0) -> np.ndarray:
    """``Theta`` of 2-D pairs ``x = sqrt(2) r (1, 0)``, ``x' = sqrt(2) r (cos a, sin a)`` with soft-cosine ``s``."""
    b2 = spec.sigma_b**2
    cos_a = np.clip((s * (r**2 + b2) - b2) / r**2, -1.0, 1.0)
    x = np.sqrt(2) * r * np.array([[1.0, 0.0]])
    partner = np.sqrt(2) * r * np.stack([cos_a, np.sqrt(1 - cos_a**2)], axis=1)
    return kernel(x, partner, spec).ntk[0]


def heatmaps(cfg: Config, specs: dict[str, MLPSpec]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``Theta(x, x')`` on a ``heat_points x heat_points`` grid of 1-D inputs in ``[-reach, reach]``."""
    grid = np.linspace(-cfg.heat_reach, cfg.heat_reach, cfg.heat_points)
    return grid, {label: kernel(grid[:, None], None, spec).ntk for label, spec in specs.items()}


def plot_diagonals(ax, diag: Diagonals) -> None:
    """The diagonals against ``|x|`` on log-log axes; placements whose curves coincide share one
    line and one legend entry that says so (:func:`companion.plotting.curves`)."""
    from companion import plotting

    ax.set(xscale="log", yscale="log", xlabel=r"$\|x\|$", ylabel=r"$\Theta(x, x)$")
    plotting.curves(ax, diag.norms, diag.values)
    ax.legend()


def plot_heatmaps(grid: np.ndarray, heat: dict[str, np.ndarray]):
    """The heat maps of :func:`heatmaps` in a 2-column grid, each with its own colour bar beside it
    (constrained layout keeps bars and the next panel's labels apart). Returns the figure."""
    import matplotlib.pyplot as plt

    rows = -(-len(heat) // 2)
    fig, axes = plt.subplots(rows, 2, figsize=(6.9, 2.9 * rows), layout="constrained", squeeze=False)
    extent = (grid[0], grid[-1], grid[0], grid[-1])
    for ax, (label, values) in zip(axes.flat, heat.items()):
        image = ax.imshow(values, origin="lower", extent=extent, cmap="viridis")
        ax.set(title=label, xlabel="$x'$", ylabel="$x$")
        ax.grid(False)
        fig.colorbar(image, ax=ax, shrink=0.9, label=r"$\Theta(x, x')$")
    for ax in axes.flat[len(heat):]:
        ax.set_visible(False)
    return fig
