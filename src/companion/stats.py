r"""Mean and 95% confidence interval over seeds, and the other summaries the experiments report.

The interval is the Student-t interval for the mean of $n$ independent runs,

.. math::

    \text{mean} \pm t_{n-1, (1+\text{level})/2} \cdot s / \sqrt{n}, \qquad s \text{ the sample standard deviation (ddof = 1)},

the usual choice for a handful of seeds (with 5 seeds $t = 2.78$, not the normal 1.96). The paper
does not say which formula it used (notes §6.1).

Also here: the coefficient of determination :func:`r2_score` (the paper's Tables 1 and 2), the
paper's rule for bold table entries (:func:`best_and_overlapping`), :func:`lowess` and
:func:`lowess_band`, the smoothed trends of its Figures 3 and 4, and
:func:`average_cosine_similarity`, the x-axis of its Figure 4; and :func:`rms_z_null`, the law of
a root-mean-square z-score over correlated points, with which the bridge chapter tells a trained
network's departure from its kernel prediction from seed noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "MeanCI", "mean_ci", "r2_score", "best_and_overlapping", "lowess", "lowess_band", "average_cosine_similarity",
    "rms_z_null",
]


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
    r"""Coefficient of determination $R^2 = 1 - \sum_i (y_i - f_i)^2 / \sum_i (y_i - \bar y)^2$ along the last axis.

    ``y_true`` has shape ``(n,)``; ``y_pred`` ``(n,)`` or ``(runs, n)`` gives one $R^2$ per run. $R^2$
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


def lowess(
    x: np.typing.ArrayLike, y: np.typing.ArrayLike, at: np.typing.ArrayLike, frac: float = 2 / 3, it: int = 3
) -> np.ndarray:
    """LOWESS trend (Cleveland 1979, statsmodels) of ``y`` against ``x``, evaluated at ``at``.

    ``frac`` (the share of points in each local fit) and ``it`` (robustifying iterations) default
    to statsmodels' own defaults; the paper does not give its settings.
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess as _lowess

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    order = np.argsort(x, kind="stable")
    return _lowess(y[order], x[order], frac=frac, it=it, xvals=np.asarray(at, dtype=float), is_sorted=True)


def lowess_band(
    x: np.typing.ArrayLike,
    values: np.typing.ArrayLike,
    grid: np.typing.ArrayLike,
    frac: float = 2 / 3,
    it: int = 3,
    level: float = 0.95,
) -> MeanCI:
    """LOWESS trend of ``values`` ``(seeds, n)`` against ``x`` ``(n,)``, per seed, on ``grid``.

    Returns the mean over seeds and its confidence band (:func:`mean_ci`) at each grid point: the
    bands of the paper's Figs. 3 and 4. Grid points outside the range of ``x`` are rejected
    (LOWESS does not extrapolate).
    """
    x = np.asarray(x, dtype=float)
    values = np.atleast_2d(np.asarray(values, dtype=float))
    grid = np.asarray(grid, dtype=float)
    if x.ndim != 1 or values.shape[1] != x.shape[0]:
        raise ValueError(f"values of shape {values.shape} do not match {x.shape} covariate values")
    if grid.min() < x.min() or grid.max() > x.max():
        raise ValueError("the grid must lie within the range of x")
    curves = np.stack([lowess(x, v, grid, frac=frac, it=it) for v in values])
    if not np.all(np.isfinite(curves)):
        raise ValueError(
            f"LOWESS gave no estimate at some grid points ({x.size} points, frac={frac:.2f}); "
            "use more points, a larger frac or a narrower grid"
        )
    return mean_ci(curves, axis=0, level=level)


def average_cosine_similarity(query: np.typing.ArrayLike, reference: np.typing.ArrayLike) -> np.ndarray:
    r"""For each row $q$ of ``query``, the mean over rows $r$ of ``reference`` of $\cos(q, r)$.

    How far a test input is from the training data (the x-axis of the paper's Fig. 4). Equal to
    $q / \|q\|$ dotted with the mean of $r / \|r\|$, which costs $O((m + n) d)$.
    """
    q = np.asarray(query, dtype=float)
    r = np.asarray(reference, dtype=float)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ValueError(f"query {q.shape} and reference {r.shape} must be 2-D with the same number of columns")
    q_norm = np.linalg.norm(q, axis=1)
    r_norm = np.linalg.norm(r, axis=1)
    if np.any(q_norm == 0) or np.any(r_norm == 0):
        raise ValueError("cosine similarity is undefined for an all-zero feature vector")
    return (q / q_norm[:, None]) @ (r / r_norm[:, None]).mean(axis=0)


def rms_z_null(cov: np.typing.ArrayLike, draws: int = 20_000, seed: int = 0) -> np.ndarray:
    r"""Draws of $z = \sqrt{\frac{1}{m} \sum_i d_i^2 / \Sigma_{ii}}$ for $d \sim \mathcal{N}(0, \Sigma)$, ``cov`` $= \Sigma$.

    The law of a root-mean-square z-score over ``m`` correlated points when the deviations are
    pure noise (the bridge's :meth:`~companion.experiments.bridge.Bridge.z_rms`, whose null
    covariance is the infinite-width network's over initialisations). With $R$ the correlation
    matrix and $w_j$ its eigenvalues, $m z^2 = \sum_j w_j \chi^2_{1, j}$ with independent
    $\chi^2_1$: for independent points ($R = I$) $m z^2 \sim \chi^2_m$ and $z \to 1$ as ``m``
    grows; for strongly correlated points only a few $w_j$ count and $z$ spreads widely around 1.
    Points with zero variance are left out, as :meth:`~companion.experiments.bridge.Bridge.z_rms`
    leaves them out. Seeded (``seed``), so the same ``cov`` gives the same draws.
    """
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
        raise ValueError(f"cov must be a non-empty square matrix, got shape {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise ValueError("cov has NaN or infinite entries")
    if draws < 1:
        raise ValueError(f"draws must be a positive number, got {draws}")
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    keep = sd > 0
    if not keep.any():
        raise ValueError("every point has zero variance; z is undefined")
    corr = cov[np.ix_(keep, keep)] / np.outer(sd[keep], sd[keep])
    weights = np.linalg.eigvalsh((corr + corr.T) / 2)
    weights = weights[weights > 1e-12 * weights.max()]
    chi2 = np.random.default_rng(seed).standard_normal((draws, weights.size)) ** 2
    return np.sqrt(chi2 @ weights / keep.sum())
