"""Linear sequences for next-value prediction (the paper's transformer experiment, App. M, Fig. 7).

Each sequence is ``f(i) = a + b * i`` for ``i = 1, ..., length`` with ``a, b ~ N(0, 1)`` drawn
independently per sequence. A model reads ``f(1), ..., f(i)`` and predicts ``f(i + 1)``. Draws use
NumPy's ``default_rng(seed)``, so data are identical across JAX versions and devices.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["LinearSequences", "linear_sequences"]


@dataclasses.dataclass(frozen=True)
class LinearSequences:
    """``values[k, i - 1] = intercept[k] + slope[k] * i`` for ``i = 1..length``."""

    intercept: np.ndarray
    slope: np.ndarray
    values: np.ndarray

    @property
    def length(self) -> int:
        """Number of positions ``T`` of every sequence."""
        return self.values.shape[1]

    def next_value_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Inputs ``(n, length - 1, 1)``: ``f(1..length-1)``; targets ``(n, length - 1)``: ``f(2..length)``.

        Position ``t`` (0-based) of the targets is the value that follows tokens ``0..t`` of the
        inputs, so a causal model is trained at every position at once.
        """
        return self.values[:, :-1, None], self.values[:, 1:]

    def scaled(self, factor: float) -> "LinearSequences":
        """The same sequences multiplied by ``factor`` (still linear: ``a, b`` scaled alike)."""
        return LinearSequences(self.intercept * factor, self.slope * factor, self.values * factor)


def linear_sequences(n: int, length: int, seed: int = 0) -> LinearSequences:
    """``n`` sequences ``a + b * i``, ``i = 1..length``, with ``a, b ~ N(0, 1)``."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not (isinstance(length, int) and length >= 2):
        raise ValueError(f"length must be an integer >= 2 (a value and its successor), got {length!r}")
    rng = np.random.default_rng(seed)
    intercept, slope = rng.standard_normal((2, n))
    values = intercept[:, None] + slope[:, None] * np.arange(1, length + 1)
    return LinearSequences(intercept=intercept, slope=slope, values=values)
