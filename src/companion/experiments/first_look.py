"""Chapter "What goes wrong far from the data": the paper's phenomenon in one experiment.

Two-hidden-layer ReLU networks of width 128, with and without one LayerNorm (after the first
hidden layer's linear map), are trained with full-batch Adam on a noisy sine sampled on
``[-1, 1]``, several seeds at once, and evaluated far outside the training interval.

Protocol (``full`` profile) follows the paper's toy study (Sec. 4.1, Table 3): 100 points, Adam with
learning rate 1e-3, 3000 full-batch epochs, 5 seeds, standard (PyTorch-like) parametrisation.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from companion import profile
from companion.arch import MLPSpec
from companion.data.toy import ToyData, make_1d
from companion.stats import MeanCI, mean_ci
from companion.train import fit

__all__ = ["Config", "CONFIGS", "config", "Result", "architectures", "run", "shell_mean_abs"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Sizes of the experiment; one instance per profile in :data:`CONFIGS`.

    It is also the toy problem every toy chapter shares (the paper's Sec. 4.1 and Table 3):
    ``n_train`` noisy points of a 1-D target on ``[-1, 1]``, a ``depth`` x ``width`` network
    trained with full-batch Adam, evaluated on ``grid_points`` points reaching ``reach``
    half-widths of the training interval. The configurations of :mod:`~companion.experiments.toy`
    and :mod:`~companion.experiments.normalisation` extend it.
    """

    seeds: int
    epochs: int
    grid_points: int
    n_train: int = 100
    noise: float = 0.05
    depth: int = 2
    width: int = 128
    learning_rate: float = 1e-3
    reach: float = 25.0
    data_seed: int = 0

    def data(self, target: str = "sine") -> ToyData:
        """The training set of ``target`` (:func:`companion.data.toy.make_1d`, seeded by ``data_seed``)."""
        return make_1d(target, n=self.n_train, noise=self.noise, seed=self.data_seed)

    def grid(self, data: ToyData) -> np.ndarray:
        """``grid_points`` inputs centred on the training interval, reaching ``reach`` of its
        half-widths on either side."""
        centre = sum(data.x_range) / 2
        return np.linspace(centre - self.reach * data.half_width, centre + self.reach * data.half_width,
                           self.grid_points)


#: The sizes of each profile: ``ci`` for two CPU cores, ``full`` for the paper's protocol.
CONFIGS = {
    "ci": Config(seeds=4, epochs=2000, grid_points=401),
    "full": Config(seeds=5, epochs=3000, grid_points=1001),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def architectures(cfg: Config) -> dict[str, MLPSpec]:
    """The two networks compared: no LayerNorm, and one LayerNorm in the first hidden layer."""
    base = MLPSpec(depth=cfg.depth, width=cfg.width, activation="relu")
    specs = [base, base.replace(layernorm="first")]
    return {spec.label: spec for spec in specs}


@dataclasses.dataclass
class Result:
    """Everything the chapter plots and checks."""

    config: Config
    data: ToyData
    specs: dict[str, MLPSpec]
    grid: np.ndarray
    predictions: dict[str, np.ndarray]
    train_mse: dict[str, np.ndarray]
    seconds: dict[str, float]

    def summary(self, label: str) -> MeanCI:
        """Mean and 95% band over seeds of the predictions of ``label`` on :attr:`grid`."""
        return mean_ci(self.predictions[label], axis=0)

    def distance(self) -> np.ndarray:
        r"""$\|x\|$ of each grid point in units of the training half-width."""
        return np.abs(self.grid) / self.data.half_width


def shell_mean_abs(result: Result, label: str, inner: float, outer: float) -> float:
    r"""Mean of $|f(x)|$ over seeds and grid points with ``inner`` $\leq \|x\| / \text{half-width} \leq$ ``outer``."""
    from companion.experiments.toy import shell_mean_abs as shell

    return shell(result.predictions[label], result.distance(), inner, outer)


def run(cfg: Config | None = None, specs: dict[str, MLPSpec] | None = None) -> Result:
    """Train every architecture on the toy sine for ``cfg.seeds`` seeds and predict on a wide grid.

    ``specs`` (label -> spec) replaces the two networks of :func:`architectures`; the chapter on
    normalisation variants trains its own on the same problem.
    """
    cfg = cfg or config()
    data = cfg.data("sine")
    grid = cfg.grid(data)
    specs = architectures(cfg) if specs is None else specs
    predictions, train_mse, seconds = {}, {}, {}
    for label, spec in specs.items():
        start = time.perf_counter()
        trained = fit(
            spec, data.x, data.y, seeds=range(cfg.seeds), epochs=cfg.epochs,
            learning_rate=cfg.learning_rate, desc=label,
        )
        predictions[label] = trained.predict(grid[:, None])
        train_mse[label] = np.mean((trained.predict(data.x) - data.y) ** 2, axis=1)
        seconds[label] = time.perf_counter() - start
    return Result(cfg, data, specs, grid, predictions, train_mse, seconds)
