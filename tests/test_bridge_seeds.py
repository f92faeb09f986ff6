"""The bridge's seed study: more seeds and float64 twins of its theory-regime networks."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from companion import artefacts, cli
from companion.experiments import bridge, bridge_seeds

BASE = bridge.Config(seeds=2, epochs=3, widths=(8, 16), grid_points=41)
CFG = bridge_seeds.Config(base=BASE, widths=(16,), extra_seeds=2, float64_seeds=1)


@pytest.fixture(scope="module")
def base() -> bridge.Bridge:
    return bridge.run(BASE, regimes=("NTK, GD",))


def test_the_study_extends_the_bridges_seeds_and_resumes(base, tmp_path, monkeypatch) -> None:
    study = bridge_seeds.run(CFG, base=base, folder=tmp_path)
    assert study.networks(16, "bridge").shape == (2, 41) and study.networks(16, "new").shape == (2, 41)
    np.testing.assert_array_equal(study.networks(16, "all")[:2], base.predictions["NTK, GD", 16, "LN first"])
    # the new seeds are other networks than the bridge's
    assert not np.allclose(study.networks(16, "new")[0], study.networks(16, "bridge")[0])
    assert {p.parent.name for p in tmp_path.rglob("seed-*.json")} == {"width-16-float64", "width-16-float32"}

    def no_training(*args, **kwargs):
        raise AssertionError("a saved run was trained again")

    monkeypatch.setattr(bridge_seeds, "train_seeds", no_training)
    again = bridge_seeds.run(CFG, base=base, folder=tmp_path)
    for key, runs in study.runs.items():
        np.testing.assert_array_equal(again.runs[key], runs)


def test_new_seeds_are_trained_as_the_bridge_trains_its_own(base) -> None:
    """Seeds 0 and 1 trained by the study equal the bridge's own networks (same code path, same weights)."""
    same = bridge_seeds.train_seeds(CFG, base.data, base.grid, 16, [0, 1])
    np.testing.assert_allclose(same, base.predictions["NTK, GD", 16, "LN first"], rtol=1e-4, atol=1e-5)
    twins = bridge_seeds.train_seeds(CFG, base.data, base.grid, 16, [0, 1], "float64")
    np.testing.assert_allclose(twins, same, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="precision must be one of float32, float64"):
        bridge_seeds.train_seeds(CFG, base.data, base.grid, 16, [0], "float16")


def test_the_summary_measures_each_set_against_the_kernel(base) -> None:
    study = bridge_seeds.run(CFG, base=base)
    out = bridge_seeds.summarise(study)["16"]
    assert [out[s]["seeds"] for s in bridge_seeds.SETS] == [2, 2, 4]
    # z of the bridge's own seeds is the bridge's z
    assert out["bridge"]["z_rms"] == pytest.approx(base.z_rms("NTK, GD", 16, "LN first", "gd"))
    assert out["bridge"]["systematic_gap"] == pytest.approx(base.systematic_gap("NTK, GD", 16, "LN first", "gd"))
    # the mean offset of all networks, by hand from the kernel's mean and spread
    mask = base.distance() >= BASE.ood_from
    sd = np.sqrt(base.kernel_var["gd", "LN first"][mask])
    miss = (study.networks(16, "all")[:, mask] - base.kernel_gd["LN first"][mask]) / sd
    assert out["all"]["offset"] == pytest.approx(miss.mean())
    assert out["all"]["offset_lower"] < out["all"]["offset"] < out["all"]["offset_upper"]
    assert 0 < out["z_null_95"] < out["z_null_99"]
    assert len(out["float64_shift"]) == 1 and out["float64_shift"][0] < 1e-2
    with pytest.raises(ValueError, match="one of bridge, new, all"):
        study.networks(16, "some")


def test_the_study_needs_the_bridge_run_it_extends(base, tmp_path) -> None:
    with pytest.raises(ValueError, match="run `python -m companion run bridge --profile full` first"):
        bridge_seeds.run(CFG, folder=tmp_path / "seeds", bridge_folder=tmp_path / "bridge")
    with pytest.raises(ValueError, match="give the bridge run"):
        bridge_seeds.run(CFG)
    other = dataclasses.replace(CFG, base=dataclasses.replace(BASE, epochs=4))
    with pytest.raises(ValueError, match="configuration and widths"):
        bridge_seeds.run(other, base=base)
    with pytest.raises(ValueError, match="trains one of no LN, LN first"):
        bridge_seeds.train_seeds(dataclasses.replace(CFG, label="LN every"), base.data, base.grid, 16, [0])


