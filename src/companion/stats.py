"""Mean and 95% confidence interval over seeds, and the other summaries the experiments report.

The interval is the Student-t interval for the mean of ``n`` independent runs,

    mean ± t_{n-1, (1+level)/2} · s / sqrt(n),   s the sample standard deviation (ddof = 1),

the usual choice for a handful of seeds (with 5 seeds t = 2.78, not the normal 1.96). The paper
does not say which formula it used (notes §6.1).

Also here: the coefficient of determination :func:`r2_score` (the paper's Tables 1 and 2), the
paper's rule for bold table entries (:func:`best_and_overlapping`), and :func:`lowess`, the
smoothed trend of its Figures 3 and 4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
from scipy import stats as _scipy_stats

__all__ = ["MeanCI", "mean_ci", "r2_score", "best_and_overlapping", "lowess"]


@dataclasses.dataclass(frozen=True)
class MeanCI:
    """Mean over runs with a confidence interval ``[lower, upper]``; ``half_width = upper - mean``."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    half_width: np.ndarray
    n: int
    level: float

    def format(self, digits: int = 2) -> str:
        """``"0.50 ± 0.02"`` for a scalar summary (the paper's table style)."""
        return f"{float(self.mean):.{digits}f} ± {float(self.half_width):.{digits}f}"


def mean_ci(samples: np.typing.ArrayLike, axis: int = 0, level: float = 0.95) -> MeanCI:
    """Mean and Student-t confidence interval of ``samples`` along ``axis`` (the seeds axis)."""
    values = np.asarray(samples, dtype=float)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 runs along axis {axis}, got {n}")
    if not np.all(np.isfinite(values)):
        raise ValueError("samples contain NaN or infinity; a diverged run should be reported, not averaged")
    mean = values.mean(axis=axis)
    sem = values.std(axis=axis, ddof=1) / np.sqrt(n)
    half = _scipy_stats.t.ppf(0.5 + level / 2, df=n - 1) * sem
    return MeanCI(mean=mean, lower=mean - half, upper=mean + half, half_width=half, n=n, level=level)


def r2_score(y_true: np.typing.ArrayLike, y_pred: np.typing.ArrayLike) -> np.ndarray:
    """Coefficient of determination ``1 - sum (y - f)^2 / sum (y - mean y)^2`` along the last axis.

    ``y_true`` has shape ``(n,)``; ``y_pred`` ``(n,)`` or ``(runs, n)`` gives one R^2 per run. R^2
    is 1 for perfect predictions, 0 for predicting the mean of ``y_true``, and negative for worse.
    """
    y = np.asarray(y_true, dtype=float)
    f = np.asarray(y_pred, dtype=float)
    if y.ndim != 1 or f.shape[-1:] != y.shape:
        raise ValueError(f"predictions of shape {f.shape} do not match targets of shape {y.shape}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(f))):
        raise ValueError("targets or predictions contain NaN or infinity")
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        raise ValueError("R^2 is undefined for constant targets")
    return 1.0 - np.sum((f - y) ** 2, axis=-1) / total


def best_and_overlapping(summaries: Mapping[str, MeanCI], larger_is_better: bool = True) -> set[str]:
    """The paper's bold entries (Tables 1 and 2): the best mean and every entry whose CI overlaps its CI.

    Intervals that only touch (``0.59 ± 0.01`` and ``0.61 ± 0.01``, possible with rounded numbers)
    do not overlap; a zero-width interval overlaps an interval that contains its value.
    """
    if not summaries:
        raise ValueError("no summaries to compare")
    pick = max if larger_is_better else min
    best = summaries[pick(summaries, key=lambda k: float(summaries[k].mean))]

    def overlaps(a: MeanCI) -> bool:
        low, high = max(float(a.lower), float(best.lower)), min(float(a.upper), float(best.upper))
        single_point = float(a.lower) == float(a.upper) or float(best.lower) == float(best.upper)
        return low < high or (low == high and single_point)

    return {label for label, s in summaries.items() if overlaps(s)}


def lowess(x: np.typing.ArrayLike, y: np.typing.ArrayLike, at: np.typing.ArrayLike, frac: float = 2 / 3) -> np.ndarray:
    """LOWESS trend of ``y`` against ``x`` (statsmodels, ``frac`` of the points per local fit), evaluated at ``at``."""
    from statsmodels.nonparametric.smoothers_lowess import lowess as _lowess

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    return _lowess(y, x, frac=frac, xvals=np.asarray(at, dtype=float))
