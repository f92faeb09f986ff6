r"""Chapter "Toy problems: explosion and saturation": the paper's Sec. 4.1 (Figures 1 and 2) and Apps. K and L (Figures 5 and 6).

Two-hidden-layer networks of width 128 in the standard (PyTorch-like) parametrisation are trained
with full-batch Adam (learning rate 1e-3, Table 3) on three 1-D targets (sine, linear, quadratic;
100 noisy points on ``[-1, 1]``, our choice, :mod:`companion.data.toy`) and evaluated on a grid
reaching ``reach`` half-widths of the training interval.

* **Figure 1** (:func:`study`): ReLU, no LayerNorm versus LayerNorm before every, the first and
  the last hidden layer's activation; all four placements x seeds train as one compiled program
  (:func:`companion.train.fit_variants`).
* **Figure 2** (:func:`ntk_maps`): the empirical NTK $\nabla f(x) \cdot \nabla f(x')$ at initialisation
  on $[-r, r]^2$ ($r$ = ``reach_ntk``), averaged over seeds, beside the analytic infinite-width kernel
  of the same architecture (:func:`companion.kernels.kernel`, NTK parametrisation).
* **Figure 5**: :func:`study` with GELU and SiLU, without and with LayerNorm in every layer.
* **Figure 6**: :func:`study` with ``norm="batchnorm"``: BatchNorm in every hidden layer against
  LayerNorm in every hidden layer and none.

Protocol (``full``): 5 seeds, 3000 epochs (Table 3). The summary statistic of the growth far from
the data is :func:`growth`, the ratio of mean $|f|$ in the shell ``[20, 25]`` half-widths to the
shell ``[10, 12.5]``: about 2 for a linear continuation, about 1 for a saturated one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from companion import artefacts, kernels, profile
from companion.arch import MLPSpec
from companion.data.toy import TARGETS, ToyData
from companion.experiments import first_look
from companion.stats import MeanCI, mean_ci
from companion.train import fit, fit_variants

__all__ = [
    "Config", "CONFIGS", "config", "Study", "NTKMaps", "architectures", "study", "ntk_maps",
    "shell_mean_abs", "growth", "FIG1_PLACEMENTS", "FIG5_ACTIVATIONS", "summarise", "run_artefact",
    "load_artefact", "check_summary", "main",
]

#: LayerNorm placements of the paper's Figure 1 (its "preceding all / the first / the last hidden layer").
FIG1_PLACEMENTS = ("none", "every", "first", "last")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(first_look.Config):
    """Sizes of the toy experiments (the shared toy problem of :class:`first_look.Config
    <companion.experiments.first_look.Config>` and the NTK maps); one instance per profile in
    :data:`CONFIGS`."""

    ntk_points: int
    ntk_reach: float = 25.0
    ntk_seeds: int = 5
    targets: tuple[str, ...] = tuple(TARGETS)


CONFIGS = {
    "ci": Config(seeds=3, epochs=1500, grid_points=201, ntk_points=41),
    "full": Config(seeds=5, epochs=3000, grid_points=1001, ntk_points=101),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


def architectures(
    cfg: Config, placements: Sequence[str] = FIG1_PLACEMENTS, activation: str = "relu", norm: str = "layernorm",
) -> dict[str, MLPSpec]:
    """The networks of one panel, by label: the paper's 2 x 128 net with normalisation at ``placements``."""
    base = MLPSpec(depth=cfg.depth, width=cfg.width, activation=activation, norm=norm)
    specs = [base.replace(layernorm=p) for p in placements]
    return {spec.label: spec for spec in specs}


@dataclasses.dataclass
class Study:
    """Predictions of every architecture on every target (what Figures 1, 5 and 6 plot)."""

    config: Config
    data: dict[str, ToyData]
    specs: dict[str, MLPSpec]
    grid: np.ndarray
    predictions: dict[str, dict[str, np.ndarray]]  # target -> label -> (seeds, grid)
    train_mse: dict[str, dict[str, np.ndarray]]  # target -> label -> (seeds,)
    seconds: float

    def summary(self, target: str, label: str) -> MeanCI:
        """Mean and 95% band (Student t, :func:`companion.stats.mean_ci`) over seeds on :attr:`grid`."""
        return mean_ci(self.predictions[target][label], axis=0)

    def distance(self) -> np.ndarray:
        r"""$\|x\|$ of each grid point in units of the training half-width."""
        return np.abs(self.grid) / next(iter(self.data.values())).half_width

    def growth(self, target: str, label: str) -> float:
        """:func:`growth` of one architecture on one target."""
        return growth(self.predictions[target][label], self.distance())


