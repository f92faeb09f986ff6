"""Chapter "Ages of faces unlike the training faces": the paper's UTKFace study (Sec. 4.3, Table 2, Fig. 4).

Protocol (notes §6.4, Table 3 of the paper): frozen ImageNet ResNet-18 features (512-d,
:mod:`companion.data.image_features`) of UTKFace's aligned and cropped faces; train on White, Black,
Asian and Indian faces (a fixed random 80%), validate in distribution (ID) on the other 20% and out
of distribution (OOD) on every "Others" face (:func:`companion.data.utkface.split`). Heads: two
hidden ReLU layers of 128, with no LayerNorm, or one after the 1st or the 2nd hidden layer's linear
map, or after both (:data:`PLACEMENTS`); Adam, batch 128, 10 epochs, learning rate 1e-3 (no LN, LN
first) or 3e-3 (LN second, LN every); 250 seeds. All 4 x 250 runs are one compiled program
(:func:`companion.train.fit_variants`).

Our choices where the paper is silent: targets are ages standardised with the training mean and
standard deviation (R² does not depend on it); features enter the heads as they come out of the
ResNet; LayerNorms are parameter-free with PyTorch's epsilon; the error of Fig. 4 is the absolute
error in years; its LOWESS trends are fitted per seed and summarised over seeds.

Profiles: ``full`` runs that protocol on the real images (``python -m companion run faces
--profile full --images UTKFace.tar.gz``) and saves a small JSON artefact with provenance, which
the chapter shows when present (:func:`find_artefact`). ``ci`` runs every step after feature
extraction on a synthetic stand-in (:mod:`companion.data.face_standin`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from companion import __version__, profile
from companion.arch import MLPSpec
from companion.data import data_dir
from companion.data import utkface
from companion.data.face_standin import make_standin
from companion.stats import average_cosine_similarity, lowess_band, r2_score
from companion.stats import MeanCI, mean_ci

__all__ = [
    "PLACEMENTS", "LEARNING_RATES", "PAPER_TABLE2", "Config", "CONFIGS", "config", "FaceData",
    "Result", "standin_data", "utkface_data", "find_images", "find_artefact", "run", "chapter_result", "main",
]

#: LayerNorm placements of the four heads, in the order of the paper's Table 2 (reversed).
PLACEMENTS = ("none", "first", "second", "every")
#: Adam learning rate of each head: the paper's Table 3 (notes §6.1).
LEARNING_RATES = {"none": 1e-3, "first": 1e-3, "second": 3e-3, "every": 3e-3}
#: The paper's Table 2 (Ziomek, Whittle and Osborne 2025, Sec. 4.3): R² as (mean, 95% CI half-width)
#: over 250 seeds. The only numbers of this experiment that are typed in rather than computed.
PAPER_TABLE2 = {
    "no LN": {"ID": (0.66, 0.01), "OOD": (0.27, 0.03)},
    "LN first": {"ID": (0.68, 0.01), "OOD": (0.47, 0.03)},
    "LN second": {"ID": (0.66, 0.01), "OOD": (0.36, 0.04)},
    "LN every": {"ID": (0.66, 0.01), "OOD": (0.42, 0.05)},
}
SPLITS = ("ID", "OOD")
ARTEFACT = "faces-full.json"
#: Where to look for UTKFace when no path is given: this variable, else data_dir()/UTKFace[.tar.gz].
IMAGES_ENV_VAR = "COMPANION_UTKFACE"
SOURCES = {"standin": "synthetic stand-in", "utkface": "UTKFace"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and choices of the experiment; one instance per profile in :data:`CONFIGS`."""

    source: str
    seeds: int
    epochs: int = 10
    batch_size: int = 128
    depth: int = 2
    width: int = 128
    sigma_b: float = 0.1
    train_fraction: float = 0.8
    split_seed: int = 0
    standin_size: int = 3000
    standin_dim: int = 512
    trend_points: int = 40
    trend_quantiles: tuple[float, float] = (0.02, 0.98)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.seeds < 2:
            raise ValueError("give at least 2 seeds: Table 2 reports a confidence interval over seeds")


#: The sizes of each profile: ``ci`` for two CPU cores, ``full`` for the paper's protocol.
CONFIGS = {
    "ci": Config(source="standin", seeds=8),
    "full": Config(source="utkface", seeds=250),
}


