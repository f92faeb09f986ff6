"""Scoring trained regressors the way the paper's real-data studies do (Sec. 4.2-4.3).

* :func:`r2_score`: the coefficient of determination of every seed's predictions,
  ``R^2 = 1 - sum_i (y_i - f(x_i))^2 / sum_i (y_i - mean(y))^2`` (the mean of the evaluated set,
  as scikit-learn's ``r2_score``), so 0 is the set's own mean and negative values are worse.
* :func:`average_cosine_similarity`: how far a test input is from the training data, as the mean
  cosine similarity of its features to all training features (the x-axis of the paper's Fig. 4).
* :func:`lowess_band`: a LOWESS trend (statsmodels, Cleveland 1979) of a per-input quantity against
  a covariate, fitted per seed on a common grid, summarised as mean and 95% confidence band over
  seeds with :func:`companion.stats.mean_ci` (the bands of Figs. 3 and 4).
"""

from __future__ import annotations

import numpy as np

from companion.stats import MeanCI, mean_ci

__all__ = ["r2_score", "average_cosine_similarity", "lowess_band"]


def r2_score(y: np.typing.ArrayLike, predictions: np.typing.ArrayLike) -> np.ndarray:
    """R² of predictions ``(seeds, n)`` (or ``(n,)``) against targets ``(n,)``, one value per seed."""
    y = np.asarray(y, dtype=float)
    pred = np.asarray(predictions, dtype=float)
    if y.ndim != 1 or pred.shape[-1] != y.shape[0]:
        raise ValueError(f"predictions of shape {pred.shape} do not match {y.shape[0]} targets")
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        raise ValueError("R² is undefined when every target is the same")
    return 1.0 - np.sum((pred - y) ** 2, axis=-1) / total


def average_cosine_similarity(query: np.typing.ArrayLike, reference: np.typing.ArrayLike) -> np.ndarray:
    """For each row ``q`` of ``query``, the mean over rows ``r`` of ``reference`` of ``cos(q, r)``.

    Equal to ``q / |q|`` dotted with the mean of ``r / |r|``, which costs ``O((m + n) d)``.
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


def lowess_band(
    x: np.typing.ArrayLike,
    values: np.typing.ArrayLike,
    grid: np.typing.ArrayLike,
    frac: float = 2 / 3,
    it: int = 3,
    level: float = 0.95,
) -> MeanCI:
    """LOWESS trend of ``values`` ``(seeds, n)`` against ``x`` ``(n,)``, per seed, on ``grid``.

    ``frac`` (the share of points in each local fit) and ``it`` (robustifying iterations) default
    to statsmodels' own defaults; the paper does not give its settings.

    Returns the mean over seeds and its confidence band at each grid point. Grid points outside the
    range of ``x`` are rejected (LOWESS does not extrapolate).
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    x = np.asarray(x, dtype=float)
    values = np.atleast_2d(np.asarray(values, dtype=float))
    grid = np.asarray(grid, dtype=float)
    if x.ndim != 1 or values.shape[1] != x.shape[0]:
        raise ValueError(f"values of shape {values.shape} do not match {x.shape} covariate values")
    if grid.min() < x.min() or grid.max() > x.max():
        raise ValueError("the grid must lie within the range of x")
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    order = np.argsort(x, kind="stable")
    curves = np.stack([
        lowess(v[order], x[order], frac=frac, it=it, xvals=grid, is_sorted=True) for v in values
    ])
    if not np.all(np.isfinite(curves)):
        raise ValueError(
            f"LOWESS gave no estimate at some grid points ({x.size} points, frac={frac:.2f}); "
            "use more points, a larger frac or a narrower grid"
        )
    return mean_ci(curves, axis=0, level=level)