def shell_mean_abs(predictions: np.ndarray, distance: np.ndarray, inner: float, outer: float) -> float:
    """Mean of $|f(x)|$ over seeds and grid points with ``inner <= distance <= outer``."""
    mask = (distance >= inner) & (distance <= outer)
    if not mask.any():
        raise ValueError(f"no grid point lies between {inner} and {outer} half-widths")
    return float(np.mean(np.abs(np.asarray(predictions)[..., mask])))


def growth(predictions: np.ndarray, distance: np.ndarray) -> float:
    """Mean $|f|$ at 20-25 half-widths over mean $|f|$ at 10-12.5: ~2 if linear, ~1 if saturated."""
    return shell_mean_abs(predictions, distance, 20, 25) / shell_mean_abs(predictions, distance, 10, 12.5)


def study(
    cfg: Config | None = None,
    placements: Sequence[str] = FIG1_PLACEMENTS,
    activation: str = "relu",
    norm: str = "layernorm",
) -> Study:
    """Train the architectures of one figure on every target for ``cfg.seeds`` seeds each.

    LayerNorm placements train together (:func:`~companion.train.fit_variants`: one program per
    target); BatchNorm networks, whose batch statistics differ per placement, one :func:`fit` each.
    """
    cfg = cfg or config()
    specs = architectures(cfg, placements, activation, norm)
    data = {t: cfg.data(t) for t in cfg.targets}
    grid = cfg.grid(next(iter(data.values())))
    seeds = range(cfg.seeds)
    predictions: dict[str, dict[str, np.ndarray]] = {}
    train_mse: dict[str, dict[str, np.ndarray]] = {}
    start = time.perf_counter()
    for target, d in data.items():
        if norm == "layernorm":
            trained = fit_variants(list(specs.values()), d.x, d.y, seeds=seeds, epochs=cfg.epochs,
                                   learning_rates=cfg.learning_rate, desc=f"{target}, {activation}")
        else:
            trained = [fit(spec, d.x, d.y, seeds=seeds, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                           desc=f"{target}, {label}") for label, spec in specs.items()]
        predictions[target] = {label: r.predict(grid[:, None]) for label, r in zip(specs, trained)}
        train_mse[target] = {label: np.mean((r.predict(d.x) - d.y) ** 2, axis=1) for label, r in zip(specs, trained)}
    return Study(cfg, data, specs, grid, predictions, train_mse, time.perf_counter() - start)


@dataclasses.dataclass
class NTKMaps:
    """Figure 2: empirical NTK at initialisation (mean over seeds) and the analytic kernel, per label."""

    config: Config
    x: np.ndarray
    specs: dict[str, MLPSpec]
    empirical: dict[str, np.ndarray]  # label -> (points, points), mean over seeds
    analytic: dict[str, np.ndarray]  # label -> (points, points), infinite width, NTK parametrisation
    seconds: float

    def diagonal_growth(self, label: str, which: str = "empirical") -> float:
        r"""Mean $\Theta(x, x)$ at $\|x\|$ = ``reach`` over that at $\|x\|$ = ``reach / 2`` (4 if quadratic, 1 if bounded)."""
        k = np.diag(getattr(self, which)[label])
        r = np.max(np.abs(self.x))

        def at(points: tuple[float, float]) -> float:
            return float(np.mean([k[np.argmin(np.abs(self.x - p))] for p in points]))

        return at((-r, r)) / at((-r / 2, r / 2))

    def quadrant_spread(self, label: str, which: str = "empirical", inner: float = 0.2) -> float:
        r"""Largest relative spread $(\max - \min) / \max |k|$ of the kernel within one sign quadrant of
        $\|x\|, \|x'\| \geq$ ``inner * reach``: near 0 for the LayerNorm "chessboard", large without LN."""
        k = getattr(self, which)[label]
        r = np.max(np.abs(self.x))
        spreads = []
        for sx in (-1, 1):
            for sy in (-1, 1):
                block = k[np.ix_(sx * self.x >= inner * r, sy * self.x >= inner * r)]
                spreads.append((block.max() - block.min()) / np.max(np.abs(block)))
        return float(max(spreads))


def ntk_maps(cfg: Config | None = None, placements: Sequence[str] = FIG1_PLACEMENTS) -> NTKMaps:
    """Empirical (flax model, :func:`companion.kernels.empirical_ntk`) and analytic NTKs on the square."""
    cfg = cfg or config()
    specs = architectures(cfg, placements)
    x = np.linspace(-cfg.ntk_reach, cfg.ntk_reach, cfg.ntk_points)
    start = time.perf_counter()
    empirical = {label: kernels.empirical_ntk(x[:, None], None, spec, seeds=range(cfg.ntk_seeds)).mean(axis=0)
                 for label, spec in specs.items()}
    analytic = {label: kernels.kernel(x[:, None], x[:, None], spec).ntk for label, spec in specs.items()}
    return NTKMaps(cfg, x, specs, empirical, analytic, time.perf_counter() - start)


