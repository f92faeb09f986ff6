"""The face-age experiment: stand-in, metrics, feature cache, the full pipeline on tiny JPEGs, CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from companion import cli
from companion.data import image_features, utkface
from companion.data.face_standin import UTKFACE_COUNTS, make_standin
from companion.stats import average_cosine_similarity, lowess_band, r2_score
from companion.experiments import faces
from utkface_fixtures import MALFORMED, PER_RACE, make_folder

SMALL = dataclasses.replace(faces.CONFIGS["ci"], seeds=3, epochs=2, standin_size=600, standin_dim=32, trend_points=9)


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COMPANION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(faces.IMAGES_ENV_VAR, raising=False)
    # A result published in a source checkout must not leak into these tests.
    monkeypatch.setattr(faces, "find_artefact", _only_data_dir_artefact)
    return tmp_path / "data"


def _only_data_dir_artefact() -> Path | None:
    path = faces.data_dir() / "results" / faces.ARTEFACT
    return path if path.is_file() else None


# -- the stand-in and the metrics ------------------------------------------------------------------

def test_standin_has_group_structure_and_an_age_signal() -> None:
    s = make_standin(n=4000, dim=64, seed=3)
    assert s.features.shape == (4000, 64) and s.features.dtype == np.float32
    assert np.all(s.features >= 0), "features imitate average-pooled ReLU outputs"
    shares = np.bincount(s.races, minlength=5) / 4000
    np.testing.assert_allclose(shares, np.asarray(UTKFACE_COUNTS) / sum(UTKFACE_COUNTS), atol=0.03)
    assert 1 <= s.ages.min() and s.ages.max() <= 100
    assert np.all(s.shift[s.races < 4] == 0) and 0 < s.shift[s.races == 4].mean() < 1
    centred = s.features - s.features.mean(axis=0)
    assert abs(np.corrcoef(centred @ np.linalg.lstsq(centred, s.ages - s.ages.mean(), rcond=None)[0], s.ages)[0, 1]) > 0.5
    np.testing.assert_array_equal(make_standin(n=100, dim=16, seed=1).features, make_standin(n=100, dim=16, seed=1).features)
    with pytest.raises(ValueError, match="at least 50"):
        make_standin(n=10)


def test_r2_score() -> None:
    y = np.array([1.0, 2.0, 3.0, 6.0])
    np.testing.assert_allclose(r2_score(y, np.stack([y, np.full(4, y.mean())])), [1.0, 0.0])
    assert r2_score(y, y + 1) == pytest.approx(1 - 4 / 14)
    with pytest.raises(ValueError, match="undefined"):
        r2_score(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="do not match"):
        r2_score(y, np.ones(3))


def test_average_cosine_similarity_equals_the_pairwise_mean() -> None:
    rng = np.random.default_rng(0)
    q, r = rng.random((5, 7)), rng.random((9, 7))
    pairwise = (q @ r.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(r, axis=1))
    np.testing.assert_allclose(average_cosine_similarity(q, r), pairwise.mean(axis=1))
    with pytest.raises(ValueError, match="all-zero"):
        average_cosine_similarity(np.zeros((1, 7)), r)


def test_lowess_band_follows_a_trend_with_a_band_over_seeds() -> None:
    rng = np.random.default_rng(0)
    x = rng.random(300)
    values = 2 * x + 0.1 * rng.standard_normal((6, 300))
    grid = np.linspace(0.1, 0.9, 5)
    band = lowess_band(x, values, grid)
    np.testing.assert_allclose(band.mean, 2 * grid, atol=0.05)
    assert band.n == 6 and np.all(band.lower < band.mean) and np.all(band.mean < band.upper)
    with pytest.raises(ValueError, match="within the range"):
        lowess_band(x, values, np.array([-1.0, 0.5]))


# -- the experiment on the stand-in ----------------------------------------------------------------

def test_run_on_the_standin_and_the_artefact_round_trip(tmp_path: Path) -> None:
    result = faces.run(SMALL)
    assert result.source == "synthetic stand-in"
    assert result.labels == ("no LN", "LN first", "LN second", "LN every")
    n_ood = result.counts["OOD"]
    assert len(result.similarity) == n_ood and result.trend_grid.shape == (9,)
    for label in result.labels:
        assert {s: v.shape for s, v in result.r2[label].items()} == {"ID": (3,), "OOD": (3,)}
        assert result.mean_error[label].shape == (n_ood,) and np.all(result.mean_error[label] >= 0)
        assert result.trend[label].mean.shape == (9,) and result.trend[label].n == 3
    table = result.table()
    assert list(table.index) == list(result.labels)
    assert table.loc["LN first", "OOD R² (paper)"] == "0.47 ± 0.03"
    assert table.loc["no LN", "ID R² (ours)"] == result.summary("no LN", "ID").format()
    loaded = faces.Result.from_json(result.to_json(tmp_path / "r.json"))
    assert loaded.config == result.config and loaded.counts == result.counts and loaded.labels == result.labels
    np.testing.assert_allclose(loaded.r2["LN every"]["OOD"], result.r2["LN every"]["OOD"], rtol=1e-5)
    np.testing.assert_allclose(loaded.trend["no LN"].upper, result.trend["no LN"].upper, rtol=1e-5)
    assert loaded.table().equals(table)
    assert (tmp_path / "r.json").stat().st_size < 200_000


def test_paper_table_names_every_head() -> None:
    assert set(faces.PAPER_TABLE2) == {f"{'no LN' if p == 'none' else 'LN ' + p}" for p in faces.PLACEMENTS}
    assert faces.LEARNING_RATES == {"none": 1e-3, "first": 1e-3, "second": 3e-3, "every": 3e-3}
    assert faces.CONFIGS["full"].seeds == 250 and faces.CONFIGS["full"].source == "utkface"
    assert (faces.CONFIGS["full"].epochs, faces.CONFIGS["full"].batch_size, faces.CONFIGS["full"].width) == (10, 128, 128)


# -- the full pipeline, as far as this machine allows ----------------------------------------------

@pytest.fixture()
def fake_extractor(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the ResNet (torch) by colour statistics of the images; count the calls."""
    calls: list[int] = []

    def extract(paths, weights, batch_size, num_workers, device):
        from PIL import Image

        calls.append(len(paths))
        stats = []
        for path in paths:
            pixels = np.asarray(Image.open(path).convert("RGB"), dtype=float) / 255
            stats.append(np.concatenate([pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))]))
        rng = np.random.default_rng(0)
        return np.abs(np.asarray(stats) @ rng.normal(size=(6, image_features.FEATURE_DIM)))

    monkeypatch.setattr(image_features, "_extract", extract)
    return calls


