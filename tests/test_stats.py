"""The one summary statistic of the book: mean and Student-t 95% interval over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from companion.stats import mean_ci


def test_student_t_interval_by_hand() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    ci = mean_ci(values)
    # t_{4, 0.975} = 2.7764451..., s = sqrt(2.5), n = 5.
    half = 2.7764451051977987 * np.sqrt(2.5) / np.sqrt(5)
    assert ci.mean == pytest.approx(3.0)
    assert ci.half_width == pytest.approx(half, rel=1e-12)
    assert (ci.lower, ci.upper) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert ci.format() == f"3.00 ± {half:.2f}"


def test_axis_and_shapes() -> None:
    samples = np.arange(12.0).reshape(3, 4)
    ci = mean_ci(samples, axis=0)
    assert ci.mean.shape == (4,) and ci.n == 3
    np.testing.assert_allclose(ci.mean, samples.mean(axis=0))


def test_coverage_is_about_95_percent() -> None:
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4000, 5))
    ci = mean_ci(draws, axis=1)
    coverage = np.mean((ci.lower <= 0) & (0 <= ci.upper))
    assert 0.94 < coverage < 0.96


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 runs"):
        mean_ci([1.0])
    with pytest.raises(ValueError, match="NaN or infinity"):
        mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=95)
