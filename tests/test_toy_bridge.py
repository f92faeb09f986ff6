"""The toy experiments' and the parametrisation bridge's summary helpers (the heavy parts run in the book)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from companion import artefacts, cli, kernels
from companion.arch import MLPSpec
from companion.data.toy import make_1d
from companion.experiments import bridge, toy
from companion.stats import mean_ci


def test_growth_is_two_for_linear_and_one_for_saturated() -> None:
    distance = np.linspace(0, 25, 501)
    assert toy.growth(3 * distance[None, :], distance) == pytest.approx(2.0, rel=0.02)
    assert toy.growth(np.tanh(distance)[None, :] + 1, distance) == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(ValueError, match="no grid point"):
        toy.shell_mean_abs(distance, distance, 30, 40)


def test_architectures_of_the_figures() -> None:
    cfg = toy.config("ci")
    assert list(toy.architectures(cfg)) == ["no LN", "LN every", "LN first", "LN second"]
    bn = toy.architectures(cfg, ("none", "every"), norm="batchnorm")
    assert list(bn) == ["no LN", "BatchNorm"] and bn["BatchNorm"].norm == "batchnorm"
    assert {s.activation for s in toy.architectures(cfg, ("none",), "gelu").values()} == {"gelu"}
    assert toy.config("full").epochs == 3000 and toy.config("full").seeds == 5  # the paper's Table 3


def test_ntk_map_summaries_on_known_kernels() -> None:
    x = np.linspace(-10, 10, 21)
    maps = toy.NTKMaps(toy.config("ci"), x, {"a": None, "b": None},
                       empirical={"a": np.outer(x, x) + 1.0 + np.diag(x**2), "b": np.sign(np.outer(x, x)) + 2},
                       analytic={}, seconds=0.0)
    assert maps.diagonal_growth("a") == pytest.approx((2 * 100 + 1) / (2 * 25 + 1))
    assert maps.quadrant_spread("b") == pytest.approx(0.0)
    assert maps.quadrant_spread("a") > 0.5


def test_gd_kernel_mean_tends_to_the_posterior_mean() -> None:
    data = make_1d("sine", n=12, seed=2)
    spec = MLPSpec(parametrisation="ntk", layernorm="first")
    x_test = np.linspace(-5, 5, 7)[:, None]
    posterior = kernels.ntk_regression(data.x, data.y, x_test, spec).mean
    early = bridge.gd_kernel_mean(data.x, data.y, x_test, spec, lr=0.1, steps=1)
    late = bridge.gd_kernel_mean(data.x, data.y, x_test, spec, lr=0.1, steps=10**9)
    np.testing.assert_allclose(late, posterior, rtol=1e-4, atol=1e-6)
    # one step of gradient descent from f = 0: f_1(x) = eta Theta(x, X) y
    eta = 2 * 0.1 / len(data.y)
    np.testing.assert_allclose(early, eta * kernels.kernel(x_test, data.x, spec).ntk @ data.y, rtol=1e-8)
    with pytest.raises(ValueError, match="diverges"):
        bridge.gd_kernel_mean(data.x, data.y, x_test, spec, lr=100.0, steps=10)


@pytest.mark.parametrize("steps", [None, 2000])
def test_gd_kernel_ensemble_agrees_with_neural_tangents(steps) -> None:
    data = make_1d("sine", n=12, seed=2)
    x_test = np.linspace(-30, 30, 9)[:, None]
    for spec in (MLPSpec(parametrisation="ntk"), MLPSpec(parametrisation="ntk", layernorm="first")):
        mean, var = bridge.gd_kernel_ensemble(data.x, data.y, x_test, spec, 1e-3, steps)
        nt_mean, nt_var = bridge.neural_tangents_ensemble(data.x, data.y, x_test, spec, 1e-3, steps)
        # gradient flow (neural-tangents) against 2000 small discrete steps: equal to about eta lambda
        tol = 1e-6 if steps is None else 1e-3
        np.testing.assert_allclose(mean, nt_mean, rtol=tol, atol=tol * np.abs(nt_mean).max())
        np.testing.assert_allclose(var, nt_var, rtol=tol, atol=tol * nt_var.max())
        assert np.all(var >= 0)
        _, cov = bridge.gd_kernel_ensemble(data.x, data.y, x_test, spec, 1e-3, steps, full_cov=True)
        _, nt_cov = bridge.neural_tangents_ensemble(data.x, data.y, x_test, spec, 1e-3, steps, full_cov=True)
        np.testing.assert_allclose(cov, nt_cov, rtol=tol, atol=tol * nt_var.max())
        np.testing.assert_allclose(np.diag(cov), var, rtol=1e-10, atol=1e-12 * var.max())


def test_noise_floor_and_z_on_draws_of_the_theory() -> None:
    rng = np.random.default_rng(0)
    cfg = bridge.Config(seeds=400, epochs=1, widths=(8,), grid_points=41)
    data = make_1d("sine", n=10, seed=0)
    grid = np.linspace(-10, 10, 41)
    mean, sd = np.sin(grid), 0.1 + np.abs(grid)
    draws = mean + sd * rng.normal(size=(400, 41))
    result = bridge.Bridge(cfg, data, grid, ("a",), {("NTK, GD", 8, "a"): draws}, {"a": mean}, {"a": mean},
                           {("NTK, GD", 8): 0.0}, {("posterior", "a"): sd**2, ("gd", "a"): sd**2})
    assert result.z_rms("NTK, GD", 8, "a") == pytest.approx(1.0, abs=0.25)
    assert result.measured_floor("NTK, GD", 8, "a") == pytest.approx(result.noise_floor("NTK, GD", 8, "a"), rel=0.1)
    assert result.gap("NTK, GD", 8, "a") == pytest.approx(result.noise_floor("NTK, GD", 8, "a"), rel=0.3)
    assert result.systematic_gap("NTK, GD", 8, "a") < 0.1
    # a systematic miss of half a spread is measured as such, whatever the networks' own spread
    for spread in (1.0, 2.0):
        shifted = mean + 0.5 * sd + spread * sd * rng.normal(size=(400, 41))
        moved = dataclasses.replace(result, predictions={("NTK, GD", 8, "a"): shifted})
        assert moved.systematic_gap("NTK, GD", 8, "a") == pytest.approx(0.5, abs=0.1)
    assert moved.z_rms("NTK, GD", 8, "a") > 10  # z grows like the square root of the seeds times the gap
    with pytest.raises(ValueError, match="two seeds"):
        dataclasses.replace(result, predictions={("NTK, GD", 8, "a"): draws[:1]}).systematic_gap("NTK, GD", 8, "a")


def test_z_null_is_the_law_of_z_when_networks_are_draws_of_the_theory() -> None:
    """Repeat "train S networks" as draws from a correlated Gaussian process and compare z with its null law."""
    rng = np.random.default_rng(1)
    cfg = bridge.Config(seeds=3, epochs=1, widths=(8,), grid_points=61)
    data = make_1d("sine", n=10, seed=0)
    grid = np.linspace(-30, 30, 61)
    ood = np.abs(grid) / data.half_width >= cfg.ood_from
    sd = 0.1 + np.abs(grid)
    cov = np.exp(-np.subtract.outer(grid, grid) ** 2 / 50.0) * np.outer(sd, sd)
    mean = np.sin(grid)
    factor = np.linalg.cholesky(cov + 1e-9 * np.eye(61))
    zs = []
    for _ in range(2000):
        draws = mean + rng.normal(size=(3, 61)) @ factor.T
        result = bridge.Bridge(cfg, data, grid, ("a",), {("NTK, GD", 8, "a"): draws}, {"a": mean}, {"a": mean},
                               {("NTK, GD", 8): 0.0}, {("posterior", "a"): np.diag(cov), ("gd", "a"): np.diag(cov)},
                               {("posterior", "a"): cov[np.ix_(ood, ood)], ("gd", "a"): cov[np.ix_(ood, ood)]})
        zs.append(result.z_rms("NTK, GD", 8, "a"))
    null = result.z_null("a")
    for q in (0.5, 0.9, 0.99):
        assert np.quantile(zs, q) == pytest.approx(np.quantile(null, q), rel=0.06)
    # correlated points spread z far more than independent ones would (chi-square with ~50 dof)
    assert np.quantile(null, 0.99) > 1.5


def test_ood_gap_and_coverage() -> None:
    distance = np.linspace(0, 10, 11)
    reference = np.ones(11)
    samples = np.stack([reference + 0.1, reference - 0.1, reference + 0.1, reference - 0.1])
    assert bridge.ood_gap(samples.mean(axis=0), reference, distance, 2.0, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert bridge.ood_gap(reference + 0.5, reference, distance, 2.0, 0.5) == pytest.approx(1.0)
    assert bridge.coverage(mean_ci(samples), reference, distance, 2.0) == 1.0
    assert bridge.coverage(mean_ci(samples), reference + 1, distance, 2.0) == 0.0


def test_the_command_line_knows_both_experiments() -> None:
    assert cli.EXPERIMENTS["toy"] == "companion.experiments.toy"
    assert cli.EXPERIMENTS["bridge"] == "companion.experiments.bridge"
    with pytest.raises(SystemExit):
        toy.main(["--help"])


def test_the_full_run_saves_each_seed_and_resumes(tmp_path, monkeypatch) -> None:
    cfg = bridge.Config(seeds=2, epochs=2, widths=(8,), grid_points=21)
    first = bridge.run(cfg, regimes=("NTK, GD",), folder=tmp_path)
    assert len(list(tmp_path.rglob("seed-*.json"))) == 2
    ood = first.distance() >= cfg.ood_from
    for key, cov in first.kernel_cov.items():  # the covariance between OOD points has the variance on its diagonal
        np.testing.assert_allclose(np.diag(cov), first.kernel_var[key][ood], rtol=1e-8, atol=1e-12)

    def no_training(*args, **kwargs):
        raise AssertionError("a saved run was trained again")

    monkeypatch.setattr(bridge, "_train", no_training)
    again = bridge.run(cfg, regimes=("NTK, GD",), folder=tmp_path)
    for key, predictions in first.predictions.items():
        np.testing.assert_allclose(again.predictions[key], predictions, atol=1e-5)


def _summary(z_theory: dict[str, list[float]], widths=(128, 512, 2048)) -> dict:
    """A summary shaped like :func:`bridge.summarise`'s that passes the chapter's checks, with the
    theory's regime at the given z per width."""
    def cell(label: str, regime: str, i: int) -> dict:
        no_ln = label == "no LN"
        z = z_theory[label][i] if regime == "NTK, GD" else 40.0 + i
        return {"growth": 2.0 if no_ln else 1.0, "noise_floor": 0.5 if no_ln else 0.01,
                "gap": 1.0, "measured_floor": 0.1, "z_rms": z}

    return {regime: {str(w): {label: cell(label, regime, i) for label in ("no LN", "LN first")}
                     for i, w in enumerate(widths)} for regime in bridge.REGIMES}