def test_full_pipeline_on_a_folder_of_tiny_jpegs(tmp_path: Path, fake_extractor: list[int], _private_data_dir: Path) -> None:
    images = make_folder(tmp_path / "UTKFace")
    cfg = dataclasses.replace(faces.CONFIGS["full"], seeds=2, epochs=2, trend_points=5)
    result = faces.run(cfg, images=images, weights=None)
    n_id = sum(PER_RACE[:4])
    assert result.source == "UTKFace"
    assert result.counts == {"train": round(0.8 * n_id), "ID validation": n_id - round(0.8 * n_id), "OOD": PER_RACE[4]}
    assert result.provenance["malformed names"] == len(MALFORMED) + 1
    assert result.provenance["feature model"] == image_features.model_name(None)
    assert fake_extractor == [sum(PER_RACE)]
    cache_files = list((_private_data_dir / "image-features").glob("*.npz"))
    assert [f.name for f in cache_files] == [result.provenance["feature cache"]]
    again = faces.run(cfg, images=images, weights=None)
    assert fake_extractor == [sum(PER_RACE)], "the second run must read the cached features"
    np.testing.assert_allclose(again.r2["no LN"]["ID"], result.r2["no LN"]["ID"], rtol=1e-6)


def test_feature_cache_is_keyed_by_images_and_model(tmp_path: Path) -> None:
    calls = []

    def compute(values):
        return lambda: calls.append(1) or np.asarray(values, dtype=float)[:, None] * np.ones((1, 4))

    images = [("b.jpg", 10), ("a.jpg", 20)]
    first, path = image_features.cached(images, "m", compute([1, 2]), cache_dir=tmp_path)
    reordered, same = image_features.cached(images[::-1], "m", compute([9, 9]), cache_dir=tmp_path)
    assert same == path and len(calls) == 1
    np.testing.assert_array_equal(reordered, first[::-1])
    _, other_model = image_features.cached(images, "m2", compute([1, 2]), cache_dir=tmp_path)
    _, other_size = image_features.cached([("b.jpg", 11), ("a.jpg", 20)], "m", compute([1, 2]), cache_dir=tmp_path)
    assert len(calls) == 3 and len({path, other_model, other_size}) == 3
    with pytest.raises(ValueError, match="non-finite"):
        image_features.cached([("c.jpg", 1)], "m", lambda: np.array([[np.nan]]), cache_dir=tmp_path)


