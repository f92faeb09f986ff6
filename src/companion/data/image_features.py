"""Frozen ImageNet ResNet-18 features of images, computed once and cached on disk.

The paper's face-age study (Sec. 4.3) regresses age on the features of a frozen ResNet-18 (He et
al., 2016). We take torchvision's ImageNet weights (``IMAGENET1K_V1``), its standard ImageNet
preprocessing (resize to 256, centre crop 224, normalise with the ImageNet mean and standard
deviation), and the 512 numbers after global average pooling, i.e. the network without its last
linear layer. Chapter: ``book/experiments/faces``.

This is the only place in the book that uses PyTorch. ``torch``, ``torchvision`` and ``pillow`` are
an optional extra, ``pip install "layernorm-companion[faces]"`` (Colab has all three
preinstalled; install nothing there), imported only inside :func:`resnet18_features`, so
``import companion`` never needs them.

Features are cached under ``data_dir()/image-features`` in a file named after a SHA-256 of the
sorted image list (file names and sizes), the model, its weights and the preprocessing: a second
call with the same images returns the cached array without loading torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from companion import progress
from companion.data import data_dir

__all__ = ["FEATURE_DIM", "PREPROCESSING", "model_name", "cache_key", "cached", "resnet18_features"]

FEATURE_DIM = 512
PREPROCESSING = "resize256-centercrop224-imagenet-normalise"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Weights by name: torchvision's ImageNet weights, or ``None`` for a randomly initialised network
#: (torch seed 0; only for testing the pipeline where the weights cannot be downloaded).
WEIGHTS = {"imagenet": "IMAGENET1K_V1", None: None}
INSTALL_HINT = (
    'ResNet-18 features need torch, torchvision and pillow: pip install "layernorm-companion[faces]" '
    "(in Colab they are preinstalled)"
)


def model_name(weights: str | None = "imagenet") -> str:
    """The name the cache and the provenance record use for the feature extractor."""
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; use 'imagenet' or None (random, for tests)")
    return f"resnet18-{WEIGHTS[weights] or 'random-init-seed0'}-{PREPROCESSING}"


def cache_key(images: Sequence[tuple[str, int]], model: str) -> str:
    """SHA-256 of the sorted ``(file name, size in bytes)`` list and the model name."""
    payload = json.dumps({"images": sorted([str(n), int(s)] for n, s in images), "model": model})
    return hashlib.sha256(payload.encode()).hexdigest()


def cached(
    images: Sequence[tuple[str, int]],
    model: str,
    compute: Callable[[], np.ndarray],
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, Path]:
    """Features of ``images`` (``(name, size)`` pairs, in that order), from the cache or ``compute()``.

    Returns the array ``(len(images), d)`` and the cache file. ``compute`` is called only on a
    cache miss and must return features in the order of ``images``.
    """
    names = [str(n) for n, _ in images]
    if len(set(names)) != len(names):
        raise ValueError("image file names must be unique to cache their features")
    folder = cache_dir or data_dir() / "image-features"
    path = folder / f"{cache_key(images, model)[:24]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            stored_names, features, stored_model = list(stored["names"]), stored["features"], str(stored["model"])
        if stored_model == model and sorted(stored_names) == sorted(names) and len(features) == len(names):
            position = {name: i for i, name in enumerate(stored_names)}
            return features[[position[name] for name in names]], path
    features = np.asarray(compute(), dtype=np.float32)
    if features.ndim != 2 or len(features) != len(names) or not np.all(np.isfinite(features)):
        raise ValueError(f"feature extraction returned shape {features.shape} or non-finite values for {len(names)} images")
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, names=np.asarray(names), features=features, model=np.asarray(model))
    partial.replace(path)
    return features, path


class _ImageFiles:
    """Map-style data set of image files for ``torch.utils.data.DataLoader`` (RGB, transformed)."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Any], Any]) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return self.transform(image.convert("RGB"))
        except OSError as error:
            raise ValueError(f"cannot read image {path}: {error}; replace or delete the file and run again") from None


def _extract(paths: Sequence[Path], weights: str | None, batch_size: int, num_workers: int, device: str | None) -> np.ndarray:
    try:
        import torch
        import torchvision
        from torchvision import transforms
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if WEIGHTS[weights] is None:
        with torch.random.fork_rng(devices=[]):  # a fixed random network, leaving torch's global RNG alone
            torch.manual_seed(0)
            model = torchvision.models.resnet18(weights=None)
    else:
        model = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights[WEIGHTS[weights]])
    model.fc = torch.nn.Identity()  # keep the 512-d globally average-pooled features
    model = model.eval().to(device)
    transform = transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    loader = torch.utils.data.DataLoader(
        _ImageFiles(paths, transform), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, pin_memory=device.startswith("cuda"),
    )
    features = np.empty((len(paths), FEATURE_DIM), dtype=np.float32)
    done = 0
    with torch.inference_mode(), progress.bar(len(paths), f"ResNet-18 features ({device})", unit="image") as bar:
        for batch in loader:
            out = model(batch.to(device, non_blocking=True)).float().cpu().numpy()
            features[done:done + len(out)] = out
            done += len(out)
            bar.update(len(out))
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # leave the GPU memory to JAX, which trains the heads next
    return features


def resnet18_features(
    paths: Sequence[str | Path],
    *,
    weights: str | None = "imagenet",
    batch_size: int = 128,
    num_workers: int = 2,
    device: str | None = None,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, Path]:
    """Frozen ResNet-18 features ``(len(paths), 512)`` of the image files, computed once and cached.

    ``weights="imagenet"`` downloads torchvision's ImageNet weights on first use (about 45 MB);
    ``weights=None`` uses a random initialisation, only to test the pipeline. ``device`` defaults to
    CUDA when torch sees a GPU. Returns the features and the cache file they are stored in.
    """
    model = model_name(weights)
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image file(s) do not exist, e.g. {missing[0]}")
    images = [(p.name, p.stat().st_size) for p in paths]
    return cached(images, model, lambda: _extract(paths, weights, batch_size, num_workers, device), cache_dir)
