r"""Chapter "Neural tangent kernels": the analytic kernel, finite networks approaching it, training.

Three computations back the chapter:

* :func:`closed_form_diagonal`: the ReLU diagonals the chapter derives by hand, to compare with
  :func:`companion.kernels.kernel_diag`.
* :func:`width_sweep`: the empirical NTK of freshly initialised flax networks of growing width
  against the analytic NTK, at the seven inputs of the notes' own check.
* :func:`neural_tangents_gap`: the largest relative difference between our NTK and the one
  neural-tangents computes with its own code for the same architecture.
* :func:`checks`: the chapter's kernel claims against both independent references, as asserts
  (the chapter's last cell and the fault-injection test call it).
* :func:`train_ensemble`: networks of the paper's theoretical parametrisation trained by full-batch
  gradient descent to convergence, several seeds, against the kernel-regression mean
  $\Theta(x, X) \Theta(X, X)^{-1} y$ (Lee et al. 2019).

The training set lies on a circle in the plane (8 points, radius 2, target ``sin(2 angle)``), where
the NTK Gram matrix is well conditioned (condition number about 16): gradient descent converges in
about a hundred steps and the networks stay close to their linearisation. On a dense 1-D grid the
condition number is in the thousands, the small eigen-directions need long training and large
weight changes, and a width-1024 network visibly leaves the kernel regime (the chapter says why).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from companion import profile
from companion.arch import MLPSpec, theory_spec
from companion.kernels import empirical_ntk, kernel, kernel_diag, ntk_regression, stax_model
from companion.stats import MeanCI, mean_ci
from companion.train import fit

__all__ = [
    "Config",
    "CONFIGS",
    "config",
    "PROBE_INPUTS",
    "closed_form_diagonal",
    "CLOSED_FORM_NORMS",
    "NT_CASES",
    "closed_form_error",
    "neural_tangents_gap",
    "neural_tangents_ntk",
    "checks",
    "WidthSweep",
    "width_sweep",
    "circle_data",
    "Ensemble",
    "train_ensemble",
    "architectures",
]

#: The inputs of the notes' independent check (section 5.3): 1-D, from -25 to 25.
PROBE_INPUTS = np.array([-25.0, -3.0, -0.5, 0.2, 1.0, 5.0, 25.0])[:, None]


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the chapter's computations; one instance per profile in :data:`CONFIGS`."""

    widths: tuple[int, ...]
    ntk_seeds: int
    train_width: int
    train_seeds: int
    grid_points: int
    depth: int = 2
    n_train: int = 8
    radius: float = 2.0
    reach: float = 6.0
    lr_fraction: float = 0.8
    decay: float = 12.0


