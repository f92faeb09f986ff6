r"""Chapter "One LayerNorm bounds the kernel": the paper's Thm 3.2, Thm C.1 and Cor. C.2, computed.

* :func:`diagonals`: $\Theta(x, x)$ against $\|x\|$ for every LayerNorm placement, and the constant
  $C = \sup_x \Theta(x, x)$ of each (:func:`companion.kernels.diagonal_sup`).
* :func:`pre_layernorm_ratio`: the mechanism of the proof for a LayerNorm in layer ``h``: the NTK
  and the variance of the pre-activations $z^{(h)}$ grow at the same rate, so their ratio, which
  is what the LayerNorm passes on, stays bounded.
* :func:`soft_cosine_collapse`: for a LayerNorm in the first layer, $\Theta(x, x')$ is a function
  of the soft-cosine $S(x, x'; \sigma_b^2)$ alone (Thm C.1).
* :func:`heatmaps`: the analytic NTK on $[-25, 25]^2$ for 1-D inputs, the infinite-width
  counterpart of the paper's Fig. 2.
* :func:`relu_constant` and :func:`relu_ln_first_of_s`: the constant ``C`` and the function
  $\tilde\Theta(S)$ of the paper's ReLU network derived by hand (scalar NumPy, independent of
  :mod:`companion.kernels`), and :func:`checks`, the chapter's claims as asserts against them.
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
    "relu_constant",
    "relu_ln_first_of_s",
    "checks",
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
    r"""$\Theta(x, x)$ on a grid of norms for several architectures, and their constants ``C``."""

    norms: np.ndarray
    values: dict[str, np.ndarray]
    constants: dict[str, float]


def diagonals(cfg: Config, specs: dict[str, MLPSpec]) -> Diagonals:
    r"""Diagonals at $\|x\|$ from 1e-4 to 1e12 (1-D inputs: $\|x\|^2 / n_0 = \|x\|^2$), and ``C`` of each spec."""
    norms = np.logspace(-4, 12, cfg.norm_points)
    values = {label: kernel_diag(norms[:, None], spec).ntk for label, spec in specs.items()}
    return Diagonals(norms, values, {label: diagonal_sup(spec) for label, spec in specs.items()})


def pre_layernorm_ratio(spec: MLPSpec, h: int, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""$(\Theta^{(h)}(x, x), \Sigma^{(h)}(x, x), \text{ratio})$ of the pre-activations of layer ``h`` (no LayerNorm before it).

    The network up to $z^{(h)}$ is a depth-``h - 1`` network whose read-out is layer ``h``'s
    linear map, so its output kernels are those of $z^{(h)}$; for ``h = 1`` they are the first
    layer's $\Sigma^{(1)} = \Theta^{(1)}$. A LayerNorm in layer ``h`` divides the NTK by the variance
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
    r"""Compare $\Theta(x, x')$ of random pairs with $\tilde\Theta(S)$ measured on pairs of fixed norm.

    The pairs have independent random directions in $\R^\text{dim}$ and norms $10^u$, ``u`` uniform on
    ``[-3, 6]``. The reference curve uses pairs of norm $\sqrt{2} r$ in the plane with the angle
    chosen to give each soft-cosine exactly. ``deviation`` is the largest $|\Theta - \tilde\Theta(S)|$
    relative to $\tilde\Theta(1)$.
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
    r"""$\Theta$ of 2-D pairs $x = \sqrt{2} r (1, 0)$, $x' = \sqrt{2} r (\cos a, \sin a)$ with soft-cosine ``s``."""
    b2 = spec.sigma_b**2
    cos_a = np.clip((s * (r**2 + b2) - b2) / r**2, -1.0, 1.0)
    x = np.sqrt(2) * r * np.array([[1.0, 0.0]])
    partner = np.sqrt(2) * r * np.stack([cos_a, np.sqrt(1 - cos_a**2)], axis=1)
    return kernel(x, partner, spec).ntk[0]


def heatmaps(cfg: Config, specs: dict[str, MLPSpec]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    r"""$\Theta(x, x')$ on a ``heat_points x heat_points`` grid of 1-D inputs in ``[-reach, reach]``."""
    grid = np.linspace(-cfg.heat_reach, cfg.heat_reach, cfg.heat_points)
    return grid, {label: kernel(grid[:, None], None, spec).ntk for label, spec in specs.items()}


def relu_constant(depth: int, layernorm: frozenset[int] | set[int], sigma_b: float = 0.1) -> float:
    r"""$C = \sup_x \Theta(x, x)$ of the paper's ReLU network with LayerNorms in ``layernorm``, by hand.

    With ``c_phi = 2`` a ReLU layer maps a pre-activation variance ``q`` to $q + \sigma_b^2$ and
    adds the NTK it receives unchanged ($2 \E[\phi'(u)^2] = 1$). Below the first LayerNorm (layer
    ``h0``) the NTK-to-variance ratio tends to ``h0`` as $\|x\|$ grows (one per layer); each
    LayerNorm divides the NTK by the variance and resets the variance to 1. The diagonal is largest
    in that limit (exactly constant for ``h0 = 1``), e.g. $(L + 1) + \sigma_b^2 (L - h_0 + 1)(L - h_0 + 2) / 2$
    for a single LayerNorm. ``inf`` without LayerNorm.
    """
    if not layernorm:
        return float("inf")
    b2 = sigma_b**2
    first = min(layernorm)
    q, theta = 1.0, float(first)  # just after the first LayerNorm, in the large-norm limit
    for h in range(first + 1, depth + 2):
        q, theta = q + b2, q + b2 + theta  # activation of layer h - 1 and the linear map of layer h
        if h in layernorm and h <= depth:
            q, theta = 1.0, theta / q
    return theta


def relu_ln_first_of_s(s: np.ndarray, depth: int, sigma_b: float = 0.1) -> np.ndarray:
    r"""$\tilde\Theta(S)$ of the paper's ReLU network with a LayerNorm in the first layer (Thm C.1), by hand.

    After the LayerNorm the pre-activations have unit variance and correlation ``S``; the NTK
    carries ``S`` (the first layer's gradient term divided by the LayerNorm's scales). Each ReLU
    layer with ``c_phi = 2`` then maps variance ``q``, covariance $c = q \rho$ and NTK ``theta`` to
    $q + \sigma_b^2$, $q (\sin t + (\pi - t) \rho) / \pi + \sigma_b^2$ and $c' + \theta (\pi - t) / \pi$
    with $t = \arccos \rho$ (the arc-cosine kernels of Cho and Saul 2009).
    """
    b2 = sigma_b**2
    q, c, theta = 1.0, np.asarray(s, np.float64), np.asarray(s, np.float64)
    for _ in range(depth):
        rho = np.clip(c / q, -1.0, 1.0)
        t = np.arccos(rho)
        c = q * (np.sin(t) + (np.pi - t) * rho) / np.pi + b2
        theta = c + theta * (np.pi - t) / np.pi
        q = q + b2
    return theta


def checks(cfg: Config | None = None) -> dict[str, float]:
    r"""Assert the chapter's claims against hand-derived values; return the largest deviations.

    Without LayerNorm the diagonal equals the hand-derived $(L + 1) q + \sigma_b^2 L (L + 1) / 2$
    and exceeds 1e24 at $\|x\| = 10^{12}$. With LayerNorms the diagonal never exceeds the hand-derived
    constant :func:`relu_constant`, reaches it far out, and :func:`companion.kernels.diagonal_sup`
    finds it; with a first-layer LayerNorm the diagonal equals it at every norm (Cor. C.2). The
    ratio a LayerNorm in layer ``h`` passes on tends to ``h``. With a first-layer LayerNorm the NTK
    of random pairs is a function of the soft-cosine (Thm C.1), and that function is
    :func:`relu_ln_first_of_s`. On $[-25, 25]^2$ the no-LayerNorm kernel exceeds 100 at
    ``(25, -25)`` and the LayerNorm kernels stay below 3.1. Raises ``AssertionError`` naming the
    claim that fails.
    """
    from companion.experiments.ntk_background import closed_form_diagonal

    cfg = config() if cfg is None else cfg
    specs = placements(cfg.depth)
    diag = diagonals(cfg, specs)
    worst = {"closed_form": 0.0, "constant": 0.0}
    plain = diag.values["no LN"]
    by_hand = closed_form_diagonal(diag.norms**2, cfg.depth, theory_spec().sigma_b, layernorm_first=False)
    error = float(np.max(np.abs(plain / by_hand - 1)))
    assert error < 1e-12, f"no LayerNorm: the diagonal is {error:.1e} away from the hand-derived formula"
    assert plain[-1] > 1e24, "no LayerNorm: the diagonal should grow without bound"
    worst["closed_form"] = error
    for label, spec in specs.items():
        if not spec.layernorm:
            continue
        constant = relu_constant(cfg.depth, spec.layernorm, spec.sigma_b)
        values = diag.values[label]
        assert np.all(values <= constant * (1 + 1e-12)), f"{label}: the diagonal exceeds the hand-derived C = {constant:.4f}"
        reach = abs(values[-1] / constant - 1)
        assert reach < 1e-9, f"{label}: the diagonal far out should reach C = {constant:.4f} (got {values[-1]:.6f})"
        found = abs(diag.constants[label] / constant - 1)
        assert found < 1e-9, f"{label}: diagonal_sup finds {diag.constants[label]:.6f}, not C = {constant:.6f}"
        assert constant < 5, f"{label}: the constant should be small"
        worst["constant"] = max(worst["constant"], float(reach), float(found))
    first = diag.values["LN first"]
    assert np.allclose(first, relu_constant(cfg.depth, {1}), rtol=1e-12, atol=0), "Cor. C.2: the diagonal is constant"
    base = theory_spec(depth=cfg.depth)
    for h in (2, 3):
        ratio = pre_layernorm_ratio(base, h, diag.norms)[2][-1]
        assert abs(ratio - h) < 1e-6, f"the ratio a LayerNorm in layer {h} passes on should tend to {h}, not {ratio:.6f}"
    spec = theory_spec(depth=2, layernorm="first")
    collapse = soft_cosine_collapse(cfg, spec)
    assert collapse.deviation < 1e-10, f"Thm C.1: the kernel should be a function of the soft-cosine ({collapse.deviation:.1e})"
    reference = relu_ln_first_of_s(collapse.s, 2, spec.sigma_b)
    derived = float(np.max(np.abs(collapse.theta / reference - 1)))
    assert derived < 1e-10, f"Thm C.1: Theta differs from the hand-derived Theta~(S) by {derived:.1e}"
    worst["collapse"], worst["soft_cosine_closed_form"] = collapse.deviation, derived
    _, heat = heatmaps(cfg, placements(cfg.heat_depth))
    assert heat["no LN"][-1, 0] > 100, "without LayerNorm Theta(25, -25) should exceed 100"
    assert max(heat["LN first"].max(), heat["LN every"].max()) < 3.1, "with LayerNorm the kernel should stay below 3.1"
    return worst


def plot_diagonals(ax, diag: Diagonals) -> None:
    r"""The diagonals against $\|x\|$ on log-log axes; placements whose curves coincide share one
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