def test_missing_torch_is_a_clear_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    image = tmp_path / "1_0_0_20170104023102422.jpg"
    image.write_bytes(b"x")
    with pytest.raises(ImportError, match=r"layernorm-companion\[faces\]"):
        image_features.resnet18_features([image], cache_dir=tmp_path)


def test_importing_the_package_does_not_import_torch() -> None:
    code = ("import sys, companion, companion.cli, companion.experiments.faces, companion.data.image_features; "
            "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_runs_the_full_profile_and_writes_the_artefact(tmp_path: Path, fake_extractor: list[int],
                                                            monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    images = make_folder(tmp_path / "UTKFace")
    monkeypatch.setattr(faces, "CONFIGS", faces.CONFIGS | {"full": dataclasses.replace(faces.CONFIGS["full"], epochs=1, trend_points=5)})
    monkeypatch.setattr(faces, "utkface_data", lambda *a, **k: _utkface_random_init(*a, **k))
    assert cli.main(["run", "faces", "--profile", "full", "--images", str(images), "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "malformed file name(s) skipped" in out and "OOD R² (paper)" in out
    artefact = faces.find_artefact()
    assert artefact is not None and artefact.name == "faces-full.json"
    result = faces.Result.from_json(artefact)
    assert result.source == "UTKFace" and result.config.seeds == 2
    assert result.provenance["command"] == "python -m companion run faces --profile full --seeds 2"
    assert {"created", "git commit", "versions", "jax devices", "feature model", "split"} <= set(result.provenance)
    # The chapter shows the saved result.
    assert faces.chapter_result().provenance["created"] == result.provenance["created"]


_real_utkface_data = faces.utkface_data


def _utkface_random_init(images, **kwargs):
    return _real_utkface_data(images, **(kwargs | {"weights": None}))


def test_cli_refuses_the_full_profile_without_images(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "faces", "--profile", "full"])
    assert "susanqq.github.io/UTKFace" in capsys.readouterr().err


def test_chapter_falls_back_to_the_standin(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    seen = []
    monkeypatch.setattr(faces, "run", lambda cfg: seen.append(cfg) or dataclasses.replace(_STUB, config=cfg))
    monkeypatch.setenv("COMPANION_PROFILE", "full")
    faces.chapter_result()
    assert seen[-1].source == "standin" and seen[-1].seeds == 250
    assert "UTKFace not found" in capsys.readouterr().out
    monkeypatch.setenv("COMPANION_PROFILE", "ci")
    faces.chapter_result()
    assert seen[-1] == faces.CONFIGS["ci"]


_STUB = faces.Result(config=SMALL, source="synthetic stand-in", labels=(), counts={}, r2={}, similarity=np.zeros(1),
                     mean_error={}, trend_grid=np.zeros(1), trend={}, provenance={})


def test_lowess_band_reports_a_failed_fit() -> None:
    rng = np.random.default_rng(3)
    x = np.sort(rng.random(7))
    with pytest.raises(ValueError, match="LOWESS gave no estimate"):
        for seed in range(50):  # some draws of 7 points leave a grid point without an estimate
            y = np.abs(np.random.default_rng(seed).normal(size=(2, 7))) * 10
            lowess_band(x, y, np.linspace(x[0], x[-1], 5))
