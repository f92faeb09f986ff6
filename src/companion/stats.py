"""Mean and 95% confidence interval over seeds: the one summary every experiment uses.

The interval is the Student-t interval for the mean of ``n`` independent runs,

    mean ± t_{n-1, (1+level)/2} · s / sqrt(n),   s the sample standard deviation (ddof = 1),

the usual choice for a handful of seeds (with 5 seeds t = 2.78, not the normal 1.96). The paper
does not say which formula it used (notes §6.1).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats as _scipy_stats

__all__ = ["MeanCI", "mean_ci"]


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
