r"""Chapter "Explosion without LayerNorm": the paper's Thm 3.1, computed.

* :func:`homogeneity`: $\Theta(\lambda x, x') / \lambda$ as ``lambda`` grows (Cor. E.2: the NTK of a
  network without LayerNorm and positively 1-homogeneous activations is asymptotically
  1-homogeneous in each argument; $n^L = 1$ for the ReLU family).
* :func:`orthant_data` and :func:`explode`: the proof's construction. Training inputs with pairwise
  positive inner products (all in the positive orthant), nonzero targets, the representer weights
  $\alpha = \Theta(X, X)^{-1} y$ and the leading coefficients $a(x_i) = \sum_j \alpha_j \hat\Theta(x_i, x_j)$;
  along the ray through a training point with ``a != 0`` the mean prediction grows like ``lambda``.
* :func:`ray_fit`: on the 1-D toy sine, the mean prediction is asymptotically linear on both sides
  (Xu et al. 2021), and with a LayerNorm it is not.
* :func:`checks`: the chapter's claims as asserts, the proof's limits and leading term recomputed
  from neural-tangents' kernels (the chapter's last cell and the fault-injection test call it).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from companion import profile
from companion.arch import MLPSpec, theory_spec
from companion.data.toy import make_1d
from companion.kernels import kernel, ntk_regression

__all__ = [
    "Config",
    "CONFIGS",
    "config",
    "architectures",
    "homogeneity",
    "orthant_data",
    "Explosion",
    "explode",
    "loglog_slope",
    "RayFit",
    "ray_fit",
    "checks",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the chapter's computations; one instance per profile in :data:`CONFIGS`."""

    n_train: int
    n_lambdas: int
    grid_points: int
    dim: int = 3
    depths: tuple[int, ...] = (2, 3)
    activations: tuple[str, ...] = ("relu", "leaky_relu")
    lambda_max: float = 1e12
    toy_points: int = 20
    reach: float = 1000.0
    data_seed: int = 0