def config(profile_name: str | None = None) -> Config:
    """The configuration of the active profile (or of ``profile_name``)."""
    return profile.select(CONFIGS, profile_name)


@dataclasses.dataclass
class FaceData:
    """Features ``(n, d)``, ages ``(n,)`` and race codes ``(n,)`` of the faces, and where they came from."""

    features: np.ndarray
    ages: np.ndarray
    races: np.ndarray
    source: str
    provenance: dict[str, Any]


def standin_data(cfg: Config) -> FaceData:
    """The synthetic stand-in of :mod:`companion.data.face_standin`, sized by ``cfg``."""
    s = make_standin(n=cfg.standin_size, dim=cfg.standin_dim, seed=0)
    return FaceData(s.features, s.ages, s.races, SOURCES["standin"], {"data": "companion.data.face_standin, seed 0"})


def utkface_data(images: str | Path, *, weights: str | None = "imagenet", device: str | None = None,
                 num_workers: int = 2, log: Any = print) -> FaceData:
    """Scan UTKFace at ``images`` (folder or archive) and compute (or load cached) ResNet-18 features."""
    from companion.data.image_features import model_name, resnet18_features

    scan = utkface.scan(images)
    log(scan.summary())
    start = time.perf_counter()
    features, cache_file = resnet18_features(scan.paths(), weights=weights, device=device, num_workers=num_workers)
    provenance = {
        "images": Path(images).name,
        "labelled images": len(scan.images),
        "malformed names": len(scan.malformed),
        "malformed examples": [f"{name}: {reason}" for name, reason in scan.malformed[:20]],
        "ignored files": scan.ignored,
        "feature model": model_name(weights),
        "feature cache": cache_file.name,
        "feature seconds (0 when cached)": round(time.perf_counter() - start, 1),
    }
    return FaceData(features, scan.ages, scan.races, SOURCES["utkface"], provenance)


def find_images() -> Path | None:
    """UTKFace's location: ``$COMPANION_UTKFACE``, else ``data_dir()/UTKFace`` or ``UTKFace.tar.gz``."""
    value = os.environ.get(IMAGES_ENV_VAR, "").strip()
    candidates = [Path(value).expanduser()] if value else [data_dir() / "UTKFace", data_dir() / "UTKFace.tar.gz"]
    return next((c for c in candidates if c.exists()), None)


