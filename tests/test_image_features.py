"""The ResNet-18 feature step for real (torch and torchvision), when they are installed.

They are an optional extra (``layernorm-companion[faces]``) and not in the book's lock, so CI skips
this file. ImageNet weights cannot be downloaded everywhere: the test uses a randomly initialised
ResNet-18 (``weights=None``), which exercises the same preprocessing, batching, pooling and cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchvision")

from companion.data import image_features  # noqa: E402
from companion.experiments import faces  # noqa: E402
from utkface_fixtures import PER_RACE, make_folder, write_jpeg  # noqa: E402


def test_resnet18_features_are_512_pooled_relu_outputs_and_cached(tmp_path: Path, monkeypatch) -> None:
    paths = [tmp_path / "img" / f"{20 + i}_0_{i % 5}_2017010402310{i:04d}.jpg.chip.jpg" for i in range(5)]
    for i, path in enumerate(paths):
        write_jpeg(path, seed=i, size=40 + 10 * i)  # sizes differ: every image is resized and cropped to 224
    cache = tmp_path / "cache"
    features, cache_file = image_features.resnet18_features(paths, weights=None, batch_size=2, num_workers=0,
                                                            device="cpu", cache_dir=cache)
    assert features.shape == (5, 512) and features.dtype == np.float32
    assert np.all(np.isfinite(features)) and np.all(features >= 0), "average-pooled ReLU outputs are non-negative"
    assert not np.allclose(features[0], features[1]), "different images give different features"
    assert cache_file.parent == cache and cache_file.is_file()

    def fail(*args, **kwargs):
        raise AssertionError("cached features must not be recomputed")

    monkeypatch.setattr(image_features, "_extract", fail)
    again, _ = image_features.resnet18_features(paths[::-1], weights=None, cache_dir=cache)
    np.testing.assert_array_equal(again, features[::-1])


def test_same_image_same_features_in_any_batch(tmp_path: Path) -> None:
    paths = [tmp_path / f"{30 + i}_1_0_2017010402311{i:04d}.jpg" for i in range(3)]
    for i, path in enumerate(paths):
        write_jpeg(path, seed=i, size=64)
    one, _ = image_features.resnet18_features(paths, weights=None, batch_size=3, num_workers=0, cache_dir=tmp_path / "a")
    two, _ = image_features.resnet18_features(paths, weights=None, batch_size=1, num_workers=0, cache_dir=tmp_path / "b")
    np.testing.assert_allclose(one, two, rtol=1e-4, atol=1e-5)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "1_0_0_20170104023102422.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*1_0_0_20170104023102422.jpg"):
        image_features.resnet18_features([bad], weights=None, num_workers=0, cache_dir=tmp_path)


def test_full_pipeline_with_torch_on_tiny_jpegs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COMPANION_DATA_DIR", str(tmp_path / "data"))
    images = make_folder(tmp_path / "UTKFace")
    cfg = faces.Config(source="utkface", seeds=2, epochs=2, trend_points=5)
    result = faces.run(cfg, images=images, weights=None, device="cpu", num_workers=0)
    assert result.counts["OOD"] == PER_RACE[4]
    assert result.provenance["feature model"].startswith("resnet18-random-init")
    assert "torch" in result.provenance["versions"]