# ---- the full run: every figure's summary numbers, with provenance, in one small JSON file --------

#: The activations of the paper's Figure 5 (App. K).
FIG5_ACTIVATIONS = ("gelu", "silu")


def summarise(fig1: Study, fig2: NTKMaps, fig5: dict[str, Study], fig6: Study) -> dict:
    """The numbers the chapter reports, JSON-ready: growth and training MSE (mean over seeds)."""

    def table(s: Study) -> dict:
        return {t: {label: {"growth": s.growth(t, label), "train_mse": float(np.mean(s.train_mse[t][label])),
                            "max_abs": float(np.max(np.abs(s.predictions[t][label])))}
                    for label in s.specs} for t in s.data}

    return {
        "fig1": table(fig1),
        "fig2": {label: {"diagonal_growth": fig2.diagonal_growth(label),
                         "analytic_diagonal_growth": fig2.diagonal_growth(label, "analytic"),
                         "quadrant_spread": fig2.quadrant_spread(label),
                         "analytic_quadrant_spread": fig2.quadrant_spread(label, "analytic")}
                 for label in fig2.specs},
        "fig5": {activation: table(s) for activation, s in fig5.items()},
        "fig6": table(fig6),
        "seconds": {"fig1": fig1.seconds, "fig2": fig2.seconds, "fig6": fig6.seconds,
                    **{f"fig5_{a}": s.seconds for a, s in fig5.items()}},
    }


def run_artefact(profile_name: str | None = None, out: Path | None = None) -> dict:
    """Run Figures 1, 2, 5 and 6 in ``profile_name`` and write ``summary.json`` (config, provenance, wall time)."""
    name = profile_name or profile.active()
    cfg = config(name)
    folder = artefacts.output_folder("toy", name, out)
    start = time.perf_counter()
    fig1 = study(cfg)
    fig2 = ntk_maps(cfg)
    fig5 = {a: study(cfg, ("none", "every"), a) for a in FIG5_ACTIVATIONS}
    fig6 = study(cfg, ("every",), norm="batchnorm")
    summary = {
        "experiment": "toy", "profile": name, "config": dataclasses.asdict(cfg),
        "results": summarise(fig1, fig2, fig5, fig6),
        "wall_seconds": time.perf_counter() - start, "provenance": artefacts.provenance(),
    }
    artefacts.write_json(folder / "summary.json", summary)
    print(f"wrote {folder / 'summary.json'} ({summary['wall_seconds']:.0f} s)")
    return summary


def check_summary(results: dict) -> None:
    """Assert the chapter's claims on a run's summary (:func:`summarise`), e.g. the saved ``full`` run.

    Every network fits its data (mean training MSE below 0.02); with LayerNorm the prediction
    saturates (growth below 1.1), without normalisation or with BatchNorm it grows (above 1.5), in
    Figures 1, 5 and 6; in Figure 2 the NTK diagonal without LayerNorm more than doubles and is no
    chessboard (quadrant spread above 0.5), with LayerNorm it changes by less than 5% and is one
    (spread below 0.05), both for the empirical and the analytic kernel. Raises
    ``AssertionError`` naming the figure, target and network that fail.
    """
    tables = {"fig1": results["fig1"], "fig6": results["fig6"]}
    tables.update({f"fig5 {activation}": table for activation, table in results["fig5"].items()})
    for figure, table in tables.items():
        for target, row in table.items():
            for label, cell in row.items():
                where = f"{figure}, {target}, {label}"
                assert cell["train_mse"] < 0.02, f"{where}: training MSE {cell['train_mse']:.3g}"
                if label.startswith("LN"):
                    assert cell["growth"] < 1.1, f"{where}: should saturate, growth {cell['growth']:.2f}"
                else:
                    assert cell["growth"] > 1.5, f"{where}: should grow, growth {cell['growth']:.2f}"
    for label, cell in results["fig2"].items():
        for prefix in ("", "analytic_"):
            growth_, spread = cell[f"{prefix}diagonal_growth"], cell[f"{prefix}quadrant_spread"]
            if label == "no LN":
                assert growth_ > 2 and spread > 0.5, f"fig2, {prefix or 'empirical '}{label}: the NTK should grow"
            else:
                assert abs(growth_ - 1) < 0.05 and spread < 0.05, f"fig2, {prefix or 'empirical '}{label}: no chessboard"


def load_artefact(profile_name: str = "full", folder: Path | None = None) -> dict | None:
    """The saved ``summary.json`` of ``profile_name`` (``None`` when there is none)."""
    return artefacts.read_summary("toy", profile_name, folder)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m companion run toy``: run Figures 1, 2, 5 and 6 and save their summary."""
    args = artefacts.command_line("toy", "The toy experiments (paper Sec. 4.1, Apps. K and L).", argv)
    run_artefact(args.profile, out=args.out)
    return 0