def test_check_summary_passes_the_claims_and_names_each_broken_one() -> None:
    good = _summary({"no LN": [20.0, 14.0, 10.0], "LN first": [17.0, 3.0, 1.5]})
    bridge.check_summary(good)
    breaks = {
        "keep growing": ("NTK, Adam", "512", "no LN", "growth", 1.2),
        "level off": ("standard, Adam", "128", "LN first", "growth", 1.3),
        "dwarf": ("NTK, GD", "2048", "LN first", "noise_floor", 0.2),
        "beyond their seed noise": ("standard, Adam", "2048", "no LN", "measured_floor", 0.5),
        "closer to the kernel in units": ("NTK, GD", "2048", "LN first", "z_rms", 50.0),
        "not come closer": ("standard, Adam", "2048", "LN first", "z_rms", 30.0),
    }
    for message, (regime, width, label, key, value) in breaks.items():
        bad = _summary({"no LN": [20.0, 14.0, 10.0], "LN first": [17.0, 3.0, 1.5]})
        bad[regime][width][label][key] = value
        with pytest.raises(AssertionError, match=message):
            bridge.check_summary(bad)


def test_check_convergence_asks_the_systematic_gap_to_shrink_from_narrowest_to_widest() -> None:
    def gaps(no_ln: list[float], ln: list[float], widths=(128, 512, 2048)) -> dict:
        summary = _summary({"no LN": [20.0] * len(widths), "LN first": [2.0] * len(widths)}, widths)
        for w, a, b in zip(widths, no_ln, ln):
            summary["NTK, GD"][str(w)]["no LN"]["systematic_gap"] = a
            summary["NTK, GD"][str(w)]["LN first"]["systematic_gap"] = b
        return summary

    bridge.check_convergence(gaps([8.8, 6.2, 4.4], [7.5, 0.9, 0.95]))  # levelling off is no failure
    with pytest.raises(AssertionError, match="no LN.*closer to the kernel at width 2048 than at 128"):
        bridge.check_convergence(gaps([4.0, 6.2, 4.4], [7.5, 0.9, 0.95]))
    with pytest.raises(AssertionError, match="LN first"):
        bridge.check_convergence(gaps([8.8, 6.2, 4.4], [0.5, 0.9, 0.95]))
    with pytest.raises(ValueError, match="three widths"):
        bridge.check_convergence(gaps([8.8, 4.4], [7.5, 0.9], widths=(128, 512)))