CONFIGS = {
    "ci": Config(n_train=12, n_lambdas=49, grid_points=801),
    "full": Config(n_train=40, n_lambdas=97, grid_points=4001),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def architectures(cfg: Config) -> dict[str, MLPSpec]:
    """The paper's networks without LayerNorm, one per activation and depth, labelled ``relu, L=2``..."""
    return {f"{a}, L={d}": theory_spec(depth=d, activation=a) for a in cfg.activations for d in cfg.depths}


def lambdas(cfg: Config) -> np.ndarray:
    """Scales ``lambda`` from 1 to ``cfg.lambda_max``, evenly spaced in log."""
    return np.logspace(0, np.log10(cfg.lambda_max), cfg.n_lambdas)


def homogeneity(spec: MLPSpec, x: np.ndarray, x_other: np.ndarray, scales: np.ndarray) -> np.ndarray:
    r"""$\Theta(\lambda x, x_j) / \lambda$ for each scale (rows) and each $x_j$ (columns); ``x`` is one point."""
    points = scales[:, None] * x.reshape(1, -1)
    return kernel(points, x_other, spec).ntk / scales[:, None]


def loglog_slope(scales: np.ndarray, values: np.ndarray, tail: float = 1e4) -> float:
    r"""Least-squares slope of $\log |\text{values}|$ against ``log scales`` over ``scales >= tail``."""
    keep = scales >= tail
    return float(np.polyfit(np.log(scales[keep]), np.log(np.abs(values[keep])), 1)[0])


def orthant_data(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` inputs with positive coordinates (every pair has a positive inner product), N(0, 1) targets."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(size=(n, dim))) + 0.1
    y = rng.normal(size=n)
    return x, y


@dataclasses.dataclass
class Explosion:
    """The proof of Thm 3.1 on one architecture: leading coefficients and the exploding ray."""

    spec: MLPSpec
    alpha: np.ndarray
    leading: np.ndarray
    point: int
    scales: np.ndarray
    mean: np.ndarray

    @property
    def slope(self) -> float:
        r"""Measured log-log slope of $|\E f(\lambda \tilde x)|$ for $\lambda \geq 10^4$."""
        return loglog_slope(self.scales, self.mean)

    @property
    def predicted(self) -> np.ndarray:
        r"""The leading term $\lambda a(\tilde x)$ of the proof."""
        return self.scales * self.leading[self.point]


def explode(spec: MLPSpec, x: np.ndarray, y: np.ndarray, scales: np.ndarray) -> Explosion:
    r"""Follow the proof: ``alpha``, $a(x_i)$ from $\Theta(10^{12} x_i, x_j) / 10^{12}$, then $\E f(\lambda \tilde x)$."""
    gram = kernel(x, None, spec).ntk
    alpha = np.linalg.solve(gram, y)
    big = 1e12
    limit = kernel(big * x, x, spec).ntk / big
    leading = limit @ alpha
    point = int(np.argmax(np.abs(leading)))
    mean = ntk_regression(x, y, scales[:, None] * x[point], spec).mean
    return Explosion(spec, alpha, leading, point, scales, mean)


@dataclasses.dataclass
class RayFit:
    """The mean prediction on the 1-D toy sine, and straight lines fitted far out on each side."""

    spec: MLPSpec
    grid: np.ndarray
    mean: np.ndarray
    slopes: tuple[float, float]
    residual: float


def ray_fit(cfg: Config, spec: MLPSpec) -> RayFit:
    r"""Kernel regression on ``cfg.toy_points`` points of the toy sine; lines fitted for $\|x\| \geq$ ``reach / 10``.

    ``residual`` is the largest deviation from the fitted lines relative to the largest prediction:
    close to 0 when the prediction is asymptotically linear along both rays.
    """
    data = make_1d("sine", n=cfg.toy_points, noise=0.0, seed=cfg.data_seed)
    grid = np.linspace(-cfg.reach, cfg.reach, cfg.grid_points)
    mean = ntk_regression(data.x, data.y, grid[:, None], spec).mean
    slopes, worst = [], 0.0
    for side in (grid <= -cfg.reach / 10, grid >= cfg.reach / 10):
        coefficients = np.polyfit(grid[side], mean[side], 1)
        slopes.append(float(coefficients[0]))
        worst = max(worst, float(np.max(np.abs(np.polyval(coefficients, grid[side]) - mean[side]))))
    return RayFit(spec, grid, mean, (slopes[0], slopes[1]), worst / float(np.max(np.abs(mean))))


def checks(cfg: Config | None = None) -> dict[str, float]:
    r"""Assert the chapter's claims; return the largest deviations measured.

    For each architecture of :func:`architectures`: $\Theta(\lambda x, x')$ grows with log-log
    slope 1; the limits $\hat\Theta(x_i, x_j)$ of the orthant set agree with neural-tangents'
    kernel at $\lambda = 10^{12}$ and are positive (Cor. E.3); the mean prediction along the ray
    through ``x_tilde`` grows with slope 1, beyond 1e10 at $\lambda = 10^{12}$, and matches the
    proof's leading term $\lambda a(\tilde x)$ with ``alpha`` and ``Theta_hat`` taken from
    neural-tangents (an implementation independent of ours). On the 1-D toy sine the prediction
    without LayerNorm is two straight lines of nonzero slope far out, with a first-layer
    LayerNorm it is flat. Raises ``AssertionError`` naming the claim that fails.
    """
    from companion.experiments.ntk_background import neural_tangents_ntk

    cfg = config() if cfg is None else cfg
    scales = lambdas(cfg)
    x, y = orthant_data(cfg.n_train, cfg.dim, cfg.data_seed)
    big = 1e12
    worst = {"kernel_slope": 0.0, "limit_vs_nt": 0.0, "leading_vs_nt": 0.0, "explosion_slope": 0.0}
    for label, spec in architectures(cfg).items():
        ratio = homogeneity(spec, x[0], x[1:2], scales)[:, 0]
        kernel_slope = 1 + loglog_slope(scales, ratio)
        assert abs(kernel_slope - 1) < 1e-4, f"{label}: Theta(lambda x, x') should grow like lambda (slope {kernel_slope:.6f})"
        limit_nt = neural_tangents_ntk(spec, big * x, x) / big
        limit = kernel(big * x, x, spec).ntk / big
        assert limit_nt.min() > 0, f"{label}: Theta_hat must be positive for positive cosines (Cor. E.3)"
        limit_gap = float(np.max(np.abs(limit / limit_nt - 1)))
        assert limit_gap < 1e-8, f"{label}: Theta_hat differs from neural-tangents' by {limit_gap:.1e}"
        result = explode(spec, x, y, scales)
        leading_nt = limit_nt @ np.linalg.solve(neural_tangents_ntk(spec, x, x), y)
        assert np.all(np.abs(leading_nt) > 1e-3), f"{label}: the leading coefficients a(x_i) should be nonzero"
        leading_gap = abs(result.mean[-1] / (scales[-1] * leading_nt[result.point]) - 1)
        assert leading_gap < 1e-6, f"{label}: E f(1e12 x~) is {leading_gap:.1e} away from the proof's leading term"
        assert abs(result.slope - 1) < 1e-4, f"{label}: E f(lambda x~) should grow like lambda (slope {result.slope:.6f})"
        assert abs(result.mean[-1]) > 1e10, f"{label}: the prediction should be unbounded"
        for key, value in (("kernel_slope", abs(kernel_slope - 1)), ("limit_vs_nt", limit_gap),
                           ("leading_vs_nt", leading_gap), ("explosion_slope", abs(result.slope - 1))):
            worst[key] = max(worst[key], float(value))
    plain, normed = ray_fit(cfg, theory_spec()), ray_fit(cfg, theory_spec(layernorm="first"))
    assert plain.residual < 1e-4, f"without LayerNorm the prediction should be asymptotically linear ({plain.residual:.1e})"
    assert max(abs(s) for s in plain.slopes) > 0.05, "without LayerNorm the lines far out should have nonzero slopes"
    assert max(abs(s) for s in normed.slopes) < 1e-4, f"with LayerNorm the prediction should saturate (slopes {normed.slopes})"
    worst["toy_residual"] = plain.residual
    return worst
