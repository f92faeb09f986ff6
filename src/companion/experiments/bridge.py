r"""Chapter "From the theory's networks to the experiments'": the parametrisation bridge.

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

* the posterior mean $\Theta(x, X) \Theta(X, X)^{-1} y$ (:func:`companion.kernels.ntk_regression`),
  the infinitely long trained network;
* for gradient descent, the linearised network after the same number of steps (Lee et al. 2019):
  with the MSE loss $\frac{1}{n} \sum_i (f(x_i) - y_i)^2$ and learning rate ``lr``, the residual on the
  training set evolves as $(I - \eta \Theta)^t y$ with $\eta = 2 \cdot \text{lr} / n$, so the expected
  prediction after ``t`` steps is $\Theta(x, X) \Theta^{-1} (I - (I - \eta \Theta)^t) y$
  (:func:`~companion.kernels.ensemble.gd_kernel_mean`).

Two numbers say how far the trained networks are from a kernel prediction out of distribution,
over the grid points beyond ``ood_from`` half-widths of the training interval: :func:`ood_gap`,
the root-mean-square difference of the mean over seeds and the kernel prediction, in units of the
largest training target; and :func:`coverage`, the fraction of those points where the kernel
prediction lies inside the 95% confidence band of the mean over seeds. The band matters: at
initialisation a network is a random function whose spread grows with $\|x\|$ without LayerNorm,
and training on a bounded interval does not remove it far away, so with a handful of seeds the
mean of trained networks is a noisy estimate of the expected prediction the theory describes.

The NTK theory predicts that noise too. The linearised infinitely wide network after ``t`` steps is
$f_t(x) = f_0(x) + A(x) (y - f_0(X))$ with $A(x) = \Theta(x, X) \Theta^{-1} (I - (I - \eta \Theta)^t)$
and $f_0$ the Gaussian process with the NNGP kernel ``K``, so over initialisations it is Gaussian
with the mean above and the variance $K(x, x) - 2 A(x) K(X, x) + A(x) K(X, X) A(x)^\top$ (Lee et
al. 2019; :func:`~companion.kernels.ensemble.gd_kernel_ensemble`; neural-tangents' ``gradient_descent_mse_ensemble`` with
``compute_cov=True`` computes the same in continuous time). The mean of ``S`` seeds then misses
the kernel mean by $\sqrt{\text{variance} / S}$ at each point: :meth:`Bridge.noise_floor` is that
expected gap, and :meth:`Bridge.z_rms` the root-mean-square of the misses in units of it, about 1
when the trained networks behave as the theory says and much larger when they do not.

The ``full`` run (:func:`run_artefact`) saves each (regime, width, seed) as soon as it is trained
(:func:`companion.artefacts.resume`), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from companion import artefacts, profile
from companion.arch import MLPSpec
from companion.data.toy import ToyData, make_1d
from companion.experiments.toy import growth
from companion.kernels.ensemble import gd_kernel_ensemble, gd_kernel_mean, neural_tangents_ensemble
from companion.experiments.bridge_checks import check_convergence, check_summary
from companion.stats import MeanCI, mean_ci, rms_z_null
from companion.train import fit_variants

__all__ = ["Config", "CONFIGS", "config", "REGIMES", "Bridge", "setup", "run", "gd_kernel_mean", "gd_kernel_ensemble",
           "neural_tangents_ensemble", "ood_gap", "coverage", "summarise", "check_summary", "check_convergence", "run_artefact", "load_artefact", "main"]

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
    kernel_var: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)  # (which, label)
    kernel_cov: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)  # over the OOD points

    def distance(self) -> np.ndarray:
        r"""$\|x\|$ of each grid point in units of the training half-width."""
        return np.abs(self.grid) / self.data.half_width

    def _ood(self) -> np.ndarray:
        return self.distance() >= self.config.ood_from

    def _scale(self) -> float:
        return float(np.max(np.abs(self.data.y)))

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

    def variance(self, label: str, which: str = "posterior") -> np.ndarray:
        """Variance over initialisations of the infinite-width network at each grid point (:func:`gd_kernel_ensemble`)."""
        self.reference(label, which)  # the same check of ``which``
        return self.kernel_var[which, label]

    def seeds(self, regime: str, width: int, label: str) -> int:
        """Number of trained networks (seeds) behind one mean."""
        return int(self.predictions[regime, width, label].shape[0])

    def gap(self, regime: str, width: int, label: str, which: str = "posterior") -> float:
        r""":func:`ood_gap` of the mean over seeds to a kernel prediction, in units of $\max_i |y_i|$."""
        mean = self.predictions[regime, width, label].mean(axis=0)
        return ood_gap(mean, self.reference(label, which), self.distance(), self.config.ood_from, self._scale())

    def noise_floor(self, regime: str, width: int, label: str, which: str = "posterior") -> float:
        r"""The gap expected from the seed noise alone, in units of $\max_i |y_i|$.

        $\sqrt{\text{mean variance} / S}$ over the out-of-distribution points, with the infinite-width
        variance over initialisations and ``S`` seeds: the root-mean-square gap the mean of ``S``
        networks would have if they were draws of the infinitely wide network.
        """
        var = self.variance(label, which)[self._ood()]
        return float(np.sqrt(np.mean(var) / self.seeds(regime, width, label)) / self._scale())

    def measured_floor(self, regime: str, width: int, label: str) -> float:
        r"""The same seed noise measured on the trained networks: $\sqrt{\text{mean sample variance} / S} / \max_i |y_i|$."""
        runs = self.predictions[regime, width, label][:, self._ood()]
        return float(np.sqrt(np.mean(np.var(runs, axis=0, ddof=1)) / runs.shape[0]) / self._scale())

    def z_rms(self, regime: str, width: int, label: str, which: str = "posterior") -> float:
        r"""Root-mean-square of $(\text{mean over seeds} - \text{kernel mean}) / \sqrt{\text{variance} / S}$ out of distribution.

        About 1 when the trained networks are draws of the infinitely wide network (its expected
        square is exactly 1 then); much larger when they differ systematically.
        """
        mask = self._ood()
        sd = np.sqrt(self.variance(label, which)[mask] / self.seeds(regime, width, label))
        diff = self.predictions[regime, width, label].mean(axis=0)[mask] - self.reference(label, which)[mask]
        keep = sd > 0
        return float(np.sqrt(np.mean((diff[keep] / sd[keep]) ** 2)))

    def systematic_gap(self, regime: str, width: int, label: str, which: str = "posterior") -> float:
        r"""The part of the networks' miss that the seeds do not explain, in units of one network's spread.

        With $u_{si}$ network ``s``'s miss at out-of-distribution point ``i`` in units of the
        theory's spread over initialisations, $\sqrt{\max(0, \operatorname{mean}_i(\bar u_i^2 - s_i^2 / S))}$:
        $\bar u_i^2$ overestimates the squared systematic miss by the variance of a mean of ``S``
        networks, and the sample variance $s_i^2$ estimates that without assuming the theory's
        spread. Unlike :meth:`z_rms`, which grows like $\sqrt{S}$ times it, it does not depend on
        the number of seeds, so widths trained with different seeds compare; 0 for networks that
        are draws of the infinitely wide network, up to noise.
        """
        mask = self._ood()
        runs = self.predictions[regime, width, label][:, mask]
        if runs.shape[0] < 2:
            raise ValueError("the systematic gap needs at least two seeds (a sample variance)")
        sd = np.sqrt(self.variance(label, which)[mask])
        keep = sd > 0
        u = (runs[:, keep] - self.reference(label, which)[mask][keep]) / sd[keep]
        return float(np.sqrt(max(0.0, np.mean(u.mean(axis=0) ** 2 - u.var(axis=0, ddof=1) / u.shape[0]))))

    def z_null(self, label: str, which: str = "posterior") -> np.ndarray:
        r"""Draws of :meth:`z_rms` when the trained networks are draws of the infinitely wide network.

        :func:`companion.stats.rms_z_null` of the theory's covariance over initialisations between
        the out-of-distribution points (the same for every number of seeds): far from the data
        neighbouring points move together, so z spreads more widely around 1 than for independent
        points, and "within the noise" means below a quantile of these draws.
        """
        self.reference(label, which)
        return rms_z_null(self.kernel_cov[which, label])

    def coverage(self, regime: str, width: int, label: str, which: str = "posterior") -> float:
        """:func:`coverage` of a kernel prediction by the 95% band of the mean over seeds."""
        return coverage(self.summary(regime, width, label), self.reference(label, which), self.distance(),
                        self.config.ood_from)


def setup(cfg: Config, regime: str, width: int) -> tuple[list[MLPSpec], str, float]:
    """What one regime trains at ``width``: the networks (no LN, LN first), the optimiser and its learning rate."""
    parametrisation, optimizer = REGIMES[regime]
    base = MLPSpec(depth=cfg.depth, width=width, parametrisation=parametrisation)
    return [base, base.replace(layernorm="first")], optimizer, cfg.adam_lr if optimizer == "adam" else cfg.gd_lr


def _train(cfg: Config, data: ToyData, grid: np.ndarray, regime: str, width: int,
           seeds: Sequence[int]) -> dict[str, np.ndarray]:
    """Train no LN and LN first in one regime and width for these seeds: ``{label: (seeds, grid)}``."""
    specs, optimizer, lr = setup(cfg, regime, width)
    trained = fit_variants(specs, data.x, data.y, seeds=list(seeds), epochs=cfg.epochs,
                           learning_rates=lr, optimizer=optimizer, desc=f"{regime}, width {width}")
    return {spec.label: result.predict(grid[:, None]) for spec, result in zip(specs, trained)}


def _unit(regime: str, width: int) -> str:
    return f"{regime}, width {width}"


def run(cfg: Config | None = None, regimes: Sequence[str] = tuple(REGIMES), folder: Path | None = None) -> Bridge:
    """Train no LN and LN first in every regime and width; compute the kernel predictions.

    With ``folder``, every (regime, width, seed) is saved there as soon as it is trained and
    reused when it is already there (:func:`companion.artefacts.resume`).
    """
    cfg = cfg or config()
    data = make_1d(cfg.target, n=cfg.n_train, noise=cfg.noise, seed=cfg.data_seed)
    reach = cfg.reach * data.half_width
    grid = np.linspace(-reach, reach, cfg.grid_points)
    predictions, seconds = {}, {}
    labels = tuple(s.label for s in (MLPSpec(depth=cfg.depth), MLPSpec(depth=cfg.depth, layernorm="first")))
    # Width-major, so that an interrupted run has every regime at the smaller widths.
    units = {_unit(r, w): (r, w) for w in cfg.widths for r in regimes}
    if folder is not None:
        fp = artefacts.fingerprint(cfg)

        def train(unit: str, seeds: list[int]) -> list[dict]:
            start = time.perf_counter()
            out = _train(cfg, data, grid, *units[unit], seeds)
            each = (time.perf_counter() - start) / len(seeds)
            return [{"seconds": each, **{label: np.round(out[label][i], 5).tolist() for label in labels}}
                    for i in range(len(seeds))]

        artefacts.resume(folder, list(units), range(cfg.seeds), fp, train, cfg.seeds)
        for unit, (regime, width) in units.items():
            runs = [artefacts.load_run(folder, unit, s, fp) for s in range(cfg.seeds)]
            for label in labels:
                predictions[regime, width, label] = np.asarray([r[label] for r in runs])
            seconds[regime, width] = float(sum(r["seconds"] for r in runs))
    else:
        for unit, (regime, width) in units.items():
            start = time.perf_counter()
            out = _train(cfg, data, grid, regime, width, range(cfg.seeds))
            predictions.update({(regime, width, label): out[label] for label in labels})
            seconds[regime, width] = time.perf_counter() - start
    kernel_specs = {s.label: s for s in (MLPSpec(depth=cfg.depth, parametrisation="ntk"),
                                         MLPSpec(depth=cfg.depth, parametrisation="ntk", layernorm="first"))}
    kernel_mean, kernel_gd, kernel_var, kernel_cov = {}, {}, {}, {}
    ood = grid[np.abs(grid) / data.half_width >= cfg.ood_from][:, None]
    for label, spec in kernel_specs.items():
        for which, lr, steps in (("posterior", None, None), ("gd", cfg.gd_lr, cfg.epochs)):
            mean, kernel_var[which, label] = gd_kernel_ensemble(data.x, data.y, grid[:, None], spec, lr, steps)
            (kernel_mean if which == "posterior" else kernel_gd)[label] = mean
            kernel_cov[which, label] = gd_kernel_ensemble(data.x, data.y, ood, spec, lr, steps, full_cov=True)[1]
    return Bridge(cfg, data, grid, labels, predictions, kernel_mean, kernel_gd, seconds, kernel_var, kernel_cov)


# ---- the full run (widths up to 4096: a GPU's job): the summary numbers, with provenance -----------

def _z(z: float, null: np.ndarray) -> dict[str, float]:
    """z with the 95% and 99% quantiles of its null draws and its p-value (the chance of a z this large)."""
    return {"z_rms": z, "z_null_95": float(np.quantile(null, 0.95)), "z_null_99": float(np.quantile(null, 0.99)),
            "z_p": float(np.mean(null >= z))}


def summarise(result: Bridge) -> dict:
    """Growth, OOD gap, noise floors, z (with its null quantiles and p-value) and coverage per regime,
    width and label, JSON-ready.

    Gaps and floors are against the posterior mean for the Adam regimes and against the
    linearised network after the same steps for gradient descent (the theory's own prediction).
    """
    out: dict = {}
    nulls = {(which, label): result.z_null(label, which) for which in ("posterior", "gd") for label in result.labels}
    for regime, (_, optimizer) in REGIMES.items():
        if (regime, result.config.widths[0]) not in result.seconds:
            continue
        which = "gd" if optimizer == "sgd" else "posterior"
        out[regime] = {str(width): {label: {
            "growth": result.growth(regime, width, label),
            "gap_posterior": result.gap(regime, width, label), "gap_gd": result.gap(regime, width, label, "gd"),
            "reference": which,
            "gap": result.gap(regime, width, label, which),
            "noise_floor": result.noise_floor(regime, width, label, which),
            "measured_floor": result.measured_floor(regime, width, label),
            **_z(result.z_rms(regime, width, label, which), nulls[which, label]),
            "systematic_gap": result.systematic_gap(regime, width, label, which),
            "coverage_posterior": result.coverage(regime, width, label),
            "coverage_gd": result.coverage(regime, width, label, "gd"),
            "seconds": result.seconds[regime, width]} for label in result.labels}
            for width in result.config.widths}
    return out


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
    result = run(cfg, folder=folder)
    return artefacts.write_summary(folder, "bridge", name, cfg, summarise(result), start)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m companion run bridge``: train every regime and width and save the summary."""
    args = artefacts.command_line(
        "bridge", "The parametrisation bridge (the toy study in both parametrisations and growing widths, "
        "against the infinite-width NTK).", argv)
    run_artefact(args.profile, out=args.out)
    return 0
