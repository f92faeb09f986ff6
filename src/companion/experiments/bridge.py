"""Chapter "From the theory's networks to the experiments'": the parametrisation bridge.

The paper proves its theorems for infinitely wide networks in the NTK parametrisation trained by
gradient flow, and runs its experiments with width-128 networks in PyTorch's standard
parametrisation trained with Adam. This module trains the toy study of Figure 1 (no LayerNorm
against one LayerNorm in the first hidden layer; :mod:`companion.experiments.toy`) in three
regimes, at growing widths:

* ``standard, Adam``: the paper's experiments (Kaiming-uniform weights, Adam, learning rate 1e-3);
* ``NTK, Adam``: the same optimiser in the theory's parametrisation (only the parametrisation changes);
* ``NTK, GD``: full-batch gradient descent in the NTK parametrisation, the theory's setting.

and compares the mean prediction over seeds with the infinite-width kernel predictions of the same
:class:`~companion.arch.MLPSpec` (chapter "Bounded outputs"):

* the posterior mean ``Theta(x, X) Theta(X, X)^{-1} y`` (:func:`companion.kernels.ntk_regression`),
  the infinitely long trained network;
* for gradient descent, the linearised network after the same number of steps (Lee et al. 2019):
  with the MSE loss ``mean_i (f(x_i) - y_i)^2`` and learning rate ``lr``, the residual on the
  training set evolves as ``(I - eta Theta)^t y`` with ``eta = 2 lr / n``, so the expected
  prediction after ``t`` steps is ``Theta(x, X) Theta^{-1} (I - (I - eta Theta)^t) y``
  (:func:`gd_kernel_mean`).

Two numbers say how far the trained networks are from a kernel prediction out of distribution,
over the grid points beyond ``ood_from`` half-widths of the training interval: :func:`ood_gap`,
the root-mean-square difference of the mean over seeds and the kernel prediction, in units of the
largest training target; and :func:`coverage`, the fraction of those points where the kernel
prediction lies inside the 95% confidence band of the mean over seeds. The band matters: at
initialisation a network is a random function whose spread grows with ``|x|`` without LayerNorm,
and training on a bounded interval does not remove it far away, so with a handful of seeds the
mean of trained networks is a noisy estimate of the expected prediction the theory describes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import linalg

from companion import artefacts, kernels, profile
from companion.arch import MLPSpec
from companion.data.toy import ToyData, make_1d
from companion.experiments.toy import growth
from companion.stats import MeanCI, mean_ci
from companion.train import fit_variants

__all__ = ["Config", "CONFIGS", "config", "REGIMES", "Bridge", "run", "gd_kernel_mean", "ood_gap", "coverage",
           "summarise", "run_artefact", "load_artefact", "main"]

#: Training regimes: (parametrisation, optimiser); the learning rate comes from the configuration.
REGIMES = {
    "standard, Adam": ("standard", "adam"),
    "NTK, Adam": ("ntk", "adam"),
    "NTK, GD": ("ntk", "sgd"),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the bridge study; one instance per profile in :data:`CONFIGS`."""

    seeds: int
    epochs: int
    widths: tuple[int, ...]
    grid_points: int
    target: str = "sine"
    n_train: int = 100
    noise: float = 0.05
    depth: int = 2
    adam_lr: float = 1e-3
    gd_lr: float = 0.4
    reach: float = 25.0
    ood_from: float = 2.0
    data_seed: int = 0