CONFIGS = {
    "ci": Config(widths=(64, 256, 1024), ntk_seeds=24, train_width=512, train_seeds=16, grid_points=121),
    "full": Config(widths=(64, 128, 256, 512, 1024, 2048, 4096, 8192), ntk_seeds=64, train_width=2048,
                   train_seeds=32, grid_points=241),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def closed_form_diagonal(norm2: np.ndarray, depth: int, sigma_b: float, layernorm_first: bool) -> np.ndarray:
    r"""$\Theta(x, x)$ of the paper's ReLU network, derived by hand (chapter, Exercise 1).

    With $q = \|x\|^2 / n_0 + \sigma_b^2$: $(L + 1) q + \sigma_b^2 L (L + 1) / 2$ without LayerNorm
    and $(L + 1) + \sigma_b^2 L (L + 1) / 2$ with one in the first layer (``norm2`` $= \|x\|^2 / n_0$).
    """
    b2 = sigma_b**2
    q = np.ones_like(norm2) if layernorm_first else norm2 + b2
    return (depth + 1) * q + b2 * depth * (depth + 1) / 2


#: Input norms at which :func:`closed_form_error` compares the kernel with the hand-derived diagonals.
CLOSED_FORM_NORMS = np.array([0.0, 1e-8, 1e-3, 1.0, 25.0, 1e4, 1e8, 1e12])

#: ``(activation, LayerNorm layers)`` of the depth-2 networks compared with neural-tangents.
NT_CASES = (("relu", ()), ("relu", (1,)), ("relu", (2,)), ("leaky_relu", (1, 2)), ("gelu", (1,)), ("erf", (2,)))


def closed_form_error(depth: int = 2, norms: np.ndarray = CLOSED_FORM_NORMS) -> dict[str, float]:
    """Largest relative deviation of :func:`companion.kernels.kernel_diag` from :func:`closed_form_diagonal`.

    For the paper's ReLU network of this depth without LayerNorm (``"no LN"``) and with one in the
    first layer (``"LN first"``), at 1-D inputs of the given norms.
    """
    paper = theory_spec(depth=depth)
    out = {}
    for first in (False, True):
        spec = paper.replace(layernorm=frozenset({1} if first else ()))
        computed = kernel_diag(norms[:, None], spec).ntk
        by_hand = closed_form_diagonal(norms**2, depth, paper.sigma_b, first)
        out[spec.label] = float(np.max(np.abs(computed / by_hand - 1)))
    return out


def neural_tangents_gap(spec: MLPSpec, x1: np.ndarray, x2: np.ndarray) -> float:
    """Largest ``|Theta_ours / Theta_nt - 1|`` between ``x1`` and ``x2``; neural-tangents' ``stax`` is the reference."""
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    ours = kernel(x1, x2, spec).ntk
    theirs = neural_tangents_ntk(spec, x1, x2)
    return float(np.max(np.abs(ours / theirs - 1)))


def neural_tangents_ntk(spec: MLPSpec, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """neural-tangents' infinite-width NTK of ``spec`` between ``x1`` and ``x2`` (float64, memoised)."""
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    return _nt_ntk(spec, x1.tobytes(), x1.shape, x2.tobytes(), x2.shape).copy()


@functools.lru_cache(maxsize=64)
def _nt_ntk(spec: MLPSpec, b1: bytes, shape1: tuple, b2: bytes, shape2: tuple) -> np.ndarray:
    x1 = np.frombuffer(b1, np.float64).reshape(shape1)
    x2 = np.frombuffer(b2, np.float64).reshape(shape2)
    _, _, kernel_fn = stax_model(spec)
    with jax.enable_x64(True):
        return np.asarray(kernel_fn(jnp.asarray(x1), jnp.asarray(x2), "ntk"))


def checks(depth: int = 2) -> dict[str, float]:
    """Assert the chapter's kernel claims on two independent references; return what was measured.

    The kernels must reproduce the hand-derived ReLU diagonals (:func:`closed_form_diagonal`,
    including the constant 3.03 with a LayerNorm first) to 1e-12 at norms from 0 to 1e12, and
    neural-tangents' kernels for every case of :data:`NT_CASES` to 1e-10, on random inputs of two
    scales. Raises ``AssertionError`` naming the claim that fails.
    """
    errors = closed_form_error(depth)
    for label, error in errors.items():
        assert error < 1e-12, f"{label}: the kernel must reproduce the hand-derived ReLU diagonal (off by {error:.1e})"
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(20, 3)), 5 * rng.normal(size=(15, 3))
    gaps = {}
    for activation, layernorm in NT_CASES:
        spec = theory_spec(depth=depth, activation=activation, layernorm=layernorm)
        gaps[f"{activation}, {spec.label}"] = gap = neural_tangents_gap(spec, x1, x2)
        assert gap < 1e-10, f"{activation}, {spec.label}: the kernel must agree with neural-tangents (off by {gap:.1e})"
    return {"closed_form_error": max(errors.values()), "nt_difference": max(gaps.values())}


@dataclasses.dataclass
class WidthSweep:
    r"""Relative errors $\|\hat\Theta - \Theta\|_F / \|\Theta\|_F$ per width and seed, and the fitted rate."""

    spec: MLPSpec
    widths: np.ndarray
    errors: np.ndarray
    analytic: np.ndarray
    seconds: float

    def summary(self) -> MeanCI:
        """Mean error per width with its 95% confidence interval over seeds."""
        return mean_ci(self.errors, axis=1)

    @property
    def slope(self) -> float:
        r"""Least-squares slope of $\log(\text{mean error})$ against $\log(\text{width})$: $-1/2$ for a $1/\sqrt{\text{width}}$ rate."""
        return _slope(self.widths, self.errors)

    def slope_interval(self, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """Bootstrap interval of :attr:`slope`, resampling the seeds of each width independently."""
        rng = np.random.default_rng(seed)
        n = self.errors.shape[1]
        draws = [
            _slope(self.widths, np.take_along_axis(self.errors, rng.integers(0, n, self.errors.shape), axis=1))
            for _ in range(resamples)
        ]
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)


def _slope(widths: np.ndarray, errors: np.ndarray) -> float:
    return float(np.polyfit(np.log(widths), np.log(errors.mean(axis=1)), 1)[0])


def width_sweep(cfg: Config, spec: MLPSpec, x: np.ndarray = PROBE_INPUTS) -> WidthSweep:
    """Empirical NTKs of ``cfg.ntk_seeds`` networks per width against the analytic NTK."""
    start = time.perf_counter()
    analytic = kernel(x, None, spec).ntk
    errors = []
    for width in cfg.widths:
        empirical = empirical_ntk(x, None, spec.replace(width=width), seeds=range(cfg.ntk_seeds))
        errors.append(np.linalg.norm(empirical - analytic, axis=(1, 2)) / np.linalg.norm(analytic))
    return WidthSweep(spec, np.array(cfg.widths), np.array(errors), analytic, time.perf_counter() - start)


def circle_data(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.n_train`` equally spaced points on a circle of radius ``cfg.radius``, target ``sin(2 angle)``."""
    angle = np.linspace(0, 2 * np.pi, cfg.n_train, endpoint=False)
    x = cfg.radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return x, np.sin(2 * angle)


@dataclasses.dataclass
class Ensemble:
    """Trained networks of one architecture against the kernel-regression mean."""

    spec: MLPSpec
    t: np.ndarray
    grid: np.ndarray
    predictions: np.ndarray
    kernel_mean: np.ndarray
    final_loss: np.ndarray
    learning_rate: float
    steps: int
    seconds: float

    def summary(self) -> MeanCI:
        """Mean and 95% band over seeds of the trained ensemble's predictions."""
        return mean_ci(self.predictions, axis=0)

    @property
    def coverage(self) -> float:
        """Fraction of grid points where the kernel mean lies inside the ensemble's 95% interval."""
        s = self.summary()
        return float(np.mean((s.lower <= self.kernel_mean) & (self.kernel_mean <= s.upper)))

    @property
    def rms_error(self) -> float:
        """Root-mean-square difference between the ensemble mean and the kernel mean on the grid."""
        return float(np.sqrt(np.mean((self.predictions.mean(axis=0) - self.kernel_mean) ** 2)))


def train_ensemble(cfg: Config, spec: MLPSpec) -> Ensemble:
    r"""Train ``cfg.train_seeds`` networks by gradient descent to convergence, predict on a line.

    Gradient descent on the mean squared error moves the training outputs by
    $-\eta (2 / n) \Theta (f - y)$ per step, stable for $\eta < n / \lambda_\text{max}$. We take
    $\eta$ = ``lr_fraction`` $\cdot \, n / \lambda_\text{max}$ and enough steps for the slowest eigen-direction to
    shrink by ``exp(-decay)``. The prediction line is ``x(t) = (t, 1)``, $|t| \leq$ ``reach``: it
    crosses the circle of training points twice and leaves it on both sides.
    """
    x, y = circle_data(cfg)
    eigenvalues = np.linalg.eigvalsh(kernel(x, None, spec).ntk)
    n = len(x)
    eta = cfg.lr_fraction * n / eigenvalues[-1]
    steps = int(np.ceil(cfg.decay / (2 * eta * eigenvalues[0] / n)))
    t = np.linspace(-cfg.reach, cfg.reach, cfg.grid_points)
    grid = np.stack([t, np.ones_like(t)], axis=1)
    start = time.perf_counter()
    trained = fit(spec.replace(width=cfg.train_width), x, y, seeds=range(cfg.train_seeds), epochs=steps,
                  learning_rate=eta, optimizer="sgd", desc=spec.label)
    predictions = trained.predict(grid)
    seconds = time.perf_counter() - start
    mean = ntk_regression(x, y, grid, spec).mean
    return Ensemble(spec, t, grid, predictions, mean, trained.losses[:, -1], float(eta), steps, seconds)


def architectures(cfg: Config) -> dict[str, MLPSpec]:
    """The paper's theoretical ReLU network without LayerNorm and with one in the first layer."""
    base = theory_spec(depth=cfg.depth)
    return {spec.label: spec for spec in (base, base.replace(layernorm=frozenset({1})))}