@dataclasses.dataclass
class Result:
    """Everything the chapter shows: Table 2 (R² per seed) and Figure 4 (errors against similarity)."""

    config: Config
    source: str
    labels: tuple[str, ...]
    counts: dict[str, int]
    r2: dict[str, dict[str, np.ndarray]]
    similarity: np.ndarray
    mean_error: dict[str, np.ndarray]
    trend_grid: np.ndarray
    trend: dict[str, MeanCI]
    provenance: dict[str, Any]

    def summary(self, label: str, split: str) -> MeanCI:
        """Mean R² and its 95% confidence interval over seeds."""
        return mean_ci(self.r2[label][split])

    def error_at_the_ends(self, label: str, share: float = 0.2) -> tuple[float, float]:
        """Mean absolute error in years (seed-averaged) of the OOD faces *least* and *most* similar
        to the training faces: the lowest and the highest ``share`` of :attr:`similarity`."""
        low, high = np.quantile(self.similarity, [share, 1 - share])
        error = self.mean_error[label]
        return float(error[self.similarity <= low].mean()), float(error[self.similarity >= high].mean())

    def table(self) -> Any:
        """Table 2: our R² (mean ± 95% CI) beside the paper's, one row per head."""
        import pandas as pd

        rows = {}
        for label in self.labels:
            row = {f"{split} R² (ours)": self.summary(label, split).format() for split in SPLITS}
            row |= {f"{split} R² (paper)": "{:.2f} ± {:.2f}".format(*PAPER_TABLE2[label][split]) for split in SPLITS}
            rows[label] = row
        columns = [f"{s} R² ({who})" for s in reversed(SPLITS) for who in ("ours", "paper")]
        return pd.DataFrame.from_dict(rows, orient="index")[columns]

    def to_json(self, path: str | Path) -> Path:
        """Save the result with its provenance as a small JSON file (about 150 kB for the full run)."""
        def floats(a: Any) -> list[float]:
            return [float(f"{v:.6g}") for v in np.ravel(a)]

        record = {
            "format": 1, "experiment": "faces", "source": self.source,
            "config": dataclasses.asdict(self.config), "labels": list(self.labels), "counts": self.counts,
            "r2": {lab: {s: floats(v) for s, v in splits.items()} for lab, splits in self.r2.items()},
            "similarity": floats(self.similarity),
            "mean_error": {lab: floats(v) for lab, v in self.mean_error.items()},
            "trend_grid": floats(self.trend_grid),
            "trend": {lab: {k: floats(getattr(t, k)) for k in ("mean", "lower", "upper")} | {"n": t.n, "level": t.level}
                      for lab, t in self.trend.items()},
            "provenance": self.provenance,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "Result":
        """Load a result saved by :meth:`to_json`."""
        record = json.loads(Path(path).read_text())
        if record.get("experiment") != "faces" or record.get("format") != 1:
            raise ValueError(f"{path} is not a face-age result of this book (format 1)")
        cfg = record["config"] | {"trend_quantiles": tuple(record["config"]["trend_quantiles"])}
        trend = {}
        for label, t in record["trend"].items():
            mean, lower, upper = (np.asarray(t[k]) for k in ("mean", "lower", "upper"))
            trend[label] = MeanCI(mean=mean, lower=lower, upper=upper, half_width=upper - mean, n=t["n"], level=t["level"])
        return cls(
            config=Config(**cfg), source=record["source"], labels=tuple(record["labels"]), counts=record["counts"],
            r2={lab: {s: np.asarray(v) for s, v in splits.items()} for lab, splits in record["r2"].items()},
            similarity=np.asarray(record["similarity"]),
            mean_error={lab: np.asarray(v) for lab, v in record["mean_error"].items()},
            trend_grid=np.asarray(record["trend_grid"]), trend=trend, provenance=record["provenance"],
        )


def _environment() -> dict[str, Any]:
    """Versions, devices and the git commit, for the provenance record."""
    import jax

    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "statsmodels", "torch", "torchvision"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "companion": __version__, "git commit": commit, "python": platform.python_version(),
        "versions": versions, "jax devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
    }


def run(cfg: Config | None = None, data: FaceData | None = None, *, images: str | Path | None = None,
        weights: str | None = "imagenet", device: str | None = None, num_workers: int = 2) -> Result:
    """Split, train the four heads for ``cfg.seeds`` seeds at once, and score them (Table 2, Fig. 4).

    ``data`` defaults to the stand-in (``cfg.source == "standin"``) or UTKFace found at ``images``
    (or :func:`find_images`), whose features are computed on first use and cached.
    """
    from companion.train import fit_variants

    cfg = cfg or config()
    if data is None and cfg.source == "standin":
        data = standin_data(cfg)
    elif data is None:
        images = images or find_images()
        if images is None:
            raise FileNotFoundError(
                f"UTKFace not found: pass images=PATH or set ${IMAGES_ENV_VAR} to UTKFace.tar.gz (Aligned & "
                "Cropped Faces from https://susanqq.github.io/UTKFace/) or to the folder it unpacks to"
            )
        data = utkface_data(images, weights=weights, device=device, num_workers=num_workers)
    parts = utkface.split(data.races, cfg.train_fraction, cfg.split_seed)
    x = np.asarray(data.features, dtype=np.float32)
    mu, sd = data.ages[parts.train].mean(), data.ages[parts.train].std()
    specs = [MLPSpec(depth=cfg.depth, width=cfg.width, layernorm=p, sigma_b=cfg.sigma_b) for p in PLACEMENTS]
    start = time.perf_counter()
    trained = fit_variants(
        specs, x[parts.train], (data.ages[parts.train] - mu) / sd, seeds=range(cfg.seeds), epochs=cfg.epochs,
        learning_rates=[LEARNING_RATES[p] for p in PLACEMENTS], batch_size=cfg.batch_size,
        desc=f"{len(specs)} heads x {cfg.seeds} seeds",
    )
    train_seconds = time.perf_counter() - start
    similarity = average_cosine_similarity(x[parts.ood], x[parts.train])
    grid = np.linspace(*np.quantile(similarity, cfg.trend_quantiles), cfg.trend_points)
    r2, mean_error, trend = {}, {}, {}
    for spec, result in zip(specs, trained):
        ages = {"ID": parts.id_val, "OOD": parts.ood}
        preds = {s: result.predict(x[idx]) * sd + mu for s, idx in ages.items()}
        r2[spec.label] = {s: r2_score(data.ages[ages[s]], preds[s]) for s in SPLITS}
        errors = np.abs(preds["OOD"] - data.ages[parts.ood])
        mean_error[spec.label] = errors.mean(axis=0)
        trend[spec.label] = lowess_band(similarity, errors, grid)
    provenance = _environment() | data.provenance | {
        "training seconds (incl. compilation)": round(train_seconds, 1),
        "total seconds": round(time.perf_counter() - start, 1),
        "split": f"train: random {cfg.train_fraction:.0%} of White/Black/Asian/Indian (numpy default_rng({cfg.split_seed})); "
                 "ID validation: the rest of them; OOD: all Others",
    }
    return Result(
        config=cfg, source=data.source, labels=tuple(s.label for s in specs), counts=parts.counts(),
        r2=r2, similarity=similarity, mean_error=mean_error, trend_grid=grid, trend=trend, provenance=provenance,
    )