CONFIGS = {
    "ci": Config(seeds=4, epochs=1000, widths=(64, 256), grid_points=201),
    "full": Config(seeds=5, epochs=3000, widths=(128, 512, 1024, 2048, 4096), grid_points=1001),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def gd_kernel_mean(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, spec: MLPSpec, lr: float, steps: int) -> np.ndarray:
    """Expected prediction of the infinitely wide network after ``steps`` of full-batch gradient
    descent on ``mean (f - y)^2`` with learning rate ``lr``: ``Theta(x, X) Theta^-1 (I - (I - eta Theta)^t) y``."""
    gram = kernels.kernel(x, x, spec).ntk
    cross = kernels.kernel(x_test, x, spec).ntk
    eta = 2 * lr / len(y)
    lam, vec = linalg.eigh(gram)
    if eta * lam.max() >= 2:
        raise ValueError(f"gradient descent with learning rate {lr} diverges on this kernel "
                         f"(eta * lambda_max = {eta * lam.max():.2f} >= 2); lower the learning rate")
    lam = np.maximum(lam, 0.0)
    # (1 - (1 - eta lam)^t) / lam, continued by eta t at lam = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        filt = np.where(lam > 1e-12, (1 - (1 - eta * lam) ** steps) / lam, eta * steps)
    return cross @ (vec @ (filt * (vec.T @ y)))


def ood_gap(prediction: np.ndarray, reference: np.ndarray, distance: np.ndarray, ood_from: float, scale: float) -> float:
    """RMS of ``prediction - reference`` where ``distance >= ood_from``, divided by ``scale``."""
    mask = distance >= ood_from
    return float(np.sqrt(np.mean((prediction[mask] - reference[mask]) ** 2)) / scale)


def coverage(summary: MeanCI, reference: np.ndarray, distance: np.ndarray, ood_from: float) -> float:
    """Fraction of the points with ``distance >= ood_from`` where ``reference`` lies in the band of ``summary``."""
    mask = distance >= ood_from
    inside = (summary.lower[mask] <= reference[mask]) & (reference[mask] <= summary.upper[mask])
    return float(np.mean(inside))


@dataclasses.dataclass
class Bridge:
    """Trained predictions in every regime and width, and the kernel predictions they approach."""

    config: Config
    data: ToyData
    grid: np.ndarray
    labels: tuple[str, ...]
    predictions: dict[tuple[str, int, str], np.ndarray]  # (regime, width, label) -> (seeds, grid)
    kernel_mean: dict[str, np.ndarray]  # label -> posterior mean (infinite time)
    kernel_gd: dict[str, np.ndarray]  # label -> linearised gradient descent after cfg.epochs steps
    seconds: dict[tuple[str, int], float]

    def distance(self) -> np.ndarray:
        """``|x|`` of each grid point in units of the training half-width."""
        return np.abs(self.grid) / self.data.half_width

    def summary(self, regime: str, width: int, label: str) -> MeanCI:
        """Mean and 95% band over seeds of one trained network's predictions on the grid."""
        return mean_ci(self.predictions[regime, width, label], axis=0)

    def growth(self, regime: str, width: int, label: str) -> float:
        """:func:`companion.experiments.toy.growth` of one trained network."""
        return growth(self.predictions[regime, width, label], self.distance())

    def reference(self, label: str, which: str = "posterior") -> np.ndarray:
        """The kernel prediction ``posterior`` (infinite time) or ``gd`` (after the same gradient-descent steps)."""
        if which not in ("posterior", "gd"):
            raise ValueError(f"the kernel reference is 'posterior' or 'gd', got {which!r}")
        return self.kernel_mean[label] if which == "posterior" else self.kernel_gd[label]

    def gap(self, regime: str, width: int, label: str, which: str = "posterior") -> float:
        """:func:`ood_gap` of the mean over seeds to a kernel prediction, in units of ``max |y|``."""
        mean = self.predictions[regime, width, label].mean(axis=0)
        scale = float(np.max(np.abs(self.data.y)))
        return ood_gap(mean, self.reference(label, which), self.distance(), self.config.ood_from, scale)

    def coverage(self, regime: str, width: int, label: str, which: str = "posterior") -> float:
        """:func:`coverage` of a kernel prediction by the 95% band of the mean over seeds."""
        return coverage(self.summary(regime, width, label), self.reference(label, which), self.distance(),
                        self.config.ood_from)


def run(cfg: Config | None = None, regimes: Sequence[str] = tuple(REGIMES)) -> Bridge:
    """Train no LN and LN first in every regime and width; compute the kernel predictions."""
    cfg = cfg or config()
    data = make_1d(cfg.target, n=cfg.n_train, noise=cfg.noise, seed=cfg.data_seed)
    reach = cfg.reach * data.half_width
    grid = np.linspace(-reach, reach, cfg.grid_points)
    predictions, seconds = {}, {}
    labels: tuple[str, ...] = ()
    for regime in regimes:
        parametrisation, optimizer = REGIMES[regime]
        lr = cfg.adam_lr if optimizer == "adam" else cfg.gd_lr
        for width in cfg.widths:
            base = MLPSpec(depth=cfg.depth, width=width, parametrisation=parametrisation)
            specs = [base, base.replace(layernorm="first")]
            labels = tuple(s.label for s in specs)
            start = time.perf_counter()
            trained = fit_variants(specs, data.x, data.y, seeds=range(cfg.seeds), epochs=cfg.epochs,
                                   learning_rates=lr, optimizer=optimizer, desc=f"{regime}, width {width}")
            for spec, result in zip(specs, trained):
                predictions[regime, width, spec.label] = result.predict(grid[:, None])
            seconds[regime, width] = time.perf_counter() - start
    kernel_specs = {s.label: s for s in (MLPSpec(depth=cfg.depth, parametrisation="ntk"),
                                         MLPSpec(depth=cfg.depth, parametrisation="ntk", layernorm="first"))}
    kernel_mean = {label: kernels.ntk_regression(data.x, data.y, grid[:, None], spec).mean
                   for label, spec in kernel_specs.items()}
    kernel_gd = {label: gd_kernel_mean(data.x, data.y, grid[:, None], spec, cfg.gd_lr, cfg.epochs)
                 for label, spec in kernel_specs.items()}
    return Bridge(cfg, data, grid, labels, predictions, kernel_mean, kernel_gd, seconds)


# ---- the full run (widths up to 4096: a GPU's job): the summary numbers, with provenance -----------

def summarise(result: Bridge) -> dict:
    """Growth, OOD gap and coverage per regime, width and label, JSON-ready."""
    return {regime: {str(width): {label: {
        "growth": result.growth(regime, width, label),
        "gap_posterior": result.gap(regime, width, label), "gap_gd": result.gap(regime, width, label, "gd"),
        "coverage_posterior": result.coverage(regime, width, label),
        "coverage_gd": result.coverage(regime, width, label, "gd"),
        "seconds": result.seconds[regime, width]} for label in result.labels}
        for width in result.config.widths} for regime in REGIMES if (regime, result.config.widths[0]) in result.seconds}


def load_artefact(profile_name: str = "full", folder: Path | None = None) -> dict | None:
    """The saved ``summary.json`` of ``profile_name`` (``None`` when there is none)."""
    return artefacts.read_summary("bridge", profile_name, folder)


def run_artefact(profile_name: str | None = None, out: Path | None = None) -> dict:
    """Train every regime and width of ``profile_name`` and write ``summary.json`` (config, results,
    provenance, wall time)."""
    name = profile_name or profile.active()
    folder = artefacts.output_folder("bridge", name, out)
    start = time.perf_counter()
    cfg = config(name)
    result = run(cfg)
    summary = {"experiment": "bridge", "profile": name, "config": dataclasses.asdict(cfg),
               "results": summarise(result), "wall_seconds": time.perf_counter() - start,
               "provenance": artefacts.provenance()}
    artefacts.write_json(folder / "summary.json", summary)
    print(f"wrote {folder / 'summary.json'} ({summary['wall_seconds']:.0f} s)")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m companion run bridge``: train every regime and width and save the summary."""
    args = artefacts.command_line(
        "bridge", "The parametrisation bridge (the toy study in both parametrisations and growing widths, "
        "against the infinite-width NTK).", argv)
    run_artefact(args.profile, out=args.out)
    return 0
