"""The one summary statistic of the book: mean and Student-t 95% interval over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from scipy import stats

from companion.stats import mean_ci, rms_z_null


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


def test_r2_score_by_hand() -> None:
    from companion.stats import r2_score

    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(4, y.mean())) == 0.0
    # SS_res = 0.25 * 4 = 1, SS_tot = 5.
    assert r2_score(y, y + 0.5) == pytest.approx(1 - 1 / 5)
    runs = np.stack([y, y + 0.5, np.full(4, 2.5)])
    np.testing.assert_allclose(r2_score(y, runs), [1.0, 0.8, 0.0])
    assert r2_score(y, -y) < 0, "worse than the mean gives a negative R^2"


def test_r2_score_errors() -> None:
    from companion.stats import r2_score

    with pytest.raises(ValueError, match="do not match"):
        r2_score(np.zeros(3) + [0, 1, 2], np.zeros(4))
    with pytest.raises(ValueError, match="constant targets"):
        r2_score(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        r2_score(np.arange(3.0), np.array([0.0, np.nan, 1.0]))


def test_best_and_overlapping_is_the_papers_bold_rule() -> None:
    from companion.stats import MeanCI, best_and_overlapping

    def ci(mean: float, half: float) -> MeanCI:
        return MeanCI(np.float64(mean), np.float64(mean - half), np.float64(mean + half), np.float64(half), 10, 0.95)

    # The paper's Table 1, OOD row: the three LN nets are bold, no LN and XGBoost are not.
    table = {"LN every": ci(0.50, 0.02), "LN first": ci(0.50, 0.02), "LN second": ci(0.50, 0.01),
             "no LN": ci(0.31, 0.02), "XGBoost": ci(0.27, 0.04)}
    assert best_and_overlapping(table) == {"LN every", "LN first", "LN second"}
    # ID row: best is XGBoost 0.61 ± 0.01, which overlaps 0.60 ± 0.01; 0.59 ± 0.01 only touches it.
    table = {"LN every": ci(0.60, 0.01), "LN first": ci(0.59, 0.01), "LN second": ci(0.60, 0.01),
             "no LN": ci(0.58, 0.01), "XGBoost": ci(0.61, 0.01)}
    assert best_and_overlapping(table) == {"LN every", "LN second", "XGBoost"}
    assert best_and_overlapping({"a": ci(1.0, 0.1), "b": ci(2.0, 0.1)}, larger_is_better=False) == {"a"}
    # A deterministic method (zero-width interval) is bold when the best interval contains it, and vice versa.
    assert best_and_overlapping({"xgb": ci(0.607, 0.0), "net": ci(0.60, 0.01)}) == {"xgb", "net"}
    assert best_and_overlapping({"xgb": ci(0.62, 0.0), "net": ci(0.60, 0.01)}) == {"xgb"}
    assert best_and_overlapping({"xgb": ci(0.595, 0.0), "net": ci(0.60, 0.01)}) == {"xgb", "net"}
    with pytest.raises(ValueError, match="no summaries"):
        best_and_overlapping({})


def test_lowess_follows_a_smooth_trend() -> None:
    from companion.stats import lowess

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 500)
    y = 2 * x + 1 + 0.1 * rng.standard_normal(500)
    grid = np.linspace(1, 9, 9)
    np.testing.assert_allclose(lowess(x, y, grid), 2 * grid + 1, atol=0.05)
    with pytest.raises(ValueError, match="equal length"):
        lowess(x, y[:-1], grid)
    with pytest.raises(ValueError, match="frac"):
        lowess(x, y, grid, frac=0)


def test_rms_z_null_for_independent_points_is_a_chi_square() -> None:
    m = 7
    z = rms_z_null(np.diag(np.linspace(0.5, 3.0, m)), draws=200_000)  # scales do not matter, only correlations
    for q in (0.5, 0.9, 0.99):
        assert np.quantile(z, q) == pytest.approx(np.sqrt(stats.chi2.ppf(q, m) / m), rel=0.01)


def test_rms_z_null_for_perfectly_correlated_points_is_one_normal() -> None:
    ones = np.outer([1.0, 2.0, 0.5], [1.0, 2.0, 0.5])  # rank one: every point the same standard normal
    z = rms_z_null(ones, draws=200_000)
    assert np.quantile(z, 0.95) == pytest.approx(stats.norm.ppf(0.975), rel=0.01)
    # points without variance are left out, as Bridge.z_rms leaves them out
    padded = np.pad(ones, ((0, 1), (0, 1)))
    np.testing.assert_array_equal(rms_z_null(padded, draws=1000), rms_z_null(ones, draws=1000))


@pytest.mark.parametrize("cov, message", [
    (np.ones(3), "square"), (np.zeros((2, 2)), "zero variance"), (np.full((2, 2), np.nan), "NaN"),
])
def test_rms_z_null_rejects_what_has_no_law(cov, message) -> None:
    with pytest.raises(ValueError, match=message):
        rms_z_null(cov)