def find_artefact() -> Path | None:
    """The saved ``full`` result, if any: ``data_dir()/results/faces-full.json``, else the copy
    published with the book, ``book/experiments/results/faces-full.json`` of a source checkout."""
    repository = Path(__file__).resolve().parents[3]
    candidates = [data_dir() / "results" / ARTEFACT, repository / "book" / "experiments" / "results" / ARTEFACT]
    return next((c for c in candidates if c.is_file()), None)


def chapter_result() -> Result:
    """What the chapter shows: the saved full result when there is one; otherwise a run of the
    active profile, on UTKFace when the profile is ``full`` and the images are found (saved as the
    artefact), else on the stand-in."""
    artefact = find_artefact()
    if artefact is not None:
        return Result.from_json(artefact)
    cfg = config()
    if cfg.source == "utkface" and find_images() is None:
        print(f"UTKFace not found (set ${IMAGES_ENV_VAR}); running the {cfg.seeds}-seed protocol on the synthetic stand-in")
        cfg = dataclasses.replace(cfg, source="standin")
    result = run(cfg)
    if result.source == SOURCES["utkface"]:
        result.to_json(data_dir() / "results" / ARTEFACT)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m companion run faces``: run the experiment and save its artefact."""
    parser = argparse.ArgumentParser(
        prog="python -m companion run faces",
        description="The face-age experiment (paper Sec. 4.3): Table 2 and Figure 4, saved as a JSON artefact.",
    )
    parser.add_argument("--profile", choices=profile.PROFILES, type=profile.normalise, default=None,
                        help="full: UTKFace, 250 seeds; ci: the synthetic stand-in (default: the active profile)")
    parser.add_argument("--images", type=Path, help="UTKFace.tar.gz or the folder of its images (full profile)")
    parser.add_argument("--out", type=Path, help="where to write the JSON artefact (default: data_dir()/results/faces-<profile>.json)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the profile's; the paper's is 250)")
    parser.add_argument("--device", help="torch device of the feature extractor (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=2, help="image-loading processes (default 2)")
    args = parser.parse_args(argv)
    # JAX trains the heads after torch has extracted the features in the same process: do not let
    # JAX reserve most of the GPU memory up front, and show progress in a terminal.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("COMPANION_PROGRESS", "1")
    name = args.profile or profile.active()
    cfg = config(name)
    if args.seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=args.seeds)
    if cfg.source == "utkface" and (args.images or find_images()) is None:
        parser.error(f"the full profile needs UTKFace: pass --images PATH to UTKFace.tar.gz (Aligned & Cropped "
                     f"Faces, https://susanqq.github.io/UTKFace/) or set ${IMAGES_ENV_VAR}")
    result = run(cfg, images=args.images, device=args.device, num_workers=args.workers)
    result.provenance["command"] = f"python -m companion run faces --profile {name}" + (
        f" --seeds {cfg.seeds}" if args.seeds is not None else "")
    print(f"{result.source}: {result.counts}")
    print(result.table().to_string())
    out = result.to_json(args.out or data_dir() / "results" / f"faces-{name}.json")
    print(f"saved {out}")
    return 0