@pytest.fixture
def saved() -> dict:
    """The committed full bridge run's summary (the test is skipped, saying why, without it)."""
    summary = bridge.load_artefact("full")
    if summary is None:
        pytest.skip("no full bridge artefact yet: run `python -m companion run bridge --profile full` and commit it")
    return summary


def test_the_committed_full_run_passes_the_chapters_checks(saved) -> None:
    assert saved["config"] == dataclasses.asdict(bridge.config("full")) | {"widths": list(bridge.config("full").widths)}, \
        "the committed artefact was made with another configuration; rerun it"
    assert set(saved["results"]) == set(bridge.REGIMES)
    for regime, by_width in saved["results"].items():
        assert [int(w) for w in by_width] == list(bridge.config("full").widths), f"{regime}: widths missing"
    bridge.check_summary(saved["results"])
    bridge.check_convergence(saved["results"])


def test_the_committed_full_summary_is_the_summary_of_its_runs(saved, tmp_path, monkeypatch) -> None:
    """``summary.json`` must be what :func:`bridge.summarise` makes of the committed runs (not stale)."""
    shutil.copytree(artefacts.directory("bridge", "full") / "runs", tmp_path / "runs")

    def no_training(*args, **kwargs):
        raise AssertionError("the committed full run is missing a (regime, width, seed)")

    monkeypatch.setattr(bridge, "_train", no_training)
    again = bridge.summarise(bridge.run(bridge.config("full"), folder=tmp_path))
    assert again.keys() == saved["results"].keys()
    for regime, by_width in saved["results"].items():
        for width, by_label in by_width.items():
            for label, cell in by_label.items():
                for key, value in cell.items():
                    recomputed = again[regime][width][label][key]
                    if isinstance(value, str):
                        assert recomputed == value
                    else:
                        assert recomputed == pytest.approx(value, rel=1e-6, abs=1e-9), (regime, width, label, key)
