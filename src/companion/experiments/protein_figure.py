"""Figure 3 of the protein chapter with the measured trend: predictions against surface area next to
the LOWESS trend of the *measured* RMSD (with a bootstrap band) and a binned view of the sparse tail.

The measured RMSD is not monotone in surface area: most OOD proteins sit just above 20,000 Å²,
below the in-domain mean, while the few above 24,000 Å² average far more. :func:`binned` and
:func:`measured_trend` show that curve; :func:`plot` puts the models' predictions on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from companion import plotting
from companion.data import casp
from companion.stats import lowess, lowess_band, mean_ci

__all__ = ["TAIL_EDGES", "Trend", "measured_trend", "binned", "bin_labels", "trend_of", "plot"]

#: Bin edges of the OOD surface area (Å²) for the binned view: finer where the proteins are.
TAIL_EDGES = (20_000.0, 22_000.0, 24_000.0, 26_000.0, 30_000.0, np.inf)


@dataclasses.dataclass(frozen=True)
class Trend:
    """A curve on ``grid`` with a pointwise 95% band (``lower``, ``upper``)."""

    grid: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def measured_trend(area: np.ndarray, y: np.ndarray, grid: np.ndarray, frac: float = 2 / 3,
                   boots: int = 200, seed: int = 0) -> Trend:
    """LOWESS of the measured RMSD against area, with a 95% percentile bootstrap band (proteins
    resampled with replacement, ``boots`` times)."""
    area, y = np.asarray(area, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(boots):
        pick = rng.integers(0, len(y), len(y))
        curve = lowess(area[pick], y[pick], grid, frac)
        if np.all(np.isfinite(curve)):
            curves.append(curve)
    lower, upper = np.percentile(np.stack(curves), [2.5, 97.5], axis=0)
    return Trend(grid, lowess(area, y, grid, frac), lower, upper)


def binned(area: np.ndarray, values: np.ndarray, edges: Sequence[float] = TAIL_EDGES) -> dict[str, np.ndarray]:
    """Count, mean and 95% Student-t interval of ``values`` (``(n,)`` or ``(seeds, n)``: the mean over
    seeds per protein is binned) in each area bin ``[edges[k], edges[k+1])``."""
    values = np.asarray(values, float)
    per_protein = values.mean(axis=0) if values.ndim == 2 else values
    index = np.digitize(area, edges) - 1
    out = {"n": [], "mean": [], "half_width": []}
    for k in range(len(edges) - 1):
        inside = per_protein[index == k]
        out["n"].append(len(inside))
        out["mean"].append(inside.mean() if len(inside) else np.nan)
        out["half_width"].append(float(mean_ci(inside).half_width) if len(inside) > 1 else np.nan)
    return {k: np.asarray(v) for k, v in out.items()}


def bin_labels(edges: Sequence[float] = TAIL_EDGES) -> list[str]:
    """``"20-22k"``, ..., ``"30k+"``."""
    return [f"{a / 1000:.0f}k+" if not np.isfinite(b) else f"{a / 1000:.0f}–{b / 1000:.0f}k"
            for a, b in zip(edges[:-1], edges[1:])]


def trend_of(predictions: np.ndarray, area: np.ndarray, grid: np.ndarray, frac: float) -> Trend:
    """LOWESS trend of predictions ``(seeds, n)``: mean over seeds with a 95% band; one curve when one seed."""
    predictions = np.atleast_2d(predictions)
    if len(predictions) == 1:
        curve = lowess(area, predictions[0], grid, frac)
        return Trend(grid, curve, curve, curve)
    band = lowess_band(area, predictions, grid, frac)
    return Trend(grid, band.mean, band.lower, band.upper)


def plot(axes: Sequence, predictions: Mapping[str, np.ndarray], split: casp.CaspSplit, frac: float = 2 / 3,
         measured: Trend | None = None, grid_points: int = 120, linestyle: str = "-") -> Trend:
    """Figure 3 on three axes: histogram of OOD predictions (pooled over seeds), LOWESS trends
    against surface area with the measured trend and its band, and the binned view of the tail.

    ``predictions`` maps a method to its OOD predictions ``(seeds, n_ood)`` in Å. Returns the
    measured trend (pass it back in to reuse the bootstrap for another row).
    """
    area = split.area("ood")
    grid = np.linspace(area.min(), area.max(), grid_points)
    measured = measured or measured_trend(area, split.y_ood, grid, frac)
    plotting.histograms(axes[0], {m: np.atleast_2d(p) for m, p in predictions.items()},
                        reference=("measured RMSD", split.y_ood))
    axes[0].set_xlabel("predicted RMSD on OOD proteins (Å)")
    axes[0].set_ylabel("density")
    data = plotting.colour("data")
    axes[1].fill_between(grid, measured.lower, measured.upper, color=data, alpha=0.25, linewidth=0)
    axes[1].plot(grid, measured.mean, "--", color=data, label="measured RMSD (95% bootstrap band)")
    for method, p in predictions.items():
        t = trend_of(p, area, grid, frac)
        axes[1].plot(grid, t.mean, linestyle, color=plotting.colour(method), label=method)
        if np.any(t.upper > t.lower):
            axes[1].fill_between(grid, t.lower, t.upper, color=plotting.colour(method), alpha=0.2, linewidth=0)
    axes[1].xaxis.set_major_locator(MaxNLocator(5))
    axes[1].set_xlabel("surface area F1 (Å²)")
    axes[1].set_ylabel("RMSD (Å), LOWESS trend")
    labels = bin_labels()
    where = np.arange(len(labels))
    truth = binned(area, split.y_ood)
    axes[2].bar(where, truth["mean"], yerr=truth["half_width"], color=data, alpha=0.5, capsize=3,
                label="measured RMSD (mean, 95% CI)")
    for method, p in predictions.items():
        axes[2].plot(where, binned(area, p)["mean"], "o" + linestyle, color=plotting.colour(method), label=method)
    axes[2].set_xticks(where, [f"{lab}\nn={n}" for lab, n in zip(labels, truth["n"])], fontsize=8)
    axes[2].set_xlabel("surface area bin (Å²)")
    axes[2].set_ylabel("mean RMSD in the bin (Å)")
    return measured
