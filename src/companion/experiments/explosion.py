"""Chapter "Explosion without LayerNorm": the paper's Thm 3.1, computed.

* :func:`homogeneity`: ``Theta(lambda x, x') / lambda`` as ``lambda`` grows (Cor. E.2: the NTK of a
  network without LayerNorm and positively 1-homogeneous activations is asymptotically
  1-homogeneous in each argument; ``n^L = 1`` for the ReLU family).
* :func:`orthant_data` and :func:`explode`: the proof's construction. Training inputs with pairwise
  positive inner products (all in the positive orthant), nonzero targets, the representer weights
  ``alpha = Theta(X, X)^-1 y`` and the leading coefficients ``a(x_i) = sum_j alpha_j Theta_hat(x_i, x_j)``;
  along the ray through a training point with ``a != 0`` the mean prediction grows like ``lambda``.
* :func:`ray_fit`: on the 1-D toy sine, the mean prediction is asymptotically linear on both sides
  (Xu et al. 2021), and with a LayerNorm it is not.
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
    """``Theta(lambda x, x_j) / lambda`` for each scale (rows) and each ``x_j`` (columns); ``x`` is one point."""
    points = scales[:, None] * x.reshape(1, -1)
    return kernel(points, x_other, spec).ntk / scales[:, None]


def loglog_slope(scales: np.ndarray, values: np.ndarray, tail: float = 1e4) -> float:
    """Least-squares slope of ``log |values|`` against ``log scales`` over ``scales >= tail``."""
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
        """Measured log-log slope of ``|E f(lambda x_tilde)|`` for ``lambda >= 1e4``."""
        return loglog_slope(self.scales, self.mean)

    @property
    def predicted(self) -> np.ndarray:
        """The leading term ``lambda a(x_tilde)`` of the proof."""
        return self.scales * self.leading[self.point]


def explode(spec: MLPSpec, x: np.ndarray, y: np.ndarray, scales: np.ndarray) -> Explosion:
    """Follow the proof: ``alpha``, ``a(x_i)`` from ``Theta(1e12 x_i, x_j) / 1e12``, then ``E f(lambda x_tilde)``."""
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
    """Kernel regression on ``cfg.toy_points`` points of the toy sine; lines fitted for ``|x| >= reach / 10``.

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
