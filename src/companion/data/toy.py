"""One-dimensional toy regression problems (the paper's Sec. 4.1 family).

The paper trains on 100 points of a sinusoidal, a linear and a quadratic target but does not give
the input range, the exact functions or the noise (notes §6.2). Our choices, used everywhere in the
book: inputs uniform on ``[-1, 1]``, targets below, Gaussian noise of standard deviation ``noise``.
Draws use NumPy's ``default_rng(seed)``, so data are identical across JAX versions and devices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

__all__ = ["TARGETS", "ToyData", "make_1d"]

#: Target functions of the toy problems.
TARGETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sine": lambda x: np.sin(np.pi * x),
    "linear": lambda x: x,
    "quadratic": lambda x: x**2,
}


@dataclasses.dataclass(frozen=True)
class ToyData:
    """Training inputs ``x`` ``(n, 1)``, noisy targets ``y`` ``(n,)`` and where they came from."""

    x: np.ndarray
    y: np.ndarray
    target: str
    x_range: tuple[float, float]
    noise: float

    @property
    def half_width(self) -> float:
        """Half the length of the training interval (the unit in which the book measures distance)."""
        lo, hi = self.x_range
        return (hi - lo) / 2

    def truth(self, x: np.ndarray) -> np.ndarray:
        """The noiseless target at ``x``."""
        return TARGETS[self.target](np.asarray(x))


def make_1d(
    target: str = "sine",
    n: int = 100,
    x_range: tuple[float, float] = (-1.0, 1.0),
    noise: float = 0.05,
    seed: int = 0,
) -> ToyData:
    """Sample ``n`` noisy training points of ``target`` with inputs uniform on ``x_range``."""
    if target not in TARGETS:
        raise ValueError(f"unknown toy target {target!r}; choose one of {', '.join(TARGETS)}")
    lo, hi = x_range
    if not lo < hi:
        raise ValueError(f"x_range must be an interval (low < high), got {x_range}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(lo, hi, size=n))[:, None]
    y = TARGETS[target](x[:, 0]) + noise * rng.standard_normal(n)
    return ToyData(x=x, y=y, target=target, x_range=(float(lo), float(hi)), noise=float(noise))