def test_the_command_line_knows_the_study() -> None:
    assert cli.EXPERIMENTS["bridge-seeds"] == "companion.experiments.bridge_seeds"
    full = bridge_seeds.config("full")
    assert full.base == bridge.config("full") and set(full.widths) <= set(full.base.widths)
    assert artefacts.fingerprint(full) != artefacts.fingerprint(bridge_seeds.config("ci"))


def _results(p_all: float = 0.3, shift: float = 0.002) -> dict:
    """Results shaped like :func:`bridge_seeds.summarise`'s, one width."""
    cell = {"seeds": 5, "z_rms": 1.2, "z_p": p_all, "systematic_gap": 0.4, "offset": -0.5, "offset_lower": -0.9, "offset_upper": -0.1,
            "gap": 0.03, "noise_floor": 0.02}
    return {"4096": {"z_null_95": 1.7, "z_null_99": 2.1, "float64_shift": [shift],
                     "bridge": cell, "new": dict(cell, seeds=10), "all": dict(cell, seeds=15)}}


def test_check_passes_the_claims_and_names_each_broken_one() -> None:
    bridge_seeds.check(_results())
    with pytest.raises(AssertionError, match="was float64 on"):
        bridge_seeds.check(_results(shift=0.0))
    with pytest.raises(AssertionError, match="other initial weights"):
        bridge_seeds.check(_results(shift=0.8))
    broken = _results()
    broken["4096"]["all"]["seeds"] = 12
    with pytest.raises(AssertionError, match="seeds do not add up"):
        bridge_seeds.check(broken)


def test_check_full_asks_for_a_departure_that_levels_off() -> None:
    results = _results(p_all=0.0) | {"2048": _results(p_all=0.0)["4096"]}
    bridge_seeds.check_full(results)  # the same gap at both widths: levelled off, beyond the noise
    results["2048"]["all"]["z_p"] = 0.2
    with pytest.raises(AssertionError, match="width 2048: with all 15 seeds the networks should be beyond the noise"):
        bridge_seeds.check_full(results)
    results["2048"]["all"]["z_p"] = 0.0
    results["4096"]["all"]["systematic_gap"] = 0.25  # 0.4 / sqrt(2) = 0.28: falls faster than 1/sqrt(width)
    with pytest.raises(AssertionError, match="does not level off"):
        bridge_seeds.check_full(results)


def test_the_reading_follows_the_numbers() -> None:
    assert "within the noise" in bridge_seeds.reading(_results(p_all=0.3), "x")
    assert "beyond the noise" in bridge_seeds.reading(_results(p_all=0.0), "x")
    assert "(p < 0.001)" in bridge_seeds.reading(_results(p_all=0.0), "x")
    assert "does not explain" in bridge_seeds.reading(_results(shift=0.002), "x")
    assert "may explain" in bridge_seeds.reading(_results(shift=0.2), "x")


@pytest.fixture
def saved_study() -> dict:
    """The committed full seed study's summary (the tests are skipped, saying why, without it)."""
    summary = bridge_seeds.load_artefact("full")
    if summary is None:
        pytest.skip("no full seed study yet: run `python -m companion run bridge-seeds --profile full` and commit it")
    return summary


def test_the_committed_seed_study_passes_the_chapters_checks(saved_study) -> None:
    full = bridge_seeds.config("full")
    assert saved_study["config"]["extra_seeds"] == full.extra_seeds
    assert saved_study["config"]["widths"] == list(full.widths), "the committed study has other widths; rerun it"
    assert saved_study["config"]["base"]["seeds"] == full.base.seeds
    bridge_seeds.check(saved_study["results"])
    bridge_seeds.check_full(saved_study["results"])


def test_the_committed_seed_study_is_the_summary_of_its_runs(saved_study, tmp_path, monkeypatch) -> None:
    """``summary.json`` must be what :func:`bridge_seeds.summarise` makes of the committed runs (not stale)."""
    def no_training(*args, **kwargs):
        raise AssertionError("the committed study (or the bridge run it extends) is missing a run")

    monkeypatch.setattr(bridge_seeds, "train_seeds", no_training)
    monkeypatch.setattr(bridge, "_train", no_training)
    for experiment in ("bridge", "bridge-seeds"):  # copies: a run claims its folders
        shutil.copytree(artefacts.directory(experiment, "full") / "runs", tmp_path / experiment / "runs")
    cfg = bridge_seeds.config("full")
    study = bridge_seeds.run(cfg, folder=tmp_path / "bridge-seeds", bridge_folder=tmp_path / "bridge")
    again = bridge_seeds.summarise(study)
    assert again.keys() == saved_study["results"].keys()
    for width, row in saved_study["results"].items():
        for key, value in row.items():
            if isinstance(value, dict):
                for name, number in value.items():
                    assert again[width][key][name] == pytest.approx(number, rel=1e-6, abs=1e-9), (width, key, name)
            else:
                assert again[width][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (width, key)
